"""Nodes of a partitioning on the cluster: which host workspaces, which drain, and the
admin's drain action. Applying a partitioning is `pools.mig_apply`.

The partitioning itself (layouts, previews, the mig-parted config) is catalog data in
`profiles.partitioning`; this module is the engine's side: it knows where workspaces run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django.db import transaction
from django.utils import timezone

from pools.lifecycle import GPU_STATES, transition
from pools.models import NodePartition, Workspace
from portal import audit
from profiles.choices import InfrastructureKind, MigConfigState
from profiles.models import Infrastructure, PartitioningStrategy


class PartitioningRefused(Exception):
    """The action cannot go ahead; the message says why and what to do."""


def _workspace_nodes(detail: Mapping) -> set[str]:
    """Node names a driver recorded for a workspace (Kubernetes: pod → node)."""
    nodes = detail.get("nodes") or {}
    names = set(nodes.values()) if isinstance(nodes, Mapping) else set(nodes)
    if detail.get("node"):
        names.add(detail["node"])
    return {name for name in names if isinstance(name, str)}


def busy_nodes(infrastructure: Infrastructure, node_names: Iterable[str]) -> dict[str, list[str]]:
    """Node → the workspaces holding (or about to hold) GPUs there, for the nodes that have
    any. A stopped one holds none (its pods are gone) and does not keep a node from being
    repartitioned: starting it places it again where its GPUs are free."""
    wanted = set(node_names)
    busy: dict[str, list[str]] = {}
    holding = Workspace.objects.filter(infrastructure=infrastructure, state__in=GPU_STATES)
    for workspace in holding.only("id", "name", "detail"):
        for node in _workspace_nodes(workspace.detail or {}) & wanted:
            busy.setdefault(node, []).append(str(workspace))
    return busy


def node_accepts_workspaces(infrastructure: Infrastructure, node_name: str) -> bool:
    """False while an admin drains the node for repartitioning: place nothing new there."""
    return not NodePartition.objects.filter(
        strategy__infrastructure=infrastructure, name=node_name, draining=True
    ).exists()


def draining_nodes(infrastructure: Infrastructure) -> tuple[str, ...]:
    """Names of the nodes of this infrastructure that take no new workspaces."""
    if infrastructure.pk is None:
        return ()
    return tuple(
        NodePartition.objects.filter(strategy__infrastructure=infrastructure, draining=True)
        .values_list("name", flat=True)
        .distinct()
    )


def set_draining(strategy: PartitioningStrategy, node_name: str, draining: bool) -> NodePartition:
    node, _ = NodePartition.objects.update_or_create(
        strategy=strategy, name=node_name, defaults={"draining": draining}
    )
    return node


def set_node_state(
    strategy: PartitioningStrategy,
    name: str,
    state: str,
    message: str = "",
    *,
    config_label: str | None = None,
    actor=None,
) -> NodePartition | None:
    """Record what applying or reading a node found: its state (through the node's
    lifecycle, with an event row when it changes), message, label and the time.

    None when the lifecycle has no such move from the node's state (a refused node is not
    moved by what mig-manager reports) or another worker moved the node first.
    """
    with transaction.atomic():
        node, _ = NodePartition.objects.select_for_update().get_or_create(
            strategy=strategy, name=name
        )
        if node.state != state:
            if not node.lifecycle.allows(node.state, state):
                return None
            words = message or MigConfigState(state).label
            if not transition(node, state, actor=actor, message=words):
                return None
        fields = {"message": message[:300], "heartbeat": timezone.now()}
        if config_label is not None:
            fields["config_label"] = config_label
        NodePartition.objects.filter(pk=node.pk).update(**fields)
    for key, value in fields.items():
        setattr(node, key, value)
    return node


def known_nodes(strategy: PartitioningStrategy) -> list[str]:
    """The listed nodes, else the nodes the portal has seen for this strategy."""
    listed = strategy.node_list()
    if listed:
        return listed
    if strategy.infrastructure.kind == InfrastructureKind.DATA_CENTER:
        return strategy.infrastructure.host_list()
    return [node.name for node in strategy.node_states.all()]


def apply_refusal(busy: Mapping[str, list[str]], lead: str = "Not repartitioned") -> str:
    """Why applying must wait ("" when it may go ahead), for the page and the task."""
    if not busy:
        return ""
    parts = [f"{node} hosts {', '.join(names)}" for node, names in sorted(busy.items())]
    return (
        f"{lead}: {'; '.join(parts)}. Drain the node (no new workspaces go there) "
        "and apply again once its workspaces are stopped or deleted."
    )


def change_draining(user, strategy: PartitioningStrategy, node_name: str, draining: bool) -> None:
    """Drain a node (no new workspaces) or put it back in service, audited."""
    if (
        node_name not in known_nodes(strategy)
        and not strategy.node_states.filter(name=node_name).exists()
    ):
        raise PartitioningRefused(f"{node_name or 'That'} is not a node of this partitioning.")
    with transaction.atomic():
        tracker = audit.ChangeTracker(strategy)
        set_draining(strategy, node_name, draining)
        tracker.record(user)
