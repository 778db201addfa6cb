import json
import sys
from dataclasses import replace
from http import HTTPStatus

import pynvml
import pytest

from profiles.mig import catalog
from profiles.mig.nvml import compare_with_catalog, format_inventory, inventory

from .fake_nvml import FakeNvml


def test_this_host_without_a_driver_reports_no_gpu():
    result = inventory()
    if result.gpus:  # a machine with a driver: nothing to assert about its absence
        return
    assert result.reason == "no NVIDIA GPU (NVML Shared Library Not Found)"
    assert format_inventory(result) == "no NVIDIA GPU: NVML Shared Library Not Found"
    assert json.loads(format_inventory(result, as_json=True)) == {
        "gpus": [],
        "unreadable": [],
        "reason": "no NVIDIA GPU (NVML Shared Library Not Found)",
    }


def test_a_driver_that_is_not_loaded_means_no_gpu():
    fake = FakeNvml(init_error=pynvml.NVMLError_DriverNotLoaded())
    result = inventory(nvml=fake)
    assert result.gpus == ()
    assert result.reason == "no NVIDIA GPU (Driver Not Loaded)"


@pytest.mark.parametrize(
    "error, words",
    [
        (pynvml.NVMLError_GpuIsLost(), "GPU is lost"),  # fallen off the bus
        (pynvml.NVMLError_NoPermission(), "Insufficient Permissions"),
    ],
)
def test_a_gpu_nvml_cannot_read_is_named_and_the_others_stay_listed(error, words):
    fake = FakeNvml(unreadable=error)
    result = inventory(nvml=fake)
    assert fake.shut_down
    assert [gpu.uuid for gpu in result.gpus] == ["GPU-gpu"]
    assert [str(gpu) for gpu in result.unreadable] == [f"GPU 1: {words}"]
    assert result.reason == ""
    assert format_inventory(result).endswith(f"NVML cannot read GPU 1: {words}")


def test_a_host_whose_only_gpu_nvml_cannot_read_says_which():
    class OnlyLost(FakeNvml):
        def nvmlDeviceGetHandleByIndex(self, index):
            raise pynvml.NVMLError_GpuIsLost()

    result = inventory(nvml=OnlyLost())
    assert result.gpus == ()
    assert result.reason == "no NVIDIA GPU (NVML cannot read GPU 0: GPU is lost)"


def test_the_local_infrastructure_page_survives_a_gpu_nvml_cannot_read(
    admin_client, local_infrastructure, monkeypatch
):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(unreadable=pynvml.NVMLError_GpuIsLost()))
    response = admin_client.get(local_infrastructure.get_absolute_url())
    assert response.status_code == HTTPStatus.OK
    page = response.content.decode()
    assert "GPU-gpu" in page
    # The table counts it too, not only the health panel.
    assert "NVML cannot read it: GPU is lost. Workspaces are not given it." in page


def test_it_reads_a_mig_gpu_and_shuts_nvml_down():
    fake = FakeNvml(mig_devices=[(0, "3g.20gb", 4), (2, "1g.5gb", 0), (6, "1g.5gb", 1)])
    result = inventory(nvml=fake)
    assert fake.shut_down
    (gpu,) = result.gpus
    assert (gpu.name, gpu.uuid, gpu.memory_total_mib) == ("NVIDIA A100-40GB", "GPU-gpu", 40960)
    assert (gpu.pci_device_id, gpu.gpu_model) == (0x20B0, "A100-40GB")
    assert (gpu.mig_capable, gpu.mig_enabled, gpu.mig_pending) == (True, True, True)
    devices = [(d.index, d.profile, d.gpu_instance_id, d.start) for d in gpu.mig_devices]
    # Index 6's GPU instance is not readable (no permission): it is listed without a start.
    assert devices == [(0, "3g.20gb", 10, 4), (2, "1g.5gb", 12, 0), (6, "1g.5gb", None, None)]
    assert gpu.mig_devices[0].uuid == "MIG-0"
    assert gpu.mig_devices[0].memory_total_mib == 5120
    # What names the device nodes a sandbox is given (pools.devices); index 6's compute
    # instance is not readable either.
    assert gpu.minor == 3
    assert [d.compute_instance_id for d in gpu.mig_devices] == [0, 0, None]


def test_it_reads_the_gpus_own_profile_table():
    (gpu,) = inventory(nvml=FakeNvml()).gpus
    by_name = {p.name: p for p in gpu.gi_profiles}
    assert set(by_name) == {p.name for p in catalog.geometry("A100-40GB").profiles}
    wide = by_name["1g.10gb"]
    assert (wide.nvml_profile, wide.profile_id, wide.slice_count, wide.instance_count) == (
        0x9,
        15,
        1,
        4,
    )
    assert wide.placements == ((0, 2), (2, 2), (4, 2), (6, 2))
    assert compare_with_catalog(gpu) == []


def test_a_gpu_without_mig_support_is_not_mig_capable():
    (gpu,) = inventory(nvml=FakeNvml(mig_mode=None)).gpus
    assert not gpu.mig_capable
    assert gpu.mig_devices == gpu.gi_profiles == ()
    assert "NVML says MIG is unsupported" in compare_with_catalog(gpu)[0]


def test_mig_mode_pending_after_reset_is_shown():
    (gpu,) = inventory(nvml=FakeNvml(mig_mode=(0, 1))).gpus
    assert (gpu.mig_enabled, gpu.mig_pending, gpu.mig_devices) == (False, True, ())
    assert "off (on after reset)" in format_inventory(inventory(nvml=FakeNvml(mig_mode=(0, 1))))


def test_differences_from_the_catalog_are_listed():
    (gpu,) = inventory(nvml=FakeNvml()).gpus
    changes = {
        "1g.5gb": {"instance_count": 8, "placements": ((0, 1),)},
        "1g.5gb+me": {"name": "1g.6gb+me"},
        "1g.10gb": {"memory_mib": 20 * 1024},
    }
    table = tuple(replace(p, **changes.get(p.name, {})) for p in gpu.gi_profiles)
    assert compare_with_catalog(replace(gpu, gi_profiles=table)) == [
        "1g.5gb: max count is 8 per NVML, 7 in the catalog",
        "1g.5gb: starts is (0,) per NVML, (0, 1, 2, 3, 4, 5, 6) in the catalog",
        "1g.6gb+me: reported by NVML, missing from the catalog",
        "1g.10gb: 20.00 GiB per NVML, 9.75 GiB (approximate) in the catalog",
        "1g.5gb+me: in the catalog, not reported by NVML",
    ]


def test_an_unknown_gpu_is_reported_as_outside_the_catalog():
    (gpu,) = inventory(nvml=FakeNvml()).gpus
    stranger = replace(gpu, pci_device_id=0x1234, gpu_model=None, name="NVIDIA Future")
    assert compare_with_catalog(stranger) == [
        "PCI device 0x1234 (NVIDIA Future) is not in the MIG catalog"
    ]


def test_the_printed_table_lists_gpus_and_mig_devices():
    text = format_inventory(inventory(nvml=FakeNvml(mig_devices=[(0, "3g.20gb", 4)])))
    lines = text.splitlines()
    assert lines[0].split() == ["GPU", "name", "model", "memory", "MiB", "MIG", "UUID"]
    assert "A100-40GB" in lines[1] and "on" in lines[1] and "GPU-gpu" in lines[1]
    assert "MIG 3g.20gb @ slice 4" in lines[2] and "MIG-0" in lines[2]
    assert len(lines) == 3  # and no differences from the catalog


def test_the_json_output_has_every_field():
    data = json.loads(format_inventory(inventory(nvml=FakeNvml()), as_json=True))
    assert data["reason"] == ""
    assert data["gpus"][0]["gpu_model"] == "A100-40GB"
    assert data["gpus"][0]["gi_profiles"][0]["placements"][0] == [0, 1]
