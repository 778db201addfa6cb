"""A request that finds no ready warm instance waits for one on its way.

Without this, a request arriving while the pool's instances are still provisioning started
a provisioning of its own: it waited a whole provisioning time although an instance would
be ready sooner, and the pool kept an instance nobody was waiting for.

1. `promise()`: in the request's transaction, ONE instance of the profile's current
   version that is requested or provisioning (and has not hit an error) is promised to
   the workspace
   (its `workspace` set, with an event), by the same one-statement claim as a warm hit, so
   two requests never get the same one. Which one: the oldest when it should be ready
   within the SLO's T (by the provisioning p50 measured on the infrastructure), else the
   newest, which still beats a new provisioning and leaves the older ones for the
   requests to come. The workspace moves to provisioning ("waiting for pool-7").
   A promised instance no longer counts for the pool (`warmpool.count_instances`), so the
   loop replaces it at once, and the loop never deletes or replaces it.
2. `hand_over()`: when the instance is ready (`pools.tasks.provision_pool_instance`), it
   is claimed and the workspace adopts it, as a warm hit does (`adopt`).
3. `settle()`: what a workspace waiting for an instance does when its own task runs (its
   retry every `pools.tasks.POLL_INTERVAL` while it waits, or the sweep resuming it): hand
   over a ready instance, keep waiting while it provisions, or give the promise back (the
   instance failed, went away or hit an error, or is late: it has provisioned for longer
   than its `Patience`, which the provisioning p90 measured on the infrastructure sets)
   and let the caller provision the workspace on demand. A late instance stays the pool's,
   still provisioning: its own worker may yet finish it for a later request.
4. `give_back()`: a workspace deleted while it waits gives its instance back to the pool.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from pools import lifecycle, sizing
from pools.lifecycle import State, log_step
from pools.models import PoolInstance, Workspace
from services.tasks import adopt_services, follow_adoption, workspace_ready

# What a provisioning workspace's own task finds about its promise (`settle`).
WAITING = "waiting for its warm instance"
READY_NOW = "ready (the warm instance it waited for)"
MOVED = "moved by another worker"
ON_DEMAND = "on demand"
PROMISED = "promised to workspace"  # the instance's event
GIVEN_BACK = "given back to the pool"  # and the one that ends the promise
WAITING_FOR = "waiting for"  # the workspace's move to provisioning, naming its instance


# Instances a request may wait for: requested (its provisioning is enqueued ahead of any
# the request would start) or provisioning, promised to no one, and without an error (a
# retrying one may never be ready). With the profile's current version.
COMING = (State.REQUESTED, State.PROVISIONING)
ON_THE_WAY = {"state__in": COMING, "workspace__isnull": True, "attempts": 0}

# A workspace stops waiting for its instance once that one has provisioned (since it was
# created, as the measured times count) for OVERDUE_FACTOR times what provisioning takes on
# the infrastructure (its p90, the pool's lead time too: `sizing.LEAD_QUANTILE`). Within
# bounds: the floor keeps the jitter of a fast infrastructure, or a few samples, from
# sending a user on demand just before the instance is ready; the ceiling leaves the
# provisioning on demand most of the workspace's hour (`pools.tasks.PROVISION_DEADLINE`).
OVERDUE_FACTOR = 2
OVERDUE_FLOOR = 2 * 60  # seconds
OVERDUE_CEILING = 20 * 60


@dataclass(frozen=True)
class Patience:
    """How long a promised instance may provision before its workspace stops waiting for
    it (seconds since the instance was created), and what that rests on, in words."""

    seconds: float
    basis: str

    @classmethod
    def of(cls, typical: float, measured: bool) -> Patience:
        """From `typical`: the provisioning p90 measured on the infrastructure or, when
        nothing is measured there yet, what its kind is assumed to need."""
        seconds = min(max(OVERDUE_FACTOR * typical, OVERDUE_FLOOR), OVERDUE_CEILING)
        if measured:
            return cls(seconds, f"p90 here {_duration(typical)}")
        return cls(seconds, f"nothing measured here yet: {_duration(seconds)} at most")


def on_the_way(profile):
    """The profile's instances a request may wait for (`ON_THE_WAY`)."""
    return PoolInstance.objects.filter(
        profile_id=profile.pk, profile_version=profile.version, **ON_THE_WAY
    )


def expected_wait(
    p50: float, within: float, first, last, now: datetime, late: float
) -> float | None:
    """Seconds until the instance `promise()` would choose now is ready, by the provisioning
    p50; None when none is on its way, or only late ones (`late` seconds, `Patience`).
    `first` and `last`: when the oldest and the newest instance on its way were created;
    when the oldest is late, which of the others is oldest is not known, so the newest
    stands for them all: the longest wait."""
    if last is None or (now - last).total_seconds() > late:
        return None
    if (now - first).total_seconds() > late:
        first = last
    chosen = (
        first if sizing.waits_for_the_oldest((now - first).total_seconds(), p50, within) else last
    )
    return max(p50 - (now - chosen).total_seconds(), 0.0)


def promise(workspace, user, p50: float, within: float, late: float, now: datetime | None = None):
    """Promise an instance on its way to `workspace`; return it, or None when none is.

    `p50` is the provisioning p50 on the infrastructure (seconds), `within` the T of the
    SLO (seconds): an instance created before `now - (p50 - within)` should be ready
    within T, and the oldest of those is taken; else the newest of all. One provisioning
    for longer than `late` seconds (`Patience`) is not promised: `settle` would give it
    back at once.
    """
    now = now or timezone.now()
    candidates = on_the_way(workspace.profile).filter(created__gt=now - timedelta(seconds=late))
    # `sizing.waits_for_the_oldest` as a filter: old enough to be ready within T.
    soon = now - timedelta(seconds=max(p50 - within, 0))
    soonest = candidates.filter(created__lte=soon).order_by("created", "pk")
    newest = candidates.order_by("-created", "-pk")
    # One statement per state (a promise keeps the instance in its state); the oldest
    # are provisioning already, the newest still requested.
    tries = (
        (soonest, State.PROVISIONING),
        (soonest, State.REQUESTED),
        (newest, State.REQUESTED),
        (newest, State.PROVISIONING),
    )
    for candidates, state in tries:
        instance = lifecycle.claim(
            candidates,
            state,
            from_state=state,
            actor=user,
            message=f"{PROMISED} {workspace.pk}, which waits for it",
            returning=("created",),
            workspace_id=workspace.pk,
            claimed_at=now,
        )
        if instance is not None:
            return instance
    return None


def hand_over(instance: PoolInstance) -> bool:
    """Give a ready promised instance to the workspace waiting for it (idempotent).

    The workspace adopts it as a warm hit does. A workspace that no longer waits (deleted
    meanwhile) leaves the instance to the pool. True when the workspace is ready now.
    """
    with transaction.atomic():
        # Locked, so a deletion cannot slip in between the claim and the adoption.
        workspace = (
            Workspace.objects.select_for_update(of=("self",))
            .select_related("profile")
            .filter(pk=instance.workspace_id)
            .first()
        )
        if workspace is None or workspace.state != State.PROVISIONING:
            release_instance(instance, "its workspace no longer waits for it")
            return False
        claimed = lifecycle.claim(
            PoolInstance.objects.filter(pk=instance.pk, workspace_id=workspace.pk),
            State.CLAIMED,
            from_state=State.READY,
            message=f"claimed by workspace {workspace.pk}, which waited for it",
            returning=HANDED_OVER,
        )
        return claimed is not None and adopt(workspace, claimed, None, READY_NOW)


# What a workspace takes over from the instance it claims (`adopt`).
HANDED_OVER = ("infrastructure", "profile_version", "connection", "detail", "secret")


def adopt(workspace, instance, user, message: str) -> bool:
    """The workspace takes over a claimed instance: its resources, connection and running
    stack; it is ready now. Call inside the transaction that claimed the instance. False
    if another worker moved the workspace first (the instance is still its: deleting the
    workspace deletes it)."""
    name = instance.resource_name
    steps = [lifecycle.Step(State.READY, message)]
    waited = workspace.state == State.PROVISIONING  # else just requested: a warm hit
    if not waited:
        steps.insert(0, lifecycle.Step(State.PROVISIONING, f"claimed warm instance {name}", user))
    moved = lifecycle.advance(
        workspace,
        steps,
        ready_at=timezone.now(),
        profile_version=instance.profile_version,
        connection=instance.connection,
        detail=instance.detail | {"pool_instance": name},
        secret=instance.secret,
    )
    if moved:
        # The instance's running stack is the workspace's now; a stack named in the request
        # (or a default the instance lacks) deploys as for any workspace that became ready.
        adopt_services(instance.infrastructure_id, name, workspace)
        if waited:  # stacks may have been asked for meanwhile
            follow_adoption(workspace)
        workspace_ready(workspace)
    return moved


def promised_to(workspace) -> PoolInstance | None:
    """The instance promised to `workspace` and not handed over yet, if any."""
    return (
        PoolInstance.objects.filter(workspace=workspace)
        .exclude(state=State.CLAIMED)
        .select_related("profile", "infrastructure")
        .first()
    )


@transaction.atomic
def settle(workspace, patience: Callable[[PoolInstance], Patience]) -> str:
    """What a provisioning workspace's own task does about its promise.

    Returns WAITING (its instance is still provisioning, and not late), READY_NOW (handed
    over), MOVED (it no longer provisions: its instance was handed over since the task
    read it), or ON_DEMAND: it has no promise (any more) and the caller provisions it
    itself. `patience(instance)`: how long that instance may take (`Patience`), asked
    only of an instance still provisioning.

    Under the workspace's row lock, which `hand_over` takes too: no instance is handed over
    between what this reads and what it decides, so ON_DEMAND means none will be. (An
    instance given back that becomes ready just after stays the pool's: `hand_over` finds
    it promised to no one.)
    """
    locked = Workspace.objects.select_for_update().filter(pk=workspace.pk)
    if locked.values_list("state", flat=True).first() != State.PROVISIONING:
        return MOVED
    instance = promised_to(workspace)
    if instance is None:
        return ON_DEMAND
    if instance.state == State.READY and not instance.unhealthy:
        return READY_NOW if hand_over(instance) else MOVED
    if instance.state in COMING and not instance.attempts:
        late = _late(instance, patience(instance))
        if not late:
            return WAITING
        why = f"its warm instance {instance.resource_name} was {late}"
        given_back = f"workspace {workspace.pk} stopped waiting for it: {late}"
    else:
        why = f"the warm instance it waited for will not come ({_why_not(instance)})"
        given_back = f"workspace {workspace.pk} stopped waiting for it"
    log_step(workspace, f"{why}: provisioning on demand")
    release_instance(instance, given_back)
    return ON_DEMAND


def _late(instance: PoolInstance, patience: Patience) -> str:
    """Why a provisioning instance is late ("not ready after 12 min (p90 here 5 min)"),
    or "" while it is not."""
    taken = (timezone.now() - instance.created).total_seconds()
    if taken <= patience.seconds:
        return ""
    return f"not ready after {_duration(taken)} ({patience.basis})"


def _duration(seconds: float) -> str:
    """Seconds in words for an event: "40 s", "12 min"."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _why_not(instance: PoolInstance) -> str:
    if instance.state in COMING:
        return "its provisioning hit an error and is being retried"
    if instance.state == State.READY:
        return "it failed its health check"
    return instance.failure_reason or f"it is {instance.get_state_display().lower()}"


def give_back(workspace, why: str) -> None:
    """Give the instance promised to `workspace`, if any, back to the pool."""
    instance = promised_to(workspace)
    if instance is not None:
        release_instance(instance, why)


def release_instance(instance: PoolInstance, why: str) -> None:
    """Make a promised instance the pool's again (a conditional UPDATE: once)."""
    promised = PoolInstance.objects.filter(pk=instance.pk, workspace_id=instance.workspace_id)
    if instance.workspace_id and promised.exclude(state=State.CLAIMED).update(
        workspace=None, claimed_at=None
    ):
        log_step(instance, f"{GIVEN_BACK}: {why}")
