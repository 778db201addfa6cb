"""Fixtures for the partitioning tests: strategies, a Kubernetes infrastructure served by
the API stand-in (extended with what applying a partitioning needs), and workspaces."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest
import yaml

from pools.lifecycle import State
from pools.models import Workspace
from profiles.choices import InfrastructureKind, PartitioningMode
from profiles.models import Infrastructure, PartitioningStrategy
from tests.pools.k8s_stand_in import ApiError, StandInApiServer

CONFIGMAP_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/configmaps/(?P<name>[^/]+)$")
NODE_PATH = re.compile(r"^/api/v1/nodes/(?P<name>[^/]+)$")
A100_PRODUCT = "NVIDIA-A100-SXM4-40GB"


class MigStandIn(StandInApiServer):
    """The driver's API stand-in plus server-side apply of ConfigMaps and Nodes.

    Like a real server: a ConfigMap needs its namespace; the body must match the URL and
    validate strictly against the cluster version's schema; a field manager's apply of a
    Node merges into the node and removes only the labels that manager applied before and
    left out now (labels set by others, such as mig-manager's state, stay).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.owned_labels: dict[tuple[str, str], set[str]] = {}  # (manager, node) → keys

    def handle(self, method, path, query, headers, body):
        configmap, node = CONFIGMAP_PATH.match(path), NODE_PATH.match(path)
        if not (configmap and method in ("GET", "PATCH")) and not (node and method == "PATCH"):
            return super().handle(method, path, query, headers, body)
        self.requests.append((method, path))
        if not self.authorized(headers):
            raise ApiError(401, "Unauthorized")
        if self.refuse:
            raise ApiError(self.refuse, f"refused by the test ({self.refuse})")
        with self.lock:
            if configmap and method == "GET":
                return 200, self._get("configmaps", configmap["ns"], configmap["name"])
            obj = self._check_apply(query, headers, body, "Node" if node else "ConfigMap")
            if node:
                return self._apply_node(node["name"], obj, query["fieldManager"][0])
            return self._apply_configmap(configmap["ns"], configmap["name"], obj)

    def _check_apply(self, query, headers, body, kind: str) -> dict:
        if headers.get("Content-Type", "").split(";")[0] != "application/apply-patch+yaml":
            raise ApiError(415, "only apply is implemented here")
        if not query.get("fieldManager", [""])[0]:
            raise ApiError(422, "fieldManager: Required value")
        obj = yaml.safe_load(body)
        if not isinstance(obj, dict) or (obj.get("apiVersion"), obj.get("kind")) != ("v1", kind):
            raise ApiError(400, f"expected a v1 {kind}")
        try:
            kubernetes_validate.validate(obj, f"{self.version}.0", strict=True)
        except kubernetes_validate.ValidationError as error:
            raise ApiError(422, f"{kind} is invalid: {error.message}") from None
        return obj

    def _apply_configmap(self, ns: str, name: str, obj: dict):
        meta = obj["metadata"]
        if meta.get("name") != name or meta.get("namespace", ns) != ns:
            raise ApiError(400, "the name or namespace does not match the URL")
        if ("namespaces", "", ns) not in self.objects:
            raise ApiError(404, f'namespaces "{ns}" not found')
        existing = self.objects.get(("configmaps", ns, name))
        return (200 if existing else 201), self._store("configmaps", ns, obj, existing)

    def _apply_node(self, name: str, obj: dict, manager: str):
        if obj["metadata"].get("name") != name:
            raise ApiError(400, "the name does not match the URL")
        existing = self.objects.get(("nodes", "", name))
        merged = dict(existing) if existing else {"apiVersion": "v1", "kind": "Node"}
        labels = dict((existing or {}).get("metadata", {}).get("labels") or {})
        applied = obj["metadata"].get("labels") or {}
        for key in self.owned_labels.get((manager, name), set()) - set(applied):
            labels.pop(key, None)
        labels.update(applied)
        self.owned_labels[(manager, name)] = set(applied)
        merged["metadata"] = {**(existing or {}).get("metadata", {}), "name": name}
        merged["metadata"]["labels"] = labels
        return (200 if existing else 201), self._store("nodes", "", merged, existing)

    # --- test controls ------------------------------------------------------------------

    def add_namespace(self, name: str) -> None:
        self._store("namespaces", "", {"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": name}})  # fmt: skip

    def node_labels(self, name: str) -> dict:
        return self.objects[("nodes", "", name)]["metadata"].get("labels") or {}

    def set_mig_state(self, name: str, state: str) -> None:
        """What mig-manager does while it works on a node."""
        with self.lock:
            self.objects[("nodes", "", name)]["metadata"]["labels"][
                "nvidia.com/mig.config.state"
            ] = state

    def add_gpu_node(self, name: str, product: str = A100_PRODUCT, gpus: int = 8) -> None:
        labels = {"nvidia.com/gpu.product": product, "nvidia.com/gpu.count": str(gpus)}
        self.add_node(name, labels, {"nvidia.com/gpu": str(gpus)})


@pytest.fixture
def mig_cluster():
    server = MigStandIn(version="1.29").start()
    server.add_namespace("gpu-operator")
    server.add_gpu_node("gpu-node-1")
    server.add_gpu_node("gpu-node-2")
    server.add_gpu_node("h100-node", product="NVIDIA-H100-80GB-HBM3")
    yield server
    server.stop()


@pytest.fixture
def k8s_infrastructure(db, mig_cluster):
    return Infrastructure.objects.create(
        name="Cluster",
        kind=InfrastructureKind.KUBERNETES,
        kubeconfig=mig_cluster.kubeconfig(),
        kubernetes_version="1.29",
        gpu_model="A100-40GB",
        gpus_per_node=8,
    )


@pytest.fixture
def datacenter_infrastructure(db):
    return Infrastructure.objects.create(
        name="DC",
        kind=InfrastructureKind.DATA_CENTER,
        platform="bare_metal",
        hosts="gpu-a\ngpu-b\ngpu-c",
        gpu_model="A100-40GB",
        gpus_per_node=4,
        password="secret",
    )


@pytest.fixture
def partitioning_factory(db):
    def make(infrastructure, gpu_model="A100-40GB", mode=PartitioningMode.NAMED, **fields):
        if mode == PartitioningMode.NAMED:
            fields.setdefault("layout_name", "all-balanced")
        return PartitioningStrategy.objects.create(
            infrastructure=infrastructure, gpu_model=gpu_model, mode=mode, **fields
        )

    return make


@pytest.fixture
def live_workspace(db, org_admin, profile_factory):
    """A ready workspace whose pod the driver recorded on `node`."""

    def make(infrastructure, node: str, state=State.READY):
        profile = profile_factory(infrastructure, name=f"On {node} {state}")
        return Workspace.objects.create(
            owner=org_admin,
            profile=profile,
            infrastructure=infrastructure,
            state=state,
            name=f"ws-on-{node}",
            detail={"namespace": "ws-1", "nodes": {"ws-1-g0-0": node}},
        )

    return make
