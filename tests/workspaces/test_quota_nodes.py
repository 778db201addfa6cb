"""A resource group's counts are per node: the quotas charge every node's GPUs and slices."""

import pytest

from pools.drivers import k8s_manifests
from pools.drivers.base import WorkspaceSpec
from pools.drivers.kubernetes import options_from_settings
from portal.models import Team
from profiles.models import ComputeProfile
from workspaces import actions, offers, quotas
from workspaces.actions import RequestRefused

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_queue(monkeypatch):
    monkeypatch.setattr("pools.tasks.enqueue_provision", lambda pk: None)


def multi_node(cluster, name, count, nodes, mig_profile="", **sizes) -> ComputeProfile:
    profile = ComputeProfile.objects.create(name=name, infrastructure=cluster, published=True)
    profile.resource_groups.create(
        gpu_model="A100-40GB", gpu_count=count, node_count=nodes, mig_profile=mig_profile, **sizes
    )
    return profile


def asked_of_the_cluster(profile) -> dict:
    """What the Kubernetes driver asks the cluster for (the namespace's ResourceQuota)."""
    spec = WorkspaceSpec.from_profile("ws-1", "mia", profile)
    return k8s_manifests.quota_manifest(spec, options_from_settings())["spec"]["hard"]


def test_a_two_node_profile_is_charged_both_nodes_gpus(member, kubernetes_cluster):
    """Two nodes of 2 GPUs are 4 GPUs on the cluster, and 4 against the group's quota: a
    group allowed 2 is refused, one allowed 4 is charged 4."""
    profile = multi_node(kubernetes_cluster, "Two nodes", count=2, nodes=2)
    assert asked_of_the_cluster(profile)["requests.nvidia.com/gpu"] == "4"
    team = member.teams.get()
    Team.objects.filter(pk=team.pk).update(max_gpus=2)
    with pytest.raises(RequestRefused, match=r"allows 2 concurrent GPUs .* needs 4"):
        actions.request_workspace(member, profile)

    Team.objects.filter(pk=team.pk).update(max_gpus=4)
    workspace = actions.request_workspace(member, profile)
    assert workspace.gpus == 4
    assert quotas.usage_of(member)[0].used["gpus"] == 4


def test_a_multi_node_mig_profile_is_charged_every_nodes_slices(
    member, kubernetes_cluster, partitioned
):
    """One 1g.5gb slice on each of 3 nodes is 3 slices on the cluster and 3 in the quota."""
    partitioned(kubernetes_cluster)
    profile = multi_node(kubernetes_cluster, "Three slices", count=1, nodes=3, mig_profile="1g.5gb")
    assert asked_of_the_cluster(profile)["requests.nvidia.com/mig-1g.5gb"] == "3"
    Team.objects.filter(pk=member.teams.get().pk).update(max_mig_slices=1)
    with pytest.raises(RequestRefused, match=r"allows 1 concurrent MIG slice .* needs 3"):
        actions.request_workspace(member, profile)


def test_the_card_shows_what_every_node_holds_as_the_cluster_is_asked(kubernetes_cluster):
    """Memory, CPUs and storage on the profile's card are the totals over its nodes, the
    amounts the driver asks the cluster for."""
    profile = multi_node(kubernetes_cluster, "Two nodes", 2, 2, cpu=8, ram_gb=64, storage_gb=100)
    hard = asked_of_the_cluster(profile)
    assert (hard["requests.cpu"], hard["requests.memory"]) == ("16", "128Gi")
    assert hard["requests.storage"] == "200Gi"
    assert offers.totals(profile) == {
        "memory": "128 GB RAM",
        "cpus": "16 CPUs",
        "storage": "200 GB",
    }
