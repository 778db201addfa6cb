"""The engine's part of the partitioning page: node states (a panel the catalog's detail
page loads), and the apply / refresh / drain actions. Rules live in `pools.mig_apply` and
`pools.partitions`; these views only translate them into messages."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from pools import mig_apply, partitions
from pools.forms import DrainForm
from pools.partitions import PartitioningRefused
from portal.roles import CHANGE, VIEW, Area, has_perm
from portal.views.generic import require
from profiles.choices import MigConfigState
from profiles.models import PartitioningStrategy

_WAITING = (MigConfigState.PENDING, MigConfigState.REBOOTING)
_FAILED = (MigConfigState.REFUSED, MigConfigState.FAILED)


def node_rows(obj: PartitioningStrategy) -> list[dict]:
    """Every node the portal knows for the strategy, with its state and workspaces."""
    states = {row.name: row for row in obj.node_states.all()}
    names = sorted(set(partitions.known_nodes(obj)) | set(states))
    busy = partitions.busy_nodes(obj.infrastructure, names)
    rows = []
    for name in names:
        row = states.get(name)
        rows.append(
            {
                "name": name,
                "draining": bool(row and row.draining),
                "state": row.state if row else "",
                "state_label": row.get_state_display() if row else "Not applied",
                "config_label": row.config_label if row else "",
                "message": row.message if row else "",
                "checked_at": row.heartbeat if row else None,
                "workspaces": busy.get(name, []),
            }
        )
    return rows


def _failed(row: dict) -> bool:
    """Refused, failed, or not applied for a reason (missing, other GPUs, relabelled)."""
    return row["state"] in _FAILED or (
        row["state"] == MigConfigState.NOT_APPLIED and row["message"]
    )


def _strategy_for_change(request, pk: int) -> PartitioningStrategy:
    require(request.user, Area.PROFILES, CHANGE)
    return get_object_or_404(
        PartitioningStrategy.objects.for_user(request.user, CHANGE).select_related(
            "infrastructure"
        ),
        pk=pk,
    )


@login_required
@require_POST
def apply(request, pk: int):
    """Enqueue writing the ConfigMap and labelling the nodes; refuse while nodes are busy."""
    strategy = _strategy_for_change(request, pk)
    try:
        mig_apply.request_apply(request.user, strategy)
    except PartitioningRefused as refused:
        messages.error(request, str(refused))
        return redirect(strategy)
    messages.success(
        request,
        f"Applying {strategy.config_name()}: the ConfigMap is written and the nodes labelled "
        "in the background; the states below follow mig-manager.",
    )
    return redirect(strategy)


@login_required
@require_POST
def refresh(request, pk: int):
    strategy = _strategy_for_change(request, pk)
    mig_apply.request_refresh(strategy)
    messages.info(request, "Reading the nodes' MIG state labels in the background.")
    return redirect(strategy)


@login_required
@require_POST
def drain(request, pk: int):
    """Mark a node draining (no new workspaces) or put it back in service."""
    strategy = _strategy_for_change(request, pk)
    form = DrainForm(request.POST)
    if not form.is_valid():
        messages.error(request, "That is not a node of this partitioning.")
        return redirect(strategy)
    node, draining = form.cleaned_data["node"], form.cleaned_data["draining"]
    try:
        partitions.change_draining(request.user, strategy, node, draining)
    except PartitioningRefused as refused:
        messages.error(request, str(refused))
        return redirect(strategy)
    verb = "Draining" if draining else "Back in service:"
    messages.success(request, f"{verb} {node}.")
    return redirect(strategy)


@login_required
@require_GET
def nodes(request, pk: int):
    """The node table alone, polled by the page while a node is pending or rebooting."""
    require(request.user, Area.PROFILES, VIEW)
    strategy = get_object_or_404(
        PartitioningStrategy.objects.for_user(request.user, VIEW).select_related("infrastructure"),
        pk=pk,
    )
    nodes = node_rows(strategy)
    return render(
        request,
        "pools/partitioning_nodes.html",
        {
            "object": strategy,
            "nodes": nodes,
            "waiting": any(row["state"] in _WAITING for row in nodes),
            "failed": [row for row in nodes if _failed(row)],
            "can_change": has_perm(request.user, Area.PROFILES, CHANGE),
        },
    )
