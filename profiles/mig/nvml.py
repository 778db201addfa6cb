"""Read-only GPU discovery through NVML (package nvidia-ml-py, module `pynvml`).

Nothing here changes MIG mode or creates instances. A host without a driver simply has no
GPUs: `inventory()` then returns an empty Inventory whose `reason` says why. Pass another
object shaped like `pynvml` as `nvml` to test the parsing without a GPU.
"""

import ctypes
import json
from dataclasses import asdict, dataclass
from typing import Any

from profiles.catalog import gpu_model_for_product_label
from profiles.mig import catalog

_MIB = 1024 * 1024


@dataclass(frozen=True)
class GiProfileInfo:
    """One row of the GPU's own GPU-instance profile table."""

    nvml_profile: int  # the NVML_GPU_INSTANCE_PROFILE_* value it was read with
    profile_id: int
    name: str  # e.g. "1g.5gb", without NVML's "MIG " prefix
    slice_count: int  # compute slices
    instance_count: int  # max instances
    memory_mib: int
    placements: tuple[tuple[int, int], ...]  # (start, size in memory slices)


@dataclass(frozen=True)
class MigDeviceInfo:
    index: int
    uuid: str
    profile: str  # from the device name, e.g. "1g.5gb"
    memory_total_mib: int
    gpu_instance_id: int | None  # None where NVML would not say (e.g. no permission)
    start: int | None  # first memory slice of its GPU instance, when readable
    # Which /dev/nvidia-caps nodes grant access to it (pools.devices); None: NVML won't say.
    compute_instance_id: int | None = None


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    uuid: str
    memory_total_mib: int
    pci_device_id: int  # 16-bit device id, e.g. 0x20B0 (NVML reports device<<16 | vendor)
    gpu_model: str | None  # catalog model code, None when not in the MIG catalog
    mig_capable: bool
    mig_enabled: bool  # current mode
    mig_pending: bool  # mode after the next GPU reset
    mig_devices: tuple[MigDeviceInfo, ...]
    gi_profiles: tuple[GiProfileInfo, ...]
    minor: int | None = None  # of its device node, /dev/nvidia<minor>; None: NVML won't say


@dataclass(frozen=True)
class UnreadableGpu:
    """A GPU NVML lists but cannot answer for: fallen off the bus ("GPU is lost"), or one
    the portal may not open ("Insufficient Permissions")."""

    index: int
    error: str  # NVML's words

    def __str__(self) -> str:
        return f"GPU {self.index}: {self.error}"


@dataclass(frozen=True)
class Inventory:
    gpus: tuple[GpuInfo, ...]  # the GPUs NVML can read: those workspaces may be given
    cause: str = ""  # why there are no GPUs, e.g. "NVML Shared Library Not Found"
    unreadable: tuple[UnreadableGpu, ...] = ()

    @property
    def reason(self) -> str:
        return f"no NVIDIA GPU ({self.cause})" if self.cause else ""


def inventory(nvml: Any = None) -> Inventory:
    """This host's GPUs, their MIG state and their GI profile tables. A GPU NVML cannot
    read is left out of `gpus` and named in `unreadable`: the others stay usable."""
    if nvml is None:
        import pynvml as nvml
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as error:  # LibraryNotFound, DriverNotLoaded, ...
        return Inventory(gpus=(), cause=str(error))
    gpus, unreadable = [], []
    try:
        for index in range(nvml.nvmlDeviceGetCount()):
            try:
                gpus.append(_read_gpu(nvml, index))
            except nvml.NVMLError as error:  # GpuIsLost, NoPermission, ...
                unreadable.append(UnreadableGpu(index, str(error)))
    finally:
        nvml.nvmlShutdown()
    return Inventory(gpus=tuple(gpus), cause=_cause(gpus, unreadable), unreadable=tuple(unreadable))


def _cause(gpus: list[GpuInfo], unreadable: list[UnreadableGpu]) -> str:
    if gpus:
        return ""
    if unreadable:
        return "NVML cannot read " + "; ".join(str(gpu) for gpu in unreadable)
    return "the driver reports no devices"


def _text(value: str | bytes) -> str:
    """NVML strings arrive as str or bytes depending on the pynvml version."""
    return value.decode() if isinstance(value, bytes) else value


def _profile_name(text: str | bytes) -> str:
    """ "NVIDIA A100-SXM4-40GB MIG 1g.5gb" or "MIG 1g.5gb" -> "1g.5gb"."""
    return _text(text).rsplit("MIG ", 1)[-1].strip()


def _read_gpu(nvml: Any, index: int) -> GpuInfo:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    pci_device_id = nvml.nvmlDeviceGetPciInfo(handle).pciDeviceId >> 16
    try:
        current, pending = nvml.nvmlDeviceGetMigMode(handle)
        mig_capable = True
    except nvml.NVMLError_NotSupported:
        current = pending = nvml.NVML_DEVICE_MIG_DISABLE
        mig_capable = False
    enabled = current == nvml.NVML_DEVICE_MIG_ENABLE
    name = _text(nvml.nvmlDeviceGetName(handle))
    return GpuInfo(
        index=index,
        name=name,
        uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
        memory_total_mib=nvml.nvmlDeviceGetMemoryInfo(handle).total // _MIB,
        pci_device_id=pci_device_id,
        gpu_model=catalog.model_for_pci_device_id(pci_device_id) or _model_from_name(name),
        mig_capable=mig_capable,
        mig_enabled=enabled,
        mig_pending=pending == nvml.NVML_DEVICE_MIG_ENABLE,
        mig_devices=_read_mig_devices(nvml, handle) if enabled else (),
        gi_profiles=_read_gi_profiles(nvml, handle) if mig_capable else (),
        minor=_optional(nvml, nvml.nvmlDeviceGetMinorNumber, handle),
    )


def _optional(nvml: Any, query, handle: Any) -> int | None:
    """What an NVML query answers, or None where it does not (unsupported, no permission)."""
    try:
        return query(handle)
    except nvml.NVMLError:
        return None


def _read_mig_devices(nvml: Any, handle: Any) -> tuple[MigDeviceInfo, ...]:
    devices = []
    for index in range(nvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, index)
        except nvml.NVMLError_NotFound:
            continue  # indices can be sparse
        gi_id, start = _gpu_instance(nvml, handle, mig)
        devices.append(
            MigDeviceInfo(
                index=index,
                uuid=_text(nvml.nvmlDeviceGetUUID(mig)),
                profile=_profile_name(nvml.nvmlDeviceGetName(mig)),
                memory_total_mib=nvml.nvmlDeviceGetMemoryInfo(mig).total // _MIB,
                gpu_instance_id=gi_id,
                start=start,
                compute_instance_id=_optional(nvml, nvml.nvmlDeviceGetComputeInstanceId, mig),
            )
        )
    return tuple(devices)


def _gpu_instance(nvml: Any, handle: Any, mig: Any) -> tuple[int | None, int | None]:
    """The MIG device's GPU instance id and first memory slice, where NVML tells us."""
    try:
        gi_id = nvml.nvmlDeviceGetGpuInstanceId(mig)
        info = nvml.nvmlGpuInstanceGetInfo(nvml.nvmlDeviceGetGpuInstanceById(handle, gi_id))
    except nvml.NVMLError:  # looking a GPU instance up may need privileges the portal lacks
        return None, None
    return gi_id, info.placement.start


def _read_gi_profiles(nvml: Any, handle: Any) -> tuple[GiProfileInfo, ...]:
    """Every NVML_GPU_INSTANCE_PROFILE_* value the GPU answers, with its placements."""
    profiles = []
    for nvml_profile in range(nvml.NVML_GPU_INSTANCE_PROFILE_COUNT):
        try:
            info = nvml.nvmlDeviceGetGpuInstanceProfileInfo(handle, nvml_profile)
        except nvml.NVMLError:  # this GPU has no such profile
            continue
        profiles.append(
            GiProfileInfo(
                nvml_profile=nvml_profile,
                profile_id=info.id,
                name=_profile_name(info.name),
                slice_count=info.sliceCount,
                instance_count=info.instanceCount,
                memory_mib=info.memorySizeMB,
                placements=_possible_placements(nvml, handle, info.id),
            )
        )
    return tuple(profiles)


def _possible_placements(nvml: Any, handle: Any, profile_id: int) -> tuple[tuple[int, int], ...]:
    """Ask for the count first, then fill an array of that size (as NVIDIA's go-nvml does)."""
    count = ctypes.c_uint(0)
    try:
        nvml.nvmlDeviceGetGpuInstancePossiblePlacements(
            handle, profile_id, None, ctypes.byref(count)
        )
        placements = (nvml.c_nvmlGpuInstancePlacement_t * count.value)()
        nvml.nvmlDeviceGetGpuInstancePossiblePlacements(
            handle, profile_id, placements, ctypes.byref(count)
        )
    except nvml.NVMLError:  # the profile table is still worth showing without placements
        return ()
    return tuple((p.start, p.size) for p in placements[: count.value])


def utilisation(device_uuids: list[str], nvml: Any = None) -> int | None:
    """The highest GPU utilisation (%) NVML reports for these devices over its last sample
    period; None when it reports none (no driver or library, only MIG devices, which have
    no such counter, or no devices)."""
    if not device_uuids:
        return None
    if nvml is None:
        import pynvml as nvml
    try:
        nvml.nvmlInit()
    except nvml.NVMLError:
        return None
    try:
        readings = [_utilisation(nvml, uuid) for uuid in device_uuids]
    finally:
        nvml.nvmlShutdown()
    known = [percent for percent in readings if percent is not None]
    return max(known) if known else None


def _utilisation(nvml: Any, uuid: str) -> int | None:
    try:
        handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
        return nvml.nvmlDeviceGetUtilizationRates(handle).gpu
    except nvml.NVMLError:  # NotSupported on a MIG device; NotFound once it is gone
        return None


def compare_with_catalog(gpu: GpuInfo) -> list[str]:
    """Where NVML's profile table for this GPU differs from the offline catalog."""
    if gpu.gpu_model is None:
        return [f"PCI device 0x{gpu.pci_device_id:04X} ({gpu.name}) is not in the MIG catalog"]
    if not gpu.mig_capable:
        return [f"the catalog lists {gpu.gpu_model} as MIG-capable; NVML says MIG is unsupported"]
    if not gpu.gi_profiles:
        return ["NVML returned no GPU instance profiles to compare"]
    differences = []
    known = {p.name: p for p in catalog.geometry(gpu.gpu_model).profiles}
    for seen in gpu.gi_profiles:
        expected = known.pop(seen.name, None)
        if expected is None:
            differences.append(f"{seen.name}: reported by NVML, missing from the catalog")
        else:
            differences += _profile_differences(seen, expected)
    differences += [f"{name}: in the catalog, not reported by NVML" for name in known]
    return differences


def _profile_differences(seen: GiProfileInfo, expected: catalog.MigProfile) -> list[str]:
    pairs = [
        ("NVML enum", seen.nvml_profile, expected.nvml_profile),
        ("profile ID", seen.profile_id, expected.profile_id),
        ("compute slices", seen.slice_count, expected.compute_slices),
        ("max count", seen.instance_count, expected.max_count),
        ("starts", tuple(start for start, _ in seen.placements), expected.starts),
        ("memory slices", {size for _, size in seen.placements}, {expected.memory_slices}),
    ]
    differences = [
        f"{seen.name}: {what} is {nvml_value} per NVML, {catalog_value} in the catalog"
        for what, nvml_value, catalog_value in pairs
        if nvml_value != catalog_value
    ]
    seen_gib = seen.memory_mib / 1024
    # Usable memory varies slightly by driver; only a gap of over 5% is worth reporting.
    if abs(seen_gib - expected.usable_memory_gib) > 0.05 * expected.usable_memory_gib:
        approximate = " (approximate)" if expected.memory_is_approximate else ""
        differences.append(
            f"{seen.name}: {seen_gib:.2f} GiB per NVML, "
            f"{expected.usable_memory_gib:.2f} GiB{approximate} in the catalog"
        )
    return differences


def inventory_as_dict(inv: Inventory) -> dict[str, Any]:
    return {
        "gpus": [asdict(gpu) for gpu in inv.gpus],
        "unreadable": [asdict(gpu) for gpu in inv.unreadable],
        "reason": inv.reason,
    }


def format_inventory(inv: Inventory, as_json: bool = False) -> str:
    """The inventory for a terminal: a table, or JSON."""
    if as_json:
        return json.dumps(inventory_as_dict(inv), indent=2)
    if not inv.gpus:
        return f"no NVIDIA GPU: {inv.cause}"
    rows = [("GPU", "name", "model", "memory MiB", "MIG", "UUID")]
    for gpu in inv.gpus:
        rows.append(
            (
                str(gpu.index),
                gpu.name,
                gpu.gpu_model or "-",
                str(gpu.memory_total_mib),
                _mig_state(gpu),
                gpu.uuid,
            )
        )
        for device in gpu.mig_devices:
            start = "?" if device.start is None else str(device.start)
            rows.append(
                (
                    f"  {gpu.index}.{device.index}",
                    f"MIG {device.profile} @ slice {start}",
                    "",
                    str(device.memory_total_mib),
                    "",
                    device.uuid,
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    for gpu in inv.gpus:
        if gpu.mig_capable:
            lines += [f"GPU {gpu.index} vs catalog: {d}" for d in compare_with_catalog(gpu)]
    lines += [f"NVML cannot read {gpu}" for gpu in inv.unreadable]
    return "\n".join(lines)


def _mig_state(gpu: GpuInfo) -> str:
    if not gpu.mig_capable:
        return "n/a"
    state = "on" if gpu.mig_enabled else "off"
    if gpu.mig_pending != gpu.mig_enabled:
        state += f" ({'on' if gpu.mig_pending else 'off'} after reset)"
    return state


def _model_from_name(name: str) -> str | None:
    """Catalog code of a GPU outside the MIG catalog, from its NVML name ("Tesla T4").

    NVML's name is what GPU Feature Discovery turns into the `nvidia.com/gpu.product`
    label (spaces become dashes), so the portal catalog's labels identify it.
    """

    found = gpu_model_for_product_label(name.replace(" ", "-"))
    return found.code if found else None
