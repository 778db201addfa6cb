from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.text import slugify
from django.views.decorators.http import require_POST

from portal import audit
from portal.roles import CHANGE, Area
from portal.views.generic import (
    ObjectDeleteView,
    ObjectDetailView,
    ObjectEditView,
    ObjectListView,
    require,
)
from profiles import catalog, filtersets, forms, tables
from profiles.choices import InfrastructureKind
from profiles.mig import nvml
from profiles.models import ComputeProfile, Infrastructure, ServicesProfile
from services import components
from services.compat import compatibility_rows

# Infrastructure


class InfrastructureList(ObjectListView):
    queryset = tables.infrastructure_rows(Infrastructure.objects.all())
    table = tables.InfrastructureTable
    filterset = filtersets.InfrastructureFilterSet
    empty_message = (
        "No infrastructure yet. Add a public cloud account, a data center or an existing "
        "Kubernetes cluster so compute profiles have somewhere to run."
    )


class InfrastructureDetail(ObjectDetailView):
    queryset = Infrastructure.objects.all()
    template_name = "profiles/infrastructure_detail.html"

    def extra_context(self, request, obj) -> dict:
        usable, reason = obj.usability()
        context = {
            "usable": usable,
            "unusable_reason": reason,
            "instance_types": obj.instance_types.all(),
            "profiles": obj.compute_profiles.all(),
            "credential_keys": sorted(obj.credentials),
            "partitionings": obj.partitionings.all(),
        }
        if obj.kind == InfrastructureKind.LOCAL:
            context["nvml"] = nvml_section()
        return context


def nvml_section() -> dict:
    """This host's GPUs from NVML, each with how its profile table differs from the catalog."""
    found = nvml.inventory()
    gpus = [
        {"gpu": gpu, "differences": nvml.compare_with_catalog(gpu) if gpu.mig_capable else []}
        for gpu in found.gpus
    ]
    return {"reason": found.reason, "gpus": gpus}


class InfrastructureEdit(ObjectEditView):
    queryset = Infrastructure.objects.all()
    form_class = forms.InfrastructureForm
    template_name = "profiles/infrastructure_edit.html"


class InfrastructureDelete(ObjectDeleteView):
    queryset = Infrastructure.objects.all()


# Compute profiles


class ComputeProfileList(ObjectListView):
    queryset = ComputeProfile.objects.select_related("infrastructure").prefetch_related(
        "resource_groups"
    )
    table = tables.ComputeProfileTable
    filterset = filtersets.ComputeProfileFilterSet
    empty_message = (
        "No compute profiles yet. Create one (e.g. Small, Medium, Large) and publish it so "
        "data scientists can request workspaces."
    )


class ComputeProfileDetail(ObjectDetailView):
    queryset = ComputeProfile.objects.select_related(
        "infrastructure", "default_services_profile"
    ).prefetch_related("resource_groups")
    template_name = "profiles/computeprofile_detail.html"

    def extra_context(self, request, obj) -> dict:
        usable, reason = obj.infrastructure.usability()
        return {"usable": usable, "unusable_reason": reason, "totals": obj.totals()}


class ComputeProfileEdit(ObjectEditView):
    queryset = ComputeProfile.objects.all()
    form_class = forms.ComputeProfileForm
    template_name = "profiles/inline_edit.html"


class ComputeProfileDelete(ObjectDeleteView):
    queryset = ComputeProfile.objects.all()


# Services profiles


class ServicesProfileList(ObjectListView):
    queryset = ServicesProfile.objects.prefetch_related("components")
    table = tables.ServicesProfileTable
    filterset = filtersets.ServicesProfileFilterSet
    empty_message = "No services profiles. The turnkey profiles ship with the product."


class ServicesProfileDetail(ObjectDetailView):
    queryset = ServicesProfile.objects.prefetch_related("components")
    template_name = "profiles/servicesprofile_detail.html"

    def extra_context(self, request, obj) -> dict:

        return {"catalog": components.COMPONENTS, "compatibility": compatibility_rows(obj)}


TURNKEY_READ_ONLY = (
    "Turnkey profiles ship with the product and are read-only; clone it to customise."
)


class ServicesProfileEdit(ObjectEditView):
    queryset = ServicesProfile.objects.all()
    form_class = forms.ServicesProfileForm
    template_name = "profiles/inline_edit.html"

    def editable(self, obj) -> str:
        return TURNKEY_READ_ONLY if obj.turnkey else ""


class ServicesProfileDelete(ObjectDeleteView):
    queryset = ServicesProfile.objects.all()

    def deletable(self, obj) -> str:
        return TURNKEY_READ_ONLY if obj.turnkey else ""


@login_required
@require_POST
def servicesprofile_clone(request, pk: int):
    require(request.user, Area.PROFILES, CHANGE)
    original = get_object_or_404(
        ServicesProfile.objects.for_user(request.user, CHANGE).prefetch_related("components"),
        pk=pk,
    )
    with transaction.atomic():
        clone = ServicesProfile.objects.create(
            name=_unique_name(f"{original.name} (copy)"),
            description=original.description,
            published=False,
        )
        for item in original.components.all():
            clone.components.create(
                position=item.position,
                capability=item.capability,
                component=item.component,
                version=item.version,
                parameters=item.parameters,
            )
        audit.record_created(request.user, clone)
    messages.success(request, f"Cloned “{original}”. The copy is unpublished until you publish it.")
    return redirect(clone)


def _unique_name(base: str) -> str:
    name, number = base, 2
    while (
        ServicesProfile.objects.filter(name=name).exists()
        or ServicesProfile.objects.filter(slug=slugify(name)).exists()
    ):
        name, number = f"{base} {number}", number + 1
    return name


# Support matrix


@login_required
def support_matrix(request):
    return render(
        request,
        "profiles/support_matrix.html",
        {
            "providers": catalog.PROVIDERS.values(),
            "instance_types": {
                code: catalog.instance_types_for(code) for code in catalog.PROVIDERS
            },
            "platforms": catalog.DATA_CENTER_PLATFORMS.values(),
            "operating_systems": catalog.OPERATING_SYSTEM_DETAILS.values(),
            "gpu_models": catalog.GPU_MODELS.values(),
            "kubernetes_versions": catalog.KUBERNETES_VERSIONS,
        },
    )
