"""The Kubernetes driver: its manifests against the official schemas, and its apply /
readiness / delete flow against the in-process API stand-in (tests/pools/k8s_stand_in.py)."""

import ipaddress
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import kubernetes_validate
import pytest

from pools import relay, tasks
from pools.drivers import k8s_manifests as m
from pools.drivers.base import GroupSpec, PermanentError, TransientError, WorkspaceSpec
from pools.drivers.kubernetes import KubeNodeInfo, KubernetesDriver, options_from_settings
from pools.kube import object_path
from pools.lifecycle import State
from pools.models import Workspace
from profiles.choices import InfrastructureKind
from profiles.models import Infrastructure
from tests.pools.k8s_stand_in import StandInApiServer

VERSIONS = ["1.29", "1.30", "1.31", "1.32", "1.33", "1.34", "1.35"]


def spec_of(*groups: GroupSpec, name="ws-42", profile="medium") -> WorkspaceSpec:
    return WorkspaceSpec(name=name, owner="mia", profile=profile, profile_version=1, groups=groups)


SPECS = {
    "cpu-only": spec_of(GroupSpec(0, cpu=2, ram_gb=8, storage_gb=20)),
    "whole-gpu": spec_of(GroupSpec(0, "A100-40GB", 2, cpu=16, ram_gb=64, storage_gb=100)),
    "mig-slice": spec_of(GroupSpec(0, "A100-40GB", 1, "3g.20gb", cpu=4, ram_gb=16)),
    "mig-media": spec_of(GroupSpec(0, "A100-40GB", 1, "1g.5gb+me", cpu=2, ram_gb=8)),
    "heterogeneous": spec_of(
        GroupSpec(0, "H100-80GB", 8, cpu=96, ram_gb=900, storage_gb=500),
        GroupSpec(1, "L4", 1, cpu=8, ram_gb=32),
        GroupSpec(2, cpu=4, ram_gb=16),
    ),
    "multi-node": spec_of(GroupSpec(0, "H100-80GB", 8, cpu=96, ram_gb=900, node_count=4)),
}
SHARED = m.ManifestOptions(namespace_mode=m.SHARED_MODE, shared_namespace="workspaces")


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


# --- manifests ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("shape", SPECS)
@pytest.mark.parametrize("options", [m.ManifestOptions(), SHARED], ids=["namespace", "shared"])
def test_every_manifest_is_valid_for_the_clusters_version(version, shape, options):
    for obj in m.render(SPECS[shape], options):
        kubernetes_validate.validate(obj, f"{version}.0", strict=True)


def test_a_whole_gpu_group_requests_gpus_on_the_models_nodes():
    objects = m.render(SPECS["whole-gpu"])
    pod = by_kind(objects, "StatefulSet")[0]["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["limits"] == {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "2"}
    assert resources["requests"] == resources["limits"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]


@pytest.mark.parametrize(
    ("shape", "resource"),
    [("mig-slice", "nvidia.com/mig-3g.20gb"), ("mig-media", "nvidia.com/mig-1g.5gb.me")],
)
def test_a_mig_group_requests_the_mixed_strategy_resource(shape, resource):
    objects = m.render(SPECS[shape])
    limits = by_kind(objects, "StatefulSet")[0]["spec"]["template"]["spec"]["containers"][0][
        "resources"
    ]["limits"]
    assert limits[resource] == "1"
    assert "nvidia.com/gpu" not in limits
    quota = by_kind(objects, "ResourceQuota")[0]["spec"]["hard"]
    assert quota[f"requests.{resource}"] == "1"


@pytest.mark.parametrize("shape", SPECS)
def test_a_workspace_pod_gets_no_service_account_token(shape):
    """The workspace's code needs no credentials for the cluster's API."""
    for statefulset in by_kind(m.render(SPECS[shape]), "StatefulSet"):
        assert statefulset["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


@pytest.mark.parametrize("shape", sorted(SPECS))
@pytest.mark.parametrize("options", [m.ManifestOptions(), SHARED], ids=["namespace", "shared"])
def test_a_workspace_container_may_not_gain_privileges_and_its_namespace_enforces_it(
    shape, options
):
    """Code in the container is untrusted: no setuid escalation, no raw sockets to spoof
    its neighbours, the runtime's seccomp profile; the namespace refuses any pod that
    Pod Security "baseline" forbids (privileged, host namespaces, host paths...)."""
    objects = m.render(SPECS[shape], options)
    for statefulset in by_kind(objects, "StatefulSet"):
        for container in statefulset["spec"]["template"]["spec"]["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert "NET_RAW" in security["capabilities"]["drop"]
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    labels = by_kind(objects, "Namespace")[0]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"


def test_a_cpu_only_group_has_no_gpu_selector_or_toleration():
    pod = by_kind(m.render(SPECS["cpu-only"]), "StatefulSet")[0]["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod
    assert "tolerations" not in pod
    assert set(pod["containers"][0]["resources"]["limits"]) == {"cpu", "memory"}


def test_the_quota_sums_every_group_and_node():
    quota = by_kind(m.render(SPECS["heterogeneous"]), "ResourceQuota")[0]["spec"]["hard"]
    assert quota["requests.cpu"] == "108"
    assert quota["limits.memory"] == "948Gi"
    assert quota["requests.nvidia.com/gpu"] == "9"
    assert quota["requests.storage"] == "520Gi"
    assert quota["persistentvolumeclaims"] == "3"
    multi = by_kind(m.render(SPECS["multi-node"]), "ResourceQuota")[0]["spec"]["hard"]
    assert multi["requests.nvidia.com/gpu"] == "32"
    assert multi["requests.cpu"] == "384"


def test_per_group_objects_are_suffixed_and_labelled():
    objects = m.render(SPECS["heterogeneous"])
    names = [o["metadata"]["name"] for o in by_kind(objects, "StatefulSet")]
    assert names == ["ws-42-g0", "ws-42-g1", "ws-42-g2"]
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "gpu-paas-portal"
        assert labels["gpupaas.io/workspace"] == "ws-42"
        assert labels["gpupaas.io/profile"] == "medium"
    for sts in by_kind(objects, "StatefulSet"):
        group = sts["metadata"]["labels"]["gpupaas.io/group"]
        assert sts["spec"]["selector"]["matchLabels"]["gpupaas.io/group"] == group
        template_labels = sts["spec"]["template"]["metadata"]["labels"]
        assert sts["spec"]["selector"]["matchLabels"].items() <= template_labels.items()
    for service in by_kind(objects, "Service"):
        assert service["spec"]["clusterIP"] == "None"


def test_a_multi_node_group_has_a_replica_and_a_claim_per_node():
    objects = m.render(SPECS["multi-node"])
    sts = by_kind(objects, "StatefulSet")[0]
    assert sts["spec"]["replicas"] == 4
    claims = [o["metadata"]["name"] for o in by_kind(objects, "PersistentVolumeClaim")]
    # The names the StatefulSet controller gives its "data" template's claims.
    assert claims == [f"data-ws-42-g0-{i}" for i in range(4)]
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_shared_mode_puts_everything_in_the_shared_namespace_without_a_quota():
    objects = m.render(SPECS["heterogeneous"], SHARED)
    assert not by_kind(objects, "ResourceQuota")
    namespace = by_kind(objects, "Namespace")[0]
    assert namespace["metadata"]["name"] == "workspaces"
    assert "gpupaas.io/workspace" not in namespace["metadata"]["labels"]
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {
        "workspaces"
    }


def test_a_long_profile_slug_is_cut_to_a_valid_label_value():
    labels = m.workspace_labels(spec_of(GroupSpec(0), profile="x" * 80 + "-"))
    assert labels["gpupaas.io/profile"] == "x" * 63


# --- the driver against the stand-in ------------------------------------------------------


@pytest.fixture
def cluster():
    server = StandInApiServer(version="1.33").start()
    yield server
    server.stop()


def kube_infrastructure(cluster, token=None) -> Infrastructure:
    return Infrastructure(
        name="Lab cluster",
        kind=InfrastructureKind.KUBERNETES,
        kubeconfig=cluster.kubeconfig(token),
        kubernetes_version="1.33",
    )


@pytest.fixture
def driver(cluster):
    return KubernetesDriver(kube_infrastructure(cluster))


def test_provision_applies_then_becomes_ready_when_the_pods_are(cluster, driver):
    steps: list[str] = []
    result = driver.provision(SPECS["heterogeneous"], steps.append)
    assert not result.ready
    assert "namespace ws-42 created" in steps
    assert "stateful set ws-42-g1 created" in steps
    assert cluster.names("statefulsets") == ["ws-42/ws-42-g0", "ws-42/ws-42-g1", "ws-42/ws-42-g2"]
    assert cluster.names("resourcequotas") == ["ws-42/ws-42-quota"]
    assert len(cluster.pods("ws-42")) == 3
    # Every write was a server-side apply by our field manager.
    assert {method for method, _ in cluster.requests} == {"GET", "PATCH"}

    cluster.set_pods("ready", node="gpu-node-7")
    result = driver.status(SPECS["heterogeneous"])
    assert result.ready
    assert result.detail["nodes"]["ws-42-g0-0"] == "gpu-node-7"
    assert result.connection["shell"] == "kubectl -n ws-42 exec -it ws-42-g0-0 -- bash"
    steps.clear()
    driver.provision(SPECS["heterogeneous"], steps.append)
    assert "pod ws-42-g0-0 scheduled on node gpu-node-7" in steps


def test_running_provision_twice_makes_one_set_of_objects(cluster, driver):
    driver.provision(SPECS["multi-node"])
    before = {key: obj["metadata"]["uid"] for key, obj in cluster.objects.items()}
    steps: list[str] = []
    driver.provision(SPECS["multi-node"], steps.append)
    after = {key: obj["metadata"]["uid"] for key, obj in cluster.objects.items()}
    assert after == before
    assert not [step for step in steps if step.endswith("created")]
    assert len(cluster.pods("ws-42")) == 4


def test_a_pod_that_cannot_be_scheduled_keeps_the_workspace_pending_with_the_reason(
    cluster, driver
):
    driver.provision(SPECS["whole-gpu"])
    cluster.set_pods("unschedulable")
    result = driver.status(SPECS["whole-gpu"])
    assert not result.ready
    assert "cannot be scheduled yet" in result.detail["reason"]
    assert "Insufficient nvidia.com/gpu" in result.detail["reason"]


def test_a_gpu_pod_is_ready_only_while_its_gpus_answer(cluster, driver):
    (sts,) = by_kind(m.render(SPECS["whole-gpu"]), "StatefulSet")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    command = container["readinessProbe"]["exec"]["command"]
    assert command[:2] == ["sh", "-c"] and "nvidia-smi -L" in command[2]
    (cpu_sts,) = by_kind(m.render(SPECS["cpu-only"]), "StatefulSet")
    assert "readinessProbe" not in cpu_sts["spec"]["template"]["spec"]["containers"][0]
    driver.provision(SPECS["whole-gpu"])
    cluster.set_pods("running")  # the container runs; its readiness probe has not passed
    result = driver.status(SPECS["whole-gpu"])
    assert not result.ready
    assert result.detail["reason"] == (
        "pod ws-42-g0-0 runs, but its GPU check (nvidia-smi -L) has not passed"
    )
    cluster.set_pods("ready")
    assert driver.status(SPECS["whole-gpu"]).ready


@pytest.mark.parametrize(
    ("smi", "status"),
    [("exit 0", 0), ("echo 'No devices were found'; exit 6", 6), (None, "non-zero")],
)
def test_the_gpu_check_is_nvidia_smis_answer_else_a_device_node(tmp_path, smi, status):
    """The probe's command, run here: nvidia-smi's exit status where the image has it
    (0 with the GPU's nodes, 4 without them, on the H200 of the README); else whether a
    GPU's device node is there, which this host has none of."""
    path = tmp_path / "bin"
    path.mkdir()
    if smi is not None:
        (path / "nvidia-smi").write_text(f"#!/bin/sh\n{smi}\n")
        (path / "nvidia-smi").chmod(0o755)
    for tool in ("sh", "ls"):
        (path / tool).symlink_to(shutil.which(tool))
    done = subprocess.run(m.GPU_CHECK, env={"PATH": str(path)}, capture_output=True)
    if status == "non-zero":
        assert not Path("/dev/nvidia0").exists()
        assert done.returncode != 0
    else:
        assert done.returncode == status


def test_a_multi_node_group_is_ready_only_when_every_node_is(cluster, driver):
    driver.provision(SPECS["multi-node"])
    cluster.set_pods("ready", namespace="ws-42")
    cluster.objects[("pods", "ws-42", "ws-42-g0-3")]["status"] = {"phase": "Pending"}
    assert not driver.status(SPECS["multi-node"]).ready


def test_an_image_pull_back_off_waits_a_while_then_fails(cluster, driver):
    driver.provision(SPECS["cpu-only"])
    cluster.set_pods("image_pull")
    assert "pulling its image" in driver.status(SPECS["cpu-only"]).detail["reason"]
    long_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cluster.set_pods("image_pull", since=long_ago)
    with pytest.raises(PermanentError, match="could not pull its image"):
        driver.status(SPECS["cpu-only"])


def test_deprovision_deletes_the_namespace_and_can_run_twice(cluster, driver):
    driver.provision(SPECS["heterogeneous"])
    steps: list[str] = []
    driver.deprovision(SPECS["heterogeneous"], steps.append)
    assert "namespace ws-42 deleted" in steps
    assert not cluster.objects
    driver.deprovision(SPECS["heterogeneous"])


def test_deprovision_waits_for_a_terminating_namespace(cluster, driver):
    cluster.finalize_namespaces = False
    driver.provision(SPECS["whole-gpu"])
    with pytest.raises(TransientError, match="still being deleted"):
        driver.deprovision(SPECS["whole-gpu"])
    with pytest.raises(TransientError, match="still being deleted"):
        driver.deprovision(SPECS["whole-gpu"])  # no second DELETE (a real server says 409)
    with pytest.raises(TransientError, match="still being deleted"):
        driver.provision(SPECS["whole-gpu"])
    cluster.finish_terminating()
    driver.deprovision(SPECS["whole-gpu"])
    assert not cluster.objects


def test_an_invalid_manifest_is_rejected_by_the_api_as_permanent(cluster, driver, monkeypatch):
    render = m.render

    def broken(spec, options=None):
        objects = render(spec, options)
        by_kind(objects, "StatefulSet")[0]["spec"]["replicas"] = "two"
        return objects

    monkeypatch.setattr(m, "render", broken)
    with pytest.raises(PermanentError, match="The cluster rejected StatefulSet ws-42-g0") as error:
        driver.provision(SPECS["cpu-only"])
    assert "HTTP 422" in error.value.detail
    assert "replicas" in error.value.detail


def test_changing_an_immutable_field_is_rejected_as_permanent(cluster, driver):
    driver.provision(spec_of(GroupSpec(0, storage_gb=10)))
    with pytest.raises(PermanentError, match="StatefulSet ws-42-g0"):
        driver.provision(spec_of(GroupSpec(0, storage_gb=20)))


@pytest.mark.parametrize("code", [401, 403])
def test_refused_credentials_are_permanent(cluster, code):
    if code == 403:
        cluster.refuse = 403
        driver = KubernetesDriver(kube_infrastructure(cluster))
    else:
        driver = KubernetesDriver(kube_infrastructure(cluster, token="wrong"))
    with pytest.raises(PermanentError, match="credentials were refused"):
        driver.provision(SPECS["cpu-only"])


@pytest.mark.parametrize("code", [409, 429, 503])
def test_a_busy_api_is_transient(cluster, driver, code):
    cluster.refuse = code
    with pytest.raises(TransientError):
        driver.provision(SPECS["cpu-only"])


def test_an_unreachable_api_is_transient(cluster, driver):
    cluster.stop()
    with pytest.raises(TransientError, match="Cannot reach the Kubernetes API"):
        driver.status(SPECS["cpu-only"])


def test_a_bad_kubeconfig_is_permanent():
    infrastructure = Infrastructure(name="x", kind="kubernetes", kubeconfig="- not: a config")
    with pytest.raises(PermanentError, match="kubeconfig"):
        KubernetesDriver(infrastructure).status(SPECS["cpu-only"])


def test_a_namespace_that_is_not_the_workspaces_is_left_alone(cluster, driver):
    cluster._store(
        "namespaces", "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ws-42"}}
    )
    with pytest.raises(PermanentError, match="not this workspace's"):
        driver.provision(SPECS["cpu-only"])
    with pytest.raises(PermanentError, match="not this workspace's"):
        driver.deprovision(SPECS["cpu-only"])
    assert cluster.names("namespaces") == ["ws-42"]


def test_managed_names_lists_the_workspaces_on_the_cluster(cluster, driver):
    cluster._store(
        "namespaces", "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}
    )
    driver.provision(SPECS["cpu-only"])
    driver.provision(spec_of(GroupSpec(0), name="pool-7"))
    assert driver.managed_names() == {"ws-42", "pool-7"}
    driver.deprovision(SPECS["cpu-only"])
    assert driver.managed_names() == {"pool-7"}


def test_shared_mode_keeps_workspaces_apart_by_label(cluster):
    driver = KubernetesDriver(kube_infrastructure(cluster), options=SHARED)
    other = spec_of(GroupSpec(0, "L4", 1), name="ws-43")
    driver.provision(SPECS["heterogeneous"])
    driver.provision(other)
    assert driver.managed_names() == {"ws-42", "ws-43"}
    cluster.set_pods("ready")
    assert driver.status(other).ready
    steps: list[str] = []
    driver.deprovision(SPECS["heterogeneous"], steps.append)
    assert "stateful set ws-42-g0 deleted" in steps
    assert driver.managed_names() == {"ws-43"}
    assert cluster.names("namespaces") == ["workspaces"]
    assert [p["metadata"]["name"] for p in cluster.pods()] == ["ws-43-g0-0"]
    assert "network policy ws-42-isolation deleted" in steps  # once its pods are gone
    assert cluster.names("networkpolicies") == ["workspaces/ws-43-isolation"]
    driver.deprovision(SPECS["heterogeneous"])


def test_shared_mode_leaves_an_administrators_namespace_as_it_is(cluster):
    """Applied again with force, the namespace would get the portal's Pod Security level
    (baseline) over the administrator's stricter one."""
    driver = KubernetesDriver(kube_infrastructure(cluster), options=SHARED)
    labels = {
        m.MANAGED_BY_LABEL: m.MANAGED_BY,
        "pod-security.kubernetes.io/enforce": "restricted",
    }
    namespace = {"apiVersion": "v1", "kind": "Namespace"}
    metadata = {"name": "workspaces", "labels": labels}
    driver.kube.apply(namespace | {"metadata": metadata}, field_manager="admin")
    driver.provision(SPECS["heterogeneous"])
    cluster.set_pods("unschedulable")
    driver.repair(SPECS["heterogeneous"])
    found = cluster.objects[("namespaces", "", "workspaces")]["metadata"]["labels"]
    assert found["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.django_db
def test_the_sweep_of_one_entry_does_not_reap_another_entrys_live_workspace(
    cluster, org_admin, profile_factory
):
    """Two entries on one cluster (one kubeconfig for both) each list every portal
    namespace there; the names are the portal's, so one live on either entry is kept."""
    first, second = (kube_infrastructure(cluster) for _ in range(2))
    first.save()
    second.name = "Lab cluster, second entry"
    second.save()
    profile = profile_factory(second, "On the second")
    workspace = Workspace.objects.create(
        owner=org_admin, profile=profile, infrastructure=second, state=State.READY, name="b"
    )
    KubernetesDriver(second).provision(spec_of(GroupSpec(0), name=workspace.resource_name))
    assert KubernetesDriver(first).managed_names() == {workspace.resource_name}

    assert tasks.reap_orphans() == []

    assert cluster.names("namespaces") == [workspace.resource_name]


def test_inventory_reads_gpu_labels_and_allocatable_resources(cluster, driver):
    cluster.add_node(
        "gpu-a",
        {
            "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB",
            "nvidia.com/gpu.count": "8",
            "nvidia.com/gpu.memory": "40960",
        },
        {"cpu": "96", "nvidia.com/gpu": "6", "nvidia.com/mig-3g.20gb": "4"},
    )
    cluster.add_node("cpu-a", {"kubernetes.io/os": "linux"}, {"cpu": "16"})
    nodes = {node.name: node for node in driver.inventory()}
    gpu = nodes["gpu-a"]
    assert isinstance(gpu, KubeNodeInfo)
    assert len(gpu.gpus) == 8
    assert gpu.gpus[0].gpu_model == "A100-40GB"
    assert gpu.gpus[0].memory_mib == 40960
    assert gpu.gpus[0].mig_enabled
    assert gpu.allocatable == {"nvidia.com/gpu": 6, "nvidia.com/mig-3g.20gb": 4}
    assert nodes["cpu-a"].gpus == ()


@pytest.mark.parametrize(
    "count, allocatable",
    [
        ("200000", {"nvidia.com/gpu": "8"}),
        ("8", {"nvidia.com/gpu": "100000"}),
        ("8", {"nvidia.com/gpu": "8", "nvidia.com/mig-1g.5gb": "9999"}),
    ],
    ids=["count-label", "allocatable-gpus", "allocatable-slices"],
)
def test_a_node_with_implausible_gpu_numbers_is_left_out_with_the_reason(
    cluster, driver, count, allocatable
):
    """`nvidia.com/gpu.count` and allocatable amounts are anyone's who may label or update
    nodes, and inventory builds a GPU per unit: a 63-digit label would exhaust the worker."""
    labels = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB", "nvidia.com/gpu.count": count}
    cluster.add_node("gpu-a", labels, {"cpu": "96", **allocatable})
    (node,) = driver.inventory()
    assert (node.gpus, node.allocatable) == ((), {})
    assert node.problem.startswith("Node gpu-a ")
    assert node.problem.endswith("one node is believed to hold; its GPUs are left out.")


# --- stop and start after the profile was edited -----------------------------------------


def gpu_pods(cluster, namespace="ws-42") -> list[str]:
    return [
        p["metadata"]["name"]
        for p in cluster.pods(namespace)
        if "nvidia.com/gpu" in p["spec"]["containers"][0]["resources"].get("limits", {})
    ]


def test_stop_after_the_profiles_storage_was_raised_releases_the_gpus(cluster, driver):
    """The spec is built from the *current* profile; a set's claim templates cannot change."""
    driver.provision(spec_of(GroupSpec(0, "A100-40GB", 1, cpu=4, ram_gb=16, storage_gb=50)))
    cluster.set_pods("ready", namespace="ws-42")
    edited = spec_of(GroupSpec(0, "A100-40GB", 1, cpu=4, ram_gb=16, storage_gb=100))
    steps: list[str] = []
    driver.stop(edited, steps.append)
    assert gpu_pods(cluster) == []
    assert steps == ["stateful set ws-42-g0 scaled to 0", "all pods stopped; volumes kept"]
    assert ("PATCH", "/apis/apps/v1/namespaces/ws-42/statefulsets/ws-42-g0/scale") in (
        cluster.requests
    )


def test_stop_after_a_group_was_removed_from_the_profile_scales_its_set_to_zero(cluster, driver):
    driver.provision(
        spec_of(
            GroupSpec(0, cpu=2, ram_gb=8, storage_gb=10),
            GroupSpec(1, "A100-40GB", 2, cpu=8, ram_gb=32, storage_gb=10),
        )
    )
    cluster.set_pods("ready", namespace="ws-42")
    edited = spec_of(GroupSpec(0, cpu=2, ram_gb=8, storage_gb=10))
    driver.stop(edited)
    assert cluster.pods("ws-42") == []
    assert cluster.objects[("statefulsets", "ws-42", "ws-42-g1")]["spec"]["replicas"] == 0
    driver.stop(edited)  # a retry changes nothing


def test_start_after_the_profile_was_edited_keeps_each_volume_and_applies_the_new_size_of_pods(
    cluster, driver
):
    driver.provision(spec_of(GroupSpec(0, "A100-40GB", 1, cpu=4, ram_gb=16, storage_gb=50)))
    driver.stop(spec_of(GroupSpec(0, "A100-40GB", 1, cpu=4, ram_gb=16, storage_gb=50)))
    edited = spec_of(GroupSpec(0, "A100-40GB", 1, cpu=8, ram_gb=16, storage_gb=100))
    driver.start(edited)
    sts = cluster.objects[("statefulsets", "ws-42", "ws-42-g0")]
    assert sts["spec"]["replicas"] == 1
    (template,) = sts["spec"]["volumeClaimTemplates"]
    assert template["spec"]["resources"]["requests"]["storage"] == "50Gi"
    (pod,) = cluster.pods("ws-42")
    assert pod["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "8"


def test_start_after_the_profile_gained_a_group_says_so(cluster, driver):
    driver.provision(spec_of(GroupSpec(0, cpu=2, ram_gb=8)))
    driver.stop(spec_of(GroupSpec(0, cpu=2, ram_gb=8)))
    edited = spec_of(GroupSpec(0, cpu=2, ram_gb=8), GroupSpec(1, "A100-40GB", 1))
    with pytest.raises(
        PermanentError, match="group 1 was added to the profile after the workspace was made"
    ):
        driver.start(edited)
    assert cluster.objects[("statefulsets", "ws-42", "ws-42-g0")]["spec"]["replicas"] == 0


@pytest.mark.django_db
@pytest.mark.parametrize("edit", ["group removed", "storage raised"])
def test_the_stop_task_releases_the_gpus_of_a_workspace_whose_profile_was_edited(
    cluster, org_admin, profile_factory, edit
):
    """The Kubernetes twin of test_aws_driver's
    test_stopping_a_workspace_whose_profile_lost_a_group_stops_all_its_nodes."""
    infrastructure = kube_infrastructure(cluster)
    infrastructure.save()
    profile = profile_factory(infrastructure, "Two", groups=[("", 0), ("A100-40GB", 1)])
    profile.resource_groups.update(cpu=2, ram_gb=8, storage_gb=10)
    workspace = Workspace.objects.create(
        owner=org_admin,
        profile=profile,
        infrastructure=infrastructure,
        state=State.READY,
        name="two",
    )
    KubernetesDriver(infrastructure).provision(workspace.spec())
    name = workspace.resource_name
    cluster.set_pods("ready", namespace=name)
    assert gpu_pods(cluster, name) == [f"{name}-g1-0"]
    if edit == "group removed":
        profile.resource_groups.filter(position=1).delete()
    else:
        profile.resource_groups.update(storage_gb=20)
    profile.version += 1
    profile.save()
    Workspace.objects.filter(pk=workspace.pk).update(state=State.STOPPING)

    outcome = tasks.stop_workspace(workspace.pk)

    workspace.refresh_from_db()
    assert (outcome, workspace.state, gpu_pods(cluster, name)) == ("stopped", State.STOPPED, [])


# --- the stand-in rejects what an API server rejects -------------------------------------


def test_the_stand_in_refuses_other_patch_types_and_apply_without_a_field_manager(driver):
    body = m.namespace_manifest(SPECS["cpu-only"], m.ManifestOptions())
    path = object_path("Namespace", "ws-42")
    with pytest.raises(PermanentError) as error:
        driver.kube.request(
            "PATCH", path, body=body, what="ns", content_type="application/merge-patch+json"
        )
    assert "HTTP 415" in error.value.detail
    with pytest.raises(PermanentError) as error:
        driver.kube.request(
            "PATCH", path, body=body, what="ns", content_type="application/apply-patch+yaml"
        )
    assert "fieldManager: Required value" in error.value.detail


def test_the_stand_in_needs_the_namespace_first(driver):
    claim = m.claim_manifests(SPECS["cpu-only"], SPECS["cpu-only"].groups[0], m.ManifestOptions())
    with pytest.raises(TransientError, match="did not find") as error:
        driver.kube.apply(claim[0], field_manager="t")
    assert 'namespaces "ws-42" not found' in error.value.detail


def test_a_workspace_namespace_is_fenced_off_from_the_portal_and_other_workspaces():
    (policy,) = by_kind(m.render(SPECS["whole-gpu"]), "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"] == {} and spec["policyTypes"] == ["Ingress", "Egress"]
    # In: its own pods, and only namespaces an administrator marked as the way in.
    sources = spec["ingress"][0]["from"]
    assert sources[0] == {"podSelector": {}}
    assert sources[1]["namespaceSelector"]["matchLabels"] == {m.INGRESS_NAMESPACE_LABEL: "allowed"}
    # Out: never a private or link-local address (pods, services, the portal, metadata),
    # and by default only port 443 of the rest, as a local workspace through its proxy.
    (outside,) = [rule for rule in spec["egress"] if "ipBlock" in rule["to"][0]]
    blocked = outside["to"][0]["ipBlock"]["except"]
    for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"):
        assert cidr in blocked
    for cidr in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"):  # documentation
        assert cidr in blocked
    # Exactly what the local proxy refuses (pools.relay), from its list.
    assert blocked == [str(network) for network in relay.NOT_PUBLIC_IPV4]
    for address in ("8.8.8.8", "1.1.1.1", "140.82.112.3"):
        assert not any(ipaddress.ip_address(address) in ipaddress.ip_network(c) for c in blocked)
    assert outside["ports"] == [{"protocol": "TCP", "port": 443}]


def test_in_shared_mode_each_workspace_is_fenced_off_by_its_label():
    """The namespace holds other workspaces (it had no fence at all: a workspace reached
    the portal, the database and the metadata service). The fence selects the workspace's
    own pods, its services stack's included (they carry its label), and the rest of the
    rules are namespace mode's."""
    (policy,) = by_kind(m.render(SPECS["whole-gpu"], SHARED), "NetworkPolicy")
    assert policy["metadata"]["namespace"] == "workspaces"
    own = {"matchLabels": {m.WORKSPACE_LABEL: "ws-42"}}
    spec = policy["spec"]
    assert spec["podSelector"] == own
    assert spec["ingress"][0]["from"][0] == {"podSelector": own}
    assert spec["egress"][0] == {"to": [{"podSelector": own}]}
    (alone,) = by_kind(m.render(SPECS["whole-gpu"]), "NetworkPolicy")
    assert spec["ingress"][0]["from"][1:] == alone["spec"]["ingress"][0]["from"][1:]
    assert spec["egress"][1:] == alone["spec"]["egress"][1:]
    kinds = [o["kind"] for o in m.render(SPECS["whole-gpu"], SHARED)]
    assert kinds.index("NetworkPolicy") < kinds.index("StatefulSet")  # fenced from the start


@pytest.mark.parametrize(
    ("egress", "outside_ports"),
    [("https", [{"protocol": "TCP", "port": 443}]), ("public", None), ("off", "no rule")],
)
def test_what_a_workspace_reaches_outside_is_the_administrators_choice(
    settings, egress, outside_ports
):
    settings.KUBERNETES_WORKSPACE_EGRESS = egress
    options = options_from_settings()
    (policy,) = by_kind(m.render(SPECS["whole-gpu"], options), "NetworkPolicy")
    kubernetes_validate.validate(policy, "1.33.0", strict=True)
    rules = policy["spec"]["egress"]
    outside = [rule for rule in rules if "ipBlock" in rule["to"][0]]
    if outside_ports == "no rule":
        assert outside == []
    else:
        assert outside[0].get("ports") == outside_ports
    # Its own namespace and the cluster's DNS stay reachable whatever the choice.
    assert rules[0] == {"to": [{"podSelector": {}}]}
    assert {p["port"] for p in rules[1]["ports"]} == {53}


def test_an_unknown_egress_choice_is_refused():
    with pytest.raises(ValueError, match="unknown egress: 'all'"):
        m.ManifestOptions(egress="all")
