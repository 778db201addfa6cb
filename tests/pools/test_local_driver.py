# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811
import sys

import pytest
from django.db import IntegrityError

from pools import isolation, supervisor
from pools.drivers import driver_for
from pools.drivers.base import PermanentError, TransientError, WorkspaceSpec
from pools.drivers.local import ENV_FILE, MARKER, LocalDriver
from pools.models import GpuAllocation
from tests.workspace_fixtures import fake_gpus, workspaces_root  # noqa: F401


def spec_for(profile, name="ws-1"):
    return WorkspaceSpec.from_profile(name, "mia", profile)


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
