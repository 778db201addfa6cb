"""The warm-pool control loop: keep each profile's ready capacity at its desired value.

`run_loop()` is what the django-q2 schedule (every minute) and every claim (on commit) run.
One pass, under ONE lock across all workers (`pools.locks.try_lock`):

1. Health: check a few ready instances whose last check is old; mark the failed ones
   unhealthy (they stop counting and are replaced in step 2).
2. Reconcile every profile at once, with a fixed number of aggregate queries whatever the
   number of instances:
   a. read the counts per (profile, state, version, health) in one GROUP BY query, the
      pools' states, the schedules, the user requests still waiting for a worker and,
      where profiles ask for MIG slices, their groups and the slices their
      infrastructures' partitionings offer;
   b. decide per profile (`decide()`, pure): desired (the SLO policy `pools.sizing` when
      the pool is sized by its SLO, else the schedule or profile) against actual
      = ready + requested + provisioning of the current version, less those promised to
      a workspace waiting for them (`pools.promises`), which the loop never deletes.
      Requested rows are written before their provisioning starts, so an instance on its
      way always counts: however slow provisioning is, the loop never creates the same
      capacity twice. Nothing is created where it could only fail: an infrastructure that
      is not available, or MIG slices its partitioning no longer offers;
   c. act in one transaction: create the missing instances as `requested` rows (their
      provisioning is enqueued on commit), move the oldest ready extras (then the newest
      requested ones) to deleting, replace outdated or unhealthy instances, and record one
      `LoopDecision` per profile.
3. Forget decisions older than `DECISION_RETENTION`.

Failures: each instance that ends `failed` counts against its pool (`record_failure`): the
pool backs off (a delay that doubles with every consecutive failure), creates one instance
at a time until one succeeds, and stops creating after `HARD_LIMIT` failures in a row
until an administrator resumes it. Paused pools are left alone.

Ordering against user requests: with `settings.WARM_POOL_CLUSTER` pool work runs on its
own django-q2 cluster. Without it pool tasks share the default queue, and the loop creates
nothing on an infrastructure while user requests there are waiting for a worker.
"""

from __future__ import annotations

import logging
import time as clock
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, prefetch_related_objects
from django.utils import timezone
from django_q.tasks import async_task

from pools import lifecycle, notices, sizing, slo, steps, tasks
from pools.drivers import driver_for
from pools.drivers.base import DriverError
from pools.lifecycle import State, log_step, transition
from pools.locks import try_lock
from pools.models import (
    LoopDecision,
    Pool,
    PoolInstance,
    PoolSchedule,
    Workspace,
)
from portal import audit
from portal.models import AuditAction
from profiles import partitioning
from profiles.choices import AllocationStrategy
from profiles.models import MAX_POOL_SIZE, ComputeProfile, ResourceGroup

logger = logging.getLogger(__name__)

LOCK_NAME = "warm-pool-loop"
HARD_LIMIT = 5  # consecutive failed instances before the pool stops creating
BACKOFF_BASE = 60  # seconds after the first failure; doubles per further failure
BACKOFF_MAX = 60 * 60
HEALTH_INTERVAL = timedelta(minutes=5)
HEALTH_BATCH = 20  # instances checked per pass
DECISION_RETENTION = timedelta(days=8)
USER_WAIT_WINDOW = timedelta(minutes=10)
# States of instances the pool still manages (claimed ones belong to their workspace).
POOL_STATES = (State.REQUESTED, State.PROVISIONING, State.READY, State.DELETING)
Action = LoopDecision.Action


# -- what the loop sees ----------------------------------------------------------------


@dataclass
class Counts:
    """Instances of one profile by what they mean for the pool."""

    ready: int = 0  # ready, current version, healthy: claimable
    requested: int = 0  # current version, provisioning not started yet
    provisioning: int = 0  # current version
    deleting: int = 0
    stale: int = 0  # outdated version or unhealthy, not deleting yet: to replace

    @property
    def in_flight(self) -> int:
        return self.requested + self.provisioning

    @property
    def actual(self) -> int:
        return self.ready + self.in_flight


def count_instances(profiles) -> dict[int, Counts]:
    """One GROUP BY query over the live instances of `profiles`."""
    versions = {p.pk: p.version for p in profiles}
    rows = (
        # A promised instance is its waiting workspace's already (`pools.promises`).
        PoolInstance.objects.filter(
            profile_id__in=versions, state__in=POOL_STATES, workspace__isnull=True
        )
        .values_list("profile_id", "state", "profile_version", "unhealthy")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts: dict[int, Counts] = defaultdict(Counts)
    for profile_id, state, version, unhealthy, n in rows:
        c = counts[profile_id]
        if state == State.DELETING:
            c.deleting += n
        elif version != versions[profile_id] or unhealthy:
            c.stale += n
        elif state == State.READY:
            c.ready += n
        elif state == State.REQUESTED:
            c.requested += n
        else:
            c.provisioning += n
    return counts


def local_time(now: datetime) -> datetime:
    return now.astimezone(ZoneInfo(settings.TIME_ZONE))


def effective_desired(profile, schedules, now: datetime) -> tuple[int, str]:
    """The capacity the pool should have at `now`, and why (for the page and the log)."""
    if profile.allocation_strategy != AllocationStrategy.WARM_POOL:
        return 0, "on demand: keeps no warm instances"
    local = local_time(now)
    minute = local.hour * 60 + local.minute
    for schedule in schedules:
        if schedule.covers(local.weekday(), minute):
            name = f" “{schedule.name}”" if schedule.name else ""
            window = f"{schedule.days_label} {schedule.start_time:%H:%M}–{schedule.end_time:%H:%M}"
            return schedule.desired_capacity, (
                f"{window} schedule{name}: {schedule.desired_capacity} "
                f"instead of {profile.desired_capacity}"
            )
    return profile.desired_capacity, f"desired capacity {profile.desired_capacity}"


@dataclass
class Decision:
    profile: ComputeProfile
    desired: int
    counts: Counts
    action: str = Action.NONE
    create: int = 0
    delete: int = 0
    replace: int = 0
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    at_risk: str = ""  # why the SLO may be missed (SLO sizing only)
    pool: Pool | None = None  # the profile's pool settings, when it has any (`plan`)


def decide(
    profile,
    pool: Pool | None,
    counts: Counts,
    schedules,
    waiting_users: int,
    unprovisionable: str,
    now: datetime,
    sized: sizing.Sizing | None = None,
) -> Decision:
    """What to do for one profile. Pure: reads nothing, writes nothing.

    `unprovisionable` says why an instance could not be provisioned now, "" when it
    could (`_unprovisionable_reasons`); `sized` is the SLO policy's answer when the pool
    is sized by its SLO (`slo.sizings`).
    """
    if sized is not None and profile.allocation_strategy == AllocationStrategy.WARM_POOL:
        desired, why = sized.target, sized.reason
    else:
        desired, why = effective_desired(profile, schedules, now)
    d = Decision(profile=profile, desired=desired, counts=counts)
    d.at_risk = sized.at_risk if sized is not None else ""
    seen = f"{counts.ready} ready, {counts.in_flight} on the way"
    if pool is not None and pool.paused:
        d.action, d.reason = Action.PAUSED, f"paused by an administrator ({why}; {seen})"
        return d
    d.replace = counts.stale
    if counts.actual > desired:
        d.action, d.delete = Action.DELETE, counts.actual - desired
        d.reason = f"{why}; {seen}: deleting {d.delete} extra"
    elif counts.actual < desired:
        missing = desired - counts.actual
        failures = pool.consecutive_failures if pool else 0
        if unprovisionable:
            # Creating would only fail (and back the pool off): say what the admin must do.
            d.action = Action.UNUSABLE
            d.reason = f"{why}; {seen}: {missing} missing, not creating: {unprovisionable}"
        elif pool is not None and pool.halted:
            d.action = Action.HALTED
            d.reason = (
                f"{why}; {seen}: stopped after {failures} failed provisionings in a row "
                f"({pool.last_failure or 'no detail'}); resume the pool to try again"
            )
        elif pool is not None and pool.backoff_until and pool.backoff_until > now:
            d.action = Action.BACKOFF
            until = local_time(pool.backoff_until)
            d.reason = (
                f"{why}; {seen}: {missing} missing, backing off after {failures} failed "
                f"provisioning(s) until {until:%H:%M:%S}"
            )
        elif waiting_users:
            d.action = Action.YIELD
            d.reason = (
                f"{why}; {seen}: {missing} missing, waiting while {waiting_users} user "
                "request(s) wait for a worker"
            )
        else:
            d.action = Action.CREATE
            d.create, note = _to_create(missing, failures)
            d.reason = f"{why}; {seen}: creating {d.create}{note}"
    else:
        d.reason = f"{why}; {seen}: at desired capacity"
    if d.replace:
        if d.action == Action.NONE:
            d.action = Action.REPLACE
        d.reason += f"; replacing {d.replace} outdated or unhealthy"
    return d


def _to_create(missing: int, failures: int) -> tuple[int, str]:
    """How many instances one pass creates, and a note when fewer than are missing."""
    if failures:  # probe with one instance at a time until one succeeds
        return 1, " (one at a time after a failure)" if missing > 1 else ""
    if missing > MAX_POOL_SIZE:  # a capacity stored before it was bounded
        return MAX_POOL_SIZE, f" of {missing} missing (at most {MAX_POOL_SIZE} a pass)"
    return missing, ""


# -- acting on decisions ---------------------------------------------------------------


def _create_all(decisions: list[Decision]) -> None:
    """The missing instances of every profile: one INSERT for the rows, one for the events,
    and one query for the resource groups of the profiles that make any: each instance
    keeps the GPUs it holds (`slo.gpu_share`), whatever edits its profile later."""
    making = [d for d in decisions if d.create]
    prefetch_related_objects([d.profile for d in making], "resource_groups")
    new = [
        PoolInstance(
            profile=d.profile,
            infrastructure_id=d.profile.infrastructure_id,
            profile_version=d.profile.version,
            state=State.REQUESTED,
            gpu_share=slo.gpu_share(d.profile),
        )
        for d in making
        for _ in range(d.create)
    ]
    made = lifecycle.create_many(new, message="requested by the warm-pool loop")
    for instance in made:
        transaction.on_commit(lambda pk=instance.pk: tasks.enqueue_pool_provision(pk))


def _locked(queryset):
    """Skip rows a claim holds right now (PostgreSQL); SQLite serialises writers anyway."""
    if connection.features.has_select_for_update_skip_locked:
        return queryset.select_for_update(skip_locked=True)
    return queryset


def _start_deleting(instance_ids: list[int], message: str) -> int:
    deleted = 0
    for instance in PoolInstance.objects.filter(pk__in=instance_ids):
        if transition(instance, State.DELETING, message=message):
            transaction.on_commit(lambda pk=instance.pk: tasks.enqueue_pool_deprovision(pk))
            deleted += 1
    return deleted


def _delete_extras(decision: Decision) -> int:
    """The oldest ready extras first, then the newest requested (not started) ones."""
    mine = PoolInstance.objects.filter(
        profile=decision.profile,
        profile_version=decision.profile.version,
        unhealthy=False,
        workspace__isnull=True,  # never one promised to a waiting workspace
    )
    ready = _locked(mine.filter(state=State.READY).order_by("created", "pk"))
    ids = list(ready.values_list("pk", flat=True)[: decision.delete])
    if len(ids) < decision.delete:
        requested = _locked(mine.filter(state=State.REQUESTED).order_by("-created", "-pk"))
        ids += list(requested.values_list("pk", flat=True)[: decision.delete - len(ids)])
    return _start_deleting(ids, "extra: the pool is above its desired capacity")


def _replace_stale(decision: Decision) -> int:
    """Delete outdated or unhealthy instances that are not busy provisioning."""
    profile = decision.profile
    stale = PoolInstance.objects.filter(
        Q(unhealthy=True) | ~Q(profile_version=profile.version),
        profile=profile,
        state__in=[State.READY, State.REQUESTED],
        workspace__isnull=True,
    )
    ids = list(_locked(stale).values_list("pk", flat=True))
    return _start_deleting(ids, "replaced: outdated profile version or failed health check")


def _apply(decision: Decision, now: datetime) -> LoopDecision:
    """Delete and replace for one profile (creation is batched by `reconcile`)."""
    count = decision.create
    if decision.delete:
        count = _delete_extras(decision)
    if decision.replace and decision.action != Action.PAUSED:
        count += _replace_stale(decision)
    c = decision.counts
    return LoopDecision(
        time=now,
        profile=decision.profile,
        desired=decision.desired,
        ready=c.ready,
        provisioning=c.in_flight,
        deleting=c.deleting,
        action=decision.action,
        count=count,
        reason=decision.reason[: LoopDecision._meta.get_field("reason").max_length],
    )


def _waiting_user_requests(now: datetime) -> dict[int, int]:
    """Per infrastructure, user workspaces requested recently and not picked up yet."""
    if getattr(settings, "WARM_POOL_CLUSTER", ""):
        return {}  # pool work has its own workers; it never delays a user

    rows = (
        Workspace.objects.filter(state=State.REQUESTED, created__gte=now - USER_WAIT_WINDOW)
        .values_list("infrastructure_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return dict(rows)


def managed_profiles(profile_ids=None):
    """Warm-pool profiles, and any profile that still has pool instances to clean up, each
    with its infrastructure and `asks_for_slices` (whether a resource group is a MIG
    slice)."""
    with_instances = PoolInstance.objects.filter(state__in=POOL_STATES).values("profile_id")
    slices = ResourceGroup.objects.filter(profile=OuterRef("pk")).exclude(mig_profile="")
    queryset = (
        ComputeProfile.objects.filter(
            Q(allocation_strategy=AllocationStrategy.WARM_POOL) | Q(pk__in=with_instances)
        )
        .select_related("infrastructure")
        .annotate(asks_for_slices=Exists(slices))
    )
    if profile_ids is not None:
        queryset = queryset.filter(pk__in=profile_ids)
    return list(queryset.order_by("pk"))


def plan(profile_ids=None, now: datetime | None = None) -> list[Decision]:
    """Read everything (a fixed number of queries) and decide for every profile."""
    now = now or timezone.now()
    profiles = managed_profiles(profile_ids)
    if not profiles:
        return []
    ids = [p.pk for p in profiles]
    counts = count_instances(profiles)
    pools = {p.profile_id: p for p in Pool.objects.filter(profile_id__in=ids)}
    schedules = defaultdict(list)
    for schedule in PoolSchedule.objects.filter(profile_id__in=ids):
        schedules[schedule.profile_id].append(schedule)
    waiting = _waiting_user_requests(now)
    blocked = _unprovisionable_reasons(profiles)
    sized = _sizings(profiles, pools, now)
    decisions = []
    for profile in profiles:
        pool = pools.get(profile.pk)
        decision = decide(
            profile,
            pool,
            counts.get(profile.pk, Counts()),
            schedules[profile.pk],
            waiting.get(profile.infrastructure_id, 0),
            blocked[profile.pk],
            now,
            sized.get(profile.pk),
        )
        decision.pool = pool  # what the pages show next to it, read once
        decisions.append(decision)
    return decisions


def _unprovisionable_reasons(profiles) -> dict[int, str]:
    """Per profile (of `managed_profiles`), why an instance could not be provisioned now,
    "" when it could: its infrastructure is not available, or its partitioning no longer
    offers the MIG slices it asks for. The self-service page offers such a profile to
    nobody either. Two queries when some profile asks for slices, else none."""
    sliced = [p for p in profiles if p.asks_for_slices]
    prefetch_related_objects(sliced, "resource_groups", "infrastructure__partitionings")
    offered: dict[int, dict[str, dict[str, int]]] = {}  # per infrastructure, read once
    reasons = {}
    for profile in profiles:
        infrastructure = profile.infrastructure
        usable, reason = infrastructure.availability()
        if usable and profile.asks_for_slices:
            if infrastructure.pk not in offered:
                offered[infrastructure.pk] = partitioning.offered_per_gpu(infrastructure)
            reason = partitioning.slices_gone(profile, offered[infrastructure.pk])
        reasons[profile.pk] = reason
    return reasons


def _sizings(profiles, pools: dict[int, Pool], now: datetime) -> dict[int, sizing.Sizing]:
    """The SLO policy's answers (`slo.sizings`, all profiles in one pass). If that fails,
    each profile is sized on its own, so one pool whose sizing fails cannot stop the loop
    for every other: that pool keeps its previous target, or its minimum."""
    try:
        return slo.sizings(profiles, pools, now)
    except Exception:  # a bug, or a value the policy cannot handle: find whose
        logger.exception("SLO sizing of %d profiles failed; sizing them one by one", len(profiles))
    sized = {}
    for profile in profiles:
        try:
            sized.update(slo.sizings([profile], pools, now))
        except Exception as error:
            logger.exception("SLO sizing of %s failed", profile)
            sized[profile.pk] = _kept_sizing(profile, pools[profile.pk], error)
    return sized


def _kept_sizing(profile, pool: Pool, error: Exception) -> sizing.Sizing:
    """What a pool whose SLO sizing failed keeps, saying so in its decision log."""
    previous = slo.previous_targets([profile.pk]).get(profile.pk)
    if previous is None:
        target, kept = pool.min_size, f"its minimum {pool.min_size}"
    else:
        target, kept = previous, f"its previous target {previous}"
    problem = f"the SLO sizing failed ({steps.error_reason(error)})"
    return sizing.Sizing(
        target=target,
        wanted=target,
        reason=f"{problem}: keeping {kept}",
        at_risk=problem,
    )


def reconcile(profile_ids=None, now: datetime | None = None) -> list[LoopDecision]:
    """One pass over `profile_ids` (all when None). Call it while holding the loop lock."""
    now = now or timezone.now()
    decisions = plan(profile_ids, now)
    with transaction.atomic():
        _create_all(decisions)
        rows = [_apply(decision, now) for decision in decisions]
        LoopDecision.objects.bulk_create(rows)
    return rows


def reconcile_profile(profile_id: int, now: datetime | None = None) -> LoopDecision | None:
    """One step for one profile, under the loop lock; None if a loop holds it right now."""
    with try_lock(LOCK_NAME) as locked:
        if not locked:
            return None
        rows = reconcile([profile_id], now)
    return rows[0] if rows else None


def run_loop(now: datetime | None = None, patience: float = 0) -> dict:
    """One pass of the loop over every profile (the django-q2 task).

    When another pass holds the lock, wait up to `patience` seconds for it (a run enqueued
    by a claim must not be lost just because the minute's pass was still running).
    """
    deadline = clock.monotonic() + patience
    while True:
        with try_lock(LOCK_NAME) as locked:
            if locked:
                checked = check_health(now)
                rows = reconcile(None, now)
                pruned = prune_decisions(now)
                return {
                    "ran": True,
                    "checked": checked,
                    "decisions": len(rows),
                    "created": sum(r.count for r in rows if r.action == Action.CREATE),
                    "pruned": pruned,
                }
        if clock.monotonic() >= deadline:
            return {"ran": False, "reason": "another loop holds the lock"}
        clock.sleep(0.25)


def enqueue_loop() -> None:
    """Run the loop soon (after a claim): replenishment starts right away."""
    async_task(
        "pools.warmpool.run_loop", patience=30, group="pool-loop", **tasks.pool_queue_options()
    )


def prune_decisions(now: datetime | None = None) -> int:
    now = now or timezone.now()
    deleted, _ = LoopDecision.objects.filter(time__lt=now - DECISION_RETENTION).delete()
    return deleted


# -- health checks ---------------------------------------------------------------------


def check_health(now: datetime | None = None, limit: int = HEALTH_BATCH) -> int:
    """Ask the driver about ready instances not checked for a while; flag the broken ones."""
    now = now or timezone.now()
    cutoff = now - HEALTH_INTERVAL
    due = (
        PoolInstance.objects.filter(state=State.READY, unhealthy=False, ready_at__lt=cutoff)
        .filter(Q(checked_at__isnull=True) | Q(checked_at__lt=cutoff))
        .select_related("profile", "infrastructure")
        .order_by("checked_at", "pk")[:limit]
    )
    checked = 0
    for instance in due:
        try:
            healthy = driver_for(instance.infrastructure).status(instance.spec()).ready
        except DriverError as error:
            logger.warning("health check of %s: %s", instance, error)
            continue  # cannot tell: try again next time
        checked += 1
        PoolInstance.objects.filter(pk=instance.pk, state=State.READY).update(
            checked_at=now, unhealthy=not healthy
        )
        if not healthy:
            log_step(instance, "health check failed: the driver reports it is not ready")
    return checked


# -- failures, pause and resume --------------------------------------------------------


def _pool_for_update(profile_id: int) -> Pool:
    Pool.objects.get_or_create(profile_id=profile_id)
    return Pool.objects.select_for_update().get(profile_id=profile_id)


def record_failure(profile_id: int, reason: str, now: datetime | None = None) -> Pool:
    """An instance of the profile failed: back off longer, halt at the hard limit."""
    now = now or timezone.now()
    with transaction.atomic():
        pool = _pool_for_update(profile_id)
        pool.consecutive_failures += 1
        pool.last_failure = reason[:300]
        delay = steps.backoff(pool.consecutive_failures, BACKOFF_BASE, BACKOFF_MAX)
        pool.backoff_until = now + timedelta(seconds=delay)
        halts = pool.consecutive_failures >= HARD_LIMIT and not pool.halted
        if halts:
            pool.halted = True
        pool.save()
        if halts:
            notices.pool_halted(pool)
    return pool


def record_success(profile_id: int) -> None:
    Pool.objects.filter(profile_id=profile_id).exclude(consecutive_failures=0).update(
        consecutive_failures=0, backoff_until=None
    )


def _run_state(pool: Pool) -> dict:
    """What pausing and resuming change, as the audit entry's before and after."""
    return {
        "paused": pool.paused,
        "halted": pool.halted,
        "consecutive_failures": pool.consecutive_failures,
    }


@transaction.atomic
def pause(user, profile) -> Pool:
    pool = _pool_for_update(profile.pk)
    before = _run_state(pool)
    pool.paused = True
    pool.save()
    _record_run_state(user, pool, before, "paused the warm pool")
    return pool


@transaction.atomic
def resume(user, profile) -> Pool:
    """Unpause, and forget failures: the loop starts creating again on its next pass."""
    pool = _pool_for_update(profile.pk)
    before = _run_state(pool)
    was = "halted" if pool.halted else "paused" if pool.paused else "running"
    pool.paused = pool.halted = False
    pool.consecutive_failures = 0
    pool.backoff_until = None
    pool.save()
    _record_run_state(user, pool, before, f"resumed the warm pool (was {was})")
    transaction.on_commit(enqueue_loop)
    return pool


def _record_run_state(user, pool: Pool, before: dict, message: str) -> None:
    after = _run_state(pool)
    audit.record(user, AuditAction.ACTION, pool, before=before, after=after, message=message)


# -- orphan reaping --------------------------------------------------------------------


def live_names(infrastructure) -> set[str]:
    """Resource names of pool instances on `infrastructure` that must not be reaped: those
    of instances that may hold resources, and of claimed ones whose workspace may."""
    owned = PoolInstance.objects.filter(infrastructure=infrastructure).filter(
        Q(state__in=PoolInstance.lifecycle.holding_states)
        | Q(state=State.CLAIMED, workspace__state__in=Workspace.lifecycle.holding_states)
    )
    return {f"pool-{pk}" for pk in owned.values_list("pk", flat=True)}
