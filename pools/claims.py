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

An instance covers every resource group of its profile, so a heterogeneous profile claims
all its groups or none.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from pools import lifecycle, warmpool
from pools.lifecycle import State, Step, advance, log_step
from pools.models import PoolInstance
from profiles.choices import AllocationStrategy
from services.tasks import adopt_services, workspace_ready


def claimable(profile):
    """Ready, healthy instances of the profile's current version, longest-ready first."""
    return PoolInstance.objects.filter(
        profile_id=profile.pk,
        state=State.READY,
        profile_version=profile.version,
        unhealthy=False,
    ).order_by("ready_at", "pk")


# What a workspace takes over from the instance it claims (`adopt_warm_instance`).
HANDED_OVER = ("infrastructure", "profile_version", "connection", "detail", "secret")


def claim(
    profile, workspace_id: int | None = None, actor=None, returning=HANDED_OVER
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
    """Give a just-requested workspace a ready warm instance; None when it must provision.

    Call inside the transaction that created the workspace. Sets `workspace.claim_message`
    (for the page) either way for a warm-pool profile, and records an event saying what
    happened.
    """

    profile = workspace.profile
    if profile.allocation_strategy != AllocationStrategy.WARM_POOL:
        return None
    instance = claim(profile, workspace.pk, user)
    if instance is None:
        workspace.claim_message = "no warm instance was ready, so it is provisioned on demand"
        log_step(workspace, "no warm instance was ready: provisioning on demand", actor=user)
        transaction.on_commit(warmpool.enqueue_loop)  # the pool may need refilling
        return None

    name = instance.resource_name
    advance(
        workspace,
        [
            Step(State.PROVISIONING, f"claimed warm instance {name}", actor=user),
            Step(State.READY, "ready (warm instance)"),
        ],
        ready_at=timezone.now(),
        profile_version=instance.profile_version,
        connection=instance.connection,
        detail=instance.detail | {"pool_instance": name},
        secret=instance.secret,
    )
    # The instance's running stack is the workspace's now; a stack named in the request
    # (or a default the instance lacks) deploys as for any workspace that became ready.

    adopt_services(instance.infrastructure_id, name, workspace)
    workspace_ready(workspace)
    workspace.claim_message = f"ready now from the warm pool ({name})"
    transaction.on_commit(warmpool.enqueue_loop)  # replenish right away
    return instance


def ready_now():
    """An annotation of compute profiles: their claimable instances, by a subquery (no
    query of its own), e.g. `ComputeProfile.objects.annotate(ready_now=ready_now())`."""
    claimable_now = PoolInstance.objects.filter(
        profile=OuterRef("pk"),
        profile_version=OuterRef("version"),
        state=State.READY,
        unhealthy=False,
    )
    counted = claimable_now.values("profile").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted), 0)


def ready_counts(profiles) -> dict[int, int]:
    """{profile id: claimable instances} of `profiles`, in one query (none for no profile)."""
    if not profiles:
        return {}
    current = Q()
    for profile in profiles:
        current |= Q(profile_id=profile.pk, profile_version=profile.version)
    rows = (
        PoolInstance.objects.filter(current, state=State.READY, unhealthy=False)
        .values("profile_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {row["profile_id"]: row["n"] for row in rows}
