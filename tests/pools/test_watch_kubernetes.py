"""Watched workspaces on Kubernetes (`pools.watch`), against the API stand-in: pods and
their nodes checked, a JupyterLab whose pod is gone checked by its Deployment and pods;
degraded, repaired by applying again (and new pods for a component), or failed after the
last attempt."""

# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from django.utils.formats import date_format

from pools import tasks, watch
from pools.drivers.kubernetes import KubernetesDriver
from pools.lifecycle import State, transition
from pools.models import Workspace
from profiles.choices import HealthStatus, InfrastructureKind
from profiles.models import Infrastructure, ServicesProfile
from services import tasks as services
from services.backends import base as svc
from tests.pools.k8s_stand_in import StandInApiServer
from tests.workspace_fixtures import workspace_factory  # noqa: F401

pytestmark = pytest.mark.django_db
NODE = "gpu-node-1"


def later(hours: int = 1):
    return timezone.now() + timedelta(hours=hours)


@pytest.fixture
def cluster():
    server = StandInApiServer(version="1.33").start()
    server.add_node(NODE, {}, {})
    yield server
    server.stop()


def lab_cluster(cluster, **fields) -> Infrastructure:
    """The stand-in as a ready Kubernetes infrastructure."""
    return Infrastructure.objects.create(
        name="Lab cluster",
        kind=InfrastructureKind.KUBERNETES,
        kubeconfig=cluster.kubeconfig(),
        kubernetes_version="1.33",
        health_status=HealthStatus.READY,
        **fields,
    )


def provisioned(cluster, workspace, node: str) -> Workspace:
    """`workspace` provisioned on the stand-in: ready once its pods run on `node`."""
    assert tasks.provision_workspace(workspace.pk) == "not ready yet"
    cluster.set_pods("ready", node=node, namespace=workspace.resource_name)
    assert tasks.provision_workspace(workspace.pk) == "ready"
    workspace.refresh_from_db()
    return workspace


@pytest.fixture
def workspace(cluster, member, profile_factory, workspace_factory):
    """A ready CPU-only workspace on the stand-in, its pod on NODE."""
    profile = profile_factory(lab_cluster(cluster), "CPU")
    return provisioned(cluster, workspace_factory(member, profile), NODE)


def pod_names(cluster, workspace) -> list[str]:
    return [pod["metadata"]["name"] for pod in cluster.pods(workspace.resource_name)]


def test_a_ready_workspace_on_a_ready_node_stays_ready(workspace):
    assert watch.check_one()
    workspace.refresh_from_db()
    assert workspace.state == State.READY and workspace.checked_at is not None


def test_a_check_the_cluster_does_not_answer_does_not_say_the_workspace_was_checked(
    cluster, workspace, client, member
):
    assert watch.check_one()
    workspace.refresh_from_db()
    checked = workspace.checked_at
    cluster.stop()
    assert watch.check_one(later())  # cannot tell: nothing changes...
    workspace.refresh_from_db()
    assert workspace.state == State.READY
    assert workspace.checked_at == checked  # ..."Last checked" included
    assert not watch.check_one(later())  # and the next check waits its interval
    client.force_login(member)
    page = client.get(workspace.get_absolute_url()).content.decode()
    assert date_format(timezone.localtime(checked), "DATETIME_FORMAT") in page


def test_a_deleted_pod_degrades_the_workspace_and_applying_again_brings_it_back(cluster, workspace):
    (pod,) = pod_names(cluster, workspace)
    del cluster.objects[("pods", workspace.resource_name, pod)]

    assert watch.check_one()
    workspace.refresh_from_db()
    assert workspace.state == State.DEGRADED
    assert workspace.failure_reason == f"pod {pod} is not created yet"
    assert not watch.check_one(later())  # run again: the same result

    assert watch.repair_one()  # the StatefulSet applied again: its pod is made again
    assert pod_names(cluster, workspace) == [pod]
    cluster.set_pods("ready", node=NODE, namespace=workspace.resource_name)
    assert watch.repair_one(later())
    workspace.refresh_from_db()
    assert workspace.state == State.READY and workspace.failure_reason == ""


def test_a_node_that_is_not_ready_fails_the_workspace_after_the_last_attempt(cluster, workspace):
    node = cluster.objects[("nodes", "", NODE)]
    node["status"]["conditions"] = [{"type": "Ready", "status": "Unknown"}]
    (pod,) = pod_names(cluster, workspace)

    assert watch.check_one()
    workspace.refresh_from_db()
    assert workspace.failure_reason == f"Node {NODE} of pod {pod} is not ready."
    for attempt in range(watch.MAX_REPAIRS + 1):
        assert watch.repair_one(later(attempt + 1))
    workspace.refresh_from_db()
    assert workspace.state == State.FAILED
    assert workspace.failure_reason == (
        f"Node {NODE} of pod {pod} is not ready. (not repaired after 3 attempts) "
        "Stopped, its GPUs released."
    )
    assert not watch.repair_one(later(10))


def test_a_node_that_is_gone_is_named(cluster, workspace):
    del cluster.objects[("nodes", "", NODE)]
    assert watch.check_one()
    workspace.refresh_from_db()
    assert workspace.failure_reason.startswith(f"Node {NODE} of pod ")
    assert workspace.failure_reason.endswith(" is gone.")


def test_a_jupyterlab_whose_pod_is_gone_gets_a_new_one(cluster, workspace):
    notebook = ServicesProfile.objects.get(name="Jupyter Notebook")
    deployment = services.create_deployment(workspace, notebook, workspace=workspace)
    assert services.deploy_services(deployment.pk) == "JupyterLab still starting"
    cluster.set_pods("ready", node=NODE, namespace=workspace.resource_name)
    assert services.deploy_services(deployment.pk) == "ready"
    jupyter = deployment.components.get()
    jupyter.refresh_from_db()
    token = jupyter.secret
    (lab,) = [name for name in pod_names(cluster, workspace) if "jupyterlab" in name]
    del cluster.objects[("pods", workspace.resource_name, lab)]

    assert watch.check_one()
    workspace.refresh_from_db()
    deployment.refresh_from_db()
    assert workspace.state == deployment.state == State.DEGRADED
    assert workspace.failure_reason == "JupyterLab: not ready: pods are not created yet"

    assert watch.repair_one()  # its pods deleted and its objects applied again
    (new,) = [name for name in pod_names(cluster, workspace) if "jupyterlab" in name]
    assert new != lab
    cluster.set_pods("ready", node=NODE, namespace=workspace.resource_name)
    assert watch.repair_one(later())
    workspace.refresh_from_db()
    deployment.refresh_from_db()
    jupyter.refresh_from_db()
    assert workspace.state == deployment.state == State.READY
    assert jupyter.status == svc.READY and jupyter.secret == token
    claim = f"{workspace.resource_name}-jupyterlab-data"
    assert f"{workspace.resource_name}/{claim}" in cluster.names("persistentvolumeclaims")


def pods_terminate_with_grace(cluster) -> None:
    """As on a real cluster: a pod its set no longer wants is Terminating for its grace
    period (30 s here), still listed, before it is gone."""
    reconcile = cluster._reconcile_statefulset

    def graceful(sts):
        before = {k: v for k, v in cluster.objects.items() if k[0] == "pods"}
        reconcile(sts)
        for key, pod in before.items():
            if key not in cluster.objects:
                stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                pod["metadata"]["deletionTimestamp"] = stamp
                cluster.objects[key] = pod

    cluster._reconcile_statefulset = graceful


def test_a_stop_during_a_repair_does_not_break_the_watch(cluster, workspace, monkeypatch):
    """The owner stops the degraded workspace while its repair runs: the stop task scales
    the set to 0 and finishes, then the repair's apply scales it up again. The watch stops
    it again (`_release_if_moved`); the driver's `stop` raises TransientError while the pods
    it scaled down still terminate, which they always do right after. That must not escape
    the "pools: watch" sweep (its checks of every other workspace would be skipped)."""
    (pod,) = cluster.pods(workspace.resource_name)
    del cluster.objects[("pods", workspace.resource_name, pod["metadata"]["name"])]
    assert watch.check_one()
    workspace.refresh_from_db()
    assert workspace.state == State.DEGRADED

    repair = KubernetesDriver.repair

    def repair_while_stopped(self, spec, report):
        # Meanwhile the owner pressed Stop and the stop task ran to the end.
        row = Workspace.objects.get(pk=workspace.pk)
        assert transition(row, State.STOPPING, message="stop requested")
        self.stop(spec)
        assert transition(row, State.STOPPED, message="stopped")
        pods_terminate_with_grace(cluster)
        repair(self, spec, report)  # applies the set again: its pod comes back

    monkeypatch.setattr(KubernetesDriver, "repair", repair_while_stopped)

    result = watch.sweep(timezone.now() + timedelta(minutes=1))

    assert result["repaired"] == 1
    workspace.refresh_from_db()
    assert workspace.state == State.STOPPED
    sts = cluster.objects[
        ("statefulsets", workspace.resource_name, f"{workspace.resource_name}-g0")
    ]
    assert sts["spec"]["replicas"] == 0  # what the repair took is released
