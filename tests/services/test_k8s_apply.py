"""Every turnkey stack applied to a provisioned workspace on the API stand-in.

The real path: `KubernetesDriver.provision` makes the workspace (namespace, quota, its
StatefulSet's pods), then `KubernetesServices.deploy` applies each component in the
profile's order, as the deployment task does. The stand-in (tests/pools/k8s_stand_in.py)
validates every object strictly and enforces quota admission for the pods and claims.
"""

from fractions import Fraction

import pytest

from pools.drivers import k8s_manifests as m
from pools.drivers.base import GroupSpec, PermanentError, WorkspaceSpec
from pools.drivers.kubernetes import KubernetesDriver
from profiles.choices import InfrastructureKind
from profiles.models import Infrastructure, ServicesProfile
from services import components as catalog
from services.backends.base import DEPLOYING, READY, ComponentContext
from services.backends.kubernetes import COMPONENT_LABEL, KubernetesServices, render_component
from tests.pools.k8s_stand_in import StandInApiServer

pytestmark = pytest.mark.django_db

TURNKEY = ["Jupyter Notebook", "Training", "Inference", "MLOps Platform", "Ray", "Jobs"]
SPEC = WorkspaceSpec(
    name="ws-42",
    owner="dana",
    profile="one-a100",
    profile_version=1,
    groups=(GroupSpec(0, "A100-40GB", 1, cpu=8, ram_gb=32, storage_gb=50),),
)
STACK_KINDS = {
    "Deployment": "deployments",
    "Service": "services",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "PersistentVolumeClaim": "persistentvolumeclaims",
}


@pytest.fixture
def cluster():
    server = StandInApiServer(version="1.33").start()
    yield server
    server.stop()


@pytest.fixture
def infrastructure(cluster):
    return Infrastructure(
        name="Lab cluster",
        kind=InfrastructureKind.KUBERNETES,
        kubeconfig=cluster.kubeconfig(),
        kubernetes_version="1.33",
    )


@pytest.fixture
def workspace(cluster, infrastructure):
    """A provisioned, ready workspace; returns its driver."""
    driver = KubernetesDriver(infrastructure, m.ManifestOptions())
    driver.provision(SPEC)
    cluster.set_pods("ready", namespace="ws-42")
    assert driver.status(SPEC).ready
    return driver


def contexts(name: str, **parameters) -> list[ComponentContext]:
    profile = ServicesProfile.objects.get(name=name)
    found = []
    for item in profile.components.all():
        component = catalog.component(item.component)
        given = {**item.parameters, **parameters.get(item.component, {})}
        found.append(
            ComponentContext(
                spec=SPEC,
                component=component,
                version=item.version or component.default_version,
                parameters=component.resolve(given),
                stack=profile.slug,
            )
        )
    return found


def hard(cluster) -> dict:
    return cluster.objects[("resourcequotas", "ws-42", "ws-42-quota")]["spec"]["hard"]


def amount(value: str) -> Fraction:
    return m.parse_quantity(value)


def stack_objects(cluster) -> list[dict]:
    return [
        obj
        for (plural, ns, _), obj in cluster.objects.items()
        if ns == "ws-42"
        and plural in STACK_KINDS.values()
        and COMPONENT_LABEL in obj["metadata"]["labels"]
    ]


@pytest.mark.parametrize("name", TURNKEY)
def test_each_turnkey_stack_deploys_reports_readiness_and_is_removed(cluster, workspace, name):
    backend = KubernetesServices(workspace.infrastructure)
    stack = contexts(name)
    base = m.quota_manifest(SPEC, m.ManifestOptions())["spec"]["hard"]
    workspace_pods = [p["metadata"]["name"] for p in cluster.pods("ws-42")]

    for ctx in stack:
        result = backend.deploy(ctx)
        if ctx.code != "gcs":
            assert result.status == DEPLOYING
            assert "not ready yet" in result.reason, result.reason

    # Every rendered object is on the cluster, with the portal's labels.
    for ctx in stack:
        for obj in render_component(ctx, "x"):
            key = (STACK_KINDS[obj["kind"]], "ws-42", obj["metadata"]["name"])
            stored = cluster.objects[key]
            labels = stored["metadata"]["labels"]
            assert labels[m.MANAGED_BY_LABEL] == m.MANAGED_BY
            assert labels[m.WORKSPACE_LABEL] == "ws-42"
            assert labels[COMPONENT_LABEL] == ctx.code
    secrets = [o for o in stack_objects(cluster) if o["kind"] == "Secret"]
    assert all("stringData" not in s and s["data"] for s in secrets)

    # The quota admitted every pod of every Deployment: it grew by the stack's share.
    deployments = [o for o in stack_objects(cluster) if o["kind"] == "Deployment"]
    assert deployments
    for deployment in deployments:
        assert deployment["status"]["conditions"] == []
        assert deployment["status"]["replicas"] == deployment["spec"]["replicas"]
    stack_pods = sum(d["spec"]["replicas"] for d in deployments)
    assert len(cluster.pods("ws-42")) == len(workspace_pods) + stack_pods
    assert amount(hard(cluster)["pods"]) == amount(base["pods"]) + stack_pods
    claims = [o for o in stack_objects(cluster) if o["kind"] == "PersistentVolumeClaim"]
    assert amount(hard(cluster)["persistentvolumeclaims"]) == 1 + len(claims)
    assert amount(hard(cluster)["requests.cpu"]) > amount(base["requests.cpu"])
    assert not cluster.events

    # Readiness per component follows its pods.
    cluster.set_pods("ready", namespace="ws-42")
    for ctx in stack:
        result = backend.check(ctx)
        assert result.status == READY, (ctx.code, result.reason)
        if ctx.code != "gcs":
            assert result.detail["pods"]
            assert all(
                e["url"].startswith(f"http://{ctx.name}.ws-42.svc:") for e in result.endpoints
            )

    # Removal (reverse order, as the task does) deletes the stack and restores the quota.
    for ctx in reversed(stack):
        backend.remove(ctx)
    assert stack_objects(cluster) == []
    assert hard(cluster) == base
    assert [p["metadata"]["name"] for p in cluster.pods("ws-42")] == workspace_pods
    assert workspace.status(SPEC).ready


def test_component_gpus_are_their_own_and_the_quota_counts_them(cluster, workspace):
    backend = KubernetesServices(workspace.infrastructure)
    for ctx in contexts("Training"):
        backend.deploy(ctx)
    # The workspace's one GPU, plus the training runner's own.
    assert hard(cluster)["requests.nvidia.com/gpu"] == "2"
    runner = cluster.objects[("deployments", "ws-42", "ws-42-training-runner")]
    assert runner["status"]["replicas"] == 1


def test_ray_workers_are_counted_in_the_quota(cluster, workspace):
    backend = KubernetesServices(workspace.infrastructure)
    (ray,) = contexts("Ray", ray={"workers": "2"})
    backend.deploy(ray)
    assert len(cluster.pods("ws-42")) == 1 + 3
    assert hard(cluster)["pods"] == "4"
    assert backend.check(ray).status == DEPLOYING
    cluster.set_pods("ready", namespace="ws-42")
    assert backend.check(ray).status == READY
    # Fewer workers: the quota shrinks with them on redeploy.
    backend.deploy(with_parameters(ray, workers=1))
    assert hard(cluster)["pods"] == "3"
    assert len(cluster.pods("ws-42")) == 3


def with_parameters(ctx: ComponentContext, **parameters) -> ComponentContext:
    return ComponentContext(
        ctx.spec,
        ctx.component,
        ctx.version,
        {**ctx.parameters, **parameters},
        stack=ctx.stack,
    )


def test_without_room_in_the_quota_the_pods_are_refused_and_the_reason_is_reported(
    cluster, workspace
):
    """What the quota fix prevents: the workspace's quota alone admits no stack pod."""
    backend = KubernetesServices(workspace.infrastructure)
    (jupyter,) = contexts("Jupyter Notebook")
    with pytest.raises(PermanentError) as refused:  # the claim, at admission: 403
        backend.apply(render_component(jupyter, "x")[1])
    assert "HTTP 403" in refused.value.detail and "exceeded quota" in refused.value.detail
    assert "quota has no room" in str(refused.value)
    deployment = next(o for o in render_component(jupyter, "x") if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"].pop("volumes")
    deployment["spec"]["template"]["spec"]["containers"][0].pop("volumeMounts")
    backend.apply(deployment)
    stored = cluster.objects[("deployments", "ws-42", "ws-42-jupyterlab")]
    (condition,) = stored["status"]["conditions"]
    assert (condition["type"], condition["reason"]) == ("ReplicaFailure", "FailedCreate")
    assert "exceeded quota: ws-42-quota" in condition["message"]
    result = backend.check(jupyter)
    assert result.status == DEPLOYING
    assert "cannot create its pods" in result.reason and "exceeded quota" in result.reason
    # Deploying for real raises the quota; the controller's retry then makes the pod.
    backend.deploy(jupyter)
    stored = cluster.objects[("deployments", "ws-42", "ws-42-jupyterlab")]
    assert stored["status"]["conditions"] == []
    assert len(cluster.pods("ws-42")) == 2


def test_remove_all_clears_every_stack_and_restores_the_quota(cluster, workspace):
    backend = KubernetesServices(workspace.infrastructure)
    for name in ("Jupyter Notebook", "MLOps Platform"):
        for ctx in contexts(name):
            backend.deploy(ctx)
    assert len(cluster.pods("ws-42")) > 2
    backend.remove_all(SPEC)
    assert stack_objects(cluster) == []
    assert hard(cluster) == m.quota_manifest(SPEC, m.ManifestOptions())["spec"]["hard"]
    assert len(cluster.pods("ws-42")) == 1


@pytest.mark.parametrize("name", ["Jupyter Notebook", "MLOps Platform"])
def test_deleting_the_workspace_removes_everything(cluster, workspace, name):
    backend = KubernetesServices(workspace.infrastructure)
    for ctx in contexts(name):
        backend.deploy(ctx)
    workspace.deprovision(SPEC)
    assert [key for key in cluster.objects if key[1] == "ws-42"] == []
    assert ("namespaces", "", "ws-42") not in cluster.objects
    backend.remove_all(SPEC)  # the task's safety net finds nothing and does not fail


def test_redeploying_is_idempotent(cluster, workspace):
    backend = KubernetesServices(workspace.infrastructure)
    stack = contexts("MLOps Platform")
    for ctx in stack:
        backend.deploy(ctx)
    before = {k: o["metadata"]["uid"] for k, o in cluster.objects.items() if k[0] != "pods"}
    quota = dict(hard(cluster))
    pods = [p["metadata"]["name"] for p in cluster.pods("ws-42")]
    for ctx in stack:
        backend.deploy(ctx)
    assert quota == hard(cluster)
    after = {k: o["metadata"]["uid"] for k, o in cluster.objects.items() if k[0] != "pods"}
    assert before == after
    assert [p["metadata"]["name"] for p in cluster.pods("ws-42")] == pods


def test_a_component_missing_one_of_its_deployments_is_not_ready(cluster, workspace):
    """Ready must not count only the Deployments it finds: the watch would never repair a
    Ray cluster whose workers' Deployment is gone."""
    backend = KubernetesServices(workspace.infrastructure)
    (ray,) = contexts("Ray", ray={"workers": "2"})
    backend.deploy(ray)
    cluster.set_pods("ready", namespace="ws-42")
    assert backend.check(ray).status == READY
    cluster._delete("deployments", "ws-42", "ws-42-ray-worker")
    result = backend.check(ray)
    assert (result.status, result.reason) == (
        DEPLOYING,
        "deployment ws-42-ray-worker is not on the cluster",
    )


def test_a_component_scaled_to_zero_pods_is_not_ready(cluster, workspace):
    """kubectl scale, an HPA or a cluster policy may scale a Deployment to 0: no pod is not
    0 pods wanted."""
    backend = KubernetesServices(workspace.infrastructure)
    (ray,) = contexts("Ray", ray={"workers": "0"})
    backend.deploy(ray)
    cluster.set_pods("ready", namespace="ws-42")
    assert backend.check(ray).status == READY
    with cluster.lock:
        cluster.objects[("deployments", "ws-42", "ws-42-ray")]["spec"]["replicas"] = 0
        for key in [k for k in cluster.objects if k[0] == "pods" and "-ray-" in k[2]]:
            del cluster.objects[key]
    result = backend.check(ray)
    assert (result.status, result.reason) == (
        DEPLOYING,
        "deployment ws-42-ray is scaled to 0 pods, not 1",
    )
