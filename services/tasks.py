"""django-q2 tasks that deploy and remove services profiles, with the engine's step rules.

Delivery is at least once, so each task starts from the state in the database and every
backend call is idempotent (a component is found again by its stable name
`<target>-<component>`). The rules are `pools.steps`': a task never sleeps; work not done
yet is looked at again by scheduling the task once more with a delay; a TransientError (or
a bug) is retried with `steps.backoff()` up to MAX_ATTEMPTS; a PermanentError fails the
component with its message. A worker that dies mid-task leaves the deployment in flight
with an old heartbeat, and `sweep()` resumes it.

Deploying (`deploy_services`) is one step per delivery, in the profile's order (MLflow
before the pipelines):
1. Wait for the target: a workspace that is still provisioning re-schedules the task; one
   that is gone ends the deployment.
2. Claim the deployment: its row stays locked until the step commits, so a second delivery
   arriving meanwhile skips it instead of starting the same components again.
3. Each component in turn, looked at once: "unavailable" (with the reason) when this
   infrastructure cannot run it; a pending one is deployed (after removing what a previous
   deployment left); a deploying or ready one is checked. Ready or unavailable: on to the
   next. Failed: the deployment fails (the component keeps its reason and log tail;
   removal still works). Still starting: the step ends and schedules the next one, soon
   while the component is within its `start_timeout`, every BACKOFF_BASE seconds after,
   until DEPLOY_DEADLINE.
4. All components ready or unavailable → the deployment is ready.

Removing (`remove_services`): every component in reverse order, then `deleted`.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from pools import lifecycle, steps
from pools.drivers import driver_class
from pools.drivers import k8s_manifests as m
from pools.drivers.base import PermanentError, WorkspaceSpec
from pools.drivers.kubernetes import KubernetesDriver
from pools.lifecycle import LIVE_STATES, State, Step, advance, transition
from pools.models import Workspace
from profiles.models import ServiceComponent
from services import components as catalog
from services.backends import base as svc
from services.backends.base import ComponentContext
from services.backends.by_driver import backend_for
from services.backends.kubernetes import render_component, stack_usage
from services.models import ServiceDeployment

logger = logging.getLogger(__name__)

DEPLOY = "services.tasks.deploy_services"
REMOVE = "services.tasks.remove_services"
POLL = 3  # seconds to the next look at a component within its start_timeout
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


def _said(error: ValueError) -> str:
    """The catalog's own words about a parameter; of any other error, only its class (its
    text may quote anything, a credential included)."""
    if isinstance(error, catalog.ParameterError):
        return str(error)
    return steps.error_reason(error)


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


def _result_fields(result: svc.ComponentResult) -> dict:
    """What a backend's answer changes on the component's row."""
    fields = {
        "reason": result.reason[:300],
        "log_tail": result.log_tail,
        "endpoints": result.endpoints,
        "detail": result.detail,
    }
    if result.secret:
        fields["secret"] = result.secret  # kept: a retry must reuse it
    return fields


# -- deploy ------------------------------------------------------------------------------


def deploy_services(deployment_id: int) -> str:
    """One step of taking a requested (or interrupted) deployment to ready; see the module
    docstring. Returns what happened (the task's result)."""
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
    with transaction.atomic():
        if not _claim(deployment):
            return "another worker is deploying it"
        steps.touch(deployment)
        return _deploy_step(deployment)


def _claim(deployment) -> bool:
    """Lock the deployment's row until the step commits; False when another worker holds
    it (or moved it on), so two deliveries never start the same component twice."""
    held = ServiceDeployment.objects.select_for_update(skip_locked=True).filter(
        pk=deployment.pk, state=State.PROVISIONING
    )
    return held.values_list("pk", flat=True).first() is not None


def _target_not_ready(deployment) -> str:
    """Why the task cannot deploy yet (and what it did about it), or "" when it can."""
    workspace = deployment.workspace
    if workspace is None or workspace.state in (State.READY, State.CLAIMED):
        return ""
    if workspace.state in (State.REQUESTED, State.PROVISIONING, State.DEGRADED):
        # The workspace's own task enqueues us when it is ready (a degraded one: the watcher
        # repairs or fails it); the sweep is the safety net.
        steps.touch(deployment, steps.BACKOFF_BASE)
        return "waiting for the workspace"
    if workspace.state in STOPPED_STATES and deployment.state == State.REQUESTED:
        # Stopped (issue 5): `start_for_workspace` enqueues us when it is ready again; a long
        # heartbeat keeps the sweep from re-enqueueing us while it stays stopped.
        steps.touch(deployment, WAIT_WHILE_STOPPED)
        return "waiting for the workspace to start"
    if deployment.state in (State.REQUESTED, State.PROVISIONING):
        steps.fail(
            deployment,
            f"The workspace is {workspace.get_state_display().lower()}.",
            message=f"workspace is {workspace.state}",
        )
    return f"workspace {workspace.state}"


def _deploy_step(deployment) -> str:
    backend = backend_for(deployment.infrastructure)
    spec = deployment.workspace_spec()
    for row in deployment.components.all():
        outcome = _look_at(deployment, backend, spec, row)
        if outcome:
            return outcome
    return _finish(deployment)


def _look_at(deployment, backend, spec, row) -> str:
    """Deploy or check one component once: "" to go on to the next one, else the result
    of the step (failed, retrying, or still starting with the next step scheduled)."""
    if row.status == svc.UNAVAILABLE:
        return ""  # decided by an earlier step
    if row.status == svc.FAILED:
        return _fail(deployment, row)
    found = catalog.component(row.component)
    if found is None:
        row.move(svc.FAILED, reason=f"Unknown component “{row.component}”.")
        return _fail(deployment, row)
    if backend is None:
        kind = deployment.infrastructure.get_kind_display()
        row.move(svc.UNAVAILABLE, reason=f"{found.name}: not available on {kind} yet.")
        return ""
    available, why = backend.availability(found)
    if not available:
        row.move(svc.UNAVAILABLE, reason=why)
        return ""
    try:
        ctx = _context(deployment, row, spec)
        if row.status == svc.PENDING:
            backend.remove(ctx)  # a redeploy: stop what the previous deployment left
            result = backend.deploy(ctx)
        else:  # deploying or ready: deploy() returned in an earlier step
            result = backend.check(ctx)
    except ValueError as error:  # parameters no longer valid for the catalog, or a bug
        row.move(svc.FAILED, reason=_said(error)[:300])
        return _fail(deployment, row)
    except PermanentError as error:
        row.move(svc.FAILED, reason=str(error)[:300], log_tail=error.detail[-4000:])
        return _fail(deployment, row)
    except Exception as error:  # a TransientError, or a bug: retry with backoff, then fail
        return steps.retry_or_fail(deployment, DEPLOY, error)
    row.move(result.status, **_result_fields(result))
    if result.status == svc.READY:
        return ""
    if result.status == svc.FAILED:
        return _fail(deployment, row)
    now = timezone.now()
    if now - deployment.state_changed > DEPLOY_DEADLINE:
        row.move(svc.FAILED, reason="did not become ready in time")
        return _fail(deployment, row)
    starting = now - row.status_changed < timedelta(seconds=found.start_timeout)
    steps.retry_later(deployment, DEPLOY, POLL if starting else steps.BACKOFF_BASE)
    return f"{found.name} still starting"


def _fail(deployment, row) -> str:
    name = row.component_name
    reason = f"{name} failed: {row.reason}" if row.reason else f"{name} failed"
    steps.fail(deployment, reason)
    return f"failed: {reason}"


def _finish(deployment) -> str:
    rows = list(deployment.components.all())
    if rows and all(row.status == svc.UNAVAILABLE for row in rows):
        reason = "Nothing of this profile runs here: " + " ".join(r.reason for r in rows)
        steps.fail(deployment, reason, message="nothing deployable")
        return "failed: nothing deployable"
    transition(deployment, State.READY, message="ready", ready_at=timezone.now())
    return "ready"


# -- remove ------------------------------------------------------------------------------


def remove_services(deployment_id: int) -> str:
    """Stop and delete every component of a deployment that is being removed."""
    deployment = _load(deployment_id)
    outcome = steps.begin(deployment, State.DELETING)
    if outcome:
        return outcome
    failed = steps.run_step(deployment, REMOVE, "removal", lambda: _remove_components(deployment))
    if failed:
        return failed
    transition(deployment, State.DELETED, message="removed", deleted_at=timezone.now())
    return "removed"


def _remove_components(deployment) -> None:
    _take_down_components(deployment, svc.REMOVED, secret="")


def _take_down_components(deployment, to_status: str, said: str = "", **fields) -> None:
    """Remove each component's resources, the last one first, and move its row to
    `to_status` (removed for good, or pending until the workspace starts again)."""
    backend = backend_for(deployment.infrastructure)
    spec = deployment.workspace_spec()
    for row in reversed(list(deployment.components.all())):
        if row.status in (svc.UNAVAILABLE, to_status):
            continue
        try:
            ctx = _context(deployment, row, spec)
        except ValueError:
            ctx = None
        if backend is not None and ctx is not None:
            backend.remove(ctx)
        message = f"{row.component_name} {said}" if said else ""
        row.move(to_status, endpoints=[], message=message, **fields)


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
    for deployment in _stacks_of(infrastructure, target_name):
        if deployment.state != State.REQUESTED and not transition(
            deployment, State.REQUESTED, message="the workspace is stopping; redeployed on start"
        ):
            continue
        _take_down_components(deployment, svc.PENDING, "stopped", reason="")
        stopped += 1
    return stopped


def _stacks_of(infrastructure, target_name: str) -> list[ServiceDeployment]:
    """The target's stack: its live one, else its newest if that failed (deployed again on
    start, as a redeploy would). Older failed stacks are history: at most one stack may
    be live (`one_live_service_deployment_per_workspace`)."""
    stacks = ServiceDeployment.objects.filter(
        infrastructure=infrastructure, target_name=target_name
    )
    stopping = (State.REQUESTED, State.PROVISIONING, State.READY, State.DEGRADED)
    live = list(stacks.filter(state__in=stopping))
    if live:
        return live
    newest = stacks.order_by("-created", "-id").first()
    return [newest] if newest is not None and newest.state == State.FAILED else []


def start_for_workspace(workspace) -> int:
    """Deploy again, on commit, the stacks a stop sent back to requested; return how many.

    Their heartbeat, a day ahead while the workspace was stopped (`WAIT_WHILE_STOPPED`),
    is now again: should the enqueue be lost (a worker killed right after the commit), the
    sweep resumes them in minutes."""
    waiting = ServiceDeployment.objects.filter(workspace=workspace, state=State.REQUESTED)
    pks = list(waiting.values_list("pk", flat=True))
    ServiceDeployment.objects.filter(pk__in=pks).update(heartbeat=timezone.now())
    for pk in pks:
        transaction.on_commit(lambda pk=pk: enqueue_deploy(pk))
    return len(pks)


# -- starting deployments ----------------------------------------------------------------


def create_deployment(target, services_profile, *, user=None, workspace=None):
    """Make a requested deployment of `services_profile` for `target` (not yet enqueued).

    `target` is a Workspace or a warm-pool instance: anything with `infrastructure`,
    `resource_name` and `spec()`.
    """

    spec = spec_of(target)
    deployment = lifecycle.create(
        ServiceDeployment,
        actor=user,
        message=f"{services_profile} requested",
        workspace=workspace,
        services_profile=services_profile,
        profile_name=services_profile.name,
        infrastructure=target.infrastructure,
        target_name=spec.name,
        spec=ServiceDeployment.spec_as_json(spec),
        requested_by=user if user is not None and user.is_authenticated else None,
    )
    copy_components(deployment, services_profile)
    gpus = own_gpus(target.infrastructure, spec, deployment.components.all())
    if gpus:
        ServiceDeployment.objects.filter(pk=deployment.pk).update(own_gpus=gpus)
        deployment.own_gpus = gpus
    return deployment


def own_gpus(infrastructure, spec, components) -> int:
    """The GPUs a services stack's `components` (rows with `component`, `version` and
    `parameters`) hold of their own on `infrastructure`, for the workspace `spec`.

    On Kubernetes each component's pods request theirs beside the workspace's
    (`services.backends.kubernetes`): counted from the objects that backend renders, so
    the quota counts what the cluster is asked for. Elsewhere components run on the
    workspace's own GPUs: none."""
    cls = driver_class(infrastructure)
    if cls is None or not issubclass(cls, KubernetesDriver):
        return 0
    return sum(_component_gpus(spec, row) for row in components)


def default_stack_gpus(profile, owner) -> int:
    """The GPUs the compute profile's default services stack would hold of its own in a new
    workspace of `owner`'s (`own_gpus`): what a request is charged beside the profile's
    own, since that stack is deployed (or comes with a warm instance) without asking."""
    if profile.default_services_profile_id is None:
        return 0
    spec = WorkspaceSpec.from_profile("ws-requested", owner.get_username(), profile)
    components = ServiceComponent.objects.filter(profile=profile.default_services_profile_id)
    return own_gpus(profile.infrastructure, spec, components)  # reads them on Kubernetes only


def _component_gpus(spec, row) -> int:
    found = catalog.component(row.component)
    if found is None:
        return 0
    try:
        context = ComponentContext(
            spec=spec,
            component=found,
            version=row.version or found.default_version,
            parameters=found.resolve(row.parameters),
        )
        objects = render_component(context)
    except (ValueError, PermanentError):
        return 0  # it cannot run: its deployment fails without taking a GPU
    return int(stack_usage(objects).get(f"requests.{m.GPU_RESOURCE}", 0))


def spec_of(target):
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


def deploy_default_services(target):
    """Deploy the compute profile's default services profile into `target`, once.

    For the warm pool (issue 6): call it when a pool instance (or a workspace) is ready;
    `target` needs `infrastructure`, `resource_name`, `spec()` and `profile` (its compute
    profile). Returns the deployment, or None when the profile names no default stack or
    one is already live for the target. The deploy task is enqueued on commit.
    """

    services_profile = getattr(target.profile, "default_services_profile", None)
    if services_profile is None:
        return None  # before the transaction: a warm hit without a stack opens none
    with transaction.atomic():
        live = ServiceDeployment.objects.filter(
            infrastructure=target.infrastructure,
            target_name=spec_of(target).name,
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


def follow_adoption(workspace) -> int:
    """Point the stacks requested for a workspace while it waited for a warm instance
    (`pools.promises`), made for its own resources' name, at the instance's it adopted."""
    spec = workspace.resources_spec()
    return (
        ServiceDeployment.objects.filter(workspace=workspace, state=State.REQUESTED)
        .exclude(target_name=spec.name)
        .update(target_name=spec.name, spec=ServiceDeployment.spec_as_json(spec))
    )


def workspace_ready(workspace) -> None:
    """Called when a workspace becomes ready: deploy what its request or profile asked for."""

    waiting = ServiceDeployment.objects.filter(workspace=workspace, state=State.REQUESTED)
    pks = list(waiting.values_list("pk", flat=True))
    if pks:
        for pk in pks:
            transaction.on_commit(lambda pk=pk: enqueue_deploy(pk))
        return
    deploy_default_services(workspace)


# -- watched stacks (issue 12) -----------------------------------------------------------

WATCHED_STATES = (State.READY, State.DEGRADED)


def watched_stack(workspace):
    """The workspace's stack the watcher looks after: its ready or degraded one, or None."""
    return (
        ServiceDeployment.objects.select_related("infrastructure")
        .filter(workspace=workspace, state__in=WATCHED_STATES)
        .first()
    )


def check_stack(deployment) -> list[str]:
    """Run each deployed component's own health check (`ServicesBackend.check`: process
    alive and port answering locally; its Deployments' pods Ready on Kubernetes) and move
    its row to what the check says; return what is wrong, one line per component.

    A ready stack with a problem becomes degraded with the reasons; a degraded one whose
    components all answer again is ready ("repaired"). A component left pending by a
    restart that did not finish (`repair_stack`) is checked too: it runs only if its check
    says so. A DriverError means the check could not tell (the cluster did not answer): it
    is raised, and nothing is moved.
    """
    backend = backend_for(deployment.infrastructure)
    if backend is None:
        return []
    spec = deployment.workspace_spec()
    problems = []
    for row in deployment.components.all():
        if row.status == svc.FAILED:
            problems.append(_problem(row.component_name, row.reason))
        if row.status not in (svc.READY, svc.DEPLOYING, svc.PENDING):
            continue
        try:
            ctx = _context(deployment, row, spec)
            if ctx is None:
                raise catalog.ParameterError(f"Unknown component “{row.component}”.")
            result = backend.check(ctx)
        except ValueError as error:  # parameters no longer valid for the catalog, or a bug
            result = svc.ComponentResult(svc.FAILED, reason=_said(error))
        if result.status == row.status == svc.READY:
            continue
        if row.status in (svc.READY, svc.PENDING) and result.status == svc.DEPLOYING:
            # It served and no longer answers, or its restart raised half-way: failed, so
            # the repair restarts it (one that is deploying after a restart is left to start).
            result.status, result.reason = svc.FAILED, _not_ready(result.reason)
        row.move(result.status, **_result_fields(result))
        if result.status != svc.READY:
            problems.append(_problem(row.component_name, result.reason, result.status))
    if problems and deployment.state == State.READY:
        transition(
            deployment,
            State.DEGRADED,
            message=f"degraded: {'; '.join(problems)}",
            failure_reason="; ".join(problems)[:300],
        )
    elif not problems and deployment.state == State.DEGRADED:
        transition(deployment, State.READY, message="repaired", failure_reason="")
    return problems


def _not_ready(reason: str) -> str:
    return f"not ready: {reason}" if reason else "not ready"


def _problem(name: str, reason: str, status: str = svc.FAILED) -> str:
    """One line of a check's reasons, naming the component once."""
    if status != svc.FAILED:
        reason = _not_ready(reason)
    reason = reason or "failed"
    return reason if reason.startswith(name) else f"{name}: {reason}"


def repair_stack(deployment) -> list[str]:
    """Restart each component of a watched stack that failed, or that has not answered
    for longer than it takes to start (`ServicesBackend.restart`: its data and credential,
    the same token, are kept); return the names of those restarted. Raises what the
    backend raises.

    The watch calls it right after the workspace's own repair, which may have stopped
    components that answered at the look before (a GPU that is gone: every process of
    the workspace is stopped, to start again on the one that replaces it). So the stack is
    checked again first, ready or degraded, and what that repair stopped starts now
    rather than at the next look."""
    backend = backend_for(deployment.infrastructure)
    if backend is None or deployment.state not in WATCHED_STATES:
        return []
    check_stack(deployment)
    if deployment.state != State.DEGRADED:
        return []
    spec = deployment.workspace_spec()
    now = timezone.now()
    restarted = []
    for row in deployment.components.all():
        found = catalog.component(row.component)
        hung = (
            row.status == svc.DEPLOYING
            and found is not None
            and (now - row.status_changed > timedelta(seconds=found.start_timeout))
        )
        if found is None or not (row.status == svc.FAILED or hung):
            continue
        ctx = _context(deployment, row, spec)
        row.move(svc.PENDING, message=f"{row.component_name} restarting")
        result = backend.restart(ctx)
        row.move(result.status, **_result_fields(result))
        restarted.append(row.component_name)
    return restarted


def fail_stack(deployment, reason: str) -> bool:
    """The stack of a workspace the watch gave up on, stopped with it: failed with the
    reason, and its components, stopped too, no longer read ready. A stack that answered
    at the last look (ready) is degraded on the way: nothing of it runs now."""
    path = [Step(State.FAILED, reason)]
    if deployment.state == State.READY:
        path.insert(0, Step(State.DEGRADED, "its workspace failed"))
    elif deployment.state != State.DEGRADED:
        return False
    if not advance(deployment, path, failure_reason=reason[:300], failure_detail=""):
        return False
    _take_down_components(deployment, svc.FAILED, "stopped with its workspace", reason=reason)
    return True


# -- the sweep ---------------------------------------------------------------------------


def sweep(now=None) -> int:
    """Re-enqueue deployments in flight whose worker went away; return how many.

    A requested deployment of a workspace that is not ready yet is looked at and left to
    `workspace_ready` (its heartbeat is pushed ahead).
    """
    routes = {
        State.REQUESTED: enqueue_deploy,
        State.PROVISIONING: enqueue_deploy,
        State.DELETING: enqueue_remove,
    }
    return steps.resume_stuck(ServiceDeployment, routes, now)
