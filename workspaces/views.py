from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from pools import claims, idle, promises, watch
from pools.lifecycle import LIVE_STATES, State
from pools.models import Workspace
from portal.roles import USE, VIEW, Area, has_perm
from portal.views.generic import ObjectListView, require
from profiles.models import ComputeProfile
from services import actions as services
from services.models import ServiceDeployment
from usage import prices as usage_prices
from workspaces import actions, offers, quotas
from workspaces.access import get_workspace_for_user
from workspaces.filtersets import WorkspaceFilterSet
from workspaces.forms import WorkspaceRequestForm
from workspaces.tables import WorkspaceTable


def _my_workspaces(user) -> list[Workspace]:
    """The user's workspaces, each with `web_services`: what its Open buttons open, and
    `idle_stop`: when it will be stopped for being idle, if its owner was warned."""
    live_stacks = Prefetch(
        "service_deployments",
        queryset=ServiceDeployment.objects.filter(state__in=LIVE_STATES).prefetch_related(
            "components"
        ),
        to_attr="live_stacks",
    )
    workspaces = list(
        Workspace.objects.filter(owner=user)
        .exclude(state="deleted")
        .select_related("profile", "team")
        .prefetch_related("events", live_stacks)
    )
    for workspace in workspaces:
        stack = workspace.live_stacks[0] if workspace.live_stacks else None
        workspace.web_services = services.web_services(stack)
        workspace.idle_stop = idle.announced_stop(workspace)
    return workspaces


def _render_mine(request, error: str = ""):
    workspaces = _my_workspaces(request.user)
    context = {
        "workspaces": workspaces,
        "polling": any(ws.in_flight for ws in workspaces),
        "error": error,
    }
    return render(request, "workspaces/_my_workspaces.html", context)


@login_required
@require_GET
def self_service(request):
    """The data scientist's page: profiles they may use, their quota and their workspaces."""
    require(request.user, Area.SELF_SERVICE, USE)
    profiles = list(
        ComputeProfile.objects.usable_by(request.user)
        .select_related("infrastructure", "default_services_profile")
        .prefetch_related("resource_groups")
        # For the estimates, in the same query.
        .annotate(ready_now=claims.ready_now(), **claims.on_the_way_annotations())
    )
    profiles = offers.offers(request.user, profiles)
    usage_prices.annotate_costs(profiles)
    workspaces = _my_workspaces(request.user)
    context = {
        "profiles": profiles,
        "usages": quotas.usage_of(request.user),
        "workspaces": workspaces,
        "polling": any(ws.in_flight for ws in workspaces),
        "services_profiles": services.requestable_profiles(request.user),
    }
    return render(request, "workspaces/self_service.html", context)


@login_required
@require_POST
def request_workspace(request, profile_pk: int):
    require(request.user, Area.SELF_SERVICE, USE)
    profile = get_object_or_404(ComputeProfile.objects.usable_by(request.user), pk=profile_pk)
    # Every field is checked before anything is created: a refused request leaves nothing.
    form = WorkspaceRequestForm(request.POST, user=request.user)
    if not form.is_valid():
        messages.error(request, f"Not requested. {form.refusal()}")
        return redirect("workspaces:self_service")
    stack = form.cleaned_data["services_profile"]
    try:
        with transaction.atomic():
            workspace = actions.request_workspace(request.user, profile, form.cleaned_data["name"])
            services.request_with_workspace(request, workspace, stack.pk if stack else None)
    except actions.RequestRefused as refused:
        messages.error(request, str(refused))
    else:
        note = getattr(workspace, "claim_message", "")
        messages.success(
            request,
            f"Requested workspace “{workspace}” of {profile}" + (f": {note}." if note else "."),
        )
    return redirect("workspaces:self_service")


@login_required
@require_GET
def my_workspaces(request):
    """The live-updating part of the self-service page (htmx polls it)."""
    require(request.user, Area.SELF_SERVICE, USE)
    return _render_mine(request)


# How often the workspace page asks for the workspace's state: often while a worker moves
# it (or repairs it), now and then while it is ready (the watcher may find it degraded).
POLL_IN_FLIGHT = "2s"
POLL_READY = "10s"


def _poll_every(workspace: Workspace) -> str:
    if workspace.in_flight:
        return POLL_IN_FLIGHT
    return POLL_READY if workspace.state == State.READY else ""


@login_required
@require_GET
def detail(request, pk: int):
    """The workspace page; for htmx, its live part (state, properties, events) alone."""
    workspace = get_workspace_for_user(request, pk)
    live = bool(request.headers.get("HX-Request"))
    context = {
        "workspace": workspace,
        "idle_stop": idle.announced_stop(workspace),
        "waiting_for": _waiting_for(workspace),
        "events": workspace.events.select_related("actor"),
        "is_admin": has_perm(request.user, Area.WORKSPACES, VIEW),
        "may_delete": actions.may_change(request.user, workspace),
        "may_change": actions.may_change(request.user, workspace),
        "poll_every": _poll_every(workspace),
        "max_repairs": watch.MAX_REPAIRS,
        "oob": live,
    }
    template = "workspaces/_workspace_live.html" if live else "workspaces/workspace_detail.html"
    return render(request, template, context)


def _waiting_for(workspace: Workspace) -> dict | None:
    """The warm instance a provisioning workspace waits for (`pools.promises`): its name
    and its latest progress step, or None."""
    if workspace.state != State.PROVISIONING:
        return None
    instance = promises.promised_to(workspace)
    if instance is None:
        return None
    progress = instance.events.exclude(message__startswith=promises.PROMISED)
    latest = progress.order_by("-timestamp", "-id").first()
    return {"name": instance.resource_name, "since": instance.created, "latest": latest}


@login_required
@require_POST
def delete(request, pk: int):
    return _act(request, pk, actions.delete_workspace, "Deleting")


def _after_action(request, workspace: Workspace, done: str = "", error: str = ""):
    """The self-service list for htmx (its forms), with the refusal if any; else back to
    the workspace's page (its forms), with the message: an action keeps the user where
    they were."""
    if request.headers.get("HX-Request"):
        return _render_mine(request, error)
    if error:
        messages.error(request, error)
    else:
        messages.success(request, done)
    return redirect(workspace)


def _act(request, pk: int, action, verb: str):
    workspace = get_workspace_for_user(request, pk, "change")
    try:
        action(request.user, workspace)
    except actions.RequestRefused as refused:
        return _after_action(request, workspace, error=str(refused))
    return _after_action(request, workspace, done=f"{verb} workspace “{workspace}”.")


@login_required
@require_POST
def stop(request, pk: int):
    """Stop a ready workspace: its GPUs are released, its files kept (issue 5)."""
    return _act(request, pk, actions.stop_workspace, "Stopping")


@login_required
@require_POST
def start(request, pk: int):
    """Start a stopped workspace again, if its group's GPU quota has room."""
    return _act(request, pk, actions.start_workspace, "Starting")


@login_required
@require_POST
def reveal_secret(request, pk: int):
    """Show the workspace's token to its owner, once."""
    workspace = get_workspace_for_user(request, pk)
    secret = actions.reveal_secret(request.user, workspace)
    return render(request, "workspaces/_secret.html", {"workspace": workspace, "secret": secret})


class WorkspaceList(ObjectListView):
    """Every workspace, for administrators, filtered by user, group, profile and state."""

    url_namespace = "workspaces"  # the model is the engine's; its pages are here
    queryset = Workspace.objects.select_related("owner", "team", "profile")
    table = WorkspaceTable
    filterset = WorkspaceFilterSet
    addable = False
    empty_message = "No workspaces yet. They appear here as soon as users request them."
