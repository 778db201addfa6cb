"""A node drained for repartitioning takes no new Kubernetes workspaces."""

import kubernetes_validate
import pytest

from pools.drivers import k8s_manifests as m
from pools.drivers.base import GroupSpec, WorkspaceSpec
from pools.drivers.kubernetes import KubernetesDriver
from pools.partitions import set_draining
from profiles.models import PartitioningStrategy
from tests.pools.k8s_stand_in import StandInApiServer

pytestmark = pytest.mark.django_db

SPEC = WorkspaceSpec(
    name="ws-9",
    owner="mia",
    profile="medium",
    profile_version=1,
    groups=(GroupSpec(index=0, gpu_model="A100-40GB", gpu_count=1),),
)


def test_avoided_nodes_become_a_valid_node_affinity():
    options = m.ManifestOptions(avoid_nodes=("gpu-2", "gpu-1"))
    for obj in m.render(SPEC, options):
        kubernetes_validate.validate(obj, "1.29.0", strict=True)
    (statefulset,) = [o for o in m.render(SPEC, options) if o["kind"] == "StatefulSet"]
    terms = statefulset["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert terms == [
        {
            "matchFields": [
                {"key": "metadata.name", "operator": "NotIn", "values": ["gpu-1"]},
                {"key": "metadata.name", "operator": "NotIn", "values": ["gpu-2"]},
            ]
        }
    ]


def test_the_driver_keeps_workspaces_off_draining_nodes():
    from profiles.models import Infrastructure

    server = StandInApiServer(version="1.33").start()
    try:
        infrastructure = Infrastructure.objects.create(
            name="Lab cluster",
            kind="kubernetes",
            kubeconfig=server.kubeconfig(),
            kubernetes_version="1.33",
            gpu_model="A100-40GB",
            gpus_per_node=8,
        )
        strategy = PartitioningStrategy.objects.create(
            infrastructure=infrastructure, gpu_model="A100-40GB"
        )
        set_draining(strategy, "gpu-node-3", True)
        KubernetesDriver(infrastructure).provision(SPEC)
        (statefulset,) = [
            obj for (plural, _, _), obj in server.objects.items() if plural == "statefulsets"
        ]
        affinity = statefulset["spec"]["template"]["spec"]["affinity"]
        expression = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"
        ][0]["matchFields"][0]
        assert expression["values"] == ["gpu-node-3"]
    finally:
        server.stop()
