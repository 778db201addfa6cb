# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811
import contextlib
import sys

import pynvml
import pytest
from django.db import IntegrityError

from pools import devices, isolation, supervisor
from pools.drivers import driver_for
from pools.drivers.base import PermanentError, TransientError, WorkspaceSpec
from pools.drivers.local import ENV_FILE, MARKER, LocalDriver
from pools.models import GpuAllocation
from tests.mig.fake_nvml import FakeNvml
from tests.workspace_fixtures import (  # noqa: F401
    FAKE_GPUS,
    FAKE_MIG_MINORS,
    FakeGpu,
    FakeMig,
    fake_gpus,
    workspaces_root,
)

GPU0, GPU1_PARTITIONED = FAKE_GPUS
# The same GPUs after an administrator on the host changed a MIG layout (nvidia-smi mig).
GPU1_WHOLE = FakeGpu(1, "GPU-bbbb", "NVIDIA A100-SXM4-40GB", "A100-40GB")
GPU0_PARTITIONED = FakeGpu(
    0, "GPU-aaaa", "NVIDIA A100-SXM4-40GB", "A100-40GB", (FakeMig("MIG-a1", "1g.5gb", 1),)
)
# GPU 1's slices destroyed and made again: new UUIDs, the same GPU instance ids.
GPU1_REMADE = FakeGpu(
    1,
    "GPU-bbbb",
    "NVIDIA A100-SXM4-40GB",
    "A100-40GB",
    (
        FakeMig("MIG-n1", "1g.5gb", 1),
        FakeMig("MIG-n2", "1g.5gb", 2),
        FakeMig("MIG-n3", "3g.20gb", 3),
    ),
)


def spec_for(profile, name="ws-1"):
    return WorkspaceSpec.from_profile(name, "mia", profile)


def gpu_spec(profile_factory, infrastructure, name, count=1, mig=""):
    """A workspace of `count` A100-40GB GPUs, or of that many `mig` slices."""
    profile = profile_factory(infrastructure, f"profile {name}", groups=[("A100-40GB", count)])
    if mig:
        profile.resource_groups.update(mig_profile=mig)
    return spec_for(profile, name)


def held_by(name: str) -> list[str]:
    return list(GpuAllocation.objects.filter(holder=name).values_list("device_uuid", flat=True))


@pytest.fixture
def driver(local_infrastructure, workspaces_root):
    return driver_for(local_infrastructure)


def test_the_registry_gives_the_local_driver(driver):
    assert isinstance(driver, LocalDriver)


def test_a_cpu_workspace_is_a_directory_and_an_environment(
    driver, profile_factory, workspaces_root
):
    spec = spec_for(profile_factory(driver.infrastructure))
    steps = []
    result = driver.provision(spec, steps.append)
    directory = workspaces_root / "ws-1"
    assert result.ready
    assert (directory / MARKER).exists()
    assert "CUDA_VISIBLE_DEVICES=''" in (directory / ENV_FILE).read_text()
    assert result.connection["shell"].startswith(f"cd {directory} && ")
    # An administrator's shell runs in the workspace's own network, where it has one.
    network = isolation.network_path(directory)
    assert result.connection["shell"].endswith(
        f"exec nsenter --net={network} -- $SHELL" if network else "exec $SHELL"
    )
    assert "no GPU requested: CPU-only workspace" in steps
    assert driver.managed_names() == {"ws-1"}


def test_provisioning_twice_makes_one_set_of_resources(
    driver, profile_factory, fake_gpus, workspaces_root
):
    profile = profile_factory(driver.infrastructure, groups=[("A100-40GB", 1)])
    spec = spec_for(profile)
    first = driver.provision(spec)
    second = driver.provision(spec)
    assert first.detail == second.detail
    assert GpuAllocation.objects.filter(holder="ws-1").count() == 1
    assert [p.name for p in workspaces_root.iterdir()] == ["ws-1"]


def test_two_workspaces_never_get_the_same_gpu(driver, profile_factory, fake_gpus, workspaces_root):
    profile = profile_factory(driver.infrastructure, groups=[("A100-40GB", 1)])
    driver.provision(spec_for(profile, "ws-1"))
    # GPU 1 is partitioned, so GPU 0 is the only whole A100: the second must wait.
    with pytest.raises(TransientError, match="in use"):
        driver.provision(spec_for(profile, "ws-2"))
    assert list(GpuAllocation.objects.values_list("holder", "device_uuid")) == [
        ("ws-1", "GPU-aaaa")
    ]
    assert not (workspaces_root / "ws-2").exists()  # released what it made


def test_the_database_refuses_a_device_held_twice(local_infrastructure):
    GpuAllocation.objects.create(
        infrastructure=local_infrastructure, holder="ws-1", device_uuid="GPU-x", gpu_index=0
    )
    with pytest.raises(IntegrityError):
        GpuAllocation.objects.create(
            infrastructure=local_infrastructure, holder="ws-2", device_uuid="GPU-x", gpu_index=0
        )


def test_mig_slices_are_assigned_by_profile(driver, profile_factory, fake_gpus, workspaces_root):
    profile = profile_factory(driver.infrastructure)
    profile.resource_groups.update(gpu_model="A100-40GB", gpu_count=2, mig_profile="1g.5gb")
    steps = []
    driver.provision(spec_for(profile), steps.append)
    env = (workspaces_root / "ws-1" / ENV_FILE).read_text()
    (visible,) = [line for line in env.splitlines() if line.startswith("CUDA_VISIBLE_DEVICES=")]
    assert sorted(visible.split("=", 1)[1].split(",")) == ["MIG-b1", "MIG-b2"]
    assert "GPU 1 MIG 1g.5gb (NVIDIA A100-SXM4-40GB) assigned" in steps


def test_a_gpu_this_machine_lacks_is_a_permanent_error(driver, profile_factory, fake_gpus):
    profile = profile_factory(driver.infrastructure, groups=[("H100-80GB", 1)])
    with pytest.raises(PermanentError, match="has 0 H100-80GB GPUs"):
        driver.provision(spec_for(profile))


def test_a_heterogeneous_profile_is_all_or_nothing(
    driver, profile_factory, fake_gpus, workspaces_root
):
    profile = profile_factory(driver.infrastructure, groups=[("A100-40GB", 1), ("H100-80GB", 1)])
    with pytest.raises(PermanentError):
        driver.provision(spec_for(profile))
    assert not GpuAllocation.objects.exists()  # the A100 of the first group was released
    assert not (workspaces_root / "ws-1").exists()
    assert driver.managed_names() == set()


def test_deprovision_deletes_everything_and_is_idempotent(
    driver, profile_factory, fake_gpus, workspaces_root
):
    profile = profile_factory(driver.infrastructure, groups=[("A100-40GB", 1)])
    spec = spec_for(profile)
    driver.provision(spec)
    driver.deprovision(spec)
    driver.deprovision(spec)
    assert not (workspaces_root / "ws-1").exists()
    assert not GpuAllocation.objects.exists()
    assert driver.managed_names() == set()


def test_a_supervised_process_is_health_checked_and_stopped_on_delete(driver, profile_factory):
    spec = spec_for(profile_factory(driver.infrastructure))
    driver.provision(spec)
    port = supervisor.free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    record = driver.start_process(spec, argv, port=port)
    try:
        assert supervisor.wait_healthy(record)
        assert driver.start_process(spec, argv, port=port) == record  # found, not restarted
        result = driver.status(spec)
        assert result.ready
        assert result.connection["url"] == f"http://127.0.0.1:{port}/"
        driver.deprovision(spec)
        assert not supervisor.is_running(record)
    finally:
        supervisor.stop(record)


def test_inventory_lists_this_machine_and_its_gpus(driver, fake_gpus):
    (node,) = driver.inventory()
    assert [(g.index, g.mig_enabled) for g in node.gpus] == [(0, False), (1, True)]


def test_stop_then_start_brings_the_workspaces_own_process_back(
    driver, profile_factory, workspaces_root
):
    spec = spec_for(profile_factory(driver.infrastructure))
    driver.provision(spec)
    port = supervisor.free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    first = driver.start_process(spec, argv, port=port)
    second = None
    try:
        assert supervisor.wait_healthy(first)
        driver.stop(spec)
        assert not supervisor.is_running(first)
        # What the workspace writes in its record file is not what gets started again.
        (workspaces_root / "ws-1" / "process.json").write_text('{"argv": ["/bin/false"]}')

        result = driver.start(spec)

        second = supervisor.ProcessRecord.registered_at(workspaces_root / "ws-1" / "process.json")
        assert second is not None and second != first
        assert (second.argv, second.port) == (argv, port)
        assert supervisor.wait_healthy(second)
        assert result.connection["url"] == f"http://127.0.0.1:{port}/"
        assert not supervisor.registered(first)  # the ended one is unregistered
    finally:
        driver.deprovision(spec)
    assert not supervisor.is_running(second)
    assert not supervisor.registered(second)


def test_a_gpu_whose_held_mig_device_is_gone_is_not_handed_out_whole(
    driver, profile_factory, fake_gpus, monkeypatch
):
    driver.provision(gpu_spec(profile_factory, driver.infrastructure, "ws-a", mig="1g.5gb"))
    (held,) = GpuAllocation.objects.filter(holder="ws-a")
    assert held.gpu_index == 1
    # ws-a's sandbox has GPU 1's own node with its slice.
    assert "/dev/nvidia1" in devices.device_nodes(
        [held.device_uuid], FAKE_GPUS, devices.parse_mig_minors(FAKE_MIG_MINORS)
    )
    driver.provision(gpu_spec(profile_factory, driver.infrastructure, "ws-c"))  # GPU 0

    # MIG is turned off on GPU 1 (ws-a's processes hold no CUDA context at that moment).
    monkeypatch.setattr("pools.drivers.local.gpu_inventory", lambda: [GPU0, GPU1_WHOLE])
    with pytest.raises(TransientError, match="in use"):
        driver.provision(gpu_spec(profile_factory, driver.infrastructure, "ws-b"))
    assert held_by("ws-b") == []


def test_a_gpu_held_whole_is_not_handed_out_as_slices(
    driver, profile_factory, fake_gpus, monkeypatch
):
    driver.provision(gpu_spec(profile_factory, driver.infrastructure, "ws-a"))
    assert held_by("ws-a") == ["GPU-aaaa"]

    # MIG is turned on for GPU 0 and a slice made while ws-a holds it whole; two 1g.5gb
    # slices are asked for: GPU 1 has two, GPU 0 now one.
    monkeypatch.setattr(
        "pools.drivers.local.gpu_inventory", lambda: [GPU0_PARTITIONED, GPU1_PARTITIONED]
    )
    with contextlib.suppress(TransientError):
        driver.provision(
            gpu_spec(profile_factory, driver.infrastructure, "ws-b", count=2, mig="1g.5gb")
        )
    on_gpu0 = GpuAllocation.objects.filter(gpu_index=0).values_list("holder", "device_uuid")
    assert sorted(on_gpu0) == [("ws-a", "GPU-aaaa")]


def test_a_mig_device_made_again_is_not_given_to_another_while_its_old_holder_has_its_nodes(
    driver, profile_factory, fake_gpus, monkeypatch
):
    minors = devices.parse_mig_minors(FAKE_MIG_MINORS)
    driver.provision(gpu_spec(profile_factory, driver.infrastructure, "ws-a", mig="1g.5gb"))
    a_nodes = set(devices.device_nodes(held_by("ws-a"), FAKE_GPUS, minors))

    monkeypatch.setattr("pools.drivers.local.gpu_inventory", lambda: [GPU0, GPU1_REMADE])
    with contextlib.suppress(TransientError):
        driver.provision(
            gpu_spec(profile_factory, driver.infrastructure, "ws-b", count=2, mig="1g.5gb")
        )
    b_nodes = set(devices.device_nodes(held_by("ws-b"), [GPU0, GPU1_REMADE], minors))
    assert not {node for node in a_nodes & b_nodes if node.startswith(devices.CAPS_DIR)}


def test_the_check_names_a_held_mig_device_that_is_gone_and_the_repair_replaces_it(
    driver, profile_factory, fake_gpus, monkeypatch
):
    spec = gpu_spec(profile_factory, driver.infrastructure, "ws-a", mig="1g.5gb")
    driver.provision(spec)
    first = driver.start_process(spec, [sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        assert driver.check(spec) == []
        monkeypatch.setattr("pools.drivers.local.gpu_inventory", lambda: [GPU0, GPU1_REMADE])
        (old,) = held_by("ws-a")
        with pytest.raises(devices.DeviceError, match="not on this host any more"):
            devices.nodes_for([old], [GPU0, GPU1_REMADE])

        assert driver.check(spec) == [f"Its GPU 1 MIG 1g.5gb ({old}) is gone from this machine."]
        steps = []
        driver.repair(spec, steps.append)
        assert f"GPU 1 MIG 1g.5gb ({old}) is gone: allocation dropped" in steps
        (new,) = held_by("ws-a")
        assert new in ("MIG-n1", "MIG-n2")  # a 1g.5gb slice of the new layout
        assert f"CUDA_VISIBLE_DEVICES={new}" in (driver.directory("ws-a") / ENV_FILE).read_text()
        # Its process, given the old slice's nodes, runs again on the new one.
        assert not supervisor.is_running(first)
        again = supervisor.ProcessRecord.registered_at(driver.directory("ws-a") / "process.json")
        assert again.pid != first.pid and supervisor.is_running(again)
        assert driver.check(spec) == []
    finally:
        driver.deprovision(spec)


def test_a_gpu_nvml_cannot_read_leaves_the_others_to_workspaces(
    driver, profile_factory, monkeypatch
):
    lost = FakeNvml(mig_mode=(0, 0), unreadable=pynvml.NVMLError_GpuIsLost())
    monkeypatch.setitem(sys.modules, "pynvml", lost)
    spec = gpu_spec(profile_factory, driver.infrastructure, "ws-1")
    try:
        driver.provision(spec)
        assert held_by("ws-1") == ["GPU-gpu"]
    finally:
        driver.deprovision(spec)
