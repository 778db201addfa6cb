"""Partitioning strategy pages: CRUD through the generic views, the live feedback partials,
the catalog of valid layouts, and the apply / refresh / drain actions."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from portal import audit
from portal.models import AuditAction
from portal.roles import CHANGE, VIEW, Area, has_perm
from portal.views.generic import (
    ObjectDeleteView,
    ObjectDetailView,
    ObjectEditView,
    ObjectListView,
    require,
)
from profiles import filtersets, mig_apply, partitioning, tables
from profiles.choices import InfrastructureKind, MigConfigState
from profiles.forms.partitioning import PartitioningStrategyForm
from profiles.mig import catalog as mig_catalog
from profiles.mig import layout, migparted
from profiles.models import Infrastructure, PartitioningStrategy

_WAITING = (MigConfigState.PENDING, MigConfigState.REBOOTING)


class PartitioningList(ObjectListView):
    queryset = PartitioningStrategy.objects.select_related("infrastructure")
    table = tables.PartitioningStrategyTable
    filterset = filtersets.PartitioningStrategyFilterSet
    empty_message = (
        "No GPU is partitioned yet. Choose, per infrastructure and GPU model, whole GPUs, "
        "a named MIG layout or a custom mix; compute profiles can then ask for MIG slices."
    )


class PartitioningDetail(ObjectDetailView):
    queryset = PartitioningStrategy.objects.select_related("infrastructure")
    template_name = "profiles/partitioningstrategy_detail.html"

    def extra_context(self, request, obj) -> dict:
        return detail_context(obj)


def detail_context(obj: PartitioningStrategy) -> dict:
    nodes = node_rows(obj)
    config = mig_apply.infrastructure_config(obj.infrastructure)
    return {
        "preview": partitioning.strategy_preview(obj),
        "config_yaml": migparted.to_yaml(config),
        "config_name": obj.config_name(),
        "nodes": nodes,
        "waiting": any(row["state"] in _WAITING for row in nodes),
        "is_kubernetes": obj.infrastructure.kind == InfrastructureKind.KUBERNETES,
    }


def node_rows(obj: PartitioningStrategy) -> list[dict]:
    """Every node the portal knows for the strategy, with its state and workspaces."""
    states = {row.name: row for row in obj.node_states.all()}
    names = sorted(set(partitioning.known_nodes(obj)) | set(states))
    busy = partitioning.busy_nodes(obj.infrastructure, names)
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
                "checked_at": row.checked_at if row else None,
                "workspaces": busy.get(name, []),
            }
        )
    return rows


class PartitioningEdit(ObjectEditView):
    queryset = PartitioningStrategy.objects.all()
    form_class = PartitioningStrategyForm
    template_name = "profiles/partitioningstrategy_edit.html"

    def new_object(self, request):
        """`?infrastructure=<pk>&gpu_model=<code>` pre-fills the form (links from elsewhere)."""
        obj = PartitioningStrategy()
        wanted = request.GET.get("infrastructure", "")
        if wanted.isdigit():
            found = Infrastructure.objects.for_user(request.user, VIEW).filter(pk=wanted).first()
            if found:
                obj.infrastructure = found
        if request.GET.get("gpu_model") in mig_catalog.mig_capable_models():
            obj.gpu_model = request.GET["gpu_model"]
        return obj

    def render_form(self, request, form, obj):
        if form.preview is None and obj.pk:
            form.preview = partitioning.strategy_preview(obj)
        elif form.preview is None:
            form.preview = partitioning.preview(form.chosen_model, None)
        return super().render_form(request, form, obj)


class PartitioningDelete(ObjectDeleteView):
    queryset = PartitioningStrategy.objects.all()

    def deletable(self, obj) -> str:
        used = obj.infrastructure.compute_profiles.filter(
            resource_groups__gpu_model=obj.gpu_model
        ).exclude(resource_groups__mig_profile="")
        names = ", ".join(sorted({str(p) for p in used}))
        if names:
            return (
                f"Compute profiles ask for MIG slices of {obj.gpu_model} here ({names}); "
                "change them to whole GPUs first."
            )
        return ""


def _editable_strategy(request, pk: int | None):
    if pk is None:
        return PartitioningStrategy()
    return get_object_or_404(PartitioningStrategy.objects.for_user(request.user, CHANGE), pk=pk)


@login_required
@require_POST
def partitioning_preview(request, pk: int | None = None):
    """The live feedback partial: the form's data in, validity + drawing + offer out."""
    require(request.user, Area.PROFILES, CHANGE)
    form = PartitioningStrategyForm(
        request.POST, instance=_editable_strategy(request, pk), user=request.user
    )
    form.is_valid()
    return render(
        request,
        "profiles/partitioning_feedback.html",
        {"preview": form.preview, "form": form, "gpu_model": form.chosen_model},
    )


@login_required
@require_GET
def partitioning_model_fields(request, pk: int | None = None):
    """The fields that depend on the GPU model (named layouts, custom counts), re-rendered
    when the model changes; the values typed so far are kept where the profile exists."""
    require(request.user, Area.PROFILES, CHANGE)
    # Unbound, with what was typed as initial values: no errors before the admin is done.
    typed = {key: value for key, value in request.GET.items() if key != "csrfmiddlewaretoken"}
    form = PartitioningStrategyForm(
        initial=typed, instance=_editable_strategy(request, pk), user=request.user
    )
    return render(request, "profiles/partitioning_model_fields.html", {"form": form})


@login_required
def partitioning_layouts(request, gpu_model: str):
    """Every valid layout of a GPU model, the maximal ones (nothing more fits) marked."""
    require(request.user, Area.PROFILES, VIEW)
    if gpu_model not in mig_catalog.mig_capable_models():
        raise Http404("No such MIG-capable GPU model.")
    maximal = layout.maximal_layouts(gpu_model)
    rows = []
    for counts in layout.enumerate_layouts(gpu_model):
        result = layout.validate_layout(gpu_model, counts)
        rows.append(
            {
                "counts": counts,
                "drawing": partitioning.drawing_for(gpu_model, result.placements),
                "maximal": counts in maximal,
            }
        )
    return render(
        request,
        "profiles/partitioning_layouts.html",
        {
            "gpu_model": gpu_model,
            "geometry": mig_catalog.geometry(gpu_model),
            "rows": rows,
            "maximal_count": len(maximal),
            "models": mig_catalog.mig_capable_models(),
            "named": mig_catalog.named_layouts(gpu_model),
        },
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
def partitioning_apply(request, pk: int):
    """Enqueue writing the ConfigMap and labelling the nodes; refuse while nodes are busy."""
    strategy = _strategy_for_change(request, pk)
    infrastructure = strategy.infrastructure
    if infrastructure.kind != InfrastructureKind.KUBERNETES:
        messages.error(
            request,
            "Applying from the portal works on existing Kubernetes clusters with the GPU "
            "Operator. Elsewhere, apply the mig-parted config below with nvidia-mig-parted.",
        )
        return redirect(strategy)
    usable, reason = infrastructure.usability()
    if not usable:
        messages.error(request, reason)
        return redirect(strategy)
    busy = partitioning.busy_nodes(infrastructure, partitioning.known_nodes(strategy))
    refusal = partitioning.apply_refusal(strategy, busy)
    if refusal:
        messages.error(request, refusal)
        return redirect(strategy)
    with transaction.atomic():
        PartitioningStrategy.objects.filter(pk=strategy.pk).update(
            apply_requested_at=timezone.now(), apply_error=""
        )
        audit.record(
            request.user,
            AuditAction.ACTION,
            strategy,
            after={"applied_config": strategy.config_name()},
            message=f"apply {strategy.config_name()}",
        )
        mig_apply.enqueue_apply(strategy)
    messages.success(
        request,
        f"Applying {strategy.config_name()}: the ConfigMap is written and the nodes labelled "
        "in the background; the states below follow mig-manager.",
    )
    return redirect(strategy)


@login_required
@require_POST
def partitioning_refresh(request, pk: int):
    strategy = _strategy_for_change(request, pk)
    with transaction.atomic():
        mig_apply.enqueue_refresh(strategy)
    messages.info(request, "Reading the nodes' MIG state labels in the background.")
    return redirect(strategy)


@login_required
@require_POST
def partitioning_drain(request, pk: int):
    """Mark a node draining (no new workspaces) or put it back in service."""
    strategy = _strategy_for_change(request, pk)
    node = request.POST.get("node", "")
    if (
        node not in partitioning.known_nodes(strategy)
        and not strategy.node_states.filter(name=node).exists()
    ):
        messages.error(request, f"{node or 'That'} is not a node of this partitioning.")
        return redirect(strategy)
    draining = request.POST.get("draining") == "1"
    with transaction.atomic():
        tracker = audit.ChangeTracker(strategy)
        partitioning.set_draining(strategy, node, draining)
        tracker.record(request.user)
    verb = "Draining" if draining else "Back in service:"
    messages.success(request, f"{verb} {node}.")
    return redirect(strategy)


@login_required
@require_GET
def partitioning_nodes(request, pk: int):
    """The node table alone, polled by the page while a node is pending or rebooting."""
    require(request.user, Area.PROFILES, VIEW)
    strategy = get_object_or_404(
        PartitioningStrategy.objects.for_user(request.user, VIEW).select_related("infrastructure"),
        pk=pk,
    )
    nodes = node_rows(strategy)
    return render(
        request,
        "profiles/partitioning_nodes.html",
        {
            "object": strategy,
            "nodes": nodes,
            "waiting": any(row["state"] in _WAITING for row in nodes),
            "can_change": has_perm(request.user, Area.PROFILES, CHANGE),
        },
    )
