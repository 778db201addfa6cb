"""Discovery replayed from a real GPU: what NVML answered on an H200 (driver 580.159.04,
MIG off), captured by `bin/check-gpu-host --out` into data/nvml-h200.json.

FakeNvml builds its answers from the catalog, so it cannot show the catalog wrong; this
capture can. Each query answers what the GPU answered, and raises the pynvml error class it
raised (NotSupported for the profiles Hopper lacks).
"""

import ctypes
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pynvml

from pools import devices
from profiles.mig import catalog
from profiles.mig.nvml import MigDeviceInfo, compare_with_catalog, inventory

from .fake_nvml import PynvmlNames

CAPTURE = json.loads((Path(__file__).parent / "data" / "nvml-h200.json").read_text())
REPO = Path(__file__).resolve().parents[2]


class ReplayedNvml(PynvmlNames):
    """`pynvml` as far as `profiles.mig.nvml.inventory` asks it, answering from a capture."""

    def __init__(self, capture):
        self.gpus = capture["gpus"]

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def _answer(self, handle, key):
        value = self.gpus[handle][key]
        if isinstance(value, dict) and "error" in value:
            raise getattr(pynvml, value["error"])()
        return value

    def nvmlDeviceGetName(self, handle):
        return self._answer(handle, "name")

    def nvmlDeviceGetUUID(self, handle):
        return f"GPU-replayed-{handle}"  # not captured: a GPU's serial identity stays home

    def nvmlDeviceGetPciInfo(self, handle):
        return SimpleNamespace(pciDeviceId=self._answer(handle, "pciDeviceId"))

    def nvmlDeviceGetMemoryInfo(self, handle):
        return SimpleNamespace(total=self._answer(handle, "memory_total"))

    def nvmlDeviceGetMinorNumber(self, handle):
        return self._answer(handle, "minor")

    def nvmlDeviceGetMigMode(self, handle):
        return self._answer(handle, "mig_mode")

    def nvmlDeviceGetMaxMigDeviceCount(self, handle):
        return self._answer(handle, "max_mig_devices")

    def _profile(self, handle, nvml_profile):
        row = self.gpus[handle]["profiles"].get(str(nvml_profile))
        if row is None:
            raise pynvml.NVMLError_InvalidArgument()
        if "error" in row:
            raise getattr(pynvml, row["error"])()
        return row

    def nvmlDeviceGetGpuInstanceProfileInfo(self, handle, nvml_profile):
        return SimpleNamespace(**self._profile(handle, nvml_profile))

    def nvmlDeviceGetGpuInstancePossiblePlacements(self, handle, profile_id, array, count):
        rows = self.gpus[handle]["profiles"].values()
        placements = next(r["placements"] for r in rows if r.get("id") == profile_id)
        count_value = ctypes.cast(count, ctypes.POINTER(ctypes.c_uint)).contents
        if array is not None:
            for slot, (start, size) in zip(array, placements, strict=False):
                slot.start, slot.size = start, size
        count_value.value = len(placements)


def captured_gpu():
    (gpu,) = inventory(ReplayedNvml(CAPTURE)).gpus
    return gpu


def test_the_h200_is_read_as_the_real_gpu_answered():
    gpu = captured_gpu()
    assert (gpu.name, gpu.gpu_model, gpu.pci_device_id) == ("NVIDIA H200", "H200", 0x2335)
    assert (gpu.memory_total_mib, gpu.minor) == (143771, 0)
    assert gpu.mig_capable and not gpu.mig_enabled and not gpu.mig_pending
    assert gpu.mig_devices == ()
    # NVML lists the profile table with MIG off, in its enum order; Hopper lacks the rest.
    names = [p.name for p in gpu.gi_profiles]
    assert names == [
        "1g.18gb",
        "2g.35gb",
        "3g.71gb",
        "4g.71gb",
        "7g.141gb",
        "1g.18gb+me",
        "1g.35gb",
    ]


def test_the_catalog_agrees_with_the_real_h200_to_the_last_fact():
    gpu = captured_gpu()
    assert compare_with_catalog(gpu) == []
    geometry = catalog.geometry("H200")
    assert geometry.placements_source == catalog.CONFIRMED
    for seen in gpu.gi_profiles:
        expected = catalog.profile("H200", seen.name)
        assert expected.nvml_profile == seen.nvml_profile
        assert expected.profile_id == seen.profile_id
        assert expected.compute_slices == seen.slice_count
        assert expected.max_count == seen.instance_count
        assert expected.starts == tuple(start for start, _ in seen.placements)
        assert {expected.memory_slices} == {size for _, size in seen.placements}
        # Exact, not within the 5 % compare_with_catalog forgives across drivers.
        assert expected.usable_memory_gib == seen.memory_mib / 1024
        assert not expected.memory_is_approximate


def test_a_catalog_fact_the_gpu_contradicts_is_reported():
    capture = json.loads(json.dumps(CAPTURE))
    capture["gpus"][0]["profiles"]["2"]["instanceCount"] = 3  # 3g.71gb: really 2
    (gpu,) = inventory(ReplayedNvml(capture)).gpus
    assert compare_with_catalog(gpu) == ["3g.71gb: max count is 3 per NVML, 2 in the catalog"]


def test_the_device_nodes_of_the_real_h200():
    gpu = captured_gpu()
    minors = devices.parse_mig_minors(CAPTURE["mig_minors"])
    # The driver lists every instance a GPU could have (32 GPUs' worth), MIG off or on.
    assert len(minors) == 4320 and minors["gpu0/gi0/access"] == 3
    assert not any(name.startswith(("config", "monitor")) for name in minors)
    nodes = devices.device_nodes([gpu.uuid], [gpu], minors)
    assert nodes == ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia0"]


def test_a_mig_device_gets_the_capability_nodes_this_driver_numbers():
    slice_ = MigDeviceInfo(1, "MIG-replayed", "3g.71gb", 71424, 1, 0, compute_instance_id=0)
    gpu = replace(captured_gpu(), mig_enabled=True, mig_devices=(slice_,))
    minors = devices.parse_mig_minors(CAPTURE["mig_minors"])
    assert devices.device_nodes([slice_.uuid], [gpu], minors) == [
        "/dev/nvidiactl",
        "/dev/nvidia-uvm",
        "/dev/nvidia-uvm-tools",
        "/dev/nvidia0",
        "/dev/nvidia-caps/nvidia-cap12",  # gpu0/gi1/access
        "/dev/nvidia-caps/nvidia-cap13",  # gpu0/gi1/ci0/access
    ]


def test_the_host_check_runs_here_and_says_what_it_found():
    """On a host without a driver (CI) it fails, saying why; on a GPU host every check
    must pass, as the script's did on the H200 of the README."""
    this_host = inventory()
    done = subprocess.run(
        [sys.executable, str(REPO / "bin" / "check-gpu-host")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if this_host.gpus:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "all checks passed" in done.stdout
        assert f"PASS  GPU 0 is in the catalog\n      {this_host.gpus[0].name}" in done.stdout
    else:
        assert done.returncode == 1
        assert "FAIL  NVML starts" in done.stdout
        assert this_host.cause in done.stdout
