"""Stopping and starting workspaces (issue 5): the local driver, the tasks, the sweep, and the
Kubernetes and AWS drivers against their stand-ins."""

# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811
from datetime import timedelta

import pytest
from django.utils import timezone

from pools import tasks
from pools.drivers import driver_for
from pools.drivers.base import GroupSpec, PermanentError, TransientError, WorkspaceSpec
from pools.drivers.local import ENV_FILE, MARKER
from pools.lifecycle import POOL_LIFECYCLE, State
from pools.models import GpuAllocation, Workspace
from pools.steps import MAX_ATTEMPTS, stuck_after
from tests.workspace_fixtures import (  # noqa: F401
    fake_gpus,
    starter,
    warn_of_expiry,
    workspace_factory,
    workspaces_root,
)


def holders() -> list[str]:
    return sorted(GpuAllocation.objects.values_list("holder", flat=True))


def test_warm_pool_instances_cannot_be_stopped():
    assert not POOL_LIFECYCLE.allows(State.READY, State.STOPPING)


# --- the local driver ---------------------------------------------------------------------


def test_stop_releases_the_gpus_and_keeps_the_files(ready_gpu_workspace, workspaces_root):
    spec = ready_gpu_workspace.spec()
    driver = driver_for(ready_gpu_workspace.infrastructure)
    (workspaces_root / spec.name / "notebook.ipynb").write_text("{}")
    steps = []
    driver.stop(spec, steps.append)
    assert holders() == []
    assert "1 GPU allocation(s) released" in steps
    assert (workspaces_root / spec.name / "notebook.ipynb").exists()
    assert (workspaces_root / spec.name / MARKER).exists()
    driver.stop(spec)  # idempotent
    assert not driver.status(spec).ready


def test_start_takes_the_gpus_again(ready_gpu_workspace, workspaces_root):
    spec = ready_gpu_workspace.spec()
    driver = driver_for(ready_gpu_workspace.infrastructure)
    driver.stop(spec)
    result = driver.start(spec)
    assert result.ready
    assert holders() == [spec.name]
    assert "CUDA_VISIBLE_DEVICES=GPU-aaaa" in (workspaces_root / spec.name / ENV_FILE).read_text()
    assert driver.start(spec).detail == result.detail  # idempotent


def test_a_stopped_workspaces_gpu_goes_to_another_workspace_and_start_then_waits(
    ready_gpu_workspace, gpu_profile, workspaces_root
):
    driver = driver_for(ready_gpu_workspace.infrastructure)
    first = ready_gpu_workspace.spec()
    second = WorkspaceSpec.from_profile("ws-999", "cole", gpu_profile)
    with pytest.raises(TransientError, match="in use"):
        driver.provision(second)
    driver.stop(first)
    assert driver.provision(second).ready  # GPU 0, freed by the stop
    with pytest.raises(TransientError, match="in use"):
        driver.start(first)
    assert holders() == ["ws-999"]
    assert (workspaces_root / first.name / MARKER).exists()  # a failed start keeps the files


def test_start_without_the_directory_is_permanent(ready_gpu_workspace, workspaces_root):
    spec = ready_gpu_workspace.spec()
    driver = driver_for(ready_gpu_workspace.infrastructure)
    driver.stop(spec)
    (workspaces_root / spec.name / MARKER).unlink()
    with pytest.raises(PermanentError, match="gone"):
        driver.start(spec)
    assert holders() == []


# --- the tasks ----------------------------------------------------------------------------


def move(workspace, state):
    Workspace.objects.filter(pk=workspace.pk).update(state=state)
    workspace.refresh_from_db()


def test_the_stop_task_stops_then_the_start_task_starts(ready_gpu_workspace):
    move(ready_gpu_workspace, State.STOPPING)
    assert tasks.stop_workspace(ready_gpu_workspace.pk) == "stopped"
    assert tasks.stop_workspace(ready_gpu_workspace.pk) == "nothing to do (stopped)"
    ready_gpu_workspace.refresh_from_db()
    assert ready_gpu_workspace.state == State.STOPPED
    assert holders() == []
    # Stopped: still live (the sweep must not reap its directory).
    assert ready_gpu_workspace.resource_name in tasks.live_names(ready_gpu_workspace.infrastructure)

    move(ready_gpu_workspace, State.STARTING)
    assert tasks.start_workspace(ready_gpu_workspace.pk) == "ready"
    ready_gpu_workspace.refresh_from_db()
    assert ready_gpu_workspace.state == State.READY
    assert holders() == [ready_gpu_workspace.resource_name]


def test_a_start_without_a_free_gpu_retries_then_goes_back_to_stopped(
    ready_gpu_workspace, gpu_profile
):
    move(ready_gpu_workspace, State.STOPPING)
    tasks.stop_workspace(ready_gpu_workspace.pk)
    driver = driver_for(ready_gpu_workspace.infrastructure)
    driver.provision(WorkspaceSpec.from_profile("ws-999", "cole", gpu_profile))
    move(ready_gpu_workspace, State.STARTING)
    assert tasks.start_workspace(ready_gpu_workspace.pk).startswith("retrying")
    ready_gpu_workspace.refresh_from_db()
    assert ready_gpu_workspace.state == State.STARTING
    Workspace.objects.filter(pk=ready_gpu_workspace.pk).update(attempts=MAX_ATTEMPTS)
    tasks.start_workspace(ready_gpu_workspace.pk)
    ready_gpu_workspace.refresh_from_db()
    assert ready_gpu_workspace.state == State.STOPPED
    assert "in use" in ready_gpu_workspace.failure_reason
    assert holders() == ["ws-999"]


def test_a_permanent_stop_error_fails_the_workspace(ready_gpu_workspace, monkeypatch):
    def broken(self, spec, report=None):
        raise PermanentError("the host is gone")

    monkeypatch.setattr("pools.drivers.local.LocalDriver.stop", broken)
    move(ready_gpu_workspace, State.STOPPING)
    assert tasks.stop_workspace(ready_gpu_workspace.pk).startswith("failed")
    ready_gpu_workspace.refresh_from_db()
    assert ready_gpu_workspace.state == State.FAILED


def test_the_sweep_resumes_a_stop_whose_worker_died(
    ready_gpu_workspace, monkeypatch, django_capture_on_commit_callbacks
):
    move(ready_gpu_workspace, State.STOPPING)
    long_ago = timezone.now() - stuck_after() - timedelta(seconds=1)
    Workspace.objects.filter(pk=ready_gpu_workspace.pk).update(heartbeat=long_ago)
    calls = []
    monkeypatch.setattr("pools.tasks.enqueue_stop", lambda pk: calls.append(("stop", pk)))
    monkeypatch.setattr("pools.tasks.enqueue_start", lambda pk: calls.append(("start", pk)))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.resume_stuck() == 1
        assert tasks.resume_stuck() == 0  # claimed once
    assert calls == [("stop", ready_gpu_workspace.pk)]
    assert tasks.stop_workspace(ready_gpu_workspace.pk) == "stopped"


def test_the_sweep_resumes_a_stuck_start(
    ready_gpu_workspace, monkeypatch, django_capture_on_commit_callbacks
):
    move(ready_gpu_workspace, State.STARTING)
    long_ago = timezone.now() - stuck_after() - timedelta(seconds=1)
    Workspace.objects.filter(pk=ready_gpu_workspace.pk).update(heartbeat=long_ago)
    calls = []
    monkeypatch.setattr("pools.tasks.enqueue_start", lambda pk: calls.append(pk))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.resume_stuck() == 1
    assert calls == [ready_gpu_workspace.pk]


def test_a_stopped_workspace_past_its_lifetime_is_deleted(ready_gpu_workspace, monkeypatch):
    monkeypatch.setattr("pools.tasks.enqueue_deprovision", lambda pk: None)
    move(ready_gpu_workspace, State.STOPPED)
    Workspace.objects.filter(pk=ready_gpu_workspace.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    warn_of_expiry(ready_gpu_workspace)
    assert tasks.expire() == 1
    ready_gpu_workspace.refresh_from_db()
    assert ready_gpu_workspace.state == State.DELETING


# --- Kubernetes (the API stand-in) --------------------------------------------------------


def test_kubernetes_stop_scales_to_zero_and_start_scales_back():
    from pools.drivers.kubernetes import KubernetesDriver
    from tests.pools.k8s_stand_in import StandInApiServer
    from tests.pools.test_kubernetes_driver import SPECS, kube_infrastructure

    cluster = StandInApiServer(version="1.33").start()
    try:
        driver = KubernetesDriver(kube_infrastructure(cluster))
        spec = SPECS["multi-node"]
        driver.provision(spec)
        claims = cluster.names("persistentvolumeclaims")
        assert len(cluster.pods("ws-42")) == 4

        steps = []
        driver.stop(spec, steps.append)
        sts = cluster.objects[("statefulsets", "ws-42", "ws-42-g0")]
        assert sts["spec"]["replicas"] == 0
        assert sts["spec"]["template"]  # the whole object was applied, not only replicas
        assert cluster.pods("ws-42") == []
        assert cluster.names("persistentvolumeclaims") == claims  # volumes kept
        assert "all pods stopped; volumes kept" in steps
        driver.stop(spec)  # idempotent
        assert {method for method, _ in cluster.requests} == {"GET", "PATCH"}

        result = driver.start(spec)
        assert not result.ready  # waits for the pods, like provision
        assert cluster.objects[("statefulsets", "ws-42", "ws-42-g0")]["spec"]["replicas"] == 4
        cluster.set_pods("ready")
        assert driver.start(spec).ready
        assert cluster.names("persistentvolumeclaims") == claims
    finally:
        cluster.stop()


def test_kubernetes_start_of_a_deleted_workspace_is_permanent():
    from pools.drivers.kubernetes import KubernetesDriver
    from tests.pools.k8s_stand_in import StandInApiServer
    from tests.pools.test_kubernetes_driver import SPECS, kube_infrastructure

    cluster = StandInApiServer(version="1.33").start()
    try:
        driver = KubernetesDriver(kube_infrastructure(cluster))
        with pytest.raises(PermanentError, match="gone"):
            driver.start(SPECS["cpu-only"])
        assert cluster.names("statefulsets") == []
    finally:
        cluster.stop()


# --- AWS (moto) ---------------------------------------------------------------------------


@pytest.fixture
def aws_driver(aws, aws_infrastructure):
    from pools.drivers.aws import AwsDriver
    from tests.pools.test_aws_driver import EKS, KEYS

    aws_infrastructure.credentials = {**KEYS, **EKS}
    aws_infrastructure.save()
    return AwsDriver(aws_infrastructure)


from tests.pools.moto_server import aws, moto_endpoint  # noqa: E402, F401


def test_aws_stop_scales_the_node_groups_to_zero_and_start_back(aws_driver, aws):
    import boto3

    eks = boto3.client("eks", endpoint_url=aws, region_name="us-east-1")
    spec = WorkspaceSpec(
        name="ws-42",
        owner="mia",
        profile="big",
        profile_version=1,
        groups=(GroupSpec(0, "H100-80GB", 8, cpu=96, ram_gb=1024, node_count=2),),
    )
    assert aws_driver.provision(spec).ready
    cluster = aws_driver.cluster_name(spec)

    def scaling():
        found = eks.describe_nodegroup(clusterName=cluster, nodegroupName="ws-42-g0")
        return found["nodegroup"]["scalingConfig"]

    steps = []
    aws_driver.stop(spec, steps.append)
    assert scaling() == {"minSize": 0, "maxSize": 2, "desiredSize": 0}
    assert "node group ws-42-g0 scaled to 0 nodes" in steps
    aws_driver.stop(spec)  # idempotent
    assert eks.list_clusters()["clusters"] == [cluster]  # the cluster stays

    assert aws_driver.start(spec).ready
    assert scaling() == {"minSize": 2, "maxSize": 2, "desiredSize": 2}
