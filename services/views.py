"""Pages of services deployed into a workspace (the panel on the workspace page)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from portal.roles import CHANGE
from services import actions as services
from services import components as catalog
from services.models import ComponentDeployment, ComponentStatus, ServiceDeployment
from workspaces.access import get_own_workspace, get_workspace_for_user


def _panel(request, workspace):
    deployment = services.live_deployment(workspace)
    recent = (
        ServiceDeployment.objects.filter(workspace=workspace)
        .exclude(pk=deployment.pk if deployment else None)
        .order_by("-created")[:3]
    )
    may_change = services.may_change(request.user, workspace)
    offered = []
    if may_change and deployment is None and workspace.state in services.DEPLOYABLE_STATES:
        offered = list(services.deployable_profiles(request.user, workspace))
        for profile in offered:
            profile.unavailable = services.local_unavailable(
                request.user, profile, workspace.infrastructure
            )
    components = list(deployment.components.all()) if deployment else []
    for item in components:
        item.unavailable = (
            services.unavailable_note(request.user, item.component, item.reason)
            if item.status == ComponentStatus.UNAVAILABLE
            else None
        )
    recent = list(recent.prefetch_related("components"))
    for shown in [deployment, *recent] if deployment else recent:
        shown.reason_shown = services.failure_reason_for(request.user, shown)
    context = {
        "workspace": workspace,
        "deployment": deployment,
        "components": components,
        "recent": recent,
        "offered": offered,
        "may_change": may_change,
        "may_see_logs": services.may_see_logs(request.user, workspace),
        "is_owner": workspace.owner_id == request.user.pk,
        "web_services": services.web_services(deployment),
        "polling": bool(deployment and deployment.in_flight),
    }
    return render(request, "workspaces/services/_panel.html", context)


@login_required
@require_GET
def panel(request, pk: int):
    """The services panel of the workspace page (htmx loads it and polls while in flight)."""
    return _panel(request, get_workspace_for_user(request, pk))


def _after(request, workspace):
    if request.headers.get("HX-Request"):
        return _panel(request, workspace)
    return redirect(workspace)


@login_required
@require_POST
def deploy(request, pk: int):
    workspace = get_workspace_for_user(request, pk, CHANGE)
    services_profile = services.chosen_profile(
        request.user, workspace, request.POST.get("services_profile")
    )
    if services_profile is None:
        messages.error(request, "Choose a services profile to deploy.")
        return _after(request, workspace)
    try:
        services.deploy(request.user, workspace, services_profile)
    except services.ServicesRefused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(request, f"Deploying “{services_profile}”.")
    return _after(request, workspace)


def _deployment(request, pk: int, deployment_pk: int):
    workspace = get_workspace_for_user(request, pk, CHANGE)
    deployment = get_object_or_404(ServiceDeployment, pk=deployment_pk, workspace=workspace)
    deployment.workspace = workspace
    return workspace, deployment


def _act_on_deployment(request, pk: int, deployment_pk: int, action):
    """Run a deployment action (redeploy, remove); a refusal becomes the page's message."""
    workspace, deployment = _deployment(request, pk, deployment_pk)
    try:
        action(request.user, deployment)
    except services.ServicesRefused as refused:
        messages.error(request, str(refused))
    return _after(request, workspace)


@login_required
@require_POST
def redeploy(request, pk: int, deployment_pk: int):
    return _act_on_deployment(request, pk, deployment_pk, services.redeploy)


@login_required
@require_POST
def remove(request, pk: int, deployment_pk: int):
    return _act_on_deployment(request, pk, deployment_pk, services.remove)


@login_required
@require_POST
def reveal_secret(request, pk: int, component_pk: int):
    """The component's credential and a link that uses it, for the owner only."""
    workspace = get_workspace_for_user(request, pk)
    component = get_object_or_404(
        ComponentDeployment.objects.select_related("deployment"),
        pk=component_pk,
        deployment__workspace=workspace,
    )
    component.deployment.workspace = workspace
    secret = services.reveal_secret(request.user, component)
    return render(
        request,
        "workspaces/services/_secret.html",
        {"component": component, "secret": secret},
    )


@login_required
@require_http_methods(["GET", "POST"])
def open_service(request, pk: int, service: str):
    """Open a web service of one's own workspace, logged in.

    The Open button POSTs: the open is audited and the browser redirected to where the
    service runs now, with its token. A GET (an old bookmark, or a link or an image on
    another site, which the browser follows with the owner's cookies) records and reveals
    nothing: it shows that button."""
    workspace = get_own_workspace(request, pk)
    component = services.openable_service(request.user, workspace, service)
    if component is None:
        found = catalog.component(service)
        name = found.name if found else "This service"
        messages.error(request, f"{name} isn't running in this workspace right now.")
        return redirect(workspace)
    if request.method == "GET":
        context = {"workspace": workspace, "item": component}
        return render(request, "workspaces/services/open.html", context)
    response = redirect(services.open_url(request.user, workspace, component))
    # The address carries the service's token: keep it out of caches and of Referer headers.
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response
