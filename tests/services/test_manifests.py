"""Every turnkey profile renders Kubernetes objects that the official schemas accept."""

import kubernetes_validate
import pytest

from pools.drivers import k8s_manifests as m
from pools.drivers.base import GroupSpec, WorkspaceSpec
from profiles.models import ServicesProfile
from services import components as catalog
from services.backends.base import ComponentContext
from services.backends.kubernetes import COMPONENT_LABEL, render_component

pytestmark = pytest.mark.django_db

VERSIONS = [f"1.{minor}.0" for minor in range(29, 36)]
SPEC = WorkspaceSpec(
    name="ws-42",
    owner="dana",
    profile="one-a100",
    profile_version=1,
    groups=(GroupSpec(index=0, gpu_model="A100-40GB", gpu_count=1),),
)


def stack_objects(profile: ServicesProfile, options=None) -> list[dict]:
    objects = []
    for item in profile.components.all():
        found = catalog.component(item.component)
        ctx = ComponentContext(
            spec=SPEC,
            component=found,
            version=item.version or found.default_version,
            parameters=found.resolve(item.parameters),
            stack=profile.slug,
        )
        objects += render_component(ctx, "s3cret", options)
    return objects


@pytest.mark.parametrize(
    "name", ["Jupyter Notebook", "Training", "Inference", "MLOps Platform", "Ray", "Jobs"]
)
@pytest.mark.parametrize("mode", [m.NAMESPACE_MODE, m.SHARED_MODE])
def test_every_turnkey_profile_renders_valid_manifests(name, mode):
    options = m.ManifestOptions(namespace_mode=mode)
    objects = stack_objects(ServicesProfile.objects.get(name=name), options)
    assert any(o["kind"] in ("Deployment", "ConfigMap") for o in objects)
    for version in VERSIONS:
        for obj in objects:
            kubernetes_validate.validate(obj, version, strict=True)
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), "two objects of one kind share a name"
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels[m.MANAGED_BY_LABEL] == m.MANAGED_BY
        assert labels[m.WORKSPACE_LABEL] == "ws-42"
        assert obj["metadata"]["namespace"] == m.namespace_for(SPEC, options)
        assert len(obj["metadata"]["name"]) <= 63
        assert COMPONENT_LABEL in labels


def test_gpu_components_request_gpus_on_the_workspaces_gpu_model():
    objects = stack_objects(ServicesProfile.objects.get(name="Training"))
    runner = next(
        o
        for o in objects
        if o["kind"] == "Deployment" and "training-runner" in o["metadata"]["name"]
    )
    pod = runner["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {m.PRODUCT_LABEL: m.product_label("A100-40GB")}
    # The jobs queue's real script travels in a ConfigMap.
    config = next(o for o in objects if o["kind"] == "ConfigMap")
    assert "class Queue" in config["data"]["jobrunner.py"]


def test_ray_workers_join_the_head():
    found = catalog.component("ray")
    ctx = ComponentContext(SPEC, found, "2.47", found.resolve({"workers": "2"}), stack="ray")
    objects = render_component(ctx)
    worker = next(o for o in objects if o["metadata"]["name"] == "ws-42-ray-worker")
    assert worker["spec"]["replicas"] == 2
    assert (
        "--address=ws-42-ray:6379" in worker["spec"]["template"]["spec"]["containers"][0]["command"]
    )
    # Without gRPC's fork support: it kills Ray Client's per-client servers as they start.
    head = next(o for o in objects if o["metadata"]["name"] == "ws-42-ray")
    env = head["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "GRPC_ENABLE_FORK_SUPPORT", "value": "false"} in env
    for obj in objects:
        kubernetes_validate.validate(obj, "1.33.0", strict=True)


@pytest.mark.parametrize(
    "name", ["Jupyter Notebook", "Training", "Inference", "MLOps Platform", "Ray", "Jobs"]
)
def test_service_pods_get_no_token_unless_they_call_the_api_and_no_privileges(name):
    """Code in a service's pod is the workspace's, untrusted: it gets no credential to
    the cluster, save Kubeflow Pipelines' API server, which needs one."""
    objects = stack_objects(ServicesProfile.objects.get(name=name))
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        pod = obj["spec"]["template"]["spec"]
        calls_the_api = obj["metadata"]["labels"][COMPONENT_LABEL] == "kubeflow-pipelines"
        assert pod.get("automountServiceAccountToken", True) is calls_the_api, obj["metadata"]
        for container in pod["containers"]:  # code in it is the workspace's too
            assert container["securityContext"] == m.CONTAINER_SECURITY, obj["metadata"]
