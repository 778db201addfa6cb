"""A local workspace with GPUs is ready only once CUDA, run as its processes run, sees
exactly its GPUs (`pools.gpucheck`). On a real H200 the probe's own output is in
data/cuda-probe-h200.json; this host has no CUDA, which is a case of its own here."""

# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811
import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.utils import timezone

from pools import gpucheck, health, isolation, supervisor
from pools.drivers import driver_for
from pools.drivers.base import PermanentError, TransientError, WorkspaceSpec
from pools.models import GpuAllocation, GpuFault
from profiles.choices import HealthStatus
from tests.workspace_fixtures import (  # noqa: F401
    FakeGpu,
    fake_gpus,
    wait_for,
    workspaces_root,
)

H200 = json.loads((Path(__file__).parent / "data" / "cuda-probe-h200.json").read_text())


def ran(stdout: str, stderr: str = "", status: int = 0) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess([], status, stdout, stderr)


@pytest.mark.parametrize(
    ("uuid", "digits"),
    [
        ("GPU-19afb852-c5e4-2796-d81a-4496e5ad3c71", "19afb852c5e42796d81a4496e5ad3c71"),
        ("MIG-3F0A1B2C-0000-1111-2222-333344445555", "3f0a1b2c000011112222333344445555"),
        ("MIG-GPU-19afb852-c5e4-2796-d81a-4496e5ad3c71/1/0", ""),  # before R470: no match
        ("GPU-aaaa", ""),
    ],
)
def test_nvml_uuids_as_cuda_reports_them(uuid, digits):
    assert gpucheck.uuid_hex(uuid) == digits


def test_the_real_h200_answer_is_its_gpu():
    answer = ran(json.dumps(H200["probe"]))
    assert gpucheck.judge(answer, [H200["allocated"]]) == (
        "",
        f"NVIDIA H200 ({gpucheck.uuid_hex(H200['allocated'])[:8]}…)",
    )
    other = "GPU-00000000-c5e4-2796-d81a-4496e5ad3c71"
    problem, _ = gpucheck.judge(answer, [other])
    assert problem == (
        f"CUDA in the workspace sees NVIDIA H200 ({H200['allocated'][4:12]}…), "
        f"not its 1 GPU(s) {other}."
    )


def test_the_real_h200_without_its_device_nodes_is_no_gpu():
    problem, seen = gpucheck.judge(ran(json.dumps(H200["probe_without_nodes"])), ["GPU-x"])
    assert problem == (
        "CUDA cannot use the workspace's GPUs: cuInit failed with CUDA_ERROR_NO_DEVICE (100)."
    )
    assert seen == ""


def test_the_host_summary_says_what_cuda_said():
    h200 = ran(json.dumps(H200["probe"]))
    gpu = SimpleNamespace(index=0, uuid=H200["allocated"], mig_enabled=False)
    assert gpucheck.host_summary(h200, [gpu]) == "CUDA initialises here and sees 1× NVIDIA H200."
    missing = ran(json.dumps({"error": "libcuda.so.1 cannot be loaded (no such file)"}))
    assert gpucheck.host_summary(missing, [gpu]) == (
        "CUDA cannot use them here (libcuda.so.1 cannot be loaded (no such file)): "
        "workspaces with GPUs fail it."
    )
    assert gpucheck.host_summary(ran("", "Killed", -9), [gpu]) == (
        "The GPU check cannot run here (Killed): workspaces with GPUs fail it."
    )


def test_the_host_summary_names_a_gpu_nvml_lists_and_cuda_does_not_see():
    """As a GPU fallen off the bus: the driver still lists it, CUDA leaves it out."""
    h200 = ran(json.dumps(H200["probe"]))
    seen = SimpleNamespace(index=0, uuid=H200["allocated"], mig_enabled=False)
    lost = SimpleNamespace(
        index=1, uuid="GPU-00000000-1111-2222-3333-444444444444", mig_enabled=False
    )
    mig = SimpleNamespace(
        index=2, uuid="GPU-55555555-1111-2222-3333-444444444444", mig_enabled=True
    )
    assert gpucheck.host_summary(h200, [seen, lost, mig]) == (
        "CUDA initialises here and sees 1× NVIDIA H200, but not GPU 1 "
        "(GPU-00000000-1111-2222-3333-444444444444): a workspace given it fails its GPU check."
    )


def test_a_probe_that_did_not_answer_says_why():
    problem, _ = gpucheck.judge(ran("", "Traceback…\nMemoryError", 1), ["GPU-x"])
    assert problem == "The GPU check could not run in the workspace: MemoryError"
    problem, _ = gpucheck.judge(ran("", "", -9), ["GPU-x"])
    assert problem == "The GPU check could not run in the workspace: exit status -9"


@pytest.mark.parametrize(
    "last_line",
    ["[]", '{"devices": "GPU"}', '{"devices": [{"name": 1, "uuid": "ab"}]}', '{"found": 1}'],
)
def test_an_answer_not_shaped_as_the_probes_is_no_answer(last_line):
    problem, seen = gpucheck.judge(ran(last_line, "", 0), ["GPU-x"])
    assert (problem, seen) == ("The GPU check could not run in the workspace: exit status 0", "")


def test_old_mig_uuids_are_checked_by_count():
    two = ran(json.dumps({"devices": [{"name": "MIG 1g.5gb", "uuid": "ab"}] * 2}))
    old = ["MIG-GPU-aa/1/0", "MIG-GPU-aa/2/0"]
    assert gpucheck.judge(two, old)[0] == ""
    assert gpucheck.judge(two, old[:1])[0].startswith("CUDA in the workspace sees MIG 1g.5gb")


@pytest.fixture
def driver(local_infrastructure, workspaces_root, settings):
    settings.LOCAL_GPU_CHECK = "cuda"
    return driver_for(local_infrastructure)


def _gpu_spec(driver, profile_factory, name="ws-1"):
    profile = profile_factory(driver.infrastructure, name, groups=[("A100-40GB", 1)])
    return WorkspaceSpec.from_profile(name, "mia", profile)


def test_a_gpu_workspace_is_ready_once_the_check_saw_its_gpu_as_its_processes_would(
    driver, profile_factory, fake_gpus, workspaces_root, monkeypatch
):
    # The stand-in for CUDA (none can open an NVML stand-in's GPU) says who ran it, and
    # with which GPUs visible: the workspace's uid and its own GPU.
    monkeypatch.setattr(
        gpucheck,
        "PROBE",
        "import json, os; print(json.dumps({'devices': [{'name': f'uid {os.getuid()} "
        "with {os.environ[\"CUDA_VISIBLE_DEVICES\"]}', 'uuid': '00'}]}))",
    )
    steps = []
    assert driver.provision(_gpu_spec(driver, profile_factory), steps.append).ready
    uid = isolation.identity_of(workspaces_root / "ws-1") or os.getuid()
    assert f"CUDA sees uid {uid} with GPU-aaaa (00…)" in steps


def test_provisioning_start_and_repair_each_check(
    driver, profile_factory, fake_gpus, workspaces_root, monkeypatch
):
    checked = []
    monkeypatch.setattr(driver, "_check_gpus", lambda spec, report: checked.append(spec.name))
    spec = _gpu_spec(driver, profile_factory)
    driver.provision(spec)
    driver.stop(spec)
    driver.start(spec)
    driver.repair(spec)
    assert checked == ["ws-1", "ws-1", "ws-1"]


def test_a_check_that_times_out_leaves_nothing_running(workspaces_root):
    """Killing the sandbox's bubblewrap kills what runs inside (its own PID namespace would
    otherwise keep it), so a hung probe does not keep a GPU open once it is released."""
    directory = workspaces_root / "ws-1"
    directory.mkdir(parents=True)
    marker = ["sleep", "37.25"]
    with pytest.raises(subprocess.TimeoutExpired):
        supervisor.run_once(marker, directory, {"PATH": os.environ["PATH"]}, timeout=2)

    def left() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if (entry / "cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", b"37.25"]:
                    found.append(int(entry.name))
            except (OSError, ValueError):
                continue
        return found

    wait_for(lambda: not left(), timeout=10, what="the sandboxed sleep to end")


def test_a_probe_that_hangs_on_the_host_sees_nothing(monkeypatch):
    """Asked whether a suspect GPU is the one to blame, a hung probe counts as not seeing
    it (before, its TimeoutExpired escaped the provisioning step)."""
    monkeypatch.setattr(gpucheck, "PROBE", "import time; time.sleep(30)")
    monkeypatch.setattr(gpucheck, "TIMEOUT", 1)
    assert gpucheck.seen_on_host(GOOD) is False


def test_each_mig_device_is_probed_alone():
    """A CUDA process enumerates one MIG device at most; whole GPUs go together."""
    assert gpucheck.runs(["GPU-a", "MIG-b", "GPU-c", "MIG-d"]) == [
        ["GPU-a", "GPU-c"],
        ["MIG-b"],
        ["MIG-d"],
    ]
    assert gpucheck.runs(["MIG-b"]) == [["MIG-b"]]


def test_where_cuda_cannot_use_the_gpu_the_workspace_fails_and_frees_it(
    driver, profile_factory, fake_gpus, workspaces_root
):
    # This host: no libcuda.so.1 (with one, CUDA would see another GPU than GPU-aaaa).
    with pytest.raises(PermanentError, match=r"^CUDA (cannot use|in the workspace sees)"):
        driver.provision(_gpu_spec(driver, profile_factory))
    assert not GpuAllocation.objects.exists()
    assert not (workspaces_root / "ws-1").exists()
    assert not GpuFault.objects.exists()  # CUDA fails here as a whole: no GPU is to blame


def test_a_cpu_only_workspace_runs_no_check(driver, profile_factory, workspaces_root):
    profile = profile_factory(driver.infrastructure)
    steps = []
    driver.provision(WorkspaceSpec.from_profile("ws-1", "mia", profile), steps.append)
    assert not [step for step in steps if "CUDA" in step]


# -- a GPU CUDA cannot see is held back ---------------------------------------------------

GOOD, BAD = "GPU-11111111-0000-0000-0000-000000000000", "GPU-22222222-0000-0000-0000-000000000000"
# CUDA as it answered on the H200 without its device nodes for the bad GPU; as it lists a
# good one for the other.
STAND_IN = f"""
import json, os
visible = os.environ["CUDA_VISIBLE_DEVICES"]
if visible == {BAD!r}:
    print(json.dumps({H200["probe_without_nodes"]!r}))
else:
    uuid = visible[4:].replace("-", "")
    print(json.dumps({{"devices": [{{"name": "NVIDIA A100", "uuid": uuid}}]}}))
"""


# Both GPUs visible (CUDA_VISIBLE_DEVICES unset: the host's status) or the one asked for.
SEES_BOTH = f"""
import json, os
visible = os.environ.get("CUDA_VISIBLE_DEVICES") or "{BAD},{GOOD}"
devices = [{{"name": "NVIDIA A100", "uuid": v[4:].replace("-", "")}} for v in visible.split(",")]
print(json.dumps({{"devices": devices}}))
"""
# The GPU unseen in the workspace's sandbox (whose HOME is its directory), seen outside.
SANDBOX_ONLY = f"""
import json, os
if os.environ.get("HOME", "").endswith("ws-1"):
    print(json.dumps({H200["probe_without_nodes"]!r}))
else:
    exec({SEES_BOTH!r})
"""


@pytest.fixture
def two_gpus(monkeypatch, driver):
    """Two whole A100s; CUDA cannot see GPU 0 (as one fallen off the bus)."""
    gpus = [
        FakeGpu(0, BAD, "NVIDIA A100-SXM4-40GB", "A100-40GB"),
        FakeGpu(1, GOOD, "NVIDIA A100-SXM4-40GB", "A100-40GB"),
    ]
    monkeypatch.setattr("pools.drivers.local.gpu_inventory", lambda: gpus)
    monkeypatch.setattr(gpucheck, "PROBE", STAND_IN)
    return gpus


def test_a_gpu_cuda_cannot_see_is_held_back_and_the_retry_lands_on_another(
    driver, profile_factory, two_gpus, workspaces_root
):
    spec = _gpu_spec(driver, profile_factory)
    with pytest.raises(TransientError) as first:
        driver.provision(spec)  # placed on GPU 0
    assert str(first.value) == (
        "CUDA cannot use the workspace's GPUs: cuInit failed with CUDA_ERROR_NO_DEVICE (100). "
        f"{BAD} is held back from new workspaces for 30 minutes."
    )
    (fault,) = GpuFault.objects.all()
    assert (fault.gpu_index, fault.device_uuid) == (0, BAD)
    assert not GpuAllocation.objects.exists()  # all or nothing

    steps = []
    assert driver.provision(spec, steps.append).ready  # the task's retry
    assert list(GpuAllocation.objects.values_list("device_uuid", flat=True)) == [GOOD]
    assert "CUDA sees NVIDIA A100 (11111111…)" in steps


def test_while_it_is_held_back_requests_and_the_status_say_why(
    driver, profile_factory, two_gpus, workspaces_root, local_infrastructure, settings
):
    spec = _gpu_spec(driver, profile_factory)
    with pytest.raises(TransientError):
        driver.provision(spec)
    driver.provision(spec)  # on GPU 1
    other = _gpu_spec(driver, profile_factory, "ws-2")
    with pytest.raises(TransientError) as none_free:
        driver.provision(other)
    until = GpuFault.objects.get().until
    assert f"GPU 0 is held back until {until:%H:%M}: CUDA cannot use" in str(none_free.value)
    found = health.check(local_infrastructure)
    assert found.status == HealthStatus.READY
    assert f"GPU 0 is held back from new workspaces until {until:%H:%M}" in found.reason

    # Once the hold ends, the next workspace given it checks it again.
    GpuFault.objects.update(seen=timezone.now() - GpuFault.HOLD - timedelta(seconds=1))
    with pytest.raises(TransientError, match="held back from new workspaces for 30 minutes"):
        driver.provision(other)
    assert GpuFault.objects.get().seen > timezone.now() - timedelta(minutes=1)


def test_a_held_back_gpu_cuda_sees_again_is_forgotten(
    driver, profile_factory, two_gpus, workspaces_root, local_infrastructure, monkeypatch
):
    with pytest.raises(TransientError):
        driver.provision(_gpu_spec(driver, profile_factory))
    assert GpuFault.objects.exists()
    monkeypatch.setattr(gpucheck, "PROBE", SEES_BOTH)  # the GPU was reset, say
    found = health.check(local_infrastructure)
    assert "held back" not in found.reason
    assert not GpuFault.objects.exists()
    assert "CUDA initialises here and sees 2× NVIDIA A100." in found.reason


def test_a_gpu_cuda_sees_outside_the_sandbox_is_not_to_blame(
    driver, profile_factory, two_gpus, workspaces_root, monkeypatch
):
    """CUDA misses the GPU only in the sandbox (its device nodes did not reach it): no GPU
    would do better, so nothing is held back and the step fails for good."""
    monkeypatch.setattr(gpucheck, "PROBE", SANDBOX_ONLY)
    with pytest.raises(PermanentError, match="Outside the workspace's sandbox CUDA sees it"):
        driver.provision(_gpu_spec(driver, profile_factory))
    assert not GpuFault.objects.exists()
