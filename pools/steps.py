"""Step helpers for every task that drives a lifecycle object with a driver or a backend.

Workspaces and warm-pool instances (`pools.tasks`) and service deployments
(`services.tasks`) are all `pools.lifecycle.LifecycleModel`s, and their tasks follow the
same rules, written here once:

- A task is a django-q2 function addressed by its dotted path (`func`, e.g.
  "pools.tasks.stop_workspace") that takes the object's id as its only argument. Delivery
  is at least once, so it starts from the state in the database and does one step.
- A task never sleeps. Work that is not done yet ("the pod is still starting") is looked
  at again by scheduling the task once more with a delay (`retry_later`), which frees the
  worker at once.
- Errors: a `PermanentError` fails the object with the driver's message (its `detail`
  kept for administrators); any other error (a `TransientError`, or a bug) is retried
  with `backoff()` up to the model's `max_attempts` (else MAX_ATTEMPTS), then fails it
  (and releases what the attempts made, where the task says how). Attempts count within
  one state: every move to another state starts them again (`pools.lifecycle.advance`).
  Of a bug, users see only its class (`error_reason`): its text may quote anything, a
  credential included; administrators get the traceback.
- The heartbeat says a worker has the object, or when its next attempt is due (`touch`).
  A worker killed mid-task leaves the object in flight with an old heartbeat, and the
  periodic sweep re-enqueues it (`resume_stuck`).

The API (`obj` is any LifecycleModel instance, `func` the task's dotted path):

    backoff(attempt, base=BACKOFF_BASE, cap=BACKOFF_MAX) -> seconds   the one formula
    begin(obj, state) -> str              "" to go on (heartbeat touched), else the result
    touch(obj, delay=0)                   heartbeat now (or `delay` s ahead)
    schedule_retry(func, obj_id, delay)   run func(obj_id) once, `delay` s from now
    retry_later(obj, func, delay)         both of the above: "look again later"
    reporter(obj)                         a driver Reporter logging each step once
    fail(obj, reason, message=, detail=, to_state=)   move to failed with the reason
    error_reason(error), error_detail(error)   what users and administrators see of it
    retry_or_fail(obj, func, error, give_up_to=, on_give_up=)  -> the task's result text
    run_step(obj, func, what, step)       call step(); "" on success, else the result text
    resume_stuck(model, routes, now)      the sweep: {state: enqueue(pk)} for stuck objects
    stuck_after()                         how old a heartbeat must be to count as stuck

A task body on these helpers: `begin`, then `run_step` for the driver or backend call, then
the final `transition` (see `services.tasks.remove_services`, `pools.tasks.stop_workspace`);
a sweep: `steps.resume_stuck(ServiceDeployment, {State.REQUESTED: enqueue_deploy,
State.PROVISIONING: enqueue_deploy, State.DELETING: enqueue_remove}, now)`.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule

from pools.drivers.base import DriverError, PermanentError
from pools.lifecycle import LifecycleModel, State, log_step, transition

MAX_ATTEMPTS = 6
BACKOFF_BASE = 30  # seconds; doubles per attempt (30, 60, 120, ... capped)
BACKOFF_MAX = 15 * 60


def backoff(attempt: int, base: int = BACKOFF_BASE, cap: int = BACKOFF_MAX) -> int:
    """Seconds to wait after the `attempt`-th failure in a row: base, 2·base, 4·base, … cap."""
    return min(base * 2 ** max(attempt - 1, 0), cap)


def stuck_after() -> timedelta:
    """An in-flight object not touched for this long was dropped by a dead worker."""
    return timedelta(seconds=settings.Q_CLUSTER.get("timeout", 600) + 60)


def begin(obj: LifecycleModel | None, state: str) -> str:
    """A step's start: "" when `obj` is in `state` (its heartbeat is touched: a worker has
    it), else the task's result: "gone", or "nothing to do (<state>)" (another delivery or
    worker got there first)."""
    if obj is None:
        return "gone"
    if obj.state != state:
        return f"nothing to do ({obj.state})"
    touch(obj)
    return ""


def touch(obj: LifecycleModel, delay: int = 0) -> None:
    """Record that a worker has `obj` (or, with `delay`, when its next attempt is due)."""
    obj.heartbeat = timezone.now() + timedelta(seconds=delay)
    type(obj)._base_manager.filter(pk=obj.pk).update(heartbeat=obj.heartbeat)


def schedule_retry(func: str, obj_id: int, delay: int) -> None:
    """Run `func(obj_id)` once after `delay` seconds (one pending retry per task and id)."""
    Schedule.objects.update_or_create(
        name=f"retry {func.rsplit('.', 1)[-1]} {obj_id}",
        defaults={
            "func": func,
            "args": repr((obj_id,)),
            "schedule_type": Schedule.ONCE,
            "repeats": -1,
            "next_run": timezone.now() + timedelta(seconds=delay),
        },
    )


def retry_later(obj: LifecycleModel, func: str, delay: int = BACKOFF_BASE) -> None:
    """Look at `obj` again in `delay` seconds, without the sweep resuming it meanwhile."""
    touch(obj, delay)
    schedule_retry(func, obj.pk, delay)


def reporter(obj: LifecycleModel) -> Callable[[str], None]:
    """A driver Reporter that records each progress step once, however often it is retried."""
    seen = set(obj.events.values_list("message", flat=True))

    def report(message: str) -> None:
        if message not in seen:
            seen.add(message)
            log_step(obj, message)

    return report


def fail(
    obj: LifecycleModel,
    reason: str,
    *,
    message: str = "",
    detail: str = "",
    to_state: str = State.FAILED,
) -> bool:
    """Move `obj` to `to_state` (failed) with `reason` for the user and `detail` for admins."""
    return transition(
        obj,
        to_state,
        message=message or reason,
        failure_reason=reason[:300],
        failure_detail=detail,
    )


def error_reason(error: Exception) -> str:
    """What users see: a driver's message, else only the class of an unexpected error."""
    if isinstance(error, DriverError):
        return str(error)
    return f"Unexpected {type(error).__name__}"


def error_detail(error: Exception) -> str:
    """What administrators see: a driver's detail, else the traceback of an unexpected error."""
    if isinstance(error, DriverError):
        return error.detail or ""
    return getattr(error, "detail", "") or "".join(traceback.format_exception(error))


def retry_or_fail(
    obj: LifecycleModel,
    func: str,
    error: Exception,
    *,
    give_up_to: str = State.FAILED,
    on_give_up: Callable[[], None] | None = None,
) -> str:
    """Count a failed attempt; schedule `func` again after `backoff()`, or give up: move
    `obj` to `give_up_to`, then call `on_give_up()` (release what the attempts made).

    The attempt is counted with a conditional UPDATE on the state the task saw: when
    another worker moved the object meanwhile (two deliveries of the same task), this
    failure is not the object's any more and nothing is recorded. Returns the task's result.
    """
    attempts = obj.attempts + 1
    counted = type(obj)._base_manager.filter(pk=obj.pk, state=obj.state).update(attempts=attempts)
    if counted != 1:
        obj.refresh_from_db(fields=["state"])
        return f"moved by another worker ({obj.state})"
    obj.attempts = attempts
    reason = error_reason(error)
    if attempts >= getattr(obj, "max_attempts", MAX_ATTEMPTS):
        gave_up = fail(
            obj,
            f"{reason} (gave up after {attempts} attempts)",
            message=f"gave up after {attempts} attempts: {reason}",
            detail=error_detail(error),
            to_state=give_up_to,
        )
        if gave_up and on_give_up is not None:
            on_give_up()
        return f"gave up after {attempts} attempts: {reason}"
    delay = backoff(attempts)
    log_step(obj, f"attempt {attempts} failed ({reason}); retrying in {delay} s")
    retry_later(obj, func, delay)
    return f"retrying: {reason}"


def run_step(obj: LifecycleModel, func: str, what: str, step: Callable[[], object]) -> str:
    """Run a driver step; on error fail `obj` (permanent) or retry the task later.

    Returns "" when the step succeeded, else what happened (the task's result).
    """
    try:
        step()
    except PermanentError as error:
        fail(
            obj,
            f"{what.capitalize()} failed: {error}",
            message=f"{what} failed: {error}",
            detail=error.detail,
        )
        return f"failed: {error}"
    except Exception as error:  # a TransientError, or a bug: retry with backoff, then fail
        return retry_or_fail(obj, func, error)
    return ""


def resume_stuck(
    model: type[LifecycleModel],
    routes: Mapping[str, Callable[[int], None]],
    now: datetime | None = None,
) -> int:
    """Re-enqueue, on commit, each object of `model` in one of `routes`' states whose
    heartbeat is older than `stuck_after()`; `routes[state](pk)` enqueues its task.

    Each candidate is claimed with a conditional UPDATE of its heartbeat, so two sweeps
    running at once never both resume the same object. Returns how many were resumed.
    """
    now = now or timezone.now()
    rows = model._base_manager.filter(state__in=list(routes), heartbeat__lt=now - stuck_after())
    resumed = 0
    for pk, state, heartbeat in rows.values_list("pk", "state", "heartbeat"):
        claimed = model._base_manager.filter(pk=pk, state=state, heartbeat=heartbeat)
        if claimed.update(heartbeat=now) != 1:
            continue
        transaction.on_commit(lambda pk=pk, enqueue=routes[state]: enqueue(pk))
        resumed += 1
    return resumed
