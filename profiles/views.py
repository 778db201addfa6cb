from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from portal.roles import CHANGE, VIEW, Area, has_perm
from portal.views.generic import (
    ObjectDeleteView,
    ObjectDetailView,
    ObjectEditView,
    ObjectListView,
    require,
)
from profiles import aws_checks, catalog, cloning, filtersets, forms, tables
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
        credentials = obj.credentials or {}
        context = {
            "usable": usable,
            "unusable_reason": reason,
            "instance_types": obj.instance_types.all(),
            "profiles": obj.compute_profiles.all(),
            "credential_keys": sorted(k for k in credentials if k not in aws_checks.EKS_SETTINGS),
            "eks_settings": [
                (label, ", ".join(aws_checks.split_ids(credentials.get(key))))
                for key, label in aws_checks.EKS_SETTINGS.items()
            ]
            if obj.provider == "aws"
            else [],
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
    # A GPU NVML cannot read is named too: it is left out of what workspaces are given, and
    # the table is where an administrator counts the host's GPUs.
    return {"reason": found.reason, "gpus": gpus, "unreadable": found.unreadable}


class InfrastructureEdit(ObjectEditView):
    queryset = Infrastructure.objects.all()
    form_class = forms.InfrastructureForm
    template_name = "profiles/infrastructure_edit.html"

    def save(self, request, form):
        """Save, then have the engine check the entry once the save commits; the detail
        page shows "Checking…" and follows the result (`infrastructure_health`)."""
        infrastructure = form.save()
        infrastructure.request_health_check(reset=not form.health_unaffected())
        return infrastructure


@login_required
@require_GET
def infrastructure_health(request, pk: int):
    """The detail page's health panel; it polls itself while a check is pending."""
    require(request.user, Area.INFRASTRUCTURE, VIEW)
    infrastructure = get_object_or_404(Infrastructure.objects.for_user(request.user, VIEW), pk=pk)
    return render(
        request, "profiles/infrastructure_health.html", health_context(request, infrastructure)
    )


@login_required
@require_POST
def infrastructure_check(request, pk: int):
    """ "Check now": ask the engine for a check; the panel shows it pending, then its result."""
    require(request.user, Area.INFRASTRUCTURE, CHANGE)
    infrastructure = get_object_or_404(Infrastructure.objects.for_user(request.user, CHANGE), pk=pk)
    infrastructure.request_health_check()
    infrastructure.refresh_from_db()
    if request.headers.get("HX-Request"):
        return render(
            request,
            "profiles/infrastructure_health.html",
            health_context(request, infrastructure),
        )
    messages.info(request, f"Checking “{infrastructure}”.")
    return redirect(infrastructure)


def health_context(request, infrastructure: Infrastructure) -> dict:
    return {
        "object": infrastructure,
        "can_change": has_perm(request.user, Area.INFRASTRUCTURE, CHANGE),
    }


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
    clone = cloning.clone_services_profile(request.user, original)
    messages.success(request, f"Cloned “{original}”. The copy is unpublished until you publish it.")
    return redirect(clone)


# Support matrix


@login_required
def support_matrix(request):
    rows = catalog.support_rows()
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
            "support_rows": rows,
            "provisioning_codes": [row.code for row in rows if row.provisions],
        },
    )
