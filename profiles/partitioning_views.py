"""Partitioning strategy pages: CRUD through the generic views, the live feedback partials
and the catalog of valid layouts. The node states and the apply / refresh / drain actions
are the engine's (`pools.partitioning_views`)."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from portal.roles import CHANGE, VIEW, Area
from portal.urlhelpers import id_param
from portal.views.generic import (
    ObjectDeleteView,
    ObjectDetailView,
    ObjectEditView,
    ObjectListView,
    require,
)
from profiles import filtersets, partitioning, tables
from profiles.choices import InfrastructureKind
from profiles.forms.partitioning import PartitioningStrategyForm
from profiles.mig import catalog as mig_catalog
from profiles.mig import layout, migparted
from profiles.models import Infrastructure, PartitioningStrategy

# Layouts drawn on one page of the layouts page: its HTML stays under 50 KB.
LAYOUTS_PER_PAGE = 25


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
    """The catalog's side of the page; the node states are a panel the engine serves
    (`pools.partitioning_views.nodes`), loaded into the page by htmx."""
    config = partitioning.infrastructure_config(obj.infrastructure)
    return {
        "preview": partitioning.strategy_preview(obj),
        "config_yaml": migparted.to_yaml(config),
        "config_name": obj.config_name(),
        "is_kubernetes": obj.infrastructure.kind == InfrastructureKind.KUBERNETES,
    }


class PartitioningEdit(ObjectEditView):
    queryset = PartitioningStrategy.objects.all()
    form_class = PartitioningStrategyForm
    template_name = "profiles/partitioningstrategy_edit.html"

    def new_object(self, request):
        """`?infrastructure=<pk>&gpu_model=<code>` pre-fills the form (links from elsewhere)."""
        obj = PartitioningStrategy()
        wanted = id_param(request.GET.get("infrastructure"))
        if wanted is not None:
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
        return partitioning.deletion_refusal(obj)


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
    """The valid layouts of a GPU model, a page at a time, the maximal ones (nothing more
    fits) marked or shown alone. All 127 layouts of an A100 on one page were 142 KB of
    HTML and took seconds to draw; a page of LAYOUTS_PER_PAGE stays under 50 KB."""
    require(request.user, Area.PROFILES, VIEW)
    if gpu_model not in mig_catalog.mig_capable_models():
        raise Http404("No such MIG-capable GPU model.")
    maximal = layout.maximal_layouts(gpu_model)
    every = layout.enumerate_layouts(gpu_model)
    maximal_only = request.GET.get("show") == "maximal"
    shown = [counts for counts in every if counts in maximal] if maximal_only else every
    page = Paginator(shown, LAYOUTS_PER_PAGE).get_page(request.GET.get("page"))
    rows = []
    for counts in page:
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
            "page": page,
            "maximal_only": maximal_only,
            "layout_count": len(every),
            "maximal_count": len(maximal),
            "models": mig_catalog.mig_capable_models(),
            "named": mig_catalog.named_layouts(gpu_model),
        },
    )
