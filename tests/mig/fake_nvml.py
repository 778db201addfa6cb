"""A tiny stand-in for `pynvml`: one GPU, shaped like an A100-40GB unless told otherwise.

It reuses pynvml's real error classes, constants and placement struct, so the code under
test handles exactly what the real module raises and returns.
"""

from types import SimpleNamespace

import pynvml

from profiles.mig import catalog


class PynvmlNames:
    """What code under test reads off the `pynvml` module besides its functions: the real
    error classes, constants and placement struct."""

    NVMLError = pynvml.NVMLError
    NVMLError_NotFound = pynvml.NVMLError_NotFound
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported
    NVML_DEVICE_MIG_DISABLE = pynvml.NVML_DEVICE_MIG_DISABLE
    NVML_DEVICE_MIG_ENABLE = pynvml.NVML_DEVICE_MIG_ENABLE
    NVML_GPU_INSTANCE_PROFILE_COUNT = pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT
    c_nvmlGpuInstancePlacement_t = pynvml.c_nvmlGpuInstancePlacement_t


class FakeNvml(PynvmlNames):
    def __init__(
        self,
        model="A100-40GB",
        mig_mode=(1, 1),
        mig_devices=(),
        init_error=None,
        minor=3,
        unreadable=None,
    ):
        """mig_devices: (index, profile name, start); mig_mode None: not MIG-capable; minor:
        of the GPU's device node; unreadable: an NVMLError a second GPU, index 1, answers
        (NVMLError_GpuIsLost for one fallen off the bus)."""
        self.model = model
        self.unreadable = unreadable
        self.minor = minor
        self.mig_mode = mig_mode
        self.mig_devices = {index: (name, start) for index, name, start in mig_devices}
        self.init_error = init_error
        self.shut_down = False

    def nvmlInit(self):
        if self.init_error:
            raise self.init_error

    def nvmlShutdown(self):
        self.shut_down = True

    def nvmlDeviceGetCount(self):
        return 2 if self.unreadable else 1

    def nvmlDeviceGetHandleByIndex(self, index):
        if index == 1:
            raise self.unreadable
        return "gpu"

    def nvmlDeviceGetName(self, handle):
        if handle == "gpu":
            return f"NVIDIA {self.model}"
        return f"NVIDIA {self.model} MIG {self.mig_devices[handle][0]}".encode()  # older: bytes

    def nvmlDeviceGetUUID(self, handle):
        return f"GPU-{handle}" if handle == "gpu" else f"MIG-{handle}"

    def nvmlDeviceGetMemoryInfo(self, handle):
        gib = 40 if handle == "gpu" else 5
        return SimpleNamespace(total=gib * 1024**3)

    def nvmlDeviceGetPciInfo(self, handle):
        pci = catalog.geometry(self.model).pci_device_ids[0]
        return SimpleNamespace(pciDeviceId=pci << 16 | 0x10DE)

    def nvmlDeviceGetMigMode(self, handle):
        if self.mig_mode is None:
            raise pynvml.NVMLError_NotSupported()
        return list(self.mig_mode)

    def nvmlDeviceGetGpuInstanceProfileInfo(self, handle, nvml_profile):
        for p in catalog.geometry(self.model).profiles:
            if p.nvml_profile == nvml_profile:
                return SimpleNamespace(
                    id=p.profile_id,
                    sliceCount=p.compute_slices,
                    instanceCount=p.max_count,
                    memorySizeMB=int(p.usable_memory_gib * 1024),
                    name=f"MIG {p.name}".encode(),
                )
        raise pynvml.NVMLError_InvalidArgument()

    def nvmlDeviceGetGpuInstancePossiblePlacements(self, handle, profile_id, array, count_ref):
        p = next(p for p in catalog.geometry(self.model).profiles if p.profile_id == profile_id)
        count_ref._obj.value = len(p.starts)
        for i, start in enumerate(p.starts if array is not None else ()):
            array[i].start, array[i].size = start, p.memory_slices

    def nvmlDeviceGetMaxMigDeviceCount(self, handle):
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle, index):
        if index not in self.mig_devices:
            raise pynvml.NVMLError_NotFound()
        return index

    def nvmlDeviceGetGpuInstanceId(self, mig):
        return 10 + mig

    def nvmlDeviceGetMinorNumber(self, handle):
        return self.minor

    def nvmlDeviceGetComputeInstanceId(self, mig):
        if mig == 6:
            raise pynvml.NVMLError_NoPermission()
        return 0

    def nvmlDeviceGetGpuInstanceById(self, handle, gi_id):
        if gi_id == 10 + 6:
            raise pynvml.NVMLError_NoPermission()
        return gi_id - 10

    def nvmlGpuInstanceGetInfo(self, gi):
        return SimpleNamespace(placement=SimpleNamespace(start=self.mig_devices[gi][1]))
