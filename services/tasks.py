"""django-q2 tasks that deploy and remove services profiles, with provisioning's rules.

Delivery is at least once, so each task starts from the state in the database and every
backend call is idempotent (a component is found again by its stable name
`<target>-<component>`). Retries reuse the provisioning helpers (`pools.tasks`): a
TransientError schedules the task again with a growing delay, up to MAX_ATTEMPTS; a
PermanentError fails the component with its message. A worker that dies mid-task leaves
the deployment in flight with an old heartbeat, and `sweep()` resumes it.

Deploying (`deploy_services`), in the profile's order (MLflow before the pipelines):
1. Wait for the target: a workspace that is still provisioning re-schedules the task; one
   that is gone ends the deployment.
2. Each component in turn: "unavailable" (with the reason) when this infrastructure cannot
   run it; otherwise deploy it and wait up to START_TIMEOUT for it to answer. A component
   still starting re-schedules the task; one that failed stops the deployment (FAILED, the
   component keeps its reason and log tail; removal still works).
3. All components ready or unavailable → the deployment is ready.

Removing (`remove_services`): every component in reverse order, then `deleted`.
"""

from __future__ import annotations

import logging
import time
import traceback
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from pools import tasks as provisioning
from pools.drivers.base import PermanentError, TransientError
from pools.lifecycle import IN_FLIGHT_STATES, LIVE_STATES, State, log_step, transition
from pools.models import Workspace
from services import components as catalog
from services.backends import backend_for
from services.backends import base as svc
from services.models import ServiceDeployment

logger = logging.getLogger(__name__)

DEPLOY = "services.tasks.deploy_services"
REMOVE = "services.tasks.remove_services"
POLL = 2.0  # seconds between checks while a component starts
DEPLOY_DEADLINE = timedelta(minutes=30)
# A stack waits for its stopped workspace to start without being resumed by the sweep.
STOPPED_STATES = (State.STOPPING, State.STOPPED, State.STARTING)
WAIT_WHILE_STOPPED = 24 * 3600


def enqueue_deploy(deployment_id: int) -> None:
    async_task(DEPLOY, deployment_id, group="services-deploy")


def enqueue_remove(deployment_id: int) -> None:
    async_task(REMOVE, deployment_id, group="services-remove")


def _load(deployment_id: int):

    return (
        ServiceDeployment.objects.select_related("workspace", "infrastructure")
        .filter(pk=deployment_id)
        .first()
    )


def _context(deployment, row, backend_spec) -> svc.ComponentContext | None:
    found = catalog.component(row.component)
    if found is None:
        return None
    return svc.ComponentContext(
        spec=backend_spec,
        component=found,
        version=row.version or found.default_version,
        parameters=found.resolve(row.parameters),
        secret=row.secret,
        stack=deployment.profile_name,
    )


def _save(row, result: svc.ComponentResult | None = None, **fields) -> None:
    if result is not None:
        fields.setdefault("status", result.status)
        fields.setdefault("reason", result.reason[:300])
        fields.setdefault("log_tail", result.log_tail)
        fields.setdefault("endpoints", result.endpoints)
        fields.setdefault("detail", result.detail)
        if result.secret:
            fields["secret"] = result.secret
    for name, value in fields.items():
        setattr(row, name, value)
    row.save()


# -- deploy ------------------------------------------------------------------------------


def deploy_services(deployment_id: int) -> str:
    """Take a requested (or interrupted) deployment to ready; see the module docstring."""
    deployment = _load(deployment_id)
    if deployment is None:
        return "gone"
    waiting = _target_not_ready(deployment)
    if waiting:
        return waiting
    if deployment.state == State.REQUESTED:
        transition(deployment, State.PROVISIONING, message="deploying")
    if deployment.state != State.PROVISIONING:
        return f"nothing to do ({deployment.state})"
    provisioning._touch(deployment)
    backend = backend_for(deployment.infrastructure)
    spec = deployment.workspace_spec()
    for row in deployment.components.all():
        outcome = _deploy_one(deployment, backend, spec, row)
        if outcome != svc.READY:
            return outcome
    return _finish(deployment)


def _target_not_ready(deployment) -> str:
    """Why the task cannot deploy yet (and what it did about it), or "" when it can."""
    workspace = deployment.workspace
    if workspace is None or workspace.state in (State.READY, State.CLAIMED):
        return ""
    if workspace.state in (State.REQUESTED, State.PROVISIONING):
        # The workspace's own task enqueues us when it is ready; the sweep is the safety net.
        provisioning._touch(deployment, provisioning.BACKOFF_BASE)
        return "waiting for the workspace"
    if workspace.state in STOPPED_STATES and deployment.state == State.REQUESTED:
        # Stopped (issue 5): `start_for_workspace` enqueues us when it is ready again; a long
        # heartbeat keeps the sweep from re-enqueueing us while it stays stopped.
        provisioning._touch(deployment, WAIT_WHILE_STOPPED)
        return "waiting for the workspace to start"
    if deployment.state in (State.REQUESTED, State.PROVISIONING):
        transition(
            deployment,
            State.FAILED,
            message=f"workspace is {workspace.state}",
            failure_reason=f"The workspace is {workspace.get_state_display().lower()}.",
        )
    return f"workspace {workspace.state}"


def _deploy_one(deployment, backend, spec, row) -> str:
    """Deploy one component; returns READY to go on, else the task's result."""
    if row.status == svc.UNAVAILABLE:
        return svc.READY  # decided by an earlier attempt
    found = catalog.component(row.component)
    if found is None:
        _save(row, status=svc.FAILED, reason=f"Unknown component “{row.component}”.")
        return _fail(deployment, row)
    if backend is None:
        kind = deployment.infrastructure.get_kind_display()
        _save(row, status=svc.UNAVAILABLE, reason=f"{found.name}: not available on {kind} yet.")
        return svc.READY
    available, why = backend.availability(found)
    if not available:
        _save(row, status=svc.UNAVAILABLE, reason=why)
        return svc.READY
    try:
        ctx = _context(deployment, row, spec)
        if row.status == svc.PENDING:
            backend.remove(ctx)  # a redeploy: stop what the previous deployment left
            _save(row, status=svc.DEPLOYING, reason="", log_tail="")
            result = backend.deploy(ctx)
        else:
            result = backend.check(ctx) if row.status == svc.READY else backend.deploy(ctx)
        if result.secret and result.secret != row.secret:
            _save(row, secret=result.secret)  # before waiting: a retry must reuse it
        deadline = time.monotonic() + found.start_timeout
        while result.status == svc.DEPLOYING and time.monotonic() < deadline:
            provisioning._touch(deployment)
            time.sleep(POLL)
            result = backend.check(ctx)
    except ValueError as error:  # parameters no longer valid for the catalog
        _save(row, status=svc.FAILED, reason=str(error)[:300])
        return _fail(deployment, row)
    except PermanentError as error:
        _save(row, status=svc.FAILED, reason=str(error)[:300], log_tail=error.detail[-4000:])
        return _fail(deployment, row)
    except Exception as error:  # TransientError, or a bug: retry with backoff, then fail
        if not isinstance(error, TransientError):
            error.detail = traceback.format_exc()
        provisioning._retry_or_fail(deployment, DEPLOY, error)
        return f"retrying: {error}"
    _save(row, result)
    if result.status == svc.READY:
        log_step(deployment, f"{found.name} ready")
        return svc.READY
    if result.status == svc.FAILED:
        return _fail(deployment, row)
    # Still starting after START_TIMEOUT: look again later, within the deadline.
    if timezone.now() - deployment.state_changed > DEPLOY_DEADLINE:
        _save(row, status=svc.FAILED, reason="did not become ready in time")
        return _fail(deployment, row)
    provisioning._touch(deployment, provisioning.BACKOFF_BASE)
    provisioning.schedule_retry(DEPLOY, deployment.pk, provisioning.BACKOFF_BASE)
    return f"{found.name} still starting"


def _fail(deployment, row) -> str:
    name = row.component_name
    reason = f"{name} failed: {row.reason}" if row.reason else f"{name} failed"
    transition(deployment, State.FAILED, message=reason, failure_reason=reason[:300])
    return f"failed: {reason}"


def _finish(deployment) -> str:
    rows = list(deployment.components.all())
    if rows and all(row.status == svc.UNAVAILABLE for row in rows):
        reason = "Nothing of this profile runs here: " + " ".join(r.reason for r in rows)
        transition(
            deployment, State.FAILED, message="nothing deployable", failure_reason=reason[:300]
        )
        return "failed: nothing deployable"
    transition(deployment, State.READY, message="ready", ready_at=timezone.now())
    return "ready"


# -- remove ------------------------------------------------------------------------------


def remove_services(deployment_id: int) -> str:
    """Stop and delete every component of a deployment that is being removed."""
    deployment = _load(deployment_id)
    if deployment is None:
        return "gone"
    if deployment.state != State.DELETING:
        return f"nothing to do ({deployment.state})"
    provisioning._touch(deployment)
    try:
        _remove_components(deployment)
    except Exception as error:
        if not isinstance(error, TransientError):
            error.detail = getattr(error, "detail", "") or traceback.format_exc()
        provisioning._retry_or_fail(deployment, REMOVE, error)
        return f"retrying: {error}"
    transition(deployment, State.DELETED, message="removed", deleted_at=timezone.now())
    return "removed"


def _remove_components(deployment) -> None:
    backend = backend_for(deployment.infrastructure)
    spec = deployment.workspace_spec()
    for row in reversed(list(deployment.components.all())):
        if row.status in (svc.UNAVAILABLE, svc.REMOVED):
            continue
        ctx = None
        try:
            ctx = _context(deployment, row, spec)
        except ValueError:
            ctx = None
        if backend is not None and ctx is not None:
            backend.remove(ctx)
        _save(row, status=svc.REMOVED, endpoints=[], secret="")
        log_step(deployment, f"{row.component_name} removed")


def remove_for_target(infrastructure, target_name: str, spec=None) -> int:
    """Remove every live stack of a workspace or pool instance now, in the caller's task.

    The workspace's deprovision calls this before it deletes the workspace itself, so the
    services go first; then it calls the backend's `remove_all` for anything left behind.
    """

    removed = 0
    live = ServiceDeployment.objects.filter(
        infrastructure=infrastructure, target_name=target_name, state__in=LIVE_STATES
    )
    for deployment in live:
        if deployment.state != State.DELETING and not transition(
            deployment, State.DELETING, message="the workspace is being deleted"
        ):
            continue
        _remove_components(deployment)
        transition(deployment, State.DELETED, message="removed", deleted_at=timezone.now())
        removed += 1
    backend = backend_for(infrastructure)
    if backend is not None and spec is not None:
        backend.remove_all(spec)
    return removed


# -- stop / start of the workspace (issue 5) -----------------------------------------------


def stop_for_target(infrastructure, target_name: str) -> int:
    """Stop every live stack of a workspace that is being stopped, in the caller's task.

    Each component is removed from the backend (its processes or pods stopped) but keeps its
    row, parameters and credential, marked pending; the deployment goes back to requested.
    `start_for_workspace` deploys it again (a redeploy) once the workspace is ready.
    Idempotent: a stack already back to requested only has its components removed again.
    """

    stopped = 0
    live = ServiceDeployment.objects.filter(
        infrastructure=infrastructure,
        target_name=target_name,
        state__in=(State.REQUESTED, State.PROVISIONING, State.READY, State.FAILED),
    )
    for deployment in live:
        if deployment.state != State.REQUESTED and not transition(
            deployment, State.REQUESTED, message="the workspace is stopping; redeployed on start"
        ):
            continue
        backend = backend_for(deployment.infrastructure)
        spec = deployment.workspace_spec()
        for row in reversed(list(deployment.components.all())):
            if row.status in (svc.UNAVAILABLE, svc.PENDING):
                continue
            try:
                ctx = _context(deployment, row, spec)
            except ValueError:
                ctx = None
            if backend is not None and ctx is not None:
                backend.remove(ctx)
            _save(row, status=svc.PENDING, endpoints=[], reason="")
            log_step(deployment, f"{row.component_name} stopped")
        stopped += 1
    return stopped


def start_for_workspace(workspace) -> int:
    """Deploy again, on commit, the stacks a stop sent back to requested; return how many."""

    waiting = ServiceDeployment.objects.filter(workspace=workspace, state=State.REQUESTED)
    pks = list(waiting.values_list("pk", flat=True))
    for pk in pks:
        transaction.on_commit(lambda pk=pk: enqueue_deploy(pk))
    return len(pks)


# -- starting deployments ----------------------------------------------------------------


def create_deployment(target, services_profile, *, user=None, workspace=None):
    """Make a requested deployment of `services_profile` for `target` (not yet enqueued).

    `target` is a Workspace or a warm-pool instance: anything with `infrastructure`,
    `resource_name` and `spec()`.
    """

    spec = _spec_of(target)
    now = timezone.now()
    deployment = ServiceDeployment.objects.create(
        workspace=workspace,
        services_profile=services_profile,
        profile_name=services_profile.name,
        infrastructure=target.infrastructure,
        target_name=spec.name,
        spec=ServiceDeployment.spec_as_json(spec),
        requested_by=user if user is not None and user.is_authenticated else None,
        state_changed=now,
        heartbeat=now,
    )
    copy_components(deployment, services_profile)
    deployment.log_event(
        State.REQUESTED, State.REQUESTED, f"{services_profile} requested", actor=user
    )
    return deployment


def _spec_of(target):
    """The driver spec of the target's resources (a workspace may run on an adopted
    warm-pool instance, whose resources keep the instance's name)."""
    if isinstance(target, Workspace):
        return target.resources_spec()
    return target.spec()


def copy_components(deployment, services_profile) -> None:
    deployment.components.all().delete()
    for item in services_profile.components.all():
        deployment.components.create(
            position=item.position,
            capability=item.capability,
            component=item.component,
            version=item.version,
            parameters=item.parameters,
        )


@transaction.atomic
def deploy_default_services(target):
    """Deploy the compute profile's default services profile into `target`, once.

    For the warm pool (issue 6): call it when a pool instance (or a workspace) is ready;
    `target` needs `infrastructure`, `resource_name`, `spec()` and `profile` (its compute
    profile). Returns the deployment, or None when the profile names no default stack or
    one is already live for the target. The deploy task is enqueued on commit.
    """

    services_profile = getattr(target.profile, "default_services_profile", None)
    if services_profile is None:
        return None
    live = ServiceDeployment.objects.filter(
        infrastructure=target.infrastructure,
        target_name=_spec_of(target).name,
        state__in=LIVE_STATES,
    )
    if live.exists():
        return None
    workspace = target if isinstance(target, Workspace) else None
    deployment = create_deployment(target, services_profile, workspace=workspace)
    transaction.on_commit(lambda: enqueue_deploy(deployment.pk))
    return deployment


def adopt_services(infrastructure, target_name: str, workspace) -> int:
    """Hand the live stack of a claimed pool instance to the workspace that claimed it."""

    return ServiceDeployment.objects.filter(
        infrastructure=infrastructure, target_name=target_name, state__in=LIVE_STATES
    ).update(workspace=workspace)


def workspace_ready(workspace) -> None:
    """Called when a workspace becomes ready: deploy what its request or profile asked for."""

    waiting = ServiceDeployment.objects.filter(workspace=workspace, state=State.REQUESTED)
    pks = list(waiting.values_list("pk", flat=True))
    if pks:
        for pk in pks:
            transaction.on_commit(lambda pk=pk: enqueue_deploy(pk))
        return
    deploy_default_services(workspace)


# -- the sweep ---------------------------------------------------------------------------


def sweep(now=None) -> int:
    """Re-enqueue deployments in flight whose worker went away; return how many.

    Claimed with a conditional UPDATE of the heartbeat, like `pools.tasks.resume_stuck`.
    A requested deployment of a workspace that is not ready yet is left to `workspace_ready`.
    """

    now = now or timezone.now()
    cutoff = now - provisioning.stuck_after()
    resumed = 0
    stuck = ServiceDeployment.objects.filter(state__in=IN_FLIGHT_STATES, heartbeat__lt=cutoff)
    for pk, state, heartbeat in stuck.values_list("pk", "state", "heartbeat"):
        claimed = ServiceDeployment.objects.filter(pk=pk, state=state, heartbeat=heartbeat).update(
            heartbeat=now
        )
        if claimed != 1:
            continue
        if state == State.DELETING:
            transaction.on_commit(lambda pk=pk: enqueue_remove(pk))
        else:
            transaction.on_commit(lambda pk=pk: enqueue_deploy(pk))
        resumed += 1
    return resumed
