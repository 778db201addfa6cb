"""Applying a partitioning to an existing Kubernetes cluster through the GPU Operator.

The GPU Operator's mig-manager reads mig-parted configs from a ConfigMap (Helm value
`migManager.config.name`, key `config.yaml`) and repartitions a node when its
`nvidia.com/mig.config` label names a config; it reports progress in
`nvidia.com/mig.config.state` (pending, rebooting, success, failed).

`apply_partitioning` (a django-q2 task, enqueued on commit, never run in a request):
1. list the cluster's nodes with the strategy's GPU model (or the listed nodes);
2. find the busy ones: a live workspace recorded on it, or a portal pod scheduled there;
3. server-side apply the ConfigMap with every config of the infrastructure's partitionings;
4. server-side apply `nvidia.com/mig.config=<name>` on each node that is not busy, and mark
   it pending; busy nodes are marked refused and keep their partitioning;
5. schedule `refresh_state`, which reads the state labels back until no node is pending.
Both tasks are idempotent: applying the same objects again changes nothing.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from pools.drivers.base import DriverError, PermanentError, TransientError
from pools.drivers.kubernetes import KubernetesDriver
from pools.models import NodePartition
from pools.partitions import PartitioningRefused, apply_refusal, busy_nodes, known_nodes
from portal import audit
from portal.models import AuditAction
from profiles import partitioning
from profiles.catalog import gpu_model_for_product_label
from profiles.choices import InfrastructureKind, MigConfigState
from profiles.mig import migparted
from profiles.models import Infrastructure, PartitioningStrategy

logger = logging.getLogger(__name__)

FIELD_MANAGER = "gpu-paas-portal-mig"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
MIG_CONFIG_LABEL = "nvidia.com/mig.config"
MIG_STATE_LABEL = "nvidia.com/mig.config.state"
PRODUCT_LABEL = "nvidia.com/gpu.product"
PORTAL_PODS = "app.kubernetes.io/managed-by=gpu-paas-portal"
REFRESH_EVERY = timedelta(seconds=30)
REFRESH_FOR = timedelta(hours=1)  # mig-manager reboots a node at most; stop watching after
REQUEST_TIMEOUT = (5, 30)
_WAITING = {MigConfigState.PENDING, MigConfigState.REBOOTING}


# --- what is applied ---------------------------------------------------------------------


def config_map_manifest(strategy: PartitioningStrategy) -> dict[str, Any]:
    return migparted.config_map(
        strategy.config_map_name,
        strategy.config_map_namespace,
        partitioning.infrastructure_config(strategy.infrastructure),
    )


def node_label_patch(node_name: str, config_name: str) -> dict[str, Any]:
    """The apply body that sets only the portal's label on a node."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node_name, "labels": {MIG_CONFIG_LABEL: config_name}},
    }


# --- the Kubernetes API ------------------------------------------------------------------


def kube_api_client(infrastructure: Infrastructure):
    """The `kubernetes` ApiClient for the infrastructure's kubeconfig (the driver's helper)."""

    return KubernetesDriver(infrastructure).api


class Kube:
    """The few calls applying needs, with the driver's error classes."""

    def __init__(self, infrastructure: Infrastructure):
        self.api = kube_api_client(infrastructure)

    def call(self, method: str, path: str, *, body=None, query=None, content_type=None):
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            request = self.api.param_serialize(
                method,
                path,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api.call_api(*request, _request_timeout=REQUEST_TIMEOUT)
            response.read()
        except (ApiException, HTTPError, OSError) as error:
            raise TransientError("Cannot reach the Kubernetes API.", str(error)) from error
        data = json.loads(response.data or b"{}")
        if 200 <= response.status <= 299:
            return response.status, data
        message = data.get("message", "") if isinstance(data, dict) else ""
        if response.status == 404:
            return 404, None
        if response.status in (409, 429) or response.status >= 500:
            raise TransientError(f"The Kubernetes API is busy ({response.status}).", message)
        raise PermanentError(f"The cluster refused {method} {path}: {message}", message)

    def apply(self, path: str, obj: dict) -> None:
        self.call(
            "PATCH",
            path,
            body=obj,
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            content_type=APPLY_CONTENT_TYPE,
        )

    def nodes(self) -> list[dict]:
        return self.call("GET", "/api/v1/nodes")[1].get("items", [])

    def node(self, name: str) -> dict | None:
        return self.call("GET", f"/api/v1/nodes/{name}")[1]

    def portal_pod_nodes(self) -> dict[str, list[str]]:
        """Node → the portal's pods scheduled there, across namespaces."""
        _, listed = self.call("GET", "/api/v1/pods", query=[("labelSelector", PORTAL_PODS)])
        found: dict[str, list[str]] = {}
        for pod in listed.get("items", []):
            node = (pod.get("spec") or {}).get("nodeName")
            if node:
                found.setdefault(node, []).append(f"pod {pod['metadata']['name']}")
        return found


def _labels(node: dict) -> dict[str, str]:
    return node.get("metadata", {}).get("labels") or {}


def _model_of(node: dict) -> str:
    found = gpu_model_for_product_label(_labels(node).get(PRODUCT_LABEL, ""))
    return found.code if found else ""


# --- enqueueing --------------------------------------------------------------------------


def enqueue_apply(strategy: PartitioningStrategy) -> None:
    from django_q.tasks import async_task

    pk = strategy.pk
    transaction.on_commit(
        lambda: async_task("pools.mig_apply.apply_partitioning", pk, group="mig-apply")
    )


def enqueue_refresh(strategy: PartitioningStrategy) -> None:
    from django_q.tasks import async_task

    pk = strategy.pk
    transaction.on_commit(
        lambda: async_task("pools.mig_apply.refresh_state", pk, group="mig-refresh")
    )


def request_apply(user, strategy: PartitioningStrategy) -> None:
    """Enqueue applying the strategy; PartitioningRefused while it cannot be applied."""
    infrastructure = strategy.infrastructure
    if infrastructure.kind != InfrastructureKind.KUBERNETES:
        raise PartitioningRefused(
            "Applying from the portal works on existing Kubernetes clusters with the GPU "
            "Operator. Elsewhere, apply the mig-parted config below with nvidia-mig-parted."
        )
    usable, reason = infrastructure.usability()
    if not usable:
        raise PartitioningRefused(reason)
    refusal = apply_refusal(strategy, busy_nodes(infrastructure, known_nodes(strategy)))
    if refusal:
        raise PartitioningRefused(refusal)
    with transaction.atomic():
        PartitioningStrategy.objects.filter(pk=strategy.pk).update(
            apply_requested_at=timezone.now(), apply_error=""
        )
        audit.record(
            user,
            AuditAction.ACTION,
            strategy,
            after={"applied_config": strategy.config_name()},
            message=f"apply {strategy.config_name()}",
        )
        enqueue_apply(strategy)


def request_refresh(strategy: PartitioningStrategy) -> None:
    with transaction.atomic():
        enqueue_refresh(strategy)


def _schedule_refresh(strategy: PartitioningStrategy) -> None:
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=f"mig refresh {strategy.pk}",
        defaults={
            "func": "pools.mig_apply.refresh_state",
            "args": repr((strategy.pk,)),
            "schedule_type": Schedule.ONCE,
            "repeats": -1,
            "next_run": timezone.now() + REFRESH_EVERY,
        },
    )


# --- tasks -------------------------------------------------------------------------------


def _load(strategy_id: int) -> PartitioningStrategy | None:
    return (
        PartitioningStrategy.objects.select_related("infrastructure").filter(pk=strategy_id).first()
    )


def apply_partitioning(strategy_id: int) -> str:
    """Write the ConfigMap and label the strategy's free nodes (see the module docstring)."""

    strategy = _load(strategy_id)
    if strategy is None:
        return "gone"
    infrastructure = strategy.infrastructure
    if infrastructure.kind != InfrastructureKind.KUBERNETES:
        return _fail(strategy, "Only existing Kubernetes clusters can be partitioned from here.")
    problem = partitioning.strategy_preview(strategy).reason
    if problem:
        return _fail(strategy, f"The layout is invalid: {problem}")
    name = strategy.config_name()
    try:
        kube = Kube(infrastructure)
        nodes = _target_nodes(kube, strategy)
        busy = busy_nodes(infrastructure, nodes)
        for node, pods in kube.portal_pod_nodes().items():
            if node in nodes:
                busy.setdefault(node, []).extend(pods)
        manifest = config_map_manifest(strategy)
        namespace = strategy.config_map_namespace
        kube.apply(
            f"/api/v1/namespaces/{namespace}/configmaps/{strategy.config_map_name}", manifest
        )
        for node in nodes:
            if node in busy:
                _set_node(strategy, node, MigConfigState.REFUSED, "", _busy_words(busy[node]))
                continue
            kube.apply(f"/api/v1/nodes/{node}", node_label_patch(node, name))
            _set_node(strategy, node, MigConfigState.PENDING, name, "")
    except DriverError as error:
        logger.warning("applying %s: %s %s", strategy, error, error.detail)
        return _fail(strategy, str(error))
    PartitioningStrategy.objects.filter(pk=strategy.pk).update(applied_config=name, apply_error="")
    _schedule_refresh(strategy)
    labelled = len(nodes) - len([n for n in nodes if n in busy])
    return f"labelled {labelled} of {len(nodes)} nodes {MIG_CONFIG_LABEL}={name}"


def _target_nodes(kube: Kube, strategy: PartitioningStrategy) -> list[str]:
    """The nodes to label: the listed ones (which must exist), else every node of the model."""
    listed = strategy.node_list()
    cluster = {node["metadata"]["name"]: node for node in kube.nodes()}
    if not listed:
        return sorted(
            name for name, node in cluster.items() if _model_of(node) == strategy.gpu_model
        )
    targets = []
    for name in listed:
        if name not in cluster:
            _set_node(strategy, name, MigConfigState.NOT_APPLIED, "", "not found in the cluster")
        elif _model_of(cluster[name]) not in ("", strategy.gpu_model):
            model = _model_of(cluster[name])
            _set_node(strategy, name, MigConfigState.NOT_APPLIED, "", f"has {model} GPUs")
        else:
            targets.append(name)
    return targets


def _busy_words(holders: list[str]) -> str:
    return (
        f"hosts {', '.join(sorted(set(holders)))}; drain it and apply again once they are gone"
    )[:300]


def _set_node(strategy, name: str, state: str, label: str, message: str) -> None:
    defaults = {"state": state, "message": message[:300], "checked_at": timezone.now()}
    if label:
        defaults["config_label"] = label
    NodePartition.objects.update_or_create(strategy=strategy, name=name, defaults=defaults)


def _fail(strategy: PartitioningStrategy, message: str) -> str:
    PartitioningStrategy.objects.filter(pk=strategy.pk).update(apply_error=message[:2000])
    return f"failed: {message}"


def refresh_state(strategy_id: int) -> str:
    """Read `nvidia.com/mig.config(.state)` of the strategy's nodes into NodePartition rows."""

    strategy = _load(strategy_id)
    if strategy is None:
        return "gone"
    if strategy.infrastructure.kind != InfrastructureKind.KUBERNETES:
        return "not a Kubernetes cluster"
    try:
        kube = Kube(strategy.infrastructure)
        for row in strategy.node_states.all():
            node = kube.node(row.name)
            if node is None:
                row.state, row.message = MigConfigState.NOT_APPLIED, "not found in the cluster"
            else:
                _read_labels(row, _labels(node), strategy.applied_config)
            row.checked_at = timezone.now()
            row.save(update_fields=["state", "config_label", "message", "checked_at"])
    except DriverError as error:
        return _fail(strategy, str(error))
    waiting = strategy.node_states.filter(state__in=_WAITING).exists()
    recent = (
        strategy.apply_requested_at is None
        or timezone.now() - strategy.apply_requested_at < REFRESH_FOR
    )
    if waiting and recent:
        _schedule_refresh(strategy)
        return "still waiting"
    return "done"


def _read_labels(row: NodePartition, labels: dict[str, str], wanted: str) -> None:
    if row.state == MigConfigState.REFUSED:
        return  # stays refused until the next apply
    row.config_label = labels.get(MIG_CONFIG_LABEL, "")
    state = labels.get(MIG_STATE_LABEL, "")
    if wanted and row.config_label != wanted:
        row.state = MigConfigState.NOT_APPLIED
        row.message = f"labelled {row.config_label or 'nothing'}, not {wanted}"
    elif not state:
        row.state, row.message = MigConfigState.PENDING, "mig-manager has not reported yet"
    elif state in (*_WAITING, MigConfigState.SUCCESS, MigConfigState.FAILED):
        row.state, row.message = state, ""
    else:
        row.state, row.message = MigConfigState.PENDING, f"mig-manager reports {state!r}"
