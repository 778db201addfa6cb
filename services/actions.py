"""Services deployed into workspaces: the writes (deploy, redeploy, remove, reveal).

Each write checks access, changes the data in one transaction with its audit entry and
enqueues the work on commit, like `workspaces.actions`.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.db import transaction
from django.db.models import Q

from pools.lifecycle import GPU_STATES, LIVE_STATES, State, transition
from pools.models import Workspace
from portal import audit
from portal.models import AuditAction
from portal.roles import CHANGE, USE, VIEW, Area, has_perm
from portal.urlhelpers import id_param
from profiles.models import ServicesProfile
from services import components as catalog
from services import tasks
from services.backends.by_driver import backend_for
from services.models import ComponentDeployment, ComponentStatus, ServiceDeployment
from workspaces import quotas

# Workspace states a stack may be deployed into: it runs once the workspace is ready.
DEPLOYABLE_STATES = (State.REQUESTED, State.PROVISIONING, State.READY)
# ... and those it may be redeployed in: also while the workspace is being repaired, and
# while it is stopped, to be deployed again as it starts (`tasks.start_for_workspace`).
REDEPLOYABLE_STATES = (*DEPLOYABLE_STATES, State.DEGRADED, *tasks.STOPPED_STATES)


class ServicesRefused(Exception):
    """A services request the user cannot make; the message says why, for the page."""


def may_change(user, workspace: Workspace) -> bool:
    if workspace.owner_id == user.pk:
        return has_perm(user, Area.SELF_SERVICE, USE)
    return has_perm(user, Area.WORKSPACES, CHANGE)


def may_see_logs(user, workspace: Workspace) -> bool:
    """Log tails are for the workspace's owner and administrators."""
    return workspace.owner_id == user.pk or has_perm(user, Area.WORKSPACES, VIEW)


def deployable_profiles(user, workspace: Workspace):
    """Published services profiles the workspace's owner's groups may use."""
    return ServicesProfile.objects.usable_by(workspace.owner).prefetch_related("components")


def may_run(owner, deployment: ServiceDeployment) -> bool:
    """Whether the workspace's owner may still run the stack's services profile (to
    redeploy it, or deploy it again as the workspace starts): one their groups may use,
    or the default of the workspace's compute profile, which comes with that profile."""
    chosen = deployment.services_profile_id
    if chosen is None:  # deleted
        return False
    compute_profile = deployment.workspace.profile
    if compute_profile is not None and chosen == compute_profile.default_services_profile_id:
        return True
    return ServicesProfile.objects.usable_by(owner).filter(pk=chosen).exists()


def _refuse_without_room(workspace: Workspace, gpus: int, services_profile_name: str) -> None:
    """ServicesRefused when the GPUs the stack holds of its own (`tasks.own_gpus`) do not
    fit the group the workspace is charged to (locked until the end of the transaction)."""
    what = f"the services profile “{services_profile_name}”"
    blocked = quotas.stack_room(workspace, gpus, what)
    if blocked:
        raise ServicesRefused("Quota reached: " + "; ".join(blocked) + ".")


def _lock_in_state(workspace: Workspace, states: tuple[str, ...]) -> None:
    """Lock the workspace's row until the end of the transaction, so its stacks change one
    request at a time, and read again what a Start, Stop or Delete committed meanwhile
    (its state, the group it is charged to): ServicesRefused unless its state is in
    `states`."""
    Workspace.objects.select_for_update().filter(pk=workspace.pk).first()
    workspace.refresh_from_db(fields=["team", "state"])
    if workspace.state not in states:
        raise ServicesRefused(f"The workspace is {workspace.get_state_display().lower()}.")


def _live_stack_besides(
    workspace: Workspace, target_name: str, deployment: ServiceDeployment | None = None
) -> bool:
    """Whether the workspace (or its target on its infrastructure) has a live stack other
    than `deployment`: it may have one only (a unique constraint says so)."""
    live = ServiceDeployment.objects.filter(state__in=LIVE_STATES).filter(
        Q(workspace=workspace) | Q(infrastructure=workspace.infrastructure, target_name=target_name)
    )
    if deployment is not None:
        live = live.exclude(pk=deployment.pk)
    return live.exists()


def chosen_profile(user, workspace: Workspace, value: str | None) -> ServicesProfile | None:
    """The services profile a deploy form names, if it is one offered for the workspace;
    None for anything else (not an id, no such profile, or one that is not offered)."""
    pk = id_param(value)
    if pk is None:
        return None
    return deployable_profiles(user, workspace).filter(pk=pk).first()


def live_deployment(workspace: Workspace) -> ServiceDeployment | None:
    return (
        ServiceDeployment.objects.filter(workspace=workspace, state__in=LIVE_STATES)
        .prefetch_related("components")
        .first()
    )


def sees_admin_hints(user) -> bool:
    """Install commands and driver reasons are for those who can act on them."""
    return has_perm(user, Area.PROFILES, CHANGE)


def unavailable_note(user, code: str, why: str) -> dict:
    """What `user` reads about a component that is unavailable for the reason `why`:
    `message` in a data scientist's words, and `hint` (the reason) for administrators only."""
    found = catalog.component(code)
    message = found.unavailable_message() if found else "This component isn't available here."
    return {"message": message, "hint": why if sees_admin_hints(user) else ""}


def failure_reason_for(user, deployment: ServiceDeployment) -> str:
    """The deployment's failure reason as `user` may read it: a failure because none of its
    components is available here lists their reasons (install commands, drivers), which
    only administrators read; others read the plain wording."""
    rows = list(deployment.components.all())
    nothing_ran = rows and all(row.status == ComponentStatus.UNAVAILABLE for row in rows)
    if not deployment.failure_reason or not nothing_ran or sees_admin_hints(user):
        return deployment.failure_reason
    notes = [unavailable_note(user, row.component, row.reason)["message"] for row in rows]
    return "Nothing of this services profile is available here: " + " ".join(notes)


def local_unavailable(user, services_profile: ServicesProfile, infrastructure) -> list[dict]:
    """What `user` reads about components of the profile that will not run on
    `infrastructure` (empty if all will); see `unavailable_note`."""

    backend = backend_for(infrastructure)
    notes = []
    for item in services_profile.components.all():
        found = catalog.component(item.component)
        if found is None:
            continue
        if backend is None:
            why = f"{found.name}: not available on {infrastructure} yet."
        else:
            ok, why = backend.availability(found)
            if ok:
                continue
        notes.append(unavailable_note(user, item.component, why))
    return notes


@transaction.atomic
def deploy(user, workspace: Workspace, services_profile: ServicesProfile) -> ServiceDeployment:
    """Deploy `services_profile` into a ready workspace (or once it is ready)."""
    if not may_change(user, workspace):
        raise ServicesRefused("You may not change this workspace.")
    if not deployable_profiles(user, workspace).filter(pk=services_profile.pk).exists():
        # Not its name: a profile that is not offered (unpublished, or another group's) is
        # none of this user's business.
        raise ServicesRefused("That services profile is not offered here.")
    _lock_in_state(workspace, DEPLOYABLE_STATES)
    spec = tasks.spec_of(workspace)
    if _live_stack_besides(workspace, spec.name):
        raise ServicesRefused("A services profile is already deployed here; remove it first.")
    components = services_profile.components.all()
    gpus = tasks.own_gpus(workspace.infrastructure, spec, components)
    _refuse_without_room(workspace, gpus, services_profile.name)
    deployment = tasks.create_deployment(
        workspace, services_profile, user=user, workspace=workspace
    )
    audit.record(
        user, AuditAction.ACTION, workspace, message=f"deployed services “{services_profile}”"
    )
    if workspace.state == State.READY:
        transaction.on_commit(lambda: tasks.enqueue_deploy(deployment.pk))
    # else: `tasks.workspace_ready` enqueues it when the workspace is ready.
    return deployment


@transaction.atomic
def redeploy(user, deployment: ServiceDeployment) -> bool:
    """Restart every component of a ready or failed deployment (fresh credentials)."""
    if not may_change(user, deployment.workspace):
        raise ServicesRefused("You may not change this workspace.")
    if deployment.state not in (State.READY, State.FAILED):
        raise ServicesRefused("Only a ready or failed deployment can be redeployed.")
    workspace = deployment.workspace
    _lock_in_state(workspace, REDEPLOYABLE_STATES)
    if _live_stack_besides(workspace, deployment.target_name, deployment):
        # An older stack of its history: the one live now goes first.
        raise ServicesRefused(
            "Another services profile is deployed here now; remove it first to redeploy "
            f"“{deployment.profile_name}”."
        )
    if not may_run(workspace.owner, deployment):
        who = "You" if workspace.owner_id == user.pk else "The workspace's owner"
        raise ServicesRefused(
            f"{who} may no longer use the services profile “{deployment.profile_name}”; "
            "remove it instead."
        )
    # A failed stack counts against no quota; redeployed into a workspace that holds its
    # GPUs, it takes its own again (a ready one is counted already, a stopped workspace's
    # is checked when it starts).
    if deployment.state == State.FAILED and workspace.state in GPU_STATES:
        gpus = quotas.deployed_stack_gpus(deployment)
        _refuse_without_room(workspace, gpus, deployment.profile_name)
    if not transition(deployment, State.REQUESTED, actor=user, message="redeploy requested"):
        return False
    for row in deployment.components.all():
        row.move(
            ComponentStatus.PENDING,
            reason="",
            log_tail="",
            endpoints=[],
            secret="",
            detail={},
            message=f"{row.component_name} to be redeployed",
        )
    audit.record(
        user,
        AuditAction.ACTION,
        deployment.workspace,
        message=f"redeployed services “{deployment.profile_name}”",
    )
    transaction.on_commit(lambda: tasks.enqueue_deploy(deployment.pk))
    return True


@transaction.atomic
def remove(user, deployment: ServiceDeployment) -> bool:
    """Stop and delete every component of the deployment, whatever state it is in."""
    if not may_change(user, deployment.workspace):
        raise ServicesRefused("You may not change this workspace.")
    if deployment.state in (State.DELETING, State.DELETED):
        return False
    if not transition(deployment, State.DELETING, actor=user, message="removal requested"):
        return False
    audit.record(
        user,
        AuditAction.ACTION,
        deployment.workspace,
        message=f"removed services “{deployment.profile_name}”",
    )
    transaction.on_commit(lambda: tasks.enqueue_remove(deployment.pk))
    return True


def web_endpoint(component: ComponentDeployment) -> dict | None:
    """The component's first endpoint a browser opens (http or https), if it has one."""
    for endpoint in component.endpoints:
        if str(endpoint.get("url", "")).startswith(("http://", "https://")):
            return endpoint
    return None


def web_services(deployment: ServiceDeployment | None) -> list[ComponentDeployment]:
    """The ready components of a deployment (components prefetched) a browser can open."""
    if deployment is None:
        return []
    return [
        row
        for row in deployment.components.all()
        if row.status == ComponentStatus.READY and web_endpoint(row)
    ]


def openable_service(user, workspace: Workspace, code: str) -> ComponentDeployment | None:
    """The web service `code` of the user's own workspace when it is running, else None.
    Only a workspace the watch looks at (ready or degraded) may run one: a failed or
    stopped one runs none, and the address its service had may be another's by now."""
    if workspace.owner_id != user.pk or workspace.state not in tasks.WATCHED_STATES:
        return None
    rows = [row for row in web_services(live_deployment(workspace)) if row.component == code]
    return rows[0] if rows else None


def open_url(user, workspace: Workspace, component: ComponentDeployment) -> str:
    """Where the owner's browser goes to open a web service of the workspace (one
    `openable_service` found). Read at click time, because a restart starts it on a new
    port; with its token where the service takes one from the link (JupyterLab logs the
    browser in from it and keeps a cookie), so nobody copies tokens. Each open hands the
    browser that token, so it is audited as a reveal is: call it for the owner's POST only,
    which another site cannot make for them (a GET it can, by any link or image)."""
    endpoint = web_endpoint(component)
    url = endpoint["url"]
    if endpoint.get("token") == "query" and component.secret:
        url += ("&" if "?" in url else "?") + urlencode({"token": component.secret})
    audit.record(user, AuditAction.ACTION, workspace, message=f"opened {component.component_name}")
    return url


def reveal_secret(user, component: ComponentDeployment) -> str:
    """A component's credential, for the workspace's owner only (behind a button). Each
    reveal is audited, as each open is; the credential never is."""
    workspace = component.deployment.workspace
    if (
        workspace is None
        or workspace.owner_id != user.pk
        or component.status != ComponentStatus.READY
        or not component.secret
    ):
        return ""
    audit.record(
        user,
        AuditAction.ACTION,
        workspace,
        message=f"revealed the {component.component_name} token of services "
        f"“{component.deployment.profile_name}”",
    )
    return component.secret


def requestable_profiles(user) -> list[ServicesProfile]:
    """Services profiles the user may name when requesting a workspace."""
    return list(ServicesProfile.objects.usable_by(user))


def request_with_workspace(request, workspace: Workspace, services_profile_pk) -> None:
    """Deploy the services profile a workspace request named (once the workspace is ready)."""
    pk = id_param(str(services_profile_pk or ""))
    if pk is None:
        return
    found = ServicesProfile.objects.filter(pk=pk).first()
    if found is None:
        return
    try:
        deploy(request.user, workspace, found)
    except ServicesRefused as refused:
        messages.error(request, f"Services not deployed: {refused}")
