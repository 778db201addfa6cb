"""A local workspace's sandbox may open the device nodes of its own GPUs and no others."""

# ruff: noqa: F811

import os
import sys
from dataclasses import replace

import pytest

from pools import devices, isolation, supervisor, tasks
from pools.devices import DeviceError, device_nodes, parse_mig_minors
from pools.drivers import driver_for
from profiles.mig.nvml import inventory
from tests.mig.fake_nvml import FakeNvml
from tests.workspace_fixtures import (  # noqa: F401
    wait_for,
    workspace_factory,
    workspaces_root,
)

# As the driver writes it: what configures and monitors MIG, then an access node per GPU
# instance and per compute instance, named by the parent GPU's minor.
MIG_MINORS = """config 1
monitor 2
gpu3/gi1/access 12
gpu3/gi1/ci0/access 13
gpu3/gi2/access 21
gpu3/gi2/ci0/access 22
gpu4/gi1/access 39
gpu4/gi1/ci0/access 40
"""
CONTROL = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"]


def a100(minor, uuid, mig_devices=()):
    """A GPU as NVML reports it (through the fake), with this minor and UUID."""
    fake = FakeNvml(mig_devices=mig_devices, minor=minor, mig_mode=(1, 1) if mig_devices else None)
    (gpu,) = inventory(nvml=fake).gpus
    return replace(gpu, uuid=uuid)


def test_a_whole_gpu_gets_its_own_node_and_the_control_nodes():
    gpus = [a100(3, "GPU-mine"), a100(4, "GPU-theirs")]
    assert device_nodes(["GPU-mine"], gpus, {}) == [*CONTROL, "/dev/nvidia3"]


def test_a_mig_device_gets_its_parent_and_the_access_nodes_of_its_instances_only():
    # The fake's MIG device i is GPU instance 10 + i, compute instance 0.
    gpu = a100(3, "GPU-split", mig_devices=[(0, "3g.20gb", 4), (2, "1g.5gb", 0)])
    minors = parse_mig_minors(MIG_MINORS.replace("gi1/", "gi10/").replace("gi2/", "gi12/"))
    assert device_nodes(["MIG-2"], [gpu], minors) == [
        *CONTROL,
        "/dev/nvidia3",
        "/dev/nvidia-caps/nvidia-cap21",
        "/dev/nvidia-caps/nvidia-cap22",
    ]
    both = device_nodes(["MIG-0", "MIG-2"], [gpu], minors)
    assert both.count("/dev/nvidia3") == 1
    # Never the nodes that configure or monitor MIG.
    assert not {"/dev/nvidia-caps/nvidia-cap1", "/dev/nvidia-caps/nvidia-cap2"} & set(both)


def test_no_gpu_no_node():
    assert device_nodes([], [a100(3, "GPU-mine")], {}) == []


@pytest.mark.parametrize(
    "uuid, gpus, minors, reason",
    [
        ("GPU-gone", [a100(3, "GPU-mine")], {}, "not on this host"),
        ("GPU-mine", [a100(None, "GPU-mine")], {}, "device node"),
        ("MIG-0", [a100(3, "GPU-split", [(0, "3g.20gb", 4)])], {}, "does not list"),
        # The fake cannot read device 6's compute instance (no permission).
        ("MIG-6", [a100(3, "GPU-split", [(6, "1g.5gb", 1)])], {}, "which MIG instance"),
    ],
)
def test_a_device_whose_nodes_are_unknown_is_refused_with_the_reason(uuid, gpus, minors, reason):
    with pytest.raises(DeviceError, match=reason):
        device_nodes([uuid], gpus, minors)


def test_parsing_skips_what_is_not_a_gpu_line():
    assert parse_mig_minors("config 1\nmonitor 2\n\ngpu0/gi1/access 3\nbroken\n") == {
        "gpu0/gi1/access": 3
    }


@pytest.fixture
def fake_nodes():
    """Two device nodes that look like GPUs' (/dev/null's numbers), removed afterwards."""
    minors = [m for m in range(200, 256) if not os.path.exists(f"/dev/nvidia{m}")][:2]
    paths = [f"/dev/nvidia{m}" for m in minors]
    for path in paths:
        os.mknod(path, 0o666 | 0o020000, os.makedev(1, 3))
    yield minors
    for path in paths:
        os.remove(path)


LIST_DEVICES = "import os; print('NODES', sorted(n for n in os.listdir('/dev') if 'nvidia' in n))"


@pytest.mark.skipif(os.geteuid() != 0, reason="making device nodes needs root")
@pytest.mark.django_db
def test_a_sandboxed_workspace_sees_the_node_of_its_gpu_and_not_the_other_one(
    member, gpu_profile, workspace_factory, workspaces_root, fake_nodes, monkeypatch
):
    assert isolation.host_capability().isolated, isolation.host_capability().description
    nodes = [f"/dev/nvidia{minor}" for minor in fake_nodes]
    # This host's two A100s, as NVML reports them, one on each node.
    gpus = [a100(minor, f"GPU-{minor}") for minor in fake_nodes]
    monkeypatch.setattr("pools.drivers.local.gpu_inventory", lambda: gpus)
    workspace = workspace_factory(member, gpu_profile)
    assert tasks.provision_workspace(workspace.pk) == "ready"
    driver = driver_for(workspace.infrastructure)
    spec = workspace.spec()
    given = driver.device_nodes(spec)
    # The control nodes too, on a host that has them (one with a driver); of the GPUs', the
    # one allocated to it.
    control = [node for node in devices.CONTROL_NODES if os.path.exists(node)]
    (own,) = [node for node in given if node not in control]
    assert own in nodes and given == [*control, own]

    record = driver.start_process(spec, [sys.executable, "-c", LIST_DEVICES])
    wait_for(lambda: not supervisor.is_running(record), timeout=30, what="the listing")
    log = (driver.directory(spec.name) / "process.log").read_text()
    seen = sorted(os.path.basename(node) for node in [*control, own])
    assert f"NODES {seen!r}" in log, log


@pytest.mark.django_db
def test_without_a_sandbox_no_device_node_is_needed(
    settings, member, gpu_profile, workspace_factory, workspaces_root, monkeypatch
):
    """Unsandboxed processes see the host's /dev: a GPU whose node NVML cannot name does
    not stop them."""
    settings.LOCAL_WORKSPACE_ISOLATION = "off"
    gpus = [a100(None, "GPU-unnamed")]
    monkeypatch.setattr("pools.drivers.local.gpu_inventory", lambda: gpus)
    workspace = workspace_factory(member, gpu_profile)
    assert tasks.provision_workspace(workspace.pk) == "ready"
    driver = driver_for(workspace.infrastructure)
    assert driver.device_nodes(workspace.spec()) == []
    settings.LOCAL_WORKSPACE_ISOLATION = "auto"  # sandboxed, the same GPU is refused
    if isolation.host_capability().isolated:
        with pytest.raises(DeviceError, match="device node"):
            driver.device_nodes(workspace.spec())
