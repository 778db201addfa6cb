"""Watched workspaces (issue 12): a ready workspace is checked, degraded, repaired or failed.

The checks, in a user's words:
- the workspace's own (`Driver.check`): local: its directory is there, it holds every GPU
  it was given, its process is alive and answers on its port; Kubernetes: its pods are
  there and Ready, on nodes that are there and Ready;
- its services stack's (`services.tasks.check_stack`): each component's own health check
  (process alive and port answering locally; Deployment and pods on Kubernetes).

The steps, each claiming one workspace with a conditional UPDATE (so two sweeps never take
the same one, and a test drives exactly one step):
1. `check_one(now)`: the ready workspace whose check is due first (its `heartbeat`: when
   it became ready, then CHECK_INTERVAL after each check, whatever the check found).
   Nothing wrong: its `checked_at` says when. Something wrong: degraded, with the reasons
   as its `failure_reason` and event, and its repair due at once.
2. `repair_one(now)`: a degraded workspace whose next look is due (its `heartbeat`). It is
   checked again: nothing wrong → ready ("repaired"). Still broken after MAX_REPAIRS
   attempts → stopped as Stop stops it (processes stopped, GPUs released, files kept) and
   failed with the reasons. Else what is broken is restarted (`Driver.repair`:
   GPUs taken again, the process restarted; `services.tasks.repair_stack`: the stack
   checked again, after the driver's repair may have stopped it, and its failed
   components restarted with their own credential), the attempt counted, and the next look
   scheduled after `steps.backoff(attempts, REPAIR_BACKOFF)`. What cannot be brought back
   (a deleted directory: its files are gone) fails it at once. A workspace stopped while
   its repair ran is stopped again: the repair may have taken GPUs after the stop.
A check that cannot tell (the cluster does not answer: a DriverError) changes nothing, not
even `checked_at` (the pages' "Last checked"); the infrastructure's own health check
reports the cluster (`pools.health`). A check that fails otherwise is logged and the sweep
goes on to the next workspace.

When: the "pools: watch" schedule runs `sweep()` every minute: repairs, then checks, for as
long as any is due, up to SWEEP_SECONDS (a fixed count of checks per sweep would leave
thousands of ready workspaces unchecked for half an hour); each repair also schedules its
next look (`repair_workspace`), so a repair does not wait for the next sweep.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from pools import steps
from pools.drivers import driver_for
from pools.drivers.base import DriverError, PermanentError, TransientError
from pools.lifecycle import State, log_step, transition
from pools.models import Workspace
from services import tasks as services

logger = logging.getLogger(__name__)

CHECK_INTERVAL = timedelta(minutes=2)
MAX_REPAIRS = 3
REPAIR_BACKOFF = 15  # seconds before the first look after a restart; doubles per attempt
# How long one sweep goes on while steps are due. It holds a worker that provisioning
# requests also wait for (2 by default), so a third of one; sweeps never overlap then,
# and if they did each step would still claim its own workspace.
SWEEP_SECONDS = 20
CANDIDATES = 5  # due workspaces tried per step when other sweeps take the first ones
REPAIR = "pools.watch.repair_workspace"


def sweep(now: datetime | None = None, seconds: float = SWEEP_SECONDS) -> dict:
    """The "pools: watch" schedule: due repairs, then due checks (see the module doc)."""
    now = now or timezone.now()
    deadline = time.monotonic() + seconds
    return {
        "repaired": _repeat(lambda: repair_one(now), deadline),
        "checked": _repeat(lambda: check_one(now), deadline),
    }


def _repeat(step, deadline: float) -> int:
    done = 0
    while time.monotonic() < deadline and step():
        done += 1
    return done


# -- the check ---------------------------------------------------------------------------


def check_one(now: datetime | None = None) -> bool:
    """Check the ready workspace whose check is due first; False when none is due."""
    now = now or timezone.now()
    due = Workspace.objects.filter(state=State.READY, heartbeat__lte=now)
    for pk, heartbeat in due.order_by("heartbeat", "pk").values_list("pk", "heartbeat")[
        :CANDIDATES
    ]:
        claimed = Workspace.objects.filter(pk=pk, state=State.READY, heartbeat=heartbeat)
        # The claim is the next check's time, so a check that cannot tell or fails is not
        # taken again at once (and `checked_at` stays the last check that answered).
        if claimed.update(heartbeat=now + CHECK_INTERVAL) == 1:
            try:
                check_workspace(_load(pk), now)
            except Exception:  # one workspace, whatever is wrong with it, spares the rest
                logger.exception("watch: checking workspace %s failed", pk)
            return True
    return False


def check_workspace(workspace: Workspace, now: datetime) -> list[str] | None:
    """Check a ready workspace; degrade it when something is wrong. Its problems (None:
    the check cannot tell, and nothing changes)."""
    problems = problems_of(workspace)
    if problems == []:
        Workspace.objects.filter(pk=workspace.pk, state=State.READY).update(checked_at=now)
    elif problems:
        reason = "; ".join(problems)
        if transition(
            workspace,
            State.DEGRADED,
            message=f"degraded: {reason}",
            failure_reason=reason[:300],
            checked_at=now,
        ):
            steps.schedule_retry(REPAIR, workspace.pk, 0)
    return problems


def problems_of(workspace: Workspace) -> list[str] | None:
    """What is wrong with the workspace and its stack ([] when nothing is); None when the
    check cannot tell (the infrastructure did not answer)."""
    try:
        problems = driver_for(workspace.infrastructure).check(workspace.resources_spec())
        stack = services.watched_stack(workspace)
        if stack is not None:
            problems += services.check_stack(stack)
    except DriverError as error:
        logger.warning("watch: cannot check %s: %s", workspace.resource_name, error)
        return None
    return problems


# -- the repair --------------------------------------------------------------------------


def repair_one(now: datetime | None = None, pk: int | None = None) -> bool:
    """Take the next step of one degraded workspace whose next look is due (`pk`: that
    one only); False when none is due."""
    now = now or timezone.now()
    due = Workspace.objects.filter(state=State.DEGRADED, heartbeat__lte=now)
    if pk is not None:
        due = due.filter(pk=pk)
    for found, heartbeat in due.order_by("heartbeat", "pk").values_list("pk", "heartbeat")[
        :CANDIDATES
    ]:
        claimed = Workspace.objects.filter(pk=found, state=State.DEGRADED, heartbeat=heartbeat)
        # Held for as long as a task may run: a worker killed mid-repair is taken over later.
        if claimed.update(heartbeat=now + steps.stuck_after()) == 1:
            repair_workspace_now(_load(found), now)
            return True
    return False


def repair_workspace(workspace_id: int) -> str:
    """The one-off task each repair schedules for its next look."""
    return "looked" if repair_one(pk=workspace_id) else "not due"


def repair_workspace_now(workspace: Workspace, now: datetime) -> str:
    """One look at a degraded workspace: repaired, failed, or restarted (see the module
    doc). Returns what happened."""
    problems = problems_of(workspace)
    stack = services.watched_stack(workspace)
    if problems is None:
        _look_again(workspace, REPAIR_BACKOFF)
        return "cannot tell"
    if not problems:
        transition(
            workspace,
            State.READY,
            message="repaired",
            failure_reason="",
            checked_at=now,
            heartbeat=now + CHECK_INTERVAL,  # just checked: the next check is due then
        )
        return "repaired"
    reason = "; ".join(problems)
    if workspace.attempts >= MAX_REPAIRS:
        return _give_up(
            workspace, stack, f"{reason} (not repaired after {workspace.attempts} attempts)"
        )
    attempts = workspace.attempts + 1
    try:
        restarted = _restart(workspace, stack)
    except PermanentError as error:
        return _give_up(workspace, stack, f"Cannot be repaired: {error}")
    except Exception as error:  # a TransientError, or a bug: the next attempt tries again
        logger.exception("watch: repairing %s", workspace.resource_name)
        restarted = f"the repair failed ({error})"
    moved = _release_if_moved(workspace)
    if moved:
        return moved
    Workspace.objects.filter(pk=workspace.pk, state=State.DEGRADED).update(
        attempts=attempts, failure_reason=reason[:300]
    )
    workspace.attempts = attempts
    delay = steps.backoff(attempts, REPAIR_BACKOFF)
    log_step(
        workspace,
        f"repair attempt {attempts} of {MAX_REPAIRS}: {restarted}; looking again in {delay} s",
    )
    _look_again(workspace, delay)
    return f"attempt {attempts}"


def _restart(workspace: Workspace, stack) -> str:
    """Restart what is broken; what was done, in words."""
    driver_for(workspace.infrastructure).repair(
        workspace.resources_spec(), steps.reporter(workspace)
    )
    restarted = services.repair_stack(stack) if stack is not None else []
    return "restarted " + ", ".join(restarted) if restarted else "resources brought back"


def _release_if_moved(workspace: Workspace) -> str:
    """What happened to a workspace that is no longer degraded after its repair ("" when
    it still is). Nothing serialises a Stop with the repair, which may have taken GPUs
    after the stop released them: a stopping or stopped workspace is stopped again, under
    its row's lock so the stop task does not finish meanwhile. One being deleted is left
    to its deprovisioning, which releases everything."""
    with transaction.atomic():
        state = (
            Workspace.objects.select_for_update()
            .filter(pk=workspace.pk)
            .values_list("state", flat=True)
            .get()
        )
        if state == State.DEGRADED:
            return ""
        if state in (State.STOPPING, State.STOPPED):
            happened = f"{state} during its repair: {_stop_again(workspace)}"
        else:
            happened = f"{state} during its repair"
    log_step(workspace, happened)
    return happened


def _stop_again(workspace: Workspace) -> str:
    """Release what a repair took from a workspace stopped meanwhile; what happened, in
    words. A failure is said, not raised: the watch goes on with the other workspaces."""
    try:
        driver_for(workspace.infrastructure).stop(
            workspace.resources_spec(), steps.reporter(workspace)
        )
    except TransientError as error:  # begun: e.g. the pods it scaled down still terminate
        return f"what the repair took is being released ({error})"
    except Exception as error:
        logger.exception("watch: stopping %s again", workspace.resource_name)
        return (
            f"releasing what the repair took failed ({steps.error_reason(error)}); "
            "deleting the workspace releases everything"
        )
    return "what the repair took is released"


def _look_again(workspace: Workspace, delay: int) -> None:
    steps.retry_later(workspace, REPAIR, delay)


def _give_up(workspace: Workspace, stack, reason: str) -> str:
    """Fail it, stopped first as Stop stops it (its processes stopped, its GPUs released,
    its files kept): a failed workspace counts against no GPU quota and keeps only its
    storage."""
    try:
        driver_for(workspace.infrastructure).stop(
            workspace.resources_spec(), steps.reporter(workspace)
        )
        reason = f"{reason} Stopped, its GPUs released."
    except Exception as error:  # failed all the same; deleting it releases what it holds
        logger.exception("watch: stopping %s", workspace.resource_name)
        reason = f"{reason} Stopping it failed ({steps.error_reason(error)})."
    if steps.fail(workspace, reason) and stack is not None:
        services.fail_stack(stack, reason)
    return f"failed: {reason}"


def _load(pk: int) -> Workspace:
    return Workspace.objects.select_related("profile", "infrastructure", "owner").get(pk=pk)
