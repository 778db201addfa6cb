"""django-q2 tasks that drive workspaces through their lifecycle with the drivers.

Delivery is at least once, so every task is idempotent: it starts from the state in the
database, and the driver finds what an earlier attempt made by the workspace's stable name.

Retries: on TransientError a task schedules itself again with a growing delay (a one-off
django-q2 Schedule per workspace, replaced on each retry), up to MAX_ATTEMPTS, then it
fails; on PermanentError the workspace fails with the driver's message (detail kept for
admins). Either way whatever was made is released. A task is bounded by the cluster's
`timeout`; a worker killed mid-task leaves the workspace in flight with an old heartbeat,
and `sweep()` resumes it.

Ordering: django-q2's ORM broker has no priorities and serves a queue in insertion order.
User-requested work is enqueued here, on the default cluster queue, as soon as it is
requested. Warm-pool work (the loop, instance provisioning) goes to the queue named by
`settings.WARM_POOL_CLUSTER` when it is set (served by its own `Q_CLUSTER_NAME=<name>
manage.py qcluster`, so it never delays a user's request); without it, it shares the default
queue and the loop holds back new instances while user requests wait (`pools.warmpool`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.tasks import async_task

from pools import lifetime, promises, slo, steps, supervisor, warmpool
from pools.drivers import driver_class, driver_for
from pools.drivers.base import DriverError, PermanentError, WorkspaceSpec
from pools.lifecycle import State, log_step, transition
from pools.models import PoolInstance, Workspace
from portal import audit, notifications
from portal.models import AuditAction, Notification
from profiles.models import Infrastructure
from services.tasks import (
    deploy_default_services,
    remove_for_target,
    start_for_workspace,
    stop_for_target,
    workspace_ready,
)
from services.tasks import sweep as services_sweep

logger = logging.getLogger(__name__)

# How long a workspace may take to become ready once provisioning started.
PROVISION_DEADLINE = timedelta(minutes=60)
# How often a workspace that is not ready yet is looked at again (one waiting for a warm
# instance too: so it stops waiting within this of the instance being late).
POLL_INTERVAL = steps.BACKOFF_BASE


# -- enqueueing ------------------------------------------------------------------------


def enqueue_provision(workspace_id: int) -> None:
    async_task("pools.tasks.provision_workspace", workspace_id, group="workspace-provision")


def enqueue_deprovision(workspace_id: int) -> None:
    async_task("pools.tasks.deprovision_workspace", workspace_id, group="workspace-deprovision")


def enqueue_stop(workspace_id: int) -> None:
    async_task("pools.tasks.stop_workspace", workspace_id, group="workspace-stop")


def request_stop(workspace, *, actor=None, message: str = "stop requested") -> bool:
    """Move a ready workspace to stopping and stop it on commit (GPUs released, files kept):
    the Stop button's path and the idle stop's. An idle warning or snooze count it had is
    over. False when another worker moved it first."""
    moved = transition(
        workspace,
        State.STOPPING,
        actor=actor,
        message=message,
        idle_stop_at=None,
        idle_snoozes=0,
    )
    if moved:
        transaction.on_commit(lambda: enqueue_stop(workspace.pk))
    return moved


def enqueue_start(workspace_id: int) -> None:
    async_task("pools.tasks.start_workspace", workspace_id, group="workspace-start")


def pool_queue_options() -> dict:
    """`cluster=` for warm-pool tasks when a separate pool cluster is configured."""
    cluster = getattr(settings, "WARM_POOL_CLUSTER", "")
    return {"cluster": cluster} if cluster else {}


def enqueue_pool_provision(instance_id: int) -> None:
    async_task(
        "pools.tasks.provision_pool_instance",
        instance_id,
        group="pool-provision",
        **pool_queue_options(),
    )


def enqueue_pool_deprovision(instance_id: int) -> None:
    async_task(
        "pools.tasks.deprovision_pool_instance",
        instance_id,
        group="pool-deprovision",
        **pool_queue_options(),
    )


# -- tasks -----------------------------------------------------------------------------


def _load(workspace_id: int):

    return (
        Workspace.objects.select_related("profile", "infrastructure", "owner")
        .filter(pk=workspace_id)
        .first()
    )


def provision_workspace(workspace_id: int) -> str:
    """Take a requested (or interrupted) workspace to ready: by the warm instance promised
    to it (`pools.promises`) while that one is still coming and not late, else by
    provisioning it."""
    func = "pools.tasks.provision_workspace"
    workspace = _load(workspace_id)
    if workspace is None:
        return "gone"
    if workspace.state == State.PROVISIONING:
        waited = promises.settle(workspace, patience)
        if waited == promises.WAITING:
            steps.retry_later(workspace, func, POLL_INTERVAL)
        if waited != promises.ON_DEMAND:
            return waited
    # Deploy the services its request or profile names.
    return _provision(workspace, func, on_ready=lambda: workspace_ready(workspace))


def patience(instance: PoolInstance) -> promises.Patience:
    """How long a workspace waits for the warm instance promised to it: by the provisioning
    p90 measured on the instance's infrastructure, else by what its kind is assumed to need."""
    infrastructure = instance.infrastructure
    measured = slo.provisioning([infrastructure.pk], timezone.now()).get(infrastructure.pk)
    return slo.patience(infrastructure.kind, measured)


def _provision(workspace, func: str, on_ready: Callable[[], None] | None = None) -> str:
    """Take a requested (or interrupted) workspace or pool instance to ready; `on_ready()`
    runs in the transaction of that move, so a worker killed before it is done leaves the
    object provisioning, for the sweep to resume, never ready without it."""
    if workspace.state == State.REQUESTED:
        transition(workspace, State.PROVISIONING, message="provisioning started")
    skip = steps.begin(workspace, State.PROVISIONING)
    if skip:
        return skip
    spec = workspace.spec()
    try:
        driver = driver_for(workspace.infrastructure)
        result = driver.provision(spec, steps.reporter(workspace))
    except PermanentError as error:
        _fail_and_release(workspace, spec, str(error), error.detail)
        return f"failed: {error}"
    except Exception as error:  # a TransientError, or a bug: retry with backoff, then fail
        return steps.retry_or_fail(
            workspace, func, error, on_give_up=lambda: _release_after_failure(workspace, spec)
        )

    if not result.ready:
        if _past_deadline(workspace):
            _fail_and_release(workspace, spec, _deadline_reason(), "")
            return "failed: deadline"
        steps.retry_later(workspace, func, POLL_INTERVAL)
        return "not ready yet"

    connection = dict(result.connection)
    secret = connection.pop("token", "")
    with transaction.atomic():
        moved = transition(
            workspace,
            State.READY,
            message="ready",
            ready_at=timezone.now(),
            connection=connection,
            detail=result.detail,
            secret=secret,
        )
        if moved and on_ready is not None:
            on_ready()
    if not moved:
        workspace.refresh_from_db(fields=["state"])
        return f"moved by another worker ({workspace.state})"
    return "ready"


def _past_deadline(workspace) -> bool:
    return timezone.now() - workspace.state_changed > PROVISION_DEADLINE


def _deadline_reason() -> str:
    return f"not ready within {int(PROVISION_DEADLINE.total_seconds() // 60)} minutes"


def _fail_and_release(workspace, spec: WorkspaceSpec, reason: str, detail: str) -> None:
    """Fail the workspace with `reason`, then release whatever the driver made."""
    if steps.fail(workspace, reason, detail=detail):
        _release_after_failure(workspace, spec)


def _release_after_failure(workspace, spec: WorkspaceSpec) -> None:
    """Release whatever the driver made for a workspace (or pool instance) that failed:
    a failed one counts against no quota."""
    try:
        driver_for(workspace.infrastructure).deprovision(spec, steps.reporter(workspace))
    except DriverError:
        # Left to the sweep (a pool instance's) or to the workspace's deletion.
        logger.exception("releasing %s after a failure", spec.name)


def deprovision_workspace(workspace_id: int) -> str:
    """Delete a workspace's resources and mark it deleted."""
    workspace = _load(workspace_id)
    skip = steps.begin(workspace, State.DELETING)
    if skip:
        return skip
    # A workspace that adopted a warm-pool instance owns the resources named after it.
    return _deprovision(workspace, workspace.resources_spec(), "pools.tasks.deprovision_workspace")


def _deprovision(workspace, spec: WorkspaceSpec, func: str) -> str:
    def delete_everything() -> None:
        remove_for_target(workspace.infrastructure, spec.name, spec)  # services go first
        driver_for(workspace.infrastructure).deprovision(spec, steps.reporter(workspace))

    failed = steps.run_step(workspace, func, "deletion", delete_everything)
    if failed:
        return failed
    transition(workspace, State.DELETED, message="deleted", deleted_at=timezone.now())
    return "deleted"


# -- stop / start (issue 5) ------------------------------------------------------------


def stop_workspace(workspace_id: int) -> str:
    """Stop a workspace's compute and release its GPUs, keeping its data; mark it stopped.

    1. Its services stacks are stopped and sent back to requested (redeployed on start).
    2. The driver stops the rest and releases the GPUs (idempotent: a retry, or the sweep
       resuming a worker killed mid-stop, finds what is already stopped and goes on).
    3. Stopped. A PermanentError fails the workspace (it may still hold resources: deleting
       it releases them); other errors retry with backoff, then fail.
    """
    workspace = _load(workspace_id)
    skip = steps.begin(workspace, State.STOPPING)
    if skip:
        return skip

    spec = workspace.resources_spec()

    def stop_everything() -> None:
        stop_for_target(workspace.infrastructure, spec.name)
        driver_for(workspace.infrastructure).stop(spec, steps.reporter(workspace))

    failed = steps.run_step(workspace, "pools.tasks.stop_workspace", "stopping", stop_everything)
    if failed:
        return failed
    if not transition(workspace, State.STOPPED, message="stopped"):
        workspace.refresh_from_db(fields=["state"])
        return f"moved by another worker ({workspace.state})"
    return "stopped"


def start_workspace(workspace_id: int) -> str:
    """Take a starting workspace to ready again, like provisioning.

    A start that cannot get its resources (a PermanentError, or still failing after
    MAX_ATTEMPTS, e.g. every GPU in use) goes back to stopped with the reason: the driver
    released what it took and the files are kept, so the user can try again later.
    """
    workspace = _load(workspace_id)
    skip = steps.begin(workspace, State.STARTING)
    if skip:
        return skip

    func = "pools.tasks.start_workspace"
    spec = workspace.resources_spec()
    driver = driver_for(workspace.infrastructure)
    try:
        result = driver.start(spec, steps.reporter(workspace))
    except PermanentError as error:
        _back_to_stopped(workspace, driver, spec, str(error), error.detail)
        return f"stopped again: {error}"
    except Exception as error:  # a TransientError, or a bug: retry, then back to stopped
        return steps.retry_or_fail(
            workspace,
            func,
            error,
            give_up_to=State.STOPPED,
            on_give_up=lambda: _release(driver, spec, workspace),
        )

    if not result.ready:
        if _past_deadline(workspace):
            _back_to_stopped(workspace, driver, spec, _deadline_reason(), "")
            return "stopped again: deadline"
        steps.retry_later(workspace, func, POLL_INTERVAL)
        return "not ready yet"

    connection = dict(result.connection)
    secret = connection.pop("token", "")
    fields = {"connection": connection, "detail": result.detail, "failure_reason": ""}
    if secret and secret != workspace.secret:
        fields.update(secret=secret, secret_shown=False)
    # Redeploy the stacks the stop stopped, in the same transaction: a worker killed in
    # between leaves the workspace starting, for the sweep to resume.
    with transaction.atomic():
        moved = transition(workspace, State.READY, message="ready", **fields)
        if moved:
            start_for_workspace(workspace)
    if not moved:
        workspace.refresh_from_db(fields=["state"])
        return f"moved by another worker ({workspace.state})"
    return "ready"


def _back_to_stopped(workspace, driver, spec: WorkspaceSpec, reason: str, detail: str) -> None:
    if steps.fail(
        workspace,
        f"Could not start: {reason}",
        message=f"could not start: {reason}",
        detail=detail,
        to_state=State.STOPPED,
    ):
        _release(driver, spec, workspace)


def _release(driver, spec: WorkspaceSpec, workspace) -> None:
    """Release what a failed start took (a stopped workspace holds no GPU)."""
    try:
        driver.stop(spec, steps.reporter(workspace))
    except DriverError:
        logger.exception("releasing %s after a failed start", spec.name)


# -- warm-pool instances (issue 6) -----------------------------------------------------


def _load_instance(instance_id: int):

    return (
        PoolInstance.objects.select_related("profile", "infrastructure")
        .filter(pk=instance_id)
        .first()
    )


def provision_pool_instance(instance_id: int) -> str:
    """Take a requested pool instance to ready; tell the pool how it went (backoff)."""

    instance = _load_instance(instance_id)
    if instance is None:
        return "gone"
    before = instance.state
    outcome = _provision(instance, "pools.tasks.provision_pool_instance")
    # After the move to ready commits, not within it (`on_ready`): a hand-over locks the
    # waiting workspace, whose own task locks it before the instance (`promises.settle`).
    # A worker killed here loses nothing: that task hands the instance over, and a claim
    # deploys the stack an instance lacks (`promises.adopt`).
    if instance.state != before:  # only the call that moved it reports, once
        # Promised to a waiting workspace while it provisioned? (`pools.promises`)
        instance.refresh_from_db(fields=["workspace"])
        if instance.state == State.READY:
            warmpool.record_success(instance.profile_id)
            # A warm instance comes with its profile's default stack already running; one
            # handed over gets the stack its workspace asked for, or that default, as any
            # workspace that became ready.
            if not (instance.workspace_id and promises.hand_over(instance)):
                deploy_default_services(instance)
        elif instance.state == State.FAILED:
            warmpool.record_failure(instance.profile_id, instance.failure_reason)
            if instance.workspace_id:  # it waits in vain: provision it on demand now
                transaction.on_commit(lambda: enqueue_provision(instance.workspace_id))
    return outcome


def deprovision_pool_instance(instance_id: int) -> str:
    instance = _load_instance(instance_id)
    skip = steps.begin(instance, State.DELETING)
    if skip:
        return skip
    return _deprovision(instance, instance.spec(), "pools.tasks.deprovision_pool_instance")


# -- the periodic sweep ----------------------------------------------------------------


def resume_stuck(now=None) -> int:
    """Re-enqueue each in-flight workspace or pool instance whose worker went away."""
    workspaces = {
        State.REQUESTED: enqueue_provision,
        State.PROVISIONING: enqueue_provision,
        State.DELETING: enqueue_deprovision,
        State.STOPPING: enqueue_stop,
        State.STARTING: enqueue_start,
    }
    instances = {
        State.REQUESTED: enqueue_pool_provision,
        State.PROVISIONING: enqueue_pool_provision,
        State.DELETING: enqueue_pool_deprovision,
    }
    now = now or timezone.now()
    return steps.resume_stuck(Workspace, workspaces, now) + steps.resume_stuck(
        PoolInstance, instances, now
    )


# A workspace whose owner was never warned of its expiry (it was provisioning or starting
# all through its warning window) is warned when the sweep finds it expired, and kept this
# long from then: time to extend it, or to save its files.
LATE_WARNING_NOTICE = timedelta(hours=1)


def expire(now=None) -> int:
    """Start deleting each ready (degraded, or stopped) workspace past its lifetime whose
    owner was warned; return how many."""

    now = now or timezone.now()
    due = _expired(Workspace.objects.all(), now).values_list("pk", flat=True)
    return sum(expire_one(pk, now) for pk in list(due))


def _expired(workspaces, now):
    # The states warned before expiry: a workspace is never deleted without its warning.
    return workspaces.filter(state__in=lifetime.EXPIRING_STATES, expires_at__lt=now)


@transaction.atomic
def expire_one(pk: int, now) -> bool:
    """Start deleting the workspace `pk` if it is still past its lifetime (audited, the
    system as actor). Its row is locked and read again first: an extension
    (`lifetime.extend`, which locks it too) committed since the sweep listed it keeps it,
    and one made after waits and finds it deleting. One whose owner was not warned of this
    expiry is warned now and kept LATE_WARNING_NOTICE longer instead."""
    locked = Workspace.objects.select_for_update(of=("self",)).filter(pk=pk)
    workspace = _expired(locked, now).select_related("owner").first()
    if workspace is None:
        return False
    if not _warned(workspace):
        _warn_late(workspace, now)
        return False
    before = workspace.state
    if not transition(workspace, State.DELETING, message="lifetime reached"):
        return False
    audit.record(
        None,
        AuditAction.ACTION,
        workspace,
        before={"state": before},
        after={"state": workspace.state},
        message="deleted workspace: lifetime reached",
    )
    transaction.on_commit(lambda: enqueue_deprovision(pk))
    return True


def _warned(workspace) -> bool:
    """Whether its owner was told of its current expiry (`lifetime.warn_expiring`)."""
    return Notification.objects.filter(key=lifetime.expiry_message(workspace).key).exists()


def _warn_late(workspace, now) -> None:
    """Move the expiry LATE_WARNING_NOTICE from `now` and warn the owner of it; audited."""
    before = workspace.expires_at
    workspace.expires_at = now + LATE_WARNING_NOTICE
    workspace.save(update_fields=["expires_at"])
    message = (
        f"lifetime extended to {timezone.localtime(workspace.expires_at):%Y-%m-%d %H:%M %Z}: "
        "its owner had not been warned of its expiry"
    )
    log_step(workspace, message)
    audit.record(
        None,
        AuditAction.UPDATED,
        workspace,
        before={"expires_at": before.isoformat()},
        after={"expires_at": workspace.expires_at.isoformat()},
        message=message,
    )
    notifications.notify([workspace.owner], lifetime.expiry_message(workspace))
    logger.info("workspace %s: %s", workspace.pk, message)


# Callables returning the resource names on an infrastructure that the sweep must keep;
# the warm pool appends its own (pools.apps) so the sweep does not reap its instances.
LIVE_NAME_SOURCES = []


def _held_workspace_names(infrastructure) -> set[str]:
    """Names of the workspaces whose state may hold resources (failed ones included)."""
    rows = Workspace.objects.filter(
        infrastructure=infrastructure, state__in=Workspace.lifecycle.holding_states
    )
    return {f"ws-{pk}" for pk in rows.values_list("pk", flat=True)}


def live_names(infrastructure) -> set[str]:
    names = _held_workspace_names(infrastructure)
    for source in LIVE_NAME_SOURCES:
        names |= set(source(infrastructure))
    return names


def _live_on_any_infrastructure() -> set[str]:
    names: set[str] = set()
    for infrastructure in Infrastructure.objects.all():
        names |= live_names(infrastructure)
    return names


def reap_orphans() -> list[str]:
    """Deprovision resources that exist on an infrastructure but whose owner row is absent
    or in a state that holds no resources (deleted; `Lifecycle.holds_resources`). A failed
    workspace keeps its files and volumes until it is deleted.

    The names on the infrastructure are read *before* the kept names: a resource is only
    made after its owner's row committed, so an owner created in between is already in the
    second read and is never mistaken for an orphan.

    A name live on another entry is kept too: names are unique across the portal (`ws-42`,
    `pool-17`), and two entries may reach one cluster (one kubeconfig for both, say), where
    each lists the other's resources.
    """

    reaped = []
    for infrastructure in Infrastructure.objects.all():
        try:
            if driver_class(infrastructure) is None or not infrastructure.usability()[0]:
                continue
            driver = driver_for(infrastructure)
            present = driver.managed_names()
        except (ImportError, DriverError):
            logger.exception("sweep: cannot list resources on %s", infrastructure)
            continue
        orphans = present - live_names(infrastructure)
        if orphans:  # rare: only then are the other entries' names read
            orphans -= _live_on_any_infrastructure()
        for name in sorted(orphans):
            spec = WorkspaceSpec(name=name, owner="", profile="", profile_version=0, groups=())
            try:
                driver.deprovision(spec)
            except Exception:  # one resource, whatever is wrong with it, spares the rest
                logger.exception("sweep: cannot reap %s on %s", name, infrastructure)
                continue
            logger.info("sweep: reaped %s on %s", name, infrastructure)
            reaped.append(name)
    return reaped


def sweep() -> dict:
    """The periodic sweep (a django-q2 Schedule, see pools/migrations).

    1. Resume workspaces stuck in requested/provisioning/deleting (worker died).
    2. Start deleting workspaces past their lifetime (warning the owners not yet warned).
    3. Reap resources on the infrastructure whose owner is deleted or absent.
    4. Resume services deployments stuck in flight (`services.tasks.sweep`).
    5. Stop supervised processes whose workspace is gone (`supervisor.stop_orphans`).

    A step that fails is logged and noted in the result ("failed"); the others still run,
    so one bad resource never stops the cleanup of everyone else's.
    """
    parts = {
        "resumed": resume_stuck,
        "expired": expire,
        "reaped": reap_orphans,
        "services_resumed": services_sweep,
        "processes_stopped": lambda: supervisor.stop_orphans(live_names),
    }
    return {name: _sweep_step(name, step) for name, step in parts.items()}


def _sweep_step(name: str, step: Callable[[], object]) -> object:
    try:
        return step()
    except Exception:
        logger.exception("sweep: the %s step failed", name)
        return "failed"
