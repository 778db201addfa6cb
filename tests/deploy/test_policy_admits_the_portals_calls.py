"""The admission policy admits every write the portal makes, as it makes it.

The Kubernetes driver, the services backend and MIG apply run against the API stand-in
(tests/pools/k8s_stand_in.py, with the ConfigMap and Node applies of
tests/profiles/conftest.py), which here puts each write through the production overlay's
policy, with the object and the old object as the API server would hand them to it: the
policy cannot refuse something the code does (a 403 on a real cluster) without this
failing, whatever the call.
"""

from __future__ import annotations

import copy

import pytest

from pools import mig_apply
from pools.drivers import k8s_manifests
from profiles.choices import InfrastructureKind, PartitioningMode
from profiles.models import (
    DEFAULT_MIG_CONFIG_NAMESPACE,
    Infrastructure,
    PartitioningStrategy,
)
from tests.deploy.test_cluster_policies import (
    admission_request,
    bound_policy,
    evaluate_policy,
)
from tests.deploy.test_manifests import WORKSPACE_SPEC, exercise, render
from tests.pools.k8s_stand_in import PATH
from tests.profiles.conftest import MigStandIn

WRITES = {"PATCH": "UPDATE", "DELETE": "DELETE"}


class AdmittingStandIn(MigStandIn):
    """The stand-in, recording what the policy says of each write it takes."""

    def __init__(self, policy, **kwargs):
        super().__init__(**kwargs)
        self.policy = policy
        self.admitted: list[tuple[str, str]] = []  # (operation, path)
        self.denied: list[tuple[str, str, list[str]]] = []

    def handle(self, method, path, query, headers, body):
        match = PATH.match(path)
        if method not in WRITES or match is None:
            return super().handle(method, path, query, headers, body)
        plural, ns, name = match["plural"], match["ns"] or "", match["name"]
        with self.lock:
            old = copy.deepcopy(self.objects.get((plural, ns, name)))
            namespace = copy.deepcopy(self.objects.get(("namespaces", "", ns)))
        code, answer = super().handle(method, path, query, headers, body)
        operation = WRITES[method] if old is not None else "CREATE"
        obj = None if operation == "DELETE" else answer
        if match["subresource"]:  # the API server hands the policy the Scale, old and new
            old = {**answer, "spec": {"replicas": old["spec"].get("replicas")}}
        group = "" if match["prefix"] == "/api/v1" else match["prefix"].split("/")[2]
        subresource = match["subresource"] or ""
        request = admission_request(operation, group, plural, name, ns, subresource=subresource)
        denials = evaluate_policy(
            self.policy, request, obj=obj, old=old, namespace_object=namespace
        )
        if denials:
            self.denied.append((operation, path, denials))
        else:
            self.admitted.append((operation, path))
        return code, answer


@pytest.fixture
def cluster():
    server = AdmittingStandIn(bound_policy(render("production")), version="1.30").start()
    yield server
    server.stop()


def infrastructure_on(server: AdmittingStandIn, **fields) -> Infrastructure:
    return Infrastructure.objects.create(
        name="Lab cluster",
        kind=InfrastructureKind.KUBERNETES,
        kubeconfig=server.kubeconfig(),
        kubernetes_version="1.30",
        **fields,
    )


@pytest.mark.django_db
@pytest.mark.parametrize("mode", [k8s_manifests.NAMESPACE_MODE, k8s_manifests.SHARED_MODE])
def test_every_write_of_the_driver_and_the_services_backend_is_admitted(settings, cluster, mode):
    """A workspace's life: provision, a services stack deployed, checked, repaired and
    removed, stop, start, deletion (test_manifests.exercise)."""
    settings.KUBERNETES_NAMESPACE_MODE = mode
    settings.KUBERNETES_STORAGE_CLASS = "fast-ssd"
    exercise(infrastructure_on(cluster), WORKSPACE_SPEC)
    assert cluster.denied == []
    operations = {(operation, path.split("/")[-1]) for operation, path in cluster.admitted}
    assert ("UPDATE", "scale") in operations  # stop
    assert any(operation == "DELETE" for operation, _ in operations)  # repair, removal
    assert any(operation == "CREATE" for operation, _ in operations)


@pytest.mark.django_db
def test_every_write_of_a_partitioning_apply_is_admitted(cluster):
    """The mig-parted ConfigMap in the GPU Operator's namespace, the MIG labels of each
    node of the model: created, then applied again with another layout."""
    cluster.add_namespace(DEFAULT_MIG_CONFIG_NAMESPACE)
    for name in ("gpu-node-1", "gpu-node-2"):
        cluster.add_gpu_node(name)
    infrastructure = infrastructure_on(cluster, gpu_model="A100-40GB", gpus_per_node=8)
    strategy = PartitioningStrategy.objects.create(
        infrastructure=infrastructure,
        gpu_model="A100-40GB",
        mode=PartitioningMode.NAMED,
        layout_name="all-balanced",
    )
    assert mig_apply.apply_partitioning(strategy.pk).startswith("labelled 2 of 2")
    cluster.set_mig_state("gpu-node-1", "success")  # mig-manager, between the two
    PartitioningStrategy.objects.filter(pk=strategy.pk).update(layout_name="all-1g.5gb")
    assert mig_apply.apply_partitioning(strategy.pk).startswith("labelled 2 of 2")
    assert cluster.denied == []
    assert {operation for operation, _ in cluster.admitted} == {"CREATE", "UPDATE"}
    assert len([path for _, path in cluster.admitted if "/nodes/" in path]) == 4
