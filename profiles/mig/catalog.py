"""The offline MIG catalog: every fact keyed on (GPU model code, profile name).

It covers every GPU and profile of NVIDIA's default mig-parted config (vendored as
tests/mig/data/mig-parted-config-default.yaml, which must validate with no problems).
Sources: shared/reference/mig.md (the MIG User Guide, nvml.h, nvidia-smi captures), that
config and its comments, the driver's list of compatible GPUs (NVIDIA/open-gpu-kernel-modules
README) for device names, and `nvidia-smi mig -lgip` captures quoted in public issues
(NVIDIA/mig-parted#120, #139, #227, #228; NVIDIA/gpu-operator#1242, #1303;
GoogleCloudPlatform/container-engine-accelerators#563). What no source publishes is marked:
each profile says how it is known (`source`), each model how its placements are known
(`placements_source`) and what is missing (`note`); an unpublished profile ID is None.

The same profile name means different things on different GPUs (`1g.10gb` is the
2-memory-slice 1g on A100-40GB but the 1-slice 1g on A100-80GB), so nothing here is ever
looked up by name alone. Read the real table from NVML wherever a GPU is present (see
nvml.compare_with_catalog); this module is what the portal knows without one.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

NVIDIA_VENDOR_ID = 0x10DE

# How a fact is known. For a profile: its existence, ID and maximum count on that model.
# For a model's placements: its allowed starts.
CONFIRMED = "confirmed"  # the MIG guide or an nvidia-smi capture of this model shows it
DERIVED = "derived"  # NVIDIA's mig-parted config names it for this model, or it is assumed
# the same as on the model's siblings (same die, same slice family) whose placements are known
UNVERIFIED = "unverified"  # no source confirms it; kept because every sibling model has it


@dataclass(frozen=True)
class MigProfile:
    """One GPU instance profile of one GPU model."""

    gpu_model: str
    name: str
    nvml_profile: int  # NVML_GPU_INSTANCE_PROFILE_* enum value
    profile_id: int | None  # the ID nvidia-smi shows and NVML returns; None: not published
    compute_slices: int
    memory_slices: int
    max_count: int
    starts: tuple[int, ...]  # allowed first memory slice of a placement
    usable_memory_gib: float
    memory_is_approximate: bool  # True when derived, not read from a capture
    source: str = CONFIRMED  # how the profile, its ID and its maximum are known

    @property
    def media_extensions(self) -> bool:
        """`+me`, or RTX PRO's `+me.all`: the GPU's media extensions go to one instance."""
        return "+me" in self.name


@dataclass(frozen=True)
class GpuGeometry:
    """The MIG shape of one GPU model: its slices and its profiles in reference order."""

    model: str
    memory_slices: int
    compute_slices: int
    pci_device_ids: tuple[int, ...]
    placements_source: str  # CONFIRMED, DERIVED or UNVERIFIED
    profiles: tuple[MigProfile, ...] = field(repr=False)
    # Names some boards of this model report for the same profiles: earlier name -> name here.
    former_names: Mapping[str, str] = field(default_factory=dict, repr=False)
    note: str = ""  # where the facts come from, and what is not published


@dataclass(frozen=True)
class NamedLayout:
    """A layout as mig-parted ships it: `all-disabled`, `all-balanced`, `all-1g.5gb`, ..."""

    name: str
    mig_enabled: bool
    mig_devices: dict[str, int]  # empty when MIG is disabled or enabled without devices


# PCI device id -> (model code, device name). Names are the driver's (its list of compatible
# GPUs); 0x20B1 is named by pci.ids, and 0x233D only by mig-parted's comments ("H100-96GB").
PCI_DEVICES: dict[int, tuple[str, str]] = {
    0x20B7: ("A30", "NVIDIA A30"),
    0x20B0: ("A100-40GB", "NVIDIA A100-SXM4-40GB"),
    0x20B1: ("A100-40GB", "A100 PCIe 40GB"),
    0x20F1: ("A100-40GB", "NVIDIA A100-PCIE-40GB"),
    0x20F6: ("A800-40GB", "NVIDIA A800 40GB Active"),
    0x20B2: ("A100-80GB", "NVIDIA A100-SXM4-80GB"),
    0x20B5: ("A100-80GB", "NVIDIA A100 80GB PCIe"),
    0x20F3: ("A800-80GB", "NVIDIA A800-SXM4-80GB"),
    0x20F5: ("A800-80GB", "NVIDIA A800 80GB PCIe"),
    0x20B6: ("PG506-96GB", "NVIDIA PG506-232"),
    0x2330: ("H100-80GB", "NVIDIA H100 80GB HBM3"),
    0x2331: ("H100-80GB", "NVIDIA H100 PCIe"),
    0x2322: ("H800-80GB", "NVIDIA H800 PCIe"),
    0x2324: ("H800-80GB", "NVIDIA H800"),
    0x2321: ("H100-NVL", "NVIDIA H100 NVL"),
    0x233A: ("H800-NVL", "NVIDIA H800 NVL"),
    0x233D: ("H100-96GB", "H100-96GB"),
    0x2329: ("H20", "NVIDIA H20"),
    0x2335: ("H200", "NVIDIA H200"),
    0x233B: ("H200", "NVIDIA H200 NVL"),
    0x2342: ("GH200-96GB", "NVIDIA GH200 120GB"),  # also "NVIDIA GH200 480GB"
    0x2348: ("GH200-144GB", "NVIDIA GH200 144G HBM3e"),
    0x2901: ("B200", "NVIDIA B200"),
    0x2941: ("GB200", "NVIDIA GB200"),
    0x2BB5: ("RTX-PRO-6000", "NVIDIA RTX PRO 6000 Blackwell Server Edition"),
}

# One row per kind of GPU instance profile, in the reference's row order:
# (NVML enum value, profile ID, compute slices, memory slices, max count, allowed starts).
_EIGHT_SLICE_ROWS = (
    (0x0, 19, 1, 1, 7, (0, 1, 2, 3, 4, 5, 6)),  # 1g
    (0x7, 20, 1, 1, 1, (0, 1, 2, 3, 4, 5, 6)),  # 1g+me
    (0x9, 15, 1, 2, 4, (0, 2, 4, 6)),  # 1g with double memory
    (0x1, 14, 2, 2, 3, (0, 2, 4)),  # 2g
    (0x2, 9, 3, 4, 2, (0, 4)),  # 3g
    (0x3, 5, 4, 4, 1, (0,)),  # 4g
    (0x4, 0, 7, 8, 1, (0,)),  # 7g
)
# mig-parted's all-balanced for the 8-slice family: 2 x 1g + 1 x 2g + 1 x 3g (by row index).
_EIGHT_SLICE_BALANCED = {0: 2, 3: 1, 4: 1}
# How each row is known, one letter per row in the order above.
_LETTERS = {"C": CONFIRMED, "D": DERIVED, "U": UNVERIFIED}

# model: (profile names in row order, how the placements are known, how each row is known).
_EIGHT_SLICE_MODELS = {
    "A100-40GB": (
        ("1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"),
        CONFIRMED,
        "CCCCCCC",
    ),
    # A100 silicon sold where the A100 may not be; the config gives it the A100's layouts.
    "A800-40GB": (
        ("1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"),
        DERIVED,
        "DDDDDDD",
    ),
    "A100-80GB": (
        ("1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
        DERIVED,
        "CCCCCCC",
    ),
    "A800-80GB": (
        ("1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
        DERIVED,
        "DDDDDDD",
    ),
    # Only 1g.12gb, 2g.24gb, 3g.48gb, 4g.48gb and 7g.96gb are named for it by NVIDIA.
    "PG506-96GB": (
        ("1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.48gb", "4g.48gb", "7g.96gb"),
        DERIVED,
        "DUUDDDD",
    ),
    "H100-80GB": (
        ("1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
        CONFIRMED,
        "CCCCCCC",
    ),
    "H800-80GB": (
        ("1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
        DERIVED,
        "DDDDDDD",
    ),
    "H100-NVL": (
        ("1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.47gb", "4g.47gb", "7g.94gb"),
        DERIVED,
        "CCCCCCC",
    ),
    "H800-NVL": (
        ("1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.47gb", "4g.47gb", "7g.94gb"),
        DERIVED,
        "DDDDDDD",
    ),
    # Only 3g.48gb, 4g.48gb, 7g.96gb and all-balanced are named for it by NVIDIA.
    "H100-96GB": (
        ("1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.48gb", "4g.48gb", "7g.96gb"),
        DERIVED,
        "DUUDDDD",
    ),
    # The config names only its all-balanced (1g.12gb, 2g.24gb, 3g.48gb) for it.
    "H20": (
        ("1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.48gb", "4g.48gb", "7g.96gb"),
        DERIVED,
        "DUUDDUU",
    ),
    # Every fact of it read through NVML on an H200 (driver 580.159.04, bin/check-gpu-host;
    # replayed by tests/mig/test_nvml_capture.py).
    "H200": (
        ("1g.18gb", "1g.18gb+me", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"),
        CONFIRMED,
        "CCCCCCC",
    ),
    "GH200-96GB": (
        ("1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.48gb", "4g.48gb", "7g.96gb"),
        DERIVED,
        "CCCCCCC",
    ),
    "GH200-144GB": (
        ("1g.18gb", "1g.18gb+me", "1g.36gb", "2g.36gb", "3g.72gb", "4g.72gb", "7g.144gb"),
        DERIVED,
        "CCCCCCC",
    ),
    "B200": (
        ("1g.23gb", "1g.23gb+me", "1g.45gb", "2g.45gb", "3g.90gb", "4g.90gb", "7g.180gb"),
        UNVERIFIED,
        "CCCCCCC",
    ),
    "GB200": (
        ("1g.23gb", "1g.23gb+me", "1g.47gb", "2g.47gb", "3g.93gb", "4g.93gb", "7g.186gb"),
        UNVERIFIED,
        "CCCCDDD",
    ),
}

# 4 memory slices and 4 compute slices, each model with its own rows:
# (name, NVML enum, profile ID or None, compute slices, memory slices, max, starts, source).
_A30_ROWS = (
    ("1g.6gb", 0x0, 14, 1, 1, 4, (0, 1, 2, 3), CONFIRMED),
    ("1g.6gb+me", 0x7, 21, 1, 1, 1, (0, 1, 2, 3), CONFIRMED),
    ("2g.12gb", 0x1, 5, 2, 2, 2, (0, 2), CONFIRMED),
    ("2g.12gb+me", 0x8, 6, 2, 2, 1, (0, 2), CONFIRMED),
    ("4g.24gb", 0x3, 0, 4, 4, 1, (0,), CONFIRMED),
)
# RTX PRO 6000 Blackwell: IDs 14, 21, 47, 65 and the 1g maxima from nvidia-smi captures
# (GoogleCloudPlatform/container-engine-accelerators#563), 2g.48gb = 5 and 4g.96gb = 0 from
# its partitioner; the other maxima from the config's all-<profile> counts. NVML enums follow
# the name suffix (+gfx: *_GFX, -me: *_NO_ME, +me.all: *_ALL_ME), as NVML names them.
_RTX_PRO_6000_ROWS = (
    ("1g.24gb", 0x0, 14, 1, 1, 4, (0, 1, 2, 3), CONFIRMED),
    ("1g.24gb+me", 0x7, 21, 1, 1, 1, (0, 1, 2, 3), CONFIRMED),
    ("1g.24gb+gfx", 0xA, 47, 1, 1, 4, (0, 1, 2, 3), CONFIRMED),
    ("1g.24gb+me.all", 0xF, 65, 1, 1, 1, (0, 1, 2, 3), CONFIRMED),
    ("1g.24gb-me", 0xD, None, 1, 1, 4, (0, 1, 2, 3), DERIVED),
    ("2g.48gb", 0x1, 5, 2, 2, 2, (0, 2), DERIVED),
    ("2g.48gb+gfx", 0xB, None, 2, 2, 2, (0, 2), DERIVED),
    ("2g.48gb+me.all", 0x10, None, 2, 2, 1, (0, 2), DERIVED),
    ("2g.48gb-me", 0xE, None, 2, 2, 2, (0, 2), DERIVED),
    ("4g.96gb", 0x3, 0, 4, 4, 1, (0,), DERIVED),
    ("4g.96gb+gfx", 0xC, None, 4, 4, 1, (0,), DERIVED),
)
# model: (rows, how the placements are known, all-balanced as mig-parted ships it)
_FOUR_SLICE_MODELS = {
    "A30": (_A30_ROWS, DERIVED, {"1g.6gb": 2, "2g.12gb": 1}),
    "RTX-PRO-6000": (_RTX_PRO_6000_ROWS, UNVERIFIED, {"1g.24gb": 2, "2g.48gb": 1}),
}

# GB200 boards before NVIDIA/mig-parted#228 (Aug 2025) report these names for the production
# boards' profiles. A capture (NVIDIA/gpu-operator#1303) shows 1g.24gb and 1g.24gb+me with the
# IDs and maxima of 1g.23gb and 1g.23gb+me; that 3g.95gb, 4g.95gb and 7g.189gb are the 3g, 4g
# and 7g follows from their names and the config's counts [derived].
_FORMER_NAMES = {
    "GB200": {
        "1g.24gb": "1g.23gb",
        "1g.24gb+me": "1g.23gb+me",
        "3g.95gb": "3g.93gb",
        "4g.95gb": "4g.93gb",
        "7g.189gb": "7g.186gb",
    },
}

_NOTES = {
    "A800-40GB": "Profiles as on A100-40GB, which mig-parted's config gives it; no capture.",
    "A800-80GB": "Profiles as on A100-80GB, which mig-parted's config gives it; no capture.",
    "H800-80GB": "Profiles as on H100-80GB, which mig-parted's config gives it; no capture.",
    "H800-NVL": "Profiles as on H100 NVL, which mig-parted's config gives it; no capture.",
    "PG506-96GB": (
        "A GA100 board. NVIDIA names 1g.12gb, 2g.24gb, 3g.48gb, 4g.48gb and 7g.96gb for it; "
        "1g.12gb+me and 1g.24gb are assumed from the A100 family [unverified]."
    ),
    "H100-96GB": (
        "No driver name is published for 0x233D. NVIDIA names 3g.48gb, 4g.48gb, 7g.96gb and "
        "all-balanced for it; 1g.12gb+me and 1g.24gb are assumed as on GH200 [unverified]."
    ),
    "H20": (
        "mig-parted's config names only all-balanced (1g.12gb, 2g.24gb, 3g.48gb) for it; the "
        "other profiles are assumed as on H100-96GB and GH200 [unverified]."
    ),
    "B200": "Profile IDs and maxima from captures; placements not published [unverified].",
    "GB200": (
        "IDs and maxima of 1g.23gb, 1g.23gb+me, 1g.47gb and 2g.47gb from a capture "
        "(NVIDIA/mig-parted#227), the rest from the config; placements not published "
        "[unverified]. Boards before NVIDIA/mig-parted#228 name the same profiles 1g.24gb, "
        "1g.24gb+me, 3g.95gb, 4g.95gb and 7g.189gb."
    ),
    "RTX-PRO-6000": (
        "IDs of 1g.24gb-me and of the 2g/4g +gfx, +me.all and -me profiles are not published. "
        "Placements are assumed as on A30 (4 memory slices) [unverified]. How +me.all shares "
        "the media engines with other instances is not published: only 'one +me or +me.all "
        "per GPU' is checked here."
    ),
}

# Usable GiB per instance from nvidia-smi captures (varies slightly by driver).
_CAPTURED_USABLE_GIB = {
    ("A100-40GB", "1g.5gb"): 4.75,
    ("A100-40GB", "2g.10gb"): 9.75,
    ("A100-40GB", "3g.20gb"): 19.62,
    ("A100-40GB", "4g.20gb"): 19.62,
    ("A100-40GB", "7g.40gb"): 39.50,
    ("H100-80GB", "1g.10gb"): 9.75,
    ("H100-80GB", "2g.20gb"): 19.62,
    ("H100-80GB", "3g.40gb"): 39.50,
    ("H100-80GB", "7g.80gb"): 79.25,
    # H200: read through NVML (driver 580.159.04); NVIDIA/mig-parted#120 shows 0.25 GiB less.
    ("H200", "1g.18gb"): 16.00,
    ("H200", "1g.18gb+me"): 16.00,
    ("H200", "1g.35gb"): 32.50,
    ("H200", "2g.35gb"): 32.50,
    ("H200", "3g.71gb"): 69.75,
    ("H200", "4g.71gb"): 69.75,
    ("H200", "7g.141gb"): 140.00,
    ("GH200-144GB", "1g.18gb"): 17.50,  # NVIDIA/mig-parted#139
    ("GH200-144GB", "1g.36gb"): 35.25,
    ("GH200-144GB", "2g.36gb"): 35.25,
    ("B200", "1g.45gb"): 44.25,  # NVIDIA/gpu-operator#1242, NVIDIA/mig-parted#187
    ("B200", "2g.45gb"): 44.25,
    ("GB200", "1g.23gb"): 22.00,  # NVIDIA/mig-parted#227
    ("GB200", "1g.47gb"): 45.50,
    ("GB200", "2g.47gb"): 45.50,
    ("RTX-PRO-6000", "1g.24gb"): 23.62,  # container-engine-accelerators#563
}
# Captures show about 99% of the nominal size usable by a whole-GPU instance.
_USABLE_SHARE_OF_NOMINAL = 0.99


def _nominal_gb(profile_name: str) -> int:
    """The size written in the name: "3g.20gb+me" -> 20, "1g.24gb-me" -> 24."""
    return int(profile_name.split(".")[1].split("gb")[0])


def _usable_gib(model: str, name: str, rows: dict[str, int], whole: str) -> tuple[float, bool]:
    """Usable GiB of (model, name) and whether it is approximate.

    `rows` maps each of the model's profile names to its memory slices; `whole` names the
    whole-GPU profile. Memory follows memory slices, so an uncaptured profile takes the value
    captured for another profile with as many slices (a +me twin, 2g vs double-memory 1g,
    4g vs 3g), else its share of the whole-GPU instance.
    """
    captured = _CAPTURED_USABLE_GIB.get((model, name))
    if captured is not None:
        return captured, False
    for other, slices in rows.items():
        if slices == rows[name] and (model, other) in _CAPTURED_USABLE_GIB:
            return _CAPTURED_USABLE_GIB[(model, other)], True
    whole_gib = _CAPTURED_USABLE_GIB.get(
        (model, whole), _nominal_gb(whole) * _USABLE_SHARE_OF_NOMINAL
    )
    return round(whole_gib * rows[name] / rows[whole], 2), True


def _make_profiles(model: str, rows: dict[str, tuple]) -> tuple[MigProfile, ...]:
    """MigProfiles from name -> (enum, ID, compute, memory, max, starts, source).

    The last row has the whole GPU's memory (7g, or a 4g on the 4-slice models).
    """
    slices = {name: row[3] for name, row in rows.items()}
    whole = list(rows)[-1]
    profiles = []
    for name, row in rows.items():
        nvml_profile, profile_id, compute, memory, max_count, starts, source = row
        usable, approximate = _usable_gib(model, name, slices, whole)
        profiles.append(
            MigProfile(
                gpu_model=model,
                name=name,
                nvml_profile=nvml_profile,
                profile_id=profile_id,
                compute_slices=compute,
                memory_slices=memory,
                max_count=max_count,
                starts=starts,
                usable_memory_gib=usable,
                memory_is_approximate=approximate,
                source=source,
            )
        )
    return tuple(profiles)


def _rows_by_name(rows: tuple[tuple, ...]) -> dict[str, tuple]:
    return {name: tuple(row) for name, *row in rows}


def _geometry(model: str, slices: int, placements: str, rows: dict[str, tuple]) -> GpuGeometry:
    """A model with `slices` memory slices (7 compute slices with 8, else as many)."""
    return GpuGeometry(
        model=model,
        memory_slices=slices,
        compute_slices=7 if slices == 8 else slices,
        pci_device_ids=tuple(pci for pci, (owner, _) in PCI_DEVICES.items() if owner == model),
        placements_source=placements,
        profiles=_make_profiles(model, rows),
        former_names=_FORMER_NAMES.get(model, {}),
        note=_NOTES.get(model, ""),
    )


def _build() -> tuple[dict[str, GpuGeometry], dict[str, dict[str, int]]]:
    """Expand the tables above into geometries and each model's all-balanced layout."""
    geometries: dict[str, GpuGeometry] = {}
    balanced: dict[str, dict[str, int]] = {}
    for model, (names, placements, letters) in _EIGHT_SLICE_MODELS.items():
        rows = {
            name: (*row, _LETTERS[letter])
            for name, row, letter in zip(names, _EIGHT_SLICE_ROWS, letters, strict=True)
        }
        geometries[model] = _geometry(model, 8, placements, rows)
        balanced[model] = {names[row]: count for row, count in _EIGHT_SLICE_BALANCED.items()}
    for model, (rows, placements, layout) in _FOUR_SLICE_MODELS.items():
        geometries[model] = _geometry(model, 4, placements, _rows_by_name(rows))
        balanced[model] = dict(layout)
    # A30 first, as the portal has always listed it.
    order = ["A30", *(model for model in geometries if model != "A30")]
    return {model: geometries[model] for model in order}, balanced


_GEOMETRIES, _BALANCED = _build()
_PROFILES = {(p.gpu_model, p.name): p for g in _GEOMETRIES.values() for p in g.profiles}
_MODEL_BY_PCI_ID = {pci: model for pci, (model, _) in PCI_DEVICES.items()}


def mig_capable_models() -> list[str]:
    return list(_GEOMETRIES)


def geometry(gpu_model: str) -> GpuGeometry:
    try:
        return _GEOMETRIES[gpu_model]
    except KeyError:
        known = ", ".join(_GEOMETRIES)
        raise KeyError(f"unknown MIG GPU model {gpu_model!r}; known models: {known}") from None


def profile(gpu_model: str, name: str) -> MigProfile:
    try:
        return _PROFILES[(gpu_model, name)]
    except KeyError:
        names = ", ".join(p.name for p in geometry(gpu_model).profiles)
        raise KeyError(f"{gpu_model} has no MIG profile {name!r}; its profiles: {names}") from None


def current_names(gpu_model: str, counts: Mapping[str, int]) -> tuple[dict[str, int], str]:
    """`counts` with earlier profile names (see GpuGeometry.former_names) replaced by the
    catalog's, and a problem when it mixes both: one board reports only one set of names."""
    former = geometry(gpu_model).former_names
    earlier = [name for name in counts if name in former]
    if not earlier:
        return dict(counts), ""
    renamed = set(former.values())
    later = [name for name in counts if name in renamed]
    if later:
        return dict(counts), (
            f"{', '.join(earlier)} and {', '.join(later)} are names from different "
            f"{gpu_model} boards (the earlier and the later names of the same profiles); "
            f"one GPU reports only one set"
        )
    return {former.get(name, name): count for name, count in counts.items()}, ""


def model_for_pci_device_id(pci_device_id: int) -> str | None:
    """The model code for a PCI device id: 0x20B0, or NVML's device<<16|vendor 0x20B010DE."""
    if pci_device_id > 0xFFFF:
        if pci_device_id & 0xFFFF != NVIDIA_VENDOR_ID:
            return None
        pci_device_id >>= 16
    return _MODEL_BY_PCI_ID.get(pci_device_id)


def k8s_resource_name(profile_name: str) -> str:
    """The device plugin's mixed-strategy resource: 1g.5gb+me -> nvidia.com/mig-1g.5gb.me."""
    return f"nvidia.com/mig-{profile_name.replace('+', '.')}"


def mig_parted_name(profile_name: str) -> str:
    """The shipped mig-parted config filling a GPU with one profile: all-1g.5gb.me."""
    return f"all-{profile_name.replace('+', '.')}"


def named_layouts(gpu_model: str) -> dict[str, NamedLayout]:
    """The configs mig-parted ships for this model, by config name."""
    profiles = geometry(gpu_model).profiles
    layouts = [
        NamedLayout("all-disabled", mig_enabled=False, mig_devices={}),
        NamedLayout("all-enabled", mig_enabled=True, mig_devices={}),
        NamedLayout("all-balanced", mig_enabled=True, mig_devices=dict(_BALANCED[gpu_model])),
    ]
    layouts += [
        NamedLayout(mig_parted_name(p.name), mig_enabled=True, mig_devices={p.name: p.max_count})
        for p in profiles
    ]
    return {layout.name: layout for layout in layouts}
