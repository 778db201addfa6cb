"""Applying a partitioning to an existing Kubernetes cluster through the GPU Operator.

The GPU Operator's mig-manager reads mig-parted configs from a ConfigMap (Helm value
`migManager.config.name`, key `config.yaml`) and repartitions a node when its
`nvidia.com/mig.config` label names a config; it reports progress in
`nvidia.com/mig.config.state` (pending, rebooting, success, failed).

`apply_partitioning` (a django-q2 task, enqueued on commit, never run in a request):
1. list the cluster's nodes with the strategy's GPU model (or the listed nodes);
2. find the busy ones: a workspace holding GPUs recorded on it, or a portal pod bound or
   pinned there; mark them refused (they keep their partitioning). When every node is
   busy, stop there: nothing is applied, and `apply_error` says why;
3. server-side apply the ConfigMap with every config of the infrastructure's partitionings,
   and every config of the ConfigMap as it is that some node is still labelled with;
4. server-side apply `nvidia.com/mig.config=<name>` on each node that is not busy, with
   `nvidia.com/mig.config.state=pending`, and mark it pending: mig-manager overwrites that
   state when it acts on the new config, so a "success" read afterwards is about this
   config, never the previous one's. A node already labelled with the config keeps its
   labels (the name changes with the content, so it has this layout, or mig-manager is on
   it) and is marked as mig-manager last reported. Listed nodes that are missing, have
   other GPUs or no GPU product label are marked not applied. `applied_config` then names
   the config handed to the nodes; whether mig-manager repartitioned each one is its state;
5. schedule `refresh_state`, which reads the state labels of the nodes the apply labelled
   back until none is pending.
Both tasks are idempotent: applying the same objects again changes nothing. Both talk to
the cluster through the portal's one client, `pools.kube`.

Every failure is on the partitioning's page: what stops the whole apply (credentials
refused, cluster unreachable, no node of the model or none free, an unexpected error) is
the strategy's `apply_error`, with Apply as the retry; what stops one node (busy, missing,
other GPUs, mig-manager failed) is that node's state and message. Node states move only
through the node's lifecycle (`pools.partitions.set_node_state`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from pools import fleet, kube
from pools.drivers.base import DriverError
from pools.models import NodePartition
from pools.partitions import (
    PartitioningRefused,
    apply_refusal,
    busy_nodes,
    known_nodes,
    set_node_state,
)
from portal import audit
from portal.models import AuditAction
from profiles import partitioning
from profiles.catalog import gpu_model_for_product_label
from profiles.choices import InfrastructureKind, MigConfigState
from profiles.mig import migparted
from profiles.models import PartitioningStrategy

logger = logging.getLogger(__name__)

FIELD_MANAGER = "gpu-paas-portal-mig"
MIG_CONFIG_LABEL = "nvidia.com/mig.config"
MIG_STATE_LABEL = "nvidia.com/mig.config.state"
PRODUCT_LABEL = "nvidia.com/gpu.product"
PORTAL_PODS = "app.kubernetes.io/managed-by=gpu-paas-portal"
REFRESH_EVERY = timedelta(seconds=30)
REFRESH_FOR = timedelta(hours=1)  # mig-manager reboots a node at most; stop watching after
# apply_error of a failed refresh; a later refresh that succeeds clears it (and only it).
REFRESH_FAILED = "Reading the nodes' MIG state failed: "
_WAITING = {MigConfigState.PENDING, MigConfigState.REBOOTING}


# --- what is applied ---------------------------------------------------------------------


def config_map_manifest(
    strategy: PartitioningStrategy, kept: Mapping[str, list] | None = None
) -> dict[str, Any]:
    """The ConfigMap of the strategy's infrastructure: its partitionings' configs, and the
    `kept` ones nodes are still labelled with."""
    return migparted.config_map(
        strategy.config_map_name,
        strategy.config_map_namespace,
        partitioning.infrastructure_config(strategy.infrastructure, kept),
    )


def node_labels(config_name: str) -> dict[str, str]:
    """The labels the portal applies to repartition a node: the config, and "pending" for
    mig-manager to overwrite once it acts on it."""
    return {MIG_CONFIG_LABEL: config_name, MIG_STATE_LABEL: MigConfigState.PENDING.value}


def node_label_patch(node_name: str, config_name: str) -> dict[str, Any]:
    """The apply body that sets only the portal's labels on a node."""
    return kube.labels_patch("Node", node_name, node_labels(config_name))


# --- the cluster ---------------------------------------------------------------------------


def _labels(node: dict) -> dict[str, str]:
    return node.get("metadata", {}).get("labels") or {}


def _model_of(labels: dict[str, str]) -> str:
    found = gpu_model_for_product_label(labels.get(PRODUCT_LABEL, ""))
    return found.code if found else ""


def portal_pod_nodes(client: kube.KubeClient) -> dict[str, list[str]]:
    """Node → the portal's live pods there, across namespaces: bound to it, or pinned to it
    and not bound yet (the node the placement fleet counts them on)."""
    found: dict[str, list[str]] = {}
    for pod in client.list("Pod", "", PORTAL_PODS):
        node = fleet.pod_node(pod)
        if node:
            found.setdefault(node, []).append(f"pod {pod['metadata']['name']}")
    return found


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
    refusal = apply_refusal(busy_nodes(infrastructure, known_nodes(strategy)))
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
    try:
        return _apply(strategy)
    except DriverError as error:
        logger.warning("applying %s: %s %s", strategy, error, error.detail)
        return _fail(strategy, str(error))
    except Exception:
        # A bug must not leave the page saying nothing: say so there, keep the traceback
        # for the log and for the task's own record.
        logger.exception("applying %s", strategy)
        _fail(strategy, "Applying stopped on an unexpected error; the portal's log has it.")
        raise


def _apply(strategy: PartitioningStrategy) -> str:
    name = strategy.config_name()
    client = kube.client_for(strategy.infrastructure)
    cluster = {node["metadata"]["name"]: _labels(node) for node in client.list("Node")}
    nodes = _target_nodes(cluster, strategy)
    if not nodes:
        return _fail(strategy, _no_nodes(strategy))
    busy = busy_nodes(strategy.infrastructure, list(nodes))
    for node, pods in portal_pod_nodes(client).items():
        if node in nodes:
            busy.setdefault(node, []).extend(pods)
    for node in busy:
        set_node_state(
            strategy, node, MigConfigState.REFUSED, _busy_words(busy[node]), config_label=""
        )
    free = {node: labels for node, labels in nodes.items() if node not in busy}
    if not free:
        # Nothing on the cluster changes, so nothing is "applied".
        return _fail(strategy, apply_refusal(busy, lead="No node could be repartitioned"))
    kept = _kept_configs(client, strategy, cluster)
    client.apply(config_map_manifest(strategy, kept), field_manager=FIELD_MANAGER)
    for node, labels in free.items():
        if labels.get(MIG_CONFIG_LABEL) == name:
            # Nothing to relabel: mig-manager acted on this config (named after its
            # content) or is acting on it, so what it reports is about this layout.
            set_node_state(strategy, node, MigConfigState.PENDING, config_label=name)
            state, message = _reported(labels)
            set_node_state(
                strategy, node, state, message or f"was already labelled {name}", config_label=name
            )
        else:
            client.apply_labels("Node", node, node_labels(name), field_manager=FIELD_MANAGER)
            set_node_state(strategy, node, MigConfigState.PENDING, config_label=name)
    PartitioningStrategy.objects.filter(pk=strategy.pk).update(applied_config=name, apply_error="")
    _schedule_refresh(strategy)
    return f"labelled {len(free)} of {len(nodes)} nodes {MIG_CONFIG_LABEL}={name}"


def _kept_configs(
    client: kube.KubeClient, strategy: PartitioningStrategy, cluster: dict[str, dict]
) -> dict[str, list]:
    """The configs of the ConfigMap as it is that some node of the cluster is labelled with.

    The ConfigMap is the record of what was applied: a node keeps its label while it hosts
    workspaces, or after another model's partitioning (or an edit not applied yet) changed
    what the portal would write, and mig-manager reads the node's config again when its pod
    restarts or the node reboots. A config goes at the first apply after no node has it.
    """
    in_use = {labels.get(MIG_CONFIG_LABEL) for labels in cluster.values()}
    current = client.get("ConfigMap", strategy.config_map_name, strategy.config_map_namespace)
    configs = migparted.configs_of(current)
    return {name: entries for name, entries in configs.items() if name in in_use}


def _target_nodes(cluster: dict[str, dict], strategy: PartitioningStrategy) -> dict[str, dict]:
    """The nodes to label, with their labels: the listed ones (which must exist and be GPU
    nodes of the model), else every node of the model."""
    listed = strategy.node_list()
    if not listed:
        return {
            name: labels
            for name, labels in sorted(cluster.items())
            if _model_of(labels) == strategy.gpu_model
        }
    targets = {}
    for name in listed:
        labels = cluster.get(name)
        if labels is None:
            problem = "not found in the cluster"
        elif PRODUCT_LABEL not in labels:
            problem = f"no GPU product label ({PRODUCT_LABEL}): not a GPU node?"
        elif _model_of(labels) not in ("", strategy.gpu_model):
            problem = f"has {_model_of(labels)} GPUs"
        else:
            targets[name] = labels
            continue
        set_node_state(strategy, name, MigConfigState.NOT_APPLIED, problem, config_label="")
    return targets


def _no_nodes(strategy: PartitioningStrategy) -> str:
    if strategy.node_list():
        return "None of the listed nodes can take this partitioning: see each node below."
    return (
        f"No node of the cluster has {strategy.gpu_model} GPUs (label {PRODUCT_LABEL}); "
        "nothing was labelled. Check that the GPU Operator runs on the cluster, or list the "
        "nodes in the partitioning."
    )


def _busy_words(holders: list[str]) -> str:
    return (
        f"hosts {', '.join(sorted(set(holders)))}; drain it and apply again once they are gone"
    )[:300]


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
        client = kube.client_for(strategy.infrastructure)
        for row in _labelled(strategy):
            node = client.get("Node", row.name)
            if node is None:
                set_node_state(
                    strategy, row.name, MigConfigState.NOT_APPLIED, "not found in the cluster"
                )
            else:
                _read_labels(strategy, row, _labels(node))
    except DriverError as error:
        return _fail(strategy, f"{REFRESH_FAILED}{error}")
    PartitioningStrategy.objects.filter(
        pk=strategy.pk, apply_error__startswith=REFRESH_FAILED
    ).update(apply_error="")
    waiting = strategy.node_states.filter(state__in=_WAITING).exists()
    recent = (
        strategy.apply_requested_at is None
        or timezone.now() - strategy.apply_requested_at < REFRESH_FOR
    )
    if waiting and recent:
        _schedule_refresh(strategy)
        return "still waiting"
    return "done"


def _labelled(strategy: PartitioningStrategy):
    """The nodes the last apply labelled (or found labelled) with its config. A node it
    refused, or could not apply to, stays as the apply left it until the next apply: its
    labels are not this partitioning's doing."""
    rows = strategy.node_states.exclude(state=MigConfigState.REFUSED)
    return rows.exclude(config_label="")


def _read_labels(strategy: PartitioningStrategy, row: NodePartition, labels: dict) -> None:
    wanted = strategy.applied_config
    label = labels.get(MIG_CONFIG_LABEL, "")
    if wanted and label != wanted:
        found, message = MigConfigState.NOT_APPLIED, f"labelled {label or 'nothing'}, not {wanted}"
    else:
        found, message = _reported(labels)
    set_node_state(strategy, row.name, found, message, config_label=label)


def _reported(labels: dict) -> tuple[str, str]:
    """The node's state as mig-manager reports it, and what to say about it."""
    state = labels.get(MIG_STATE_LABEL, "")
    if not state:
        return MigConfigState.PENDING, "mig-manager has not reported yet"
    if state == MigConfigState.FAILED:
        return state, "mig-manager could not repartition the node; see its logs on the node"
    if state in (*_WAITING, MigConfigState.SUCCESS):
        return state, ""
    return MigConfigState.PENDING, f"mig-manager reports {state!r}"
