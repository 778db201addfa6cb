"""Applying a partitioning to a Kubernetes cluster (against the API stand-in), tracking the
MIG state labels, refusing busy nodes, and draining."""

from http import HTTPStatus

import kubernetes_validate
import pytest
import yaml
from django.urls import reverse
from django.utils.module_loading import import_string

from pools import mig_apply, partitions
from pools.drivers.base import PermanentError
from pools.drivers.kubernetes import KubernetesDriver
from pools.lifecycle import State
from pools.models import NodePartition
from profiles.choices import InfrastructureKind, MigConfigState
from profiles.mig import migparted
from profiles.models import Infrastructure, PartitioningStrategy

pytestmark = pytest.mark.django_db
VERSIONS = ["1.29", "1.30", "1.31", "1.32", "1.33"]


@pytest.fixture
def enqueued(monkeypatch):
    calls = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kw: calls.append(args))
    return calls


# --- what is applied ---------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_the_config_map_and_node_patch_are_valid_kubernetes(
    version, k8s_infrastructure, partitioning_factory
):
    strategy = partitioning_factory(
        k8s_infrastructure, mode="custom", custom_counts={"3g.20gb": 1, "2g.10gb": 1}
    )
    manifest = mig_apply.config_map_manifest(strategy)
    kubernetes_validate.validate(manifest, f"{version}.0", strict=True)
    kubernetes_validate.validate(
        mig_apply.node_label_patch("gpu-node-1", strategy.config_name()),
        f"{version}.0",
        strict=True,
    )
    kubernetes_validate.validate(
        manifest, f"{k8s_infrastructure.kubernetes_version}.0", strict=True
    )


def test_the_config_holds_the_named_layouts_and_each_custom_mix(
    k8s_infrastructure, partitioning_factory
):
    custom = partitioning_factory(
        k8s_infrastructure, mode="custom", custom_counts={"4g.20gb": 1, "3g.20gb": 1}
    )
    partitioning_factory(k8s_infrastructure, gpu_model="H100-80GB", layout_name="all-3g.40gb")
    manifest = mig_apply.config_map_manifest(custom)
    config = yaml.safe_load(manifest["data"]["config.yaml"])
    assert migparted.validate_mig_parted_config(config) == []
    assert config["mig-configs"][custom.config_name()] == [
        {
            "device-filter": ["0x20B010DE", "0x20B110DE", "0x20F110DE"],
            "devices": "all",
            "mig-enabled": True,
            "mig-devices": {"3g.20gb": 1, "4g.20gb": 1},
        }
    ]
    assert "all-3g.40gb" in config["mig-configs"] and "all-balanced" in config["mig-configs"]
    assert manifest["metadata"] == {"name": "custom-mig-parted-config", "namespace": "gpu-operator"}


def test_a_custom_mix_gets_a_new_config_name_when_it_changes(
    k8s_infrastructure, partitioning_factory
):
    strategy = partitioning_factory(k8s_infrastructure, mode="custom", custom_counts={"7g.40gb": 1})
    before = strategy.config_name()
    strategy.custom_counts = {"3g.20gb": 2}
    assert strategy.config_name() != before
    assert len(before) <= 63


# --- the apply action and task -----------------------------------------------------------


def test_apply_enqueues_the_task_on_commit_and_is_audited(
    admin_client,
    k8s_infrastructure,
    partitioning_factory,
    enqueued,
    django_capture_on_commit_callbacks,
):
    strategy = partitioning_factory(k8s_infrastructure)
    url = reverse("partitioning:apply", args=[strategy.pk])
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = admin_client.post(url)
    assert response.status_code == HTTPStatus.FOUND
    assert len(callbacks) == 1
    assert enqueued == [("pools.mig_apply.apply_partitioning", strategy.pk)]
    strategy.refresh_from_db()
    assert strategy.apply_requested_at is not None
    from portal.models import AuditEntry

    assert AuditEntry.objects.filter(object_id=str(strategy.pk), action="action").exists()


def test_apply_needs_post(admin_client, k8s_infrastructure, partitioning_factory):
    strategy = partitioning_factory(k8s_infrastructure)
    response = admin_client.get(reverse("partitioning:apply", args=[strategy.pk]))
    assert response.status_code == HTTPStatus.METHOD_NOT_ALLOWED


def test_apply_is_only_for_kubernetes(
    admin_client, aws_infrastructure, partitioning_factory, enqueued
):
    strategy = partitioning_factory(aws_infrastructure)
    response = admin_client.post(reverse("partitioning:apply", args=[strategy.pk]), follow=True)
    assert "works on existing Kubernetes clusters" in response.content.decode()
    assert enqueued == []


def test_the_task_writes_the_config_map_and_labels_the_models_nodes(
    k8s_infrastructure, partitioning_factory, mig_cluster
):
    strategy = partitioning_factory(k8s_infrastructure, layout_name="all-balanced")
    result = mig_apply.apply_partitioning(strategy.pk)
    assert result == "labelled 2 of 2 nodes nvidia.com/mig.config=all-balanced"
    stored = mig_cluster.objects[("configmaps", "gpu-operator", "custom-mig-parted-config")]
    config = yaml.safe_load(stored["data"]["config.yaml"])
    assert config["version"] == "v1" and "all-balanced" in config["mig-configs"]
    for node in ("gpu-node-1", "gpu-node-2"):
        labels = mig_cluster.node_labels(node)
        assert labels["nvidia.com/mig.config"] == "all-balanced"
        assert labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-40GB"  # others' labels stay
    assert "nvidia.com/mig.config" not in mig_cluster.node_labels("h100-node")
    states = dict(strategy.node_states.values_list("name", "state"))
    assert states == {"gpu-node-1": "pending", "gpu-node-2": "pending"}
    strategy.refresh_from_db()
    assert strategy.applied_config == "all-balanced" and strategy.apply_error == ""
    # Idempotent: a retried task changes nothing.
    assert mig_apply.apply_partitioning(strategy.pk) == result
    assert mig_cluster.node_labels("gpu-node-1")["nvidia.com/mig.config"] == "all-balanced"


def test_the_task_labels_only_the_listed_nodes(
    k8s_infrastructure, partitioning_factory, mig_cluster
):
    strategy = partitioning_factory(k8s_infrastructure, nodes="gpu-node-2\nmissing-node")
    mig_apply.apply_partitioning(strategy.pk)
    assert "nvidia.com/mig.config" not in mig_cluster.node_labels("gpu-node-1")
    assert mig_cluster.node_labels("gpu-node-2")["nvidia.com/mig.config"] == "all-balanced"
    missing = strategy.node_states.get(name="missing-node")
    assert missing.message == "not found in the cluster"
    assert ("nodes", "", "missing-node") not in mig_cluster.objects  # never created


def test_a_listed_node_without_a_gpu_product_label_is_not_labelled(
    k8s_infrastructure, partitioning_factory, mig_cluster
):
    mig_cluster.add_node("cpu-node", {"kubernetes.io/os": "linux"}, {"cpu": "16"})
    strategy = partitioning_factory(k8s_infrastructure, nodes="gpu-node-1\ncpu-node")
    assert mig_apply.apply_partitioning(strategy.pk).startswith("labelled 1 of 1")
    assert "nvidia.com/mig.config" not in mig_cluster.node_labels("cpu-node")
    refused = strategy.node_states.get(name="cpu-node")
    assert refused.state == MigConfigState.NOT_APPLIED
    assert refused.message == "no GPU product label (nvidia.com/gpu.product): not a GPU node?"


def test_the_state_labels_are_tracked_until_mig_manager_is_done(
    admin_client, k8s_infrastructure, partitioning_factory, mig_cluster
):
    strategy = partitioning_factory(k8s_infrastructure)
    mig_apply.apply_partitioning(strategy.pk)
    mig_cluster.set_mig_state("gpu-node-1", "rebooting")
    mig_cluster.set_mig_state("gpu-node-2", "success")
    assert mig_apply.refresh_state(strategy.pk) == "still waiting"
    states = dict(strategy.node_states.values_list("name", "state"))
    assert states == {"gpu-node-1": "rebooting", "gpu-node-2": "success"}
    page = admin_client.get(strategy.get_absolute_url()).content.decode()
    nodes = reverse("partitioning:nodes", args=[strategy.pk])
    assert nodes in page  # the page loads the engine's node panel
    page = admin_client.get(nodes).content.decode()
    assert "Rebooting" in page and "Success" in page and 'hx-trigger="every 10s"' in page
    mig_cluster.set_mig_state("gpu-node-1", "failed")
    assert mig_apply.refresh_state(strategy.pk) == "done"
    assert strategy.node_states.get(name="gpu-node-1").state == MigConfigState.FAILED
    nodes = admin_client.get(reverse("partitioning:nodes", args=[strategy.pk]))
    assert "Failed" in nodes.content.decode() and "every 10s" not in nodes.content.decode()


def test_a_label_changed_by_someone_else_is_not_reported_as_applied(
    k8s_infrastructure, partitioning_factory, mig_cluster
):
    strategy = partitioning_factory(k8s_infrastructure)
    mig_apply.apply_partitioning(strategy.pk)
    mig_cluster.objects[("nodes", "", "gpu-node-1")]["metadata"]["labels"][
        "nvidia.com/mig.config"
    ] = "all-disabled"
    mig_cluster.set_mig_state("gpu-node-1", "success")
    mig_apply.refresh_state(strategy.pk)
    row = strategy.node_states.get(name="gpu-node-1")
    assert row.state == MigConfigState.NOT_APPLIED
    assert row.message == "labelled all-disabled, not all-balanced"


def test_a_stale_success_label_is_not_reported_as_this_apply_succeeding(
    k8s_infrastructure, partitioning_factory, mig_cluster
):
    """The node has another config, which mig-manager applied (state success); until it
    acts on the new label, the GPUs keep the old layout."""
    mig_cluster.node_labels("gpu-node-1").update(
        {"nvidia.com/mig.config": "all-disabled", "nvidia.com/mig.config.state": "success"}
    )
    strategy = partitioning_factory(
        k8s_infrastructure, nodes="gpu-node-1", mode="custom", custom_counts={"3g.20gb": 2}
    )
    assert mig_apply.apply_partitioning(strategy.pk).startswith("labelled 1 of 1")
    labels = mig_cluster.node_labels("gpu-node-1")
    assert labels["nvidia.com/mig.config"] == strategy.config_name()
    assert labels["nvidia.com/mig.config.state"] == "pending"  # for mig-manager to overwrite
    mig_apply.refresh_state(strategy.pk)
    assert strategy.node_states.get(name="gpu-node-1").state == MigConfigState.PENDING
    mig_cluster.set_mig_state("gpu-node-1", "success")
    mig_apply.refresh_state(strategy.pk)
    assert strategy.node_states.get(name="gpu-node-1").state == MigConfigState.SUCCESS


def test_a_node_already_labelled_with_the_config_is_reported_as_mig_manager_left_it(
    k8s_infrastructure, partitioning_factory, mig_cluster
):
    """A config's name changes with its content, so a node labelled with it already has
    that layout (or mig-manager is on it): its labels stay, and its state is its own."""
    mig_cluster.node_labels("gpu-node-1").update(
        {"nvidia.com/mig.config": "all-balanced", "nvidia.com/mig.config.state": "success"}
    )
    strategy = partitioning_factory(k8s_infrastructure, nodes="gpu-node-1")
    assert mig_apply.apply_partitioning(strategy.pk).startswith("labelled 1 of 1")
    assert mig_cluster.node_labels("gpu-node-1")["nvidia.com/mig.config.state"] == "success"
    node = strategy.node_states.get(name="gpu-node-1")
    assert node.state == MigConfigState.SUCCESS
    assert node.message == "was already labelled all-balanced"


def test_a_node_refused_for_its_other_gpus_is_not_reported_as_partitioned(
    k8s_infrastructure, partitioning_factory, mig_cluster
):
    """all-balanced exists for H100s too: a refused H100 node labelled with it by someone
    else is still not this A100 partitioning's."""
    mig_cluster.node_labels("h100-node").update(
        {"nvidia.com/mig.config": "all-balanced", "nvidia.com/mig.config.state": "success"}
    )
    strategy = partitioning_factory(k8s_infrastructure, nodes="gpu-node-1\nh100-node")
    mig_apply.apply_partitioning(strategy.pk)
    mig_apply.refresh_state(strategy.pk)
    refused = strategy.node_states.get(name="h100-node")
    assert refused.state == MigConfigState.NOT_APPLIED
    assert refused.message == "has H100-80GB GPUs"


def test_refresh_is_enqueued_from_the_page(
    admin_client,
    k8s_infrastructure,
    partitioning_factory,
    enqueued,
    django_capture_on_commit_callbacks,
):
    strategy = partitioning_factory(k8s_infrastructure)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse("partitioning:refresh", args=[strategy.pk]))
    assert enqueued == [("pools.mig_apply.refresh_state", strategy.pk)]


def test_refused_credentials_are_recorded_not_raised(
    k8s_infrastructure, partitioning_factory, mig_cluster
):
    strategy = partitioning_factory(k8s_infrastructure)
    mig_cluster.token = "rotated"
    assert mig_apply.apply_partitioning(strategy.pk).startswith("failed:")
    strategy.refresh_from_db()
    assert "refused" in strategy.apply_error


# --- configs nodes are still labelled with ------------------------------------------------

CONFIG_MAP = ("configmaps", "gpu-operator", "custom-mig-parted-config")


def config_map_configs(mig_cluster) -> dict:
    return yaml.safe_load(mig_cluster.objects[CONFIG_MAP]["data"]["config.yaml"])["mig-configs"]


def applied_everywhere(mig_cluster, strategy) -> str:
    assert mig_apply.apply_partitioning(strategy.pk).startswith("labelled 2 of 2")
    for node in ("gpu-node-1", "gpu-node-2"):
        mig_cluster.set_mig_state(node, "success")
    mig_apply.refresh_state(strategy.pk)
    return strategy.config_name()


def test_the_config_map_keeps_the_config_a_refused_busy_node_is_labelled_with(
    k8s_infrastructure, partitioning_factory, mig_cluster, live_workspace
):
    """mig-manager reads a node's config again when its pod restarts or the node reboots;
    a busy node keeps its old label, so the ConfigMap keeps that config, entry as it was."""
    strategy = partitioning_factory(k8s_infrastructure, mode="custom", custom_counts={"3g.20gb": 2})
    old = applied_everywhere(mig_cluster, strategy)
    old_entries = config_map_configs(mig_cluster)[old]
    live_workspace(k8s_infrastructure, "gpu-node-1")  # placed after the apply
    strategy.custom_counts = {"1g.5gb": 7}
    strategy.save()
    assert mig_apply.apply_partitioning(strategy.pk).startswith("labelled 1 of 2")
    assert mig_cluster.node_labels("gpu-node-1")["nvidia.com/mig.config"] == old
    configs = config_map_configs(mig_cluster)
    assert configs[old] == old_entries
    assert configs[strategy.config_name()][0]["mig-devices"] == {"1g.5gb": 7}


def test_applying_another_models_partitioning_keeps_the_config_nodes_are_labelled_with(
    k8s_infrastructure, partitioning_factory, mig_cluster, live_workspace
):
    """The A100 mix was edited but not applied (a node is busy): the H100 apply writes the
    A100 strategy's new mix and still the old one both A100 nodes carry."""
    a100 = partitioning_factory(k8s_infrastructure, mode="custom", custom_counts={"3g.20gb": 2})
    old = applied_everywhere(mig_cluster, a100)
    live_workspace(k8s_infrastructure, "gpu-node-1")
    a100.custom_counts = {"1g.5gb": 7}
    a100.save()
    h100 = partitioning_factory(
        k8s_infrastructure, gpu_model="H100-80GB", layout_name="all-3g.40gb"
    )
    assert mig_apply.apply_partitioning(h100.pk).startswith("labelled 1 of 1")
    configs = config_map_configs(mig_cluster)
    assert old in configs and a100.config_name() in configs and "all-3g.40gb" in configs


def test_a_config_no_node_is_labelled_with_goes_at_the_next_apply(
    k8s_infrastructure, partitioning_factory, mig_cluster
):
    strategy = partitioning_factory(k8s_infrastructure, mode="custom", custom_counts={"3g.20gb": 2})
    old = applied_everywhere(mig_cluster, strategy)
    strategy.custom_counts = {"1g.5gb": 7}
    strategy.save()
    applied_everywhere(mig_cluster, strategy)  # relabels both nodes: old is still written
    assert old in config_map_configs(mig_cluster)
    applied_everywhere(mig_cluster, strategy)
    assert old not in config_map_configs(mig_cluster)


def test_only_valid_configs_of_the_config_map_as_it_is_are_kept():
    """Anyone who may edit the ConfigMap writes it: what is not a mig-parted config, or not
    valid, is never written back."""
    valid = [migparted.entry({"3g.20gb": 2}, ["A100-40GB"])]
    invalid = [migparted.entry({"3g.20gb": 3}, ["A100-40GB"])]
    text = yaml.safe_dump({"version": "v1", "mig-configs": {"ok": valid, "bad": invalid}})
    assert migparted.configs_of({"data": {"config.yaml": text}}) == {"ok": valid}
    for data in ({}, {"config.yaml": "{: no"}, {"config.yaml": "- a list"}, None):
        assert migparted.configs_of({"data": data}) == {}
    assert migparted.configs_of(None) == {}


# --- busy nodes and draining -------------------------------------------------------------


def test_the_task_refuses_a_node_hosting_a_live_workspace(
    k8s_infrastructure, partitioning_factory, mig_cluster, live_workspace
):
    live_workspace(k8s_infrastructure, "gpu-node-1")
    strategy = partitioning_factory(k8s_infrastructure)
    assert mig_apply.apply_partitioning(strategy.pk).startswith("labelled 1 of 2 nodes")
    assert "nvidia.com/mig.config" not in mig_cluster.node_labels("gpu-node-1")
    assert mig_cluster.node_labels("gpu-node-2")["nvidia.com/mig.config"] == "all-balanced"
    refused = strategy.node_states.get(name="gpu-node-1")
    assert refused.state == MigConfigState.REFUSED
    assert "hosts ws-on-gpu-node-1" in refused.message


def test_the_task_refuses_a_node_running_portal_pods_not_yet_recorded(
    k8s_infrastructure, partitioning_factory, mig_cluster
):
    mig_cluster.add_namespace("ws-7")
    mig_cluster._store(
        "pods",
        "ws-7",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "ws-7-g0-0",
                "labels": {"app.kubernetes.io/managed-by": "gpu-paas-portal"},
            },
            "spec": {"nodeName": "gpu-node-2", "containers": []},
        },
    )
    strategy = partitioning_factory(k8s_infrastructure)
    mig_apply.apply_partitioning(strategy.pk)
    assert strategy.node_states.get(name="gpu-node-2").state == MigConfigState.REFUSED
    assert "pod ws-7-g0-0" in strategy.node_states.get(name="gpu-node-2").message


def portal_pod(node_fields: dict, phase: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "ws-7-g0-0",
            "labels": {"app.kubernetes.io/managed-by": "gpu-paas-portal"},
        },
        "spec": {"containers": [], **node_fields},
        "status": {"phase": phase},
    }


def test_a_node_a_pending_portal_pod_is_pinned_to_is_refused(
    k8s_infrastructure, partitioning_factory, mig_cluster
):
    """The driver pins a group's pods to the node it chose; until the scheduler binds one
    (its slice's previous holder still terminating, say) `spec.nodeName` is empty, and the
    placement fleet counts the pod on its pinned node: so does the apply."""
    mig_cluster.add_namespace("ws-7")
    pin = {"key": "metadata.name", "operator": "In", "values": ["gpu-node-2"]}
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [pin]}]
            }
        }
    }
    mig_cluster._store("pods", "ws-7", portal_pod({"affinity": affinity}, "Pending"))
    strategy = partitioning_factory(k8s_infrastructure, layout_name="all-1g.5gb")
    mig_apply.apply_partitioning(strategy.pk)
    assert "nvidia.com/mig.config" not in mig_cluster.node_labels("gpu-node-2")
    refused = strategy.node_states.get(name="gpu-node-2")
    assert refused.state == MigConfigState.REFUSED
    assert "pod ws-7-g0-0" in refused.message


def test_a_finished_portal_pod_does_not_keep_its_node_from_being_repartitioned(
    k8s_infrastructure, partitioning_factory, mig_cluster
):
    mig_cluster.add_namespace("ws-7")
    mig_cluster._store("pods", "ws-7", portal_pod({"nodeName": "gpu-node-2"}, "Succeeded"))
    strategy = partitioning_factory(k8s_infrastructure)
    assert mig_apply.apply_partitioning(strategy.pk).startswith("labelled 2 of 2")
    assert mig_cluster.node_labels("gpu-node-2")["nvidia.com/mig.config"] == "all-balanced"


def test_when_every_node_is_busy_nothing_is_applied_and_the_page_says_why(
    admin_client, k8s_infrastructure, partitioning_factory, mig_cluster, live_workspace
):
    """`applied_config` names a config handed to nodes: here none was, so the page shows
    the error, not "handed to nodes", and the ConfigMap is left as it was."""
    live_workspace(k8s_infrastructure, "gpu-node-1")
    live_workspace(k8s_infrastructure, "gpu-node-2")
    strategy = partitioning_factory(k8s_infrastructure, layout_name="all-balanced")
    assert mig_apply.apply_partitioning(strategy.pk) == (
        "failed: No node could be repartitioned: gpu-node-1 hosts ws-on-gpu-node-1; "
        "gpu-node-2 hosts ws-on-gpu-node-2. Drain the node (no new workspaces go there) and "
        "apply again once its workspaces are stopped or deleted."
    )
    strategy.refresh_from_db()
    assert strategy.applied_config == ""
    assert ("configmaps", "gpu-operator", "custom-mig-parted-config") not in mig_cluster.objects
    for node in ("gpu-node-1", "gpu-node-2"):
        assert "nvidia.com/mig.config" not in mig_cluster.node_labels(node)
        assert strategy.node_states.get(name=node).state == MigConfigState.REFUSED
    page = admin_client.get(strategy.get_absolute_url()).content.decode()
    assert "Applying failed: No node could be repartitioned" in page
    assert "last handed to nodes" not in page


def test_the_page_says_a_config_was_handed_to_nodes_not_that_it_succeeded(
    admin_client, k8s_infrastructure, partitioning_factory, mig_cluster, live_workspace
):
    live_workspace(k8s_infrastructure, "gpu-node-1")
    strategy = partitioning_factory(k8s_infrastructure, layout_name="all-balanced")
    assert mig_apply.apply_partitioning(strategy.pk).startswith("labelled 1 of 2")
    page = admin_client.get(strategy.get_absolute_url()).content.decode()
    assert "(last handed to nodes: <code>all-balanced</code>" in page
    assert "whether mig-manager has repartitioned it" in page
    assert "applied:" not in page


def test_a_stopped_workspace_does_not_make_a_node_busy(k8s_infrastructure, live_workspace):
    """Its pods are scaled to 0 and hold no GPU; starting it places it again."""
    live_workspace(k8s_infrastructure, "gpu-node-1", state=State.STOPPED)
    live_workspace(k8s_infrastructure, "gpu-node-2", state=State.STOPPING)
    assert partitions.busy_nodes(k8s_infrastructure, ["gpu-node-1", "gpu-node-2"]) == {
        "gpu-node-2": ["ws-on-gpu-node-2"]
    }


def test_the_apply_action_refuses_busy_known_nodes(
    admin_client, k8s_infrastructure, partitioning_factory, live_workspace, enqueued
):
    strategy = partitioning_factory(k8s_infrastructure, nodes="gpu-node-1\ngpu-node-2")
    live_workspace(k8s_infrastructure, "gpu-node-1")
    response = admin_client.post(reverse("partitioning:apply", args=[strategy.pk]), follow=True)
    page = response.content.decode()
    assert "Not repartitioned: gpu-node-1 hosts ws-on-gpu-node-1" in page
    assert "Drain the node" in page
    assert enqueued == []


def test_deleted_workspaces_do_not_make_a_node_busy(k8s_infrastructure, live_workspace):
    live_workspace(k8s_infrastructure, "gpu-node-1", state=State.DELETED)
    live_workspace(k8s_infrastructure, "gpu-node-2", state=State.FAILED)
    assert partitions.busy_nodes(k8s_infrastructure, ["gpu-node-1", "gpu-node-2"]) == {}


def test_drain_stops_new_workspaces_and_apply_proceeds_once_the_node_is_empty(
    admin_client, k8s_infrastructure, partitioning_factory, live_workspace, mig_cluster
):
    strategy = partitioning_factory(k8s_infrastructure, nodes="gpu-node-1")
    workspace = live_workspace(k8s_infrastructure, "gpu-node-1")
    assert partitions.node_accepts_workspaces(k8s_infrastructure, "gpu-node-1")
    drain = reverse("partitioning:drain", args=[strategy.pk])
    response = admin_client.post(drain, {"node": "gpu-node-1", "draining": "1"})
    assert response.status_code == HTTPStatus.FOUND
    assert not partitions.node_accepts_workspaces(k8s_infrastructure, "gpu-node-1")
    assert partitions.node_accepts_workspaces(k8s_infrastructure, "gpu-node-2")
    page = admin_client.get(reverse("partitioning:nodes", args=[strategy.pk])).content.decode()
    assert "draining" in page and "ws-on-gpu-node-1" in page
    # Still busy: refused. Once the workspace is gone: applied.
    mig_apply.apply_partitioning(strategy.pk)
    assert strategy.node_states.get(name="gpu-node-1").state == MigConfigState.REFUSED
    workspace.state = State.DELETED
    workspace.save()
    mig_apply.apply_partitioning(strategy.pk)
    assert strategy.node_states.get(name="gpu-node-1").state == MigConfigState.PENDING
    assert mig_cluster.node_labels("gpu-node-1")["nvidia.com/mig.config"] == "all-balanced"
    admin_client.post(drain, {"node": "gpu-node-1", "draining": "0"})
    assert partitions.node_accepts_workspaces(k8s_infrastructure, "gpu-node-1")


def test_drain_of_an_unknown_node_is_refused(
    admin_client, k8s_infrastructure, partitioning_factory
):
    strategy = partitioning_factory(k8s_infrastructure, nodes="gpu-node-1")
    drain = reverse("partitioning:drain", args=[strategy.pk])
    response = admin_client.post(drain, {"node": "elsewhere", "draining": "1"}, follow=True)
    assert "elsewhere is not a node of this partitioning" in response.content.decode()
    assert not NodePartition.objects.exists()


def test_viewers_cannot_apply_or_drain(client, viewer, k8s_infrastructure, partitioning_factory):
    strategy = partitioning_factory(k8s_infrastructure, nodes="gpu-node-1")
    client.force_login(viewer)
    for name in ("apply", "refresh", "drain"):
        response = client.post(reverse(f"partitioning:{name}", args=[strategy.pk]), {"node": "x"})
        assert response.status_code == HTTPStatus.FORBIDDEN
    assert client.get(strategy.get_absolute_url()).status_code == HTTPStatus.OK
    assert PartitioningStrategy.objects.get().apply_requested_at is None


# --- every failure on the page, with a retry (issue 12) ----------------------------------


def test_a_cluster_answering_404_for_the_nodes_is_a_failure_on_the_page(
    admin_client, k8s_infrastructure, partitioning_factory, mig_cluster
):
    """What crashed the task before (`nodes()` got None): now the page says why."""
    k8s_infrastructure.kubeconfig = mig_cluster.kubeconfig().replace(
        mig_cluster.url, f"{mig_cluster.url}/no-such-prefix"
    )
    k8s_infrastructure.save()
    strategy = partitioning_factory(k8s_infrastructure)
    assert mig_apply.apply_partitioning(strategy.pk).startswith("failed:")
    strategy.refresh_from_db()
    assert "No node of the cluster has A100-40GB GPUs" in strategy.apply_error
    assert strategy.applied_config == ""
    page = admin_client.get(strategy.get_absolute_url()).content.decode()
    assert "Applying failed: No node of the cluster has A100-40GB GPUs" in page
    assert "Apply again" in page


def test_a_missing_config_map_namespace_fails_before_any_node_is_labelled(
    k8s_infrastructure, partitioning_factory, mig_cluster
):
    strategy = partitioning_factory(k8s_infrastructure, config_map_namespace="no-operator")
    assert mig_apply.apply_partitioning(strategy.pk).startswith("failed:")
    strategy.refresh_from_db()
    assert "did not find ConfigMap custom-mig-parted-config" in strategy.apply_error
    assert "nvidia.com/mig.config" not in mig_cluster.node_labels("gpu-node-1")
    assert not strategy.node_states.exists()


def test_an_unreachable_cluster_is_reported_and_a_retry_clears_it(
    k8s_infrastructure, partitioning_factory, mig_cluster
):
    strategy = partitioning_factory(k8s_infrastructure)
    mig_cluster.refuse = 503
    mig_apply.apply_partitioning(strategy.pk)
    strategy.refresh_from_db()
    assert "busy (503)" in strategy.apply_error
    mig_cluster.refuse = None
    assert mig_apply.apply_partitioning(strategy.pk).startswith("labelled 2 of 2")
    strategy.refresh_from_db()
    assert strategy.apply_error == ""


def test_an_unexpected_error_is_said_on_the_page_and_still_raised(
    k8s_infrastructure, partitioning_factory, mig_cluster, monkeypatch
):
    strategy = partitioning_factory(k8s_infrastructure)

    def broken(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'get'")

    monkeypatch.setattr(mig_apply, "config_map_manifest", broken)
    with pytest.raises(AttributeError):
        mig_apply.apply_partitioning(strategy.pk)
    strategy.refresh_from_db()
    assert "unexpected error" in strategy.apply_error


def test_nodes_that_were_not_repartitioned_are_listed_with_why_and_a_retry(
    admin_client, k8s_infrastructure, partitioning_factory, mig_cluster, live_workspace
):
    live_workspace(k8s_infrastructure, "gpu-node-1")
    strategy = partitioning_factory(k8s_infrastructure, nodes="gpu-node-1\ngpu-node-2\nghost")
    mig_apply.apply_partitioning(strategy.pk)
    mig_cluster.set_mig_state("gpu-node-2", "failed")
    mig_apply.refresh_state(strategy.pk)
    page = admin_client.get(reverse("partitioning:nodes", args=[strategy.pk])).content.decode()
    assert "3 nodes not repartitioned" in page
    assert "gpu-node-1 (refused (workspaces on the node): hosts ws-on-gpu-node-1" in page
    assert "gpu-node-2 (failed: mig-manager could not repartition the node" in page
    assert "ghost (not applied: not found in the cluster)" in page
    assert "Apply again" in page


def test_a_failed_refresh_is_reported_until_a_refresh_succeeds(
    k8s_infrastructure, partitioning_factory, mig_cluster
):
    strategy = partitioning_factory(k8s_infrastructure)
    mig_apply.apply_partitioning(strategy.pk)
    mig_cluster.refuse = 500
    assert mig_apply.refresh_state(strategy.pk).startswith("failed:")
    strategy.refresh_from_db()
    assert strategy.apply_error.startswith(mig_apply.REFRESH_FAILED)
    mig_cluster.refuse = None
    mig_apply.refresh_state(strategy.pk)
    strategy.refresh_from_db()
    assert strategy.apply_error == ""


# --- node partitions move through their lifecycle ----------------------------------------


def test_each_state_change_of_a_node_is_a_transition_with_an_event(
    k8s_infrastructure, partitioning_factory, mig_cluster
):
    strategy = partitioning_factory(k8s_infrastructure, nodes="gpu-node-1")
    mig_apply.apply_partitioning(strategy.pk)
    mig_cluster.set_mig_state("gpu-node-1", "rebooting")
    mig_apply.refresh_state(strategy.pk)
    mig_apply.refresh_state(strategy.pk)  # nothing changed: no event
    mig_cluster.set_mig_state("gpu-node-1", "success")
    mig_apply.refresh_state(strategy.pk)
    node = strategy.node_states.get(name="gpu-node-1")
    moves = list(node.events.values_list("from_state", "to_state"))
    assert moves == [("", "pending"), ("pending", "rebooting"), ("rebooting", "success")]
    assert node.heartbeat is not None and node.state_changed <= node.heartbeat


def test_what_mig_manager_reports_never_moves_a_refused_node(
    k8s_infrastructure, partitioning_factory, mig_cluster
):
    strategy = partitioning_factory(k8s_infrastructure, nodes="gpu-node-1")
    partitions.set_node_state(strategy, "gpu-node-1", MigConfigState.REFUSED, "hosts ws-1")
    assert NodePartition.lifecycle.allows(MigConfigState.REFUSED, MigConfigState.PENDING)
    for reported in (MigConfigState.SUCCESS, MigConfigState.FAILED, MigConfigState.REBOOTING):
        assert not NodePartition.lifecycle.allows(MigConfigState.REFUSED, reported)
        assert partitions.set_node_state(strategy, "gpu-node-1", reported) is None
    node = strategy.node_states.get(name="gpu-node-1")
    assert node.state == MigConfigState.REFUSED and node.message == "hosts ws-1"
    assert node.events.count() == 1


# --- a hostile kubeconfig never runs (issue 11, finding 1) --------------------------------


def test_a_stored_exec_kubeconfig_never_runs_on_refresh(
    admin_client, partitioning_factory, monkeypatch, tmp_path, django_capture_on_commit_callbacks
):
    """The report's repro: a Kubernetes infrastructure whose kubeconfig user is `exec`, a
    partitioning for it, then its Refresh. The form refuses such a kubeconfig
    (tests/profiles/test_kubeconfig.py); one stored by other means is refused on load."""
    marker = tmp_path / "x"
    credential = (
        '{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential", '
        '"status": {"token": "t"}}'
    )
    kubeconfig = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "users": [
                {
                    "name": "u",
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "/bin/sh",
                            "args": ["-c", f"id > {marker}; echo '{credential}'"],
                        }
                    },
                }
            ],
        }
    )
    infrastructure = Infrastructure.objects.create(
        name="Hostile",
        kind=InfrastructureKind.KUBERNETES,
        kubeconfig=kubeconfig,
        kubernetes_version="1.31",
        gpu_model="A100-40GB",
        gpus_per_node=8,
    )
    strategy = partitioning_factory(infrastructure)
    NodePartition.objects.create(strategy=strategy, name="gpu-node-1")
    ran = []
    monkeypatch.setattr(
        "django_q.tasks.async_task",
        lambda func, *args, **kw: ran.append(import_string(func)(*args)),
    )
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse("partitioning:refresh", args=[strategy.pk]))
    assert ran and ran[0].startswith("failed:")
    assert not marker.exists()
    strategy.refresh_from_db()
    assert "`exec`" in strategy.apply_error and "runs a command" in strategy.apply_error
    assert mig_apply.apply_partitioning(strategy.pk).startswith("failed:")
    with pytest.raises(PermanentError, match="cannot be used"):
        KubernetesDriver(infrastructure).inventory()
    assert not marker.exists()
