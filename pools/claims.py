"""Claiming a warm-pool instance for a workspace request.

The claim runs inside the caller's transaction (`workspaces.actions.request_workspace`, the
one that checks and debits the quota), so the quota debit, the claim and the hand-over
commit together or not at all, and the transaction stays short:

1. Take one ready instance of the profile's current version, longest-ready first, with
   the lifecycle's `claim()`: ONE statement that skips rows another transaction holds
   (`UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING *` on
   PostgreSQL), so each instance is taken by exactly one claimant and none waits for
   another; it checks that ready → claimed is an edge of the pool lifecycle and writes
   the instance's event.
2. Hand it over: the workspace adopts the instance's resources (it keeps its own row and
   quota charge; `Workspace.resources_spec()` makes every later driver call use the
   instance's resource name, so deletion finds them), gets its connection details and is
   ready at once.
3. On commit, run the loop so the pool is replenished right away.

Without a ready instance, the workspace waits for one on its way (`pools.promises`).

An instance covers every resource group of its profile, so a heterogeneous profile claims
all its groups or none.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Count, F, Max, Min, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from pools import lifecycle, promises, sizing, slo, warmpool
from pools.lifecycle import State, log_step, transition
from pools.models import Pool, PoolInstance
from profiles.choices import AllocationStrategy


def claimable(profile):
    """Ready, healthy instances of the profile's current version, longest-ready first."""
    return PoolInstance.objects.filter(
        profile_id=profile.pk,
        state=State.READY,
        profile_version=profile.version,
        unhealthy=False,
        workspace__isnull=True,  # not promised to a workspace waiting for it
    ).order_by("ready_at", "pk")


def claim(
    profile, workspace_id: int | None = None, actor=None, returning=promises.HANDED_OVER
) -> PoolInstance | None:
    """Move one ready instance of `profile` to claimed and return it (the `returning`
    fields loaded); None if none is."""
    by = f" by workspace {workspace_id}" if workspace_id is not None else ""
    return lifecycle.claim(
        lambda: claimable(profile),  # built once per profile version, then compiled SQL
        State.CLAIMED,
        from_state=State.READY,
        actor=actor,
        message=f"claimed{by}",
        key=("warm pool", profile.pk, profile.version),
        returning=returning,
        claimed_at=timezone.now(),
        workspace_id=workspace_id,
    )


def claim_instance(profile, workspace_id: int | None = None) -> int | None:
    """`claim()`, returning the instance's id (what the benchmark measures)."""
    instance = claim(profile, workspace_id, returning=())
    return instance.pk if instance is not None else None


def adopt_warm_instance(workspace, user) -> PoolInstance | None:
    """Give a just-requested workspace a ready warm instance; None when it must wait.

    Without a ready one, it waits for one on its way (`pools.promises`) if there is one,
    else it is provisioned on demand; either way its own task (`pools.tasks`) takes it on.
    Call inside the transaction that created the workspace. Sets `workspace.claim_message`
    (for the page) for a warm-pool profile, and records an event saying what happened.
    """

    profile = workspace.profile
    if profile.allocation_strategy != AllocationStrategy.WARM_POOL:
        return None
    instance = claim(profile, workspace.pk, user)
    transaction.on_commit(warmpool.enqueue_loop)  # replenish right away
    if instance is None:
        workspace.claim_message = _wait_for_one_on_its_way(workspace, user)
        return None
    promises.adopt(workspace, instance, user, "ready (warm instance)")
    workspace.claim_message = f"ready now from the warm pool ({instance.resource_name})"
    return instance


def _wait_for_one_on_its_way(workspace, user) -> str:
    """Promise the workspace an instance on its way, if any; what the page says."""
    promised = _promise_one(workspace, user)
    if promised is None:
        log_step(workspace, "no warm instance was ready: provisioning on demand", actor=user)
        return "no warm instance was ready, so it is provisioned on demand"
    instance, when = promised
    name = instance.resource_name
    transition(workspace, State.PROVISIONING, actor=user, message=f"{promises.WAITING_FOR} {name}")
    return f"no warm instance was ready; {name} is on its way and is yours when ready ({when})"


def _promise_one(workspace, user) -> tuple[PoolInstance, str] | None:
    """The instance on its way promised to the workspace, and when it should be ready in
    words; None when none is on its way (one query then: the usual miss)."""
    profile = workspace.profile
    if not promises.on_the_way(profile).exists():
        return None
    now = timezone.now()
    infrastructure_id = profile.infrastructure_id
    measured = slo.provisioning([infrastructure_id], now).get(infrastructure_id)
    if measured is None:  # as the request page assumed when it gave its estimate
        p50 = slo.assumed_provisioning(profile.infrastructure.kind)
    else:
        p50 = measured.p50
    pool = Pool.objects.filter(profile_id=profile.pk).first()
    within = pool.slo_seconds if pool else sizing.SloSettings().seconds
    late = slo.patience(profile.infrastructure.kind, measured).seconds
    instance = promises.promise(workspace, user, p50, within, late, now)
    if instance is None:
        return None
    if measured is None:
        return instance, "no provisioning time measured here yet"
    left = max(p50 - (now - instance.created).total_seconds(), 0.0)
    return instance, f"{in_about(left)}, by the provisioning p50 here"


def in_about(seconds: float) -> str:
    """`seconds` in words for a page: "under a minute", "about 4 minutes"."""
    if seconds < 60:
        return "under a minute"
    minutes = round(seconds / 60)
    return f"about {minutes} minute{'s' if minutes != 1 else ''}"


def ready_now():
    """An annotation of compute profiles: their claimable instances, by a subquery (no
    query of its own), e.g. `ComputeProfile.objects.annotate(ready_now=ready_now())`."""
    claimable_now = PoolInstance.objects.filter(
        profile=OuterRef("pk"),
        profile_version=OuterRef("version"),
        state=State.READY,
        unhealthy=False,
        workspace__isnull=True,
    )
    counted = claimable_now.values("profile").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted), 0)


def on_the_way_annotations() -> dict:
    """Annotations of compute profiles, by subqueries (no query of their own): when the
    oldest and the newest instance a request may wait for were created
    (`first_on_the_way`, `last_on_the_way`), and the pool's SLO T (`slo_seconds`)."""
    mine = PoolInstance.objects.filter(
        profile=OuterRef("pk"), profile_version=OuterRef("version"), **promises.ON_THE_WAY
    ).values("profile")
    return {
        "first_on_the_way": Subquery(mine.annotate(at=Min("created")).values("at")),
        "last_on_the_way": Subquery(mine.annotate(at=Max("created")).values("at")),
        "slo_seconds": F("pool__slo_seconds"),
    }


def on_the_way_times(profiles) -> dict[int, tuple]:
    """{profile id: (first, last, SLO T or None)} as `on_the_way_annotations` gives them,
    in two queries however many profiles (none for no profile)."""
    if not profiles:
        return {}
    rows = (
        PoolInstance.objects.filter(_current_versions(profiles), **promises.ON_THE_WAY)
        .values("profile_id")
        .annotate(first=Min("created"), last=Max("created"))
        .values_list("profile_id", "first", "last")
        .order_by()
    )
    times = {profile_id: (first, last) for profile_id, first, last in rows}
    seconds = dict(
        Pool.objects.filter(profile__in=profiles).values_list("profile_id", "slo_seconds")
    )
    return {p.pk: (*times.get(p.pk, (None, None)), seconds.get(p.pk)) for p in profiles}


def ready_counts(profiles) -> dict[int, int]:
    """{profile id: claimable instances} of `profiles`, in one query (none for no profile)."""
    if not profiles:
        return {}
    rows = (
        PoolInstance.objects.filter(
            _current_versions(profiles), state=State.READY, unhealthy=False, workspace__isnull=True
        )
        .values("profile_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {row["profile_id"]: row["n"] for row in rows}


def _current_versions(profiles) -> Q:
    """Instances of these profiles' current versions."""
    current = Q()
    for profile in profiles:
        current |= Q(profile_id=profile.pk, profile_version=profile.version)
    return current
