"""The offline MIG catalog: every fact keyed on (GPU model code, profile name).

Source: shared/reference/mig.md. The same profile name means different things on different
GPUs (`1g.10gb` is the 2-memory-slice 1g on A100-40GB but the 1-slice 1g on A100-80GB), so
nothing here is ever looked up by name alone. Read the real table from NVML wherever a GPU is
present (see nvml.compare_with_catalog); this module is what the portal knows without one.
"""

from dataclasses import dataclass, field

NVIDIA_VENDOR_ID = 0x10DE

# How the allowed placements of a model are known (see the reference):
CONFIRMED = "confirmed"  # seen in the MIG guide or an nvidia-smi capture
DERIVED = "derived"  # assumed the same as the rest of the 8-slice family
UNVERIFIED = "unverified"  # no source confirmed them


@dataclass(frozen=True)
class MigProfile:
    """One GPU instance profile of one GPU model."""

    gpu_model: str
    name: str
    nvml_profile: int  # NVML_GPU_INSTANCE_PROFILE_* enum value
    profile_id: int  # the ID nvidia-smi shows and NVML returns in profile info `id`
    compute_slices: int
    memory_slices: int
    max_count: int
    starts: tuple[int, ...]  # allowed first memory slice of a placement
    usable_memory_gib: float
    memory_is_approximate: bool  # True when derived, not read from a capture

    @property
    def media_extensions(self) -> bool:
        return self.name.endswith("+me")


@dataclass(frozen=True)
class GpuGeometry:
    """The MIG shape of one GPU model: its slices and its profiles in reference order."""

    model: str
    memory_slices: int
    compute_slices: int
    pci_device_ids: tuple[int, ...]
    placements_source: str  # CONFIRMED, DERIVED or UNVERIFIED
    profiles: tuple[MigProfile, ...] = field(repr=False)


@dataclass(frozen=True)
class NamedLayout:
    """A layout as mig-parted ships it: `all-disabled`, `all-balanced`, `all-1g.5gb`, ..."""

    name: str
    mig_enabled: bool
    mig_devices: dict[str, int]  # empty when MIG is disabled or enabled without devices


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

# (PCI device ids, profile names in row order, how the placements are known)
_EIGHT_SLICE_MODELS = {
    "A100-40GB": (
        (0x20B0, 0x20B1, 0x20F1),
        ("1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"),
        CONFIRMED,
    ),
    "A100-80GB": (
        (0x20B2, 0x20B5),
        ("1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
        DERIVED,
    ),
    "H100-80GB": (
        (0x2330, 0x2331),
        ("1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
        CONFIRMED,
    ),
    "H100-NVL": (
        (0x2321,),
        ("1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.47gb", "4g.47gb", "7g.94gb"),
        DERIVED,
    ),
    "H200": (
        (0x2335, 0x233B),
        ("1g.18gb", "1g.18gb+me", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"),
        DERIVED,
    ),
    "GH200-96GB": (
        (0x2342,),
        ("1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.48gb", "4g.48gb", "7g.96gb"),
        DERIVED,
    ),
    "GH200-144GB": (
        (0x2348,),
        ("1g.18gb", "1g.18gb+me", "1g.36gb", "2g.36gb", "3g.72gb", "4g.72gb", "7g.144gb"),
        DERIVED,
    ),
    "B200": (
        (0x2901,),
        ("1g.23gb", "1g.23gb+me", "1g.45gb", "2g.45gb", "3g.90gb", "4g.90gb", "7g.180gb"),
        UNVERIFIED,
    ),
}

# A30 has its own profile IDs. The reference gives no NVML enum values for it; these follow
# nvml.h's naming by compute slices, with REV1 for the +me variant (not from a capture).
# (name, NVML enum, profile ID, compute slices, memory slices, max count, allowed starts)
_A30_ROWS = (
    ("1g.6gb", 0x0, 14, 1, 1, 4, (0, 1, 2, 3)),
    ("1g.6gb+me", 0x7, 21, 1, 1, 1, (0, 1, 2, 3)),
    ("2g.12gb", 0x1, 5, 2, 2, 2, (0, 2)),
    ("2g.12gb+me", 0x8, 6, 2, 2, 1, (0, 2)),
    ("4g.24gb", 0x3, 0, 4, 4, 1, (0,)),
)
_A30_PCI_DEVICE_IDS = (0x20B7,)
_A30_BALANCED = {"1g.6gb": 2, "2g.12gb": 1}

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
    ("H200", "1g.18gb"): 16.00,
    ("H200", "3g.71gb"): 69.50,
    ("H200", "7g.141gb"): 139.75,
}
# Captures show about 99% of the nominal size usable by a whole-GPU instance.
_USABLE_SHARE_OF_NOMINAL = 0.99


def _nominal_gb(profile_name: str) -> int:
    """The size written in the name: "3g.20gb+me" -> 20."""
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
    """MigProfiles from name -> (enum, ID, compute, memory, max, starts); the last is 7g/4g."""
    slices = {name: row[3] for name, row in rows.items()}
    whole = list(rows)[-1]
    profiles = []
    for name, (nvml_profile, profile_id, compute, memory, max_count, starts) in rows.items():
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
            )
        )
    return tuple(profiles)


def _build() -> tuple[dict[str, GpuGeometry], dict[str, dict[str, int]]]:
    """Expand the tables above into geometries and each model's all-balanced layout."""
    geometries: dict[str, GpuGeometry] = {}
    balanced: dict[str, dict[str, int]] = {}

    a30_profiles = _make_profiles("A30", {name: tuple(row) for name, *row in _A30_ROWS})
    geometries["A30"] = GpuGeometry("A30", 4, 4, _A30_PCI_DEVICE_IDS, DERIVED, a30_profiles)
    balanced["A30"] = dict(_A30_BALANCED)

    for model, (pci_ids, names, source) in _EIGHT_SLICE_MODELS.items():
        profiles = _make_profiles(model, dict(zip(names, _EIGHT_SLICE_ROWS, strict=True)))
        geometries[model] = GpuGeometry(model, 8, 7, pci_ids, source, profiles)
        balanced[model] = {names[row]: count for row, count in _EIGHT_SLICE_BALANCED.items()}
    return geometries, balanced


_GEOMETRIES, _BALANCED = _build()
_PROFILES = {(p.gpu_model, p.name): p for g in _GEOMETRIES.values() for p in g.profiles}
_MODEL_BY_PCI_ID = {pci: g.model for g in _GEOMETRIES.values() for pci in g.pci_device_ids}


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
