"""The Kubernetes driver places a new workspace with the fleet placement engine and pins
each GPU group to the chosen node (tests against the API stand-in)."""

import copy
from datetime import UTC, datetime, timedelta

import kubernetes_validate
import pytest

from pools import fleet
from pools.drivers import k8s_manifests as m
from pools.drivers.base import GroupSpec, PermanentError, TransientError, WorkspaceSpec
from pools.drivers.kubernetes import KubeNodeInfo, KubernetesDriver
from pools.partitions import set_draining
from profiles.choices import InfrastructureKind
from profiles.models import Infrastructure, PartitioningStrategy
from tests.pools.k8s_stand_in import StandInApiServer

pytestmark = pytest.mark.django_db

A100 = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB", "nvidia.com/gpu.count": "8"}


def spec_of(*groups: GroupSpec, name="ws-42") -> WorkspaceSpec:
    return WorkspaceSpec(name=name, owner="mia", profile="medium", profile_version=1, groups=groups)


ONE_GPU = spec_of(GroupSpec(0, "A100-40GB", 1, cpu=4, ram_gb=16))


@pytest.fixture(params=["1.33"])
def cluster(request):
    server = StandInApiServer(version=request.param).start()
    yield server
    server.stop()


@pytest.fixture
def infrastructure(cluster):
    return Infrastructure.objects.create(
        name="Lab cluster",
        kind=InfrastructureKind.KUBERNETES,
        kubeconfig=cluster.kubeconfig(),
        kubernetes_version=cluster.version,
        gpu_model="A100-40GB",
        gpus_per_node=8,
    )


@pytest.fixture
def driver(infrastructure):
    return KubernetesDriver(infrastructure)


def requirements(cluster, name="ws-42-g0", namespace="ws-42") -> list[dict]:
    sts = cluster.objects[("statefulsets", namespace, name)]
    affinity = sts["spec"]["template"]["spec"].get("affinity")
    if not affinity:
        return []
    (term,) = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    return term["matchFields"]


def pinned(cluster, name="ws-42-g0", namespace="ws-42") -> list[str]:
    return [
        e["values"][0]
        for e in requirements(cluster, name, namespace)
        if e["key"] == "metadata.name" and e["operator"] == "In"
    ]


def gpus(count: int) -> dict:
    return {"cpu": "96", "nvidia.com/gpu": str(count)}


def test_a_one_gpu_workspace_fills_the_partly_used_node(cluster, driver):
    cluster.add_node("gpu-node-1", A100, gpus(8))
    cluster.add_node("gpu-node-2", A100, gpus(8))
    cluster.add_node("cpu-node", {"kubernetes.io/os": "linux"}, {"cpu": "16"})
    cluster.add_pod("other", "train-0", "gpu-node-2", {"nvidia.com/gpu": "4"})
    cluster.add_pod("other", "old-0", "gpu-node-1", {"nvidia.com/gpu": "8"}, phase="Succeeded")
    steps: list[str] = []
    driver.provision(ONE_GPU, steps.append)
    assert pinned(cluster) == ["gpu-node-2"]
    assert "group 0 placed on node gpu-node-2" in steps
    pod = cluster.pods("ws-42")[0]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}


def test_a_pinned_pod_not_bound_yet_counts_as_using_its_node(cluster, driver):
    cluster.add_node("gpu-node-1", A100, gpus(1))
    cluster.add_node("gpu-node-2", A100, gpus(1))
    driver.provision(ONE_GPU)
    driver.provision(spec_of(*ONE_GPU.groups, name="ws-43"))
    first, second = pinned(cluster), pinned(cluster, "ws-43-g0", "ws-43")
    assert {first[0], second[0]} == {"gpu-node-1", "gpu-node-2"}
    with pytest.raises(TransientError, match="no node has room"):
        driver.provision(spec_of(*ONE_GPU.groups, name="ws-44"))


def test_a_mig_slice_lands_on_a_node_with_that_profile_free(cluster, driver):
    cluster.add_node("gpu-node-1", A100, {"nvidia.com/mig-1g.5gb": "7"})
    cluster.add_node("gpu-node-2", A100, {"nvidia.com/mig-3g.20gb": "2", "nvidia.com/gpu": "1"})
    cluster.add_node("gpu-node-3", A100, {"nvidia.com/mig-3g.20gb": "2"})
    cluster.add_pod("other", "a", "gpu-node-3", {"nvidia.com/mig-3g.20gb": "2"})
    cluster.add_node("gpu-node-4", A100, {"nvidia.com/mig-1g.5gb.me": "1"})
    steps: list[str] = []
    spec = spec_of(
        GroupSpec(0, "A100-40GB", 1, "3g.20gb", cpu=4, ram_gb=16),
        GroupSpec(1, "A100-40GB", 1, "1g.5gb+me", cpu=2, ram_gb=8),
        GroupSpec(2, cpu=2, ram_gb=8),  # CPU only: not placed, not pinned
    )
    driver.provision(spec, steps.append)
    assert pinned(cluster) == ["gpu-node-2"]
    assert pinned(cluster, "ws-42-g1") == ["gpu-node-4"]
    assert requirements(cluster, "ws-42-g2") == []
    assert "group 1 placed on node gpu-node-4" in steps


def test_a_draining_node_is_never_chosen(cluster, driver, infrastructure):
    cluster.add_node("gpu-node-1", A100, gpus(8))
    cluster.add_node("gpu-node-2", A100, gpus(8))
    cluster.add_pod("other", "train-0", "gpu-node-1", {"nvidia.com/gpu": "7"})
    strategy = PartitioningStrategy.objects.create(
        infrastructure=infrastructure, gpu_model="A100-40GB"
    )
    set_draining(strategy, "gpu-node-1", True)
    driver.provision(ONE_GPU)
    assert requirements(cluster) == [  # the pin alone: it is not the drained node
        {"key": "metadata.name", "operator": "In", "values": ["gpu-node-2"]},
    ]


def take_out_of_service(cluster, name: str, how: str) -> None:
    node = cluster.objects[("nodes", "", name)]
    if how == "not-ready":  # the node controller's mark of a kubelet that went silent
        node["status"]["conditions"] = [
            {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}
        ]
    else:
        node["spec"] = {"unschedulable": True}  # kubectl cordon


@pytest.mark.parametrize("how", ["not-ready", "cordoned"])
def test_a_node_that_takes_no_pods_is_never_chosen(cluster, driver, how):
    """Its allocatable still reads 8 free GPUs, but a pod pinned there would never run."""
    cluster.add_node("gpu-node-1", A100, gpus(8))
    cluster.add_node("gpu-node-2", A100, gpus(8))
    cluster.add_pod("other", "train-0", "gpu-node-2", {"nvidia.com/gpu": "4"})
    take_out_of_service(cluster, "gpu-node-2", how)
    driver.provision(ONE_GPU)
    assert pinned(cluster) == ["gpu-node-1"]


def test_gpu_nodes_that_all_take_no_pods_are_waited_for(cluster, driver):
    cluster.add_node("gpu-node-1", A100, gpus(8))
    cluster.add_node("gpu-node-2", A100, gpus(8))
    take_out_of_service(cluster, "gpu-node-1", "not-ready")
    take_out_of_service(cluster, "gpu-node-2", "cordoned")
    with pytest.raises(TransientError) as waiting:
        driver.provision(ONE_GPU)
    assert str(waiting.value) == (
        "no node has room for group 0 (1× A100-40GB GPU) now (taking no new pods: "
        "gpu-node-1 not Ready (NodeStatusUnknown), gpu-node-2 cordoned)."
    )
    assert not cluster.names("statefulsets")


def test_no_room_now_is_transient(cluster, driver, infrastructure):
    cluster.add_node("gpu-node-1", A100, gpus(2))
    cluster.add_node("gpu-node-2", A100, gpus(2))
    cluster.add_pod("other", "train-0", "gpu-node-1", {"nvidia.com/gpu": "2"})
    strategy = PartitioningStrategy.objects.create(
        infrastructure=infrastructure, gpu_model="A100-40GB"
    )
    set_draining(strategy, "gpu-node-2", True)  # comes back after repartitioning
    with pytest.raises(TransientError, match="no node has room for group 0"):
        driver.provision(ONE_GPU)
    assert not cluster.names("statefulsets")  # nothing applied


@pytest.mark.parametrize(
    "group",
    [
        GroupSpec(0, "A100-40GB", 4),  # more GPUs than any node has
        GroupSpec(0, "H100-80GB", 1),  # a model the cluster does not have
        GroupSpec(0, "A100-40GB", 1, "7g.40gb"),  # a profile no node exposes
    ],
    ids=["too-many", "other-model", "other-profile"],
)
def test_a_request_no_idle_node_could_hold_is_permanent(cluster, driver, group):
    cluster.add_node("gpu-node-1", A100, gpus(2))
    cluster.add_node("gpu-node-2", A100, {"nvidia.com/mig-3g.20gb": "2"})
    with pytest.raises(PermanentError, match="even when idle"):
        driver.provision(spec_of(group))


def test_a_second_provision_keeps_the_pin_and_does_not_place_again(cluster, driver):
    cluster.add_node("gpu-node-1", A100, gpus(8))
    cluster.add_node("gpu-node-2", A100, gpus(8))
    cluster.add_pod("other", "train-0", "gpu-node-1", {"nvidia.com/gpu": "4"})
    driver.provision(ONE_GPU)
    assert pinned(cluster) == ["gpu-node-1"]
    uid = cluster.objects[("statefulsets", "ws-42", "ws-42-g0")]["metadata"]["uid"]
    # Now the node is full: a new placement would fail, a re-apply must not move it.
    cluster.add_pod("other", "train-1", "gpu-node-1", {"nvidia.com/gpu": "3"})
    cluster.add_pod("other", "train-2", "gpu-node-2", {"nvidia.com/gpu": "8"})
    steps: list[str] = []
    driver.provision(ONE_GPU, steps.append)
    assert pinned(cluster) == ["gpu-node-1"]
    assert "group 0 stays pinned to node gpu-node-1" in steps
    assert not [s for s in steps if "placed on node" in s]
    assert cluster.objects[("statefulsets", "ws-42", "ws-42-g0")]["metadata"]["uid"] == uid
    # Stop and start keep it too (its node is still there, with room).
    cluster.set_pods("ready", node="gpu-node-1", namespace="ws-42")
    driver.stop(ONE_GPU)
    assert pinned(cluster) == ["gpu-node-1"]
    driver.start(ONE_GPU)
    assert pinned(cluster) == ["gpu-node-1"]


def test_without_gpu_nodes_the_scheduler_places_the_workspace(cluster, driver):
    cluster.add_node("cpu-node", {"kubernetes.io/os": "linux"}, {"cpu": "16"})
    steps: list[str] = []
    driver.provision(ONE_GPU, steps.append)
    assert requirements(cluster) == []
    assert "the cluster reports no GPU nodes; the scheduler places the workspace" in steps


def test_a_multi_node_group_is_not_pinned(cluster, driver):
    cluster.add_node("gpu-node-1", A100, gpus(8))
    steps: list[str] = []
    driver.provision(spec_of(GroupSpec(0, "A100-40GB", 8, node_count=2)), steps.append)
    assert requirements(cluster) == []
    assert "group 0 spans 2 nodes; not pinned, the scheduler places its pods" in steps


def test_a_node_with_another_board_label_is_not_chosen(cluster, driver):
    # The nodeSelector names the SXM4 board; a pin to the PCIe node would never schedule.
    pcie = {**A100, "nvidia.com/gpu.product": "NVIDIA-A100-PCIE-40GB"}
    cluster.add_node("gpu-pcie", pcie, gpus(8))
    cluster.add_pod("other", "train-0", "gpu-pcie", {"nvidia.com/gpu": "4"})
    cluster.add_node("gpu-sxm", A100, gpus(8))
    driver.provision(ONE_GPU)
    assert pinned(cluster) == ["gpu-sxm"]


@pytest.mark.parametrize("version", ["1.29", "1.33"])
def test_pinned_manifests_are_valid_for_the_clusters_version(version):
    spec = spec_of(
        GroupSpec(0, "A100-40GB", 2, cpu=16, ram_gb=64),
        GroupSpec(1, "A100-40GB", 1, "1g.5gb+me", cpu=2, ram_gb=8),
        GroupSpec(2, cpu=2, ram_gb=8),
    )
    for options in (
        m.ManifestOptions(pin_nodes={0: "gpu-node-1", 1: "gpu-node-2"}),
        m.ManifestOptions(pin_nodes={0: "gpu-node-1"}, avoid_nodes=("gpu-node-3",)),
    ):
        for obj in m.render(spec, options):
            kubernetes_validate.validate(obj, f"{version}.0", strict=True)


@pytest.mark.parametrize("cluster", ["1.29", "1.33"], indirect=True)
def test_the_stand_in_accepts_the_pinned_workspace(cluster, driver, infrastructure):
    cluster.add_node("gpu-node-1", A100, gpus(8))
    cluster.add_node("gpu-node-2", A100, gpus(8))
    strategy = PartitioningStrategy.objects.create(
        infrastructure=infrastructure, gpu_model="A100-40GB"
    )
    set_draining(strategy, "gpu-node-2", True)
    driver.provision(ONE_GPU)  # the stand-in validates every object for its version
    assert pinned(cluster) == ["gpu-node-1"]
    assert m.pinned_node(cluster.objects[("statefulsets", "ws-42", "ws-42-g0")]) == "gpu-node-1"


def test_a_pin_names_the_node_object_not_its_hostname_label(cluster, driver):
    """The kubelet's `kubernetes.io/hostname` label is the host's name, which differs from
    the Node's name where names are FQDNs or --hostname-override is used."""
    cluster.add_node("gpu-a.cluster.internal", {**A100, "kubernetes.io/hostname": "gpu-a"}, gpus(8))
    driver.provision(ONE_GPU)
    assert requirements(cluster) == [
        {"key": "metadata.name", "operator": "In", "values": ["gpu-a.cluster.internal"]}
    ]
    sts = cluster.objects[("statefulsets", "ws-42", "ws-42-g0")]
    (term,) = sts["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert "matchExpressions" not in term
    assert m.pinned_node(sts) == "gpu-a.cluster.internal"


def test_each_avoided_node_is_its_own_field_requirement():
    """A node field requirement takes exactly one value (API validation). A pinned group
    has its pin alone: one kept on a node drained since must still fit there."""

    def matched(options) -> list[dict]:
        (sts,) = [o for o in m.render(ONE_GPU, options) if o["kind"] == "StatefulSet"]
        (term,) = sts["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"]
        return term["matchFields"]

    assert matched(m.ManifestOptions(avoid_nodes=("gpu-3", "gpu-2"))) == [
        {"key": "metadata.name", "operator": "NotIn", "values": ["gpu-2"]},
        {"key": "metadata.name", "operator": "NotIn", "values": ["gpu-3"]},
    ]
    pinned = m.ManifestOptions(pin_nodes={0: "gpu-2"}, avoid_nodes=("gpu-3", "gpu-2"))
    assert matched(pinned) == [{"key": "metadata.name", "operator": "In", "values": ["gpu-2"]}]


def test_start_places_a_group_again_when_its_node_is_gone(cluster, driver):
    """An autoscaler or a node upgrade replaced the stopped workspace's node: a pin to it
    would leave the pods unschedulable for ever."""
    cluster.add_node("gpu-a", A100, gpus(8))
    driver.provision(ONE_GPU)
    driver.stop(ONE_GPU)
    del cluster.objects[("nodes", "", "gpu-a")]
    cluster.add_node("gpu-b", A100, gpus(8))
    steps: list[str] = []
    driver.start(ONE_GPU, steps.append)
    assert pinned(cluster) == ["gpu-b"]
    assert "group 0 is placed again: node gpu-a is gone or offers no GPUs" in steps
    assert "group 0 placed on node gpu-b" in steps


def test_start_places_a_group_again_when_its_node_is_drained_or_full(
    cluster, driver, infrastructure
):
    cluster.add_node("gpu-node-1", A100, gpus(2))
    driver.provision(ONE_GPU)
    driver.stop(ONE_GPU)
    cluster.add_node("gpu-node-2", A100, gpus(2))
    cluster.add_node("gpu-node-3", A100, gpus(2))
    cluster.add_pod("other", "train-0", "gpu-node-2", {"nvidia.com/gpu": "2"})
    cluster.add_pod("other", "train-1", "gpu-node-3", {"nvidia.com/gpu": "1"})
    strategy = PartitioningStrategy.objects.create(
        infrastructure=infrastructure, gpu_model="A100-40GB"
    )
    set_draining(strategy, "gpu-node-1", True)
    steps: list[str] = []
    driver.start(ONE_GPU, steps.append)
    assert pinned(cluster) == ["gpu-node-3"]
    assert "group 0 is placed again: node gpu-node-1 is drained for repartitioning" in steps
    driver.stop(ONE_GPU)
    set_draining(strategy, "gpu-node-1", False)
    cluster.add_pod("other", "train-2", "gpu-node-3", {"nvidia.com/gpu": "1"})
    steps.clear()
    driver.start(ONE_GPU, steps.append)
    assert pinned(cluster) == ["gpu-node-1"]
    assert "group 0 is placed again: node gpu-node-3 has no room for it now" in steps


def test_a_retried_start_keeps_the_pin_its_own_pending_pods_hold(cluster, driver):
    cluster.add_node("gpu-node-1", A100, gpus(1))
    cluster.add_node("gpu-node-2", A100, gpus(1))
    driver.provision(ONE_GPU)
    (node,) = pinned(cluster)
    driver.stop(ONE_GPU)
    driver.start(ONE_GPU)
    driver.start(ONE_GPU)  # its pod is pinned, not bound yet: it holds the node's one GPU
    assert pinned(cluster) == [node]


def test_the_fleet_believes_no_node_offers_more_than_64_gpus():
    node = KubeNodeInfo(
        "gpu-a", labels=A100, allocatable={"nvidia.com/gpu": 10**9, "nvidia.com/mig-1g.5gb": 10**9}
    )
    built = fleet.build_fleet([node], [])
    assert len([g for g in built if g.slots is None]) == 64
    assert sum(len(g.slots) for g in built if g.slots is not None) <= 7 * 64


# --- repair ---------------------------------------------------------------------------------


def minutes_ago(minutes: int) -> str:
    moment = datetime.now(UTC) - timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_repair_places_a_group_again_when_its_node_is_gone_and_remakes_its_pod(cluster, driver):
    """Provisioning again (the repair before) kept the pin to the gone node: the pod its
    set made again could never be scheduled."""
    cluster.add_node("gpu-a", A100, gpus(8))
    driver.provision(ONE_GPU)
    cluster.set_pods("ready", node="gpu-a", namespace="ws-42")
    del cluster.objects[("nodes", "", "gpu-a")]  # its pod still reads Ready
    cluster.add_node("gpu-b", A100, gpus(8))
    steps: list[str] = []

    driver.repair(ONE_GPU, steps.append)
    assert pinned(cluster) == ["gpu-b"]
    assert "group 0 is placed again: node gpu-a is gone or offers no GPUs" in steps
    assert "pod ws-42-g0-0 deleted (its node gpu-a is gone); its stateful set makes it again" in (
        steps
    )
    assert cluster.pods("ws-42") == []
    driver.repair(ONE_GPU)  # the stand-in's controller makes pods when its set is applied
    (pod,) = cluster.pods("ws-42")
    assert m.pod_pin(pod["spec"]) == "gpu-b"


def test_repair_never_moves_a_healthy_group(cluster, driver, infrastructure):
    cluster.add_node("gpu-a", A100, gpus(8))
    cluster.add_node("gpu-b", A100, gpus(8))
    driver.provision(ONE_GPU)
    (node,) = pinned(cluster)
    cluster.set_pods("ready", node=node, namespace="ws-42")
    strategy = PartitioningStrategy.objects.create(
        infrastructure=infrastructure, gpu_model="A100-40GB"
    )
    set_draining(strategy, node, True)  # new workspaces avoid it; this one stays
    steps: list[str] = []

    driver.repair(ONE_GPU, steps.append)
    assert pinned(cluster) == [node]
    assert [p["metadata"]["name"] for p in cluster.pods("ws-42")] == ["ws-42-g0-0"]
    assert not any("deleted" in step or "placed again" in step for step in steps)


@pytest.mark.parametrize(("running_for", "remade"), [(10, True), (1, False)])
def test_repair_remakes_a_pod_failing_its_gpu_check(cluster, driver, running_for, remade):
    """Its container runs, so Kubernetes restarts nothing; the set replaces a pod only
    when it is deleted. One running for less than its check's window (3 failures a minute
    apart) may be a pod just made again, whose first checks have not passed yet."""
    cluster.add_node("gpu-a", A100, gpus(8))
    driver.provision(ONE_GPU)
    cluster.set_pods("running", node="gpu-a", namespace="ws-42", since=minutes_ago(running_for))
    assert "its GPU check (nvidia-smi -L) has not passed" in driver.check(ONE_GPU)[0]
    steps: list[str] = []

    driver.repair(ONE_GPU, steps.append)
    expected = (
        "pod ws-42-g0-0 deleted (running, but failing its readiness check); "
        "its stateful set makes it again"
    )
    assert (expected in steps) == remade
    assert (cluster.pods("ws-42") == []) == remade
    assert pinned(cluster) == ["gpu-a"]  # its node is there and has room: it stays


def test_repair_remakes_a_pending_pod_made_for_the_node_its_set_no_longer_pins(cluster, driver):
    """A set's controller does not replace a pod that never became ready with its new
    template by itself (kubernetes/kubernetes#67250)."""
    cluster.add_node("gpu-a", A100, gpus(8))
    driver.provision(ONE_GPU)
    cluster.set_pods("unschedulable", namespace="ws-42")
    del cluster.objects[("nodes", "", "gpu-a")]
    cluster.add_node("gpu-b", A100, gpus(8))
    steps: list[str] = []

    driver.repair(ONE_GPU, steps.append)
    assert pinned(cluster) == ["gpu-b"]
    assert (
        "pod ws-42-g0-0 deleted (made for node gpu-a, its set now pins gpu-b); "
        "its stateful set makes it again"
    ) in steps


TWO_GROUPS = spec_of(
    GroupSpec(0, "A100-40GB", 8, cpu=4, ram_gb=16), GroupSpec(1, "A100-40GB", 8, cpu=4, ram_gb=16)
)


@pytest.fixture
def strategy(infrastructure):
    return PartitioningStrategy.objects.create(infrastructure=infrastructure, gpu_model="A100-40GB")


def template(cluster, name="ws-42-g0"):
    return cluster.objects[("statefulsets", "ws-42", name)]["spec"]["template"]


def fields(cluster, name="ws-42-g0") -> list[dict]:
    affinity = template(cluster, name)["spec"].get("affinity") or {}
    terms = (
        affinity.get("nodeAffinity", {})
        .get("requiredDuringSchedulingIgnoredDuringExecution", {})
        .get("nodeSelectorTerms", [])
    )
    return [f for term in terms for f in term.get("matchFields", [])]


def test_repair_keeps_a_healthy_group_schedulable_on_its_draining_node(cluster, driver, strategy):
    """A healthy group whose node is being drained for repartitioning keeps its pin, and
    its template never requires `metadata.name In [node]` AND `NotIn [node]` (no node
    would do: its controller would replace the healthy pod by one never scheduled)."""
    cluster.add_node("gpu-a", A100, gpus(8))
    driver.provision(ONE_GPU)
    cluster.set_pods("ready", node="gpu-a", namespace="ws-42")
    set_draining(strategy, "gpu-a", True)  # new workspaces avoid it; this one stays

    driver.repair(ONE_GPU)  # e.g. its services stack's component was down

    required = fields(cluster)
    assert {"key": "metadata.name", "operator": "In", "values": ["gpu-a"]} in required
    assert {"key": "metadata.name", "operator": "NotIn", "values": ["gpu-a"]} not in required


def test_repair_leaves_the_pod_template_of_a_healthy_group_alone(cluster, driver, strategy):
    """Group 1's pod is gone and is brought back; group 0 is healthy. Another node was
    drained since group 0 was made: its set is not applied again, so its template does not
    change and its controller does not replace the healthy pod (RollingUpdate, the
    default), which would kill what the user runs there."""
    cluster.add_node("gpu-a", A100, gpus(8))
    cluster.add_node("gpu-b", A100, gpus(8))
    cluster.add_node("gpu-c", A100, gpus(8))
    driver.provision(TWO_GROUPS)
    cluster.set_pods("ready", namespace="ws-42")
    for pod in cluster.pods("ws-42"):  # each on the node its set pins
        pod["spec"]["nodeName"] = m.pod_pin(pod["spec"])
    healthy = m.pinned_node(cluster.objects[("statefulsets", "ws-42", "ws-42-g0")])
    before = copy.deepcopy(template(cluster, "ws-42-g0"))
    del cluster.objects[("pods", "ws-42", "ws-42-g1-0")]  # group 1 is unwell
    set_draining(strategy, "gpu-c", True)  # another node, for a MIG repartitioning

    driver.repair(TWO_GROUPS)

    assert m.pinned_node(cluster.objects[("statefulsets", "ws-42", "ws-42-g0")]) == healthy
    assert fields(cluster, "ws-42-g0") == [
        {"key": "metadata.name", "operator": "In", "values": [healthy]}
    ]  # no `NotIn [gpu-c]`
    assert template(cluster, "ws-42-g0") == before


def test_repair_leaves_a_pod_on_a_node_that_is_not_ready(cluster, driver):
    """When a node stops answering, the node controller turns its pods' Ready False; a
    repair does not delete such a pod (deleting cannot finish until the node answers, and
    the kubelet would kill the workload as soon as it is back)."""
    cluster.add_node("gpu-a", A100, gpus(8))
    driver.provision(ONE_GPU)
    cluster.set_pods("ready", node="gpu-a", namespace="ws-42")
    node = cluster.objects[("nodes", "", "gpu-a")]
    node["status"]["conditions"] = [{"type": "Ready", "status": "Unknown"}]
    (pod,) = cluster.pods("ws-42")
    # What the node lifecycle controller writes 40 s after the node went silent.
    for condition in pod["status"]["conditions"]:
        if condition["type"] == "Ready":
            five_minutes_ago = datetime.now(UTC) - timedelta(minutes=5)
            condition.update(
                status="False", lastTransitionTime=five_minutes_ago.strftime("%Y-%m-%dT%H:%M:%SZ")
            )
    pod["status"]["containerStatuses"][0]["ready"] = False
    assert "Node gpu-a of pod ws-42-g0-0 is not ready." in driver.check(ONE_GPU)
    steps: list[str] = []

    driver.repair(ONE_GPU, steps.append)

    assert [p["metadata"]["name"] for p in cluster.pods("ws-42")] == ["ws-42-g0-0"], steps
    assert not [step for step in steps if "deleted" in step]
