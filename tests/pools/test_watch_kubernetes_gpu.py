"""A Kubernetes workspace whose pod fails its GPU check gets that pod made again by the
watch's repair, within the watch's attempts (against the API stand-in)."""

# ruff: noqa: F811

from datetime import UTC, datetime, timedelta

import pytest

from pools import watch
from pools.lifecycle import State
from tests.pools.k8s_stand_in import StandInApiServer
from tests.pools.test_watch_kubernetes import lab_cluster, later, provisioned
from tests.workspace_fixtures import workspace_factory  # noqa: F401

pytestmark = pytest.mark.django_db
NODE = "gpu-a"
A100 = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB", "nvidia.com/gpu.count": "8"}


def stamp(seconds_ago: float) -> str:
    moment = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def cluster():
    server = StandInApiServer(version="1.33").start()
    server.add_node(NODE, A100, {"cpu": "96", "nvidia.com/gpu": "8"})
    yield server
    server.stop()


@pytest.fixture
def workspace(cluster, member, profile_factory, workspace_factory):
    infrastructure = lab_cluster(cluster, gpu_model="A100-40GB", gpus_per_node=8)
    profile = profile_factory(infrastructure, "One A100", groups=[("A100-40GB", 1)])
    return provisioned(cluster, workspace_factory(member, profile), NODE)


def fail_gpu_check(cluster, namespace: str, since_seconds: float) -> str | None:
    """The pod runs (for an hour) but its GPU check has failed since `since_seconds` ago:
    Ready went False then (after failureThreshold failed checks). Its uid, or None."""
    pods = cluster.pods(namespace)
    if not pods:
        return None
    (pod,) = pods
    pod["status"] = {
        "phase": "Running",
        "startTime": stamp(3600),
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "False", "lastTransitionTime": stamp(since_seconds)},
        ],
        "containerStatuses": [
            {
                "name": "workspace",
                "ready": False,
                "state": {"running": {"startedAt": stamp(3600)}},
            }
        ],
    }
    pod["spec"]["nodeName"] = NODE
    return pod["metadata"]["uid"]


def test_a_pod_failing_its_gpu_check_is_made_again_before_the_watch_gives_up(cluster, workspace):
    """The check (every CHECK_INTERVAL, 2 min) finds the pod not Ready at most an interval
    after its Ready condition turned False; the repair looks after 0, 15, 45 s and gives up
    at 105 s (MAX_REPAIRS, REPAIR_BACKOFF). A pod that ran long before its check failed is
    made again at the first attempt (it was not Ready only after its check failed several
    times in a row), not after a grace the watch's attempts never reach."""
    namespace = workspace.resource_name
    seen = watch.CHECK_INTERVAL.total_seconds()  # found by the check an interval late
    fail_gpu_check(cluster, namespace, seen)
    assert watch.check_one(later(1))
    workspace.refresh_from_db()
    assert workspace.state == State.DEGRADED
    assert "GPU check" in workspace.failure_reason

    elapsed = 0
    for attempt in range(watch.MAX_REPAIRS + 1):
        if attempt:
            elapsed += watch.REPAIR_BACKOFF * 2 ** (attempt - 1)  # the watch's own backoff
        fail_gpu_check(cluster, namespace, seen + elapsed)
        watch.repair_one(later(attempt + 2))
        workspace.refresh_from_db()
        if workspace.state == State.FAILED:
            break
    steps = list(workspace.events.values_list("message", flat=True))
    remade = [step for step in steps if step.startswith("pod ") and " deleted (" in step]
    assert remade, (
        f"{workspace.state} without its pod made again: {workspace.failure_reason} "
        f"(the pod had failed for {seen + elapsed:.0f} s at the last look)"
    )
