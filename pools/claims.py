"""Claiming a warm-pool instance for a workspace request.

The claim runs inside the caller's transaction (`workspaces.actions.request_workspace`, the
one that checks and debits the quota), so the quota debit, the claim and the hand-over
commit together or not at all, and the transaction stays short:

1. Take one ready instance of the profile's current version in ONE statement. On PostgreSQL
   `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id`: concurrent
   claimants skip rows another transaction holds instead of waiting for it, and each row
   is taken by exactly one of them. Elsewhere (SQLite) a conditional
   `UPDATE … WHERE id = X AND state = 'ready'` that must change exactly one row; on a miss
   the next candidate is tried.
2. Hand it over: the workspace adopts the instance's resources (it keeps its own row and
   quota charge; `Workspace.resources_spec()` makes every later driver call use the
   instance's resource name, so deletion finds them), gets its connection details and is
   ready at once.
3. On commit, run the loop so the pool is replenished right away.

An instance covers every resource group of its profile, so a heterogeneous profile claims
all its groups or none.
"""

from __future__ import annotations

from django.db import connection, transaction
from django.utils import timezone

from pools import warmpool
from pools.lifecycle import State, transition
from pools.models import PoolInstance
from profiles.choices import AllocationStrategy
from services.tasks import adopt_services, workspace_ready

CANDIDATES = 5  # SQLite: how many ready instances to try before falling back


def claimable(profile):
    """Ready, healthy instances of the profile's current version, longest-ready first."""
    return PoolInstance.objects.filter(
        profile_id=profile.pk,
        state=State.READY,
        profile_version=profile.version,
        unhealthy=False,
    ).order_by("ready_at", "pk")


def claim_instance(profile, workspace_id: int | None = None) -> int | None:
    """Move one ready instance of `profile` to claimed; return its id, or None if none."""
    now = timezone.now()
    fields = {
        "state": State.CLAIMED,
        "state_changed": now,
        "heartbeat": now,
        "claimed_at": now,
        "workspace_id": workspace_id,
    }
    if connection.vendor == "postgresql":
        return _claim_skip_locked(profile, fields)
    for pk in claimable(profile).values_list("pk", flat=True)[:CANDIDATES]:
        if PoolInstance.objects.filter(pk=pk, state=State.READY).update(**fields) == 1:
            return pk
    return None


def _claim_skip_locked(profile, fields: dict) -> int | None:
    table = PoolInstance._meta.db_table
    assignments = ", ".join(f"{name} = %s" for name in fields)
    sql = (
        f"UPDATE {table} SET {assignments} WHERE id = ("
        f"SELECT id FROM {table} WHERE profile_id = %s AND state = %s "
        "AND profile_version = %s AND NOT unhealthy "
        "ORDER BY ready_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id"
    )
    params = [*fields.values(), profile.pk, State.READY, profile.version]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return row[0] if row else None


def adopt_warm_instance(workspace, user) -> PoolInstance | None:
    """Give a just-requested workspace a ready warm instance; None when it must provision.

    Call inside the transaction that created the workspace. Sets `workspace.claim_message`
    (for the page) either way for a warm-pool profile, and records an event saying what
    happened.
    """

    profile = workspace.profile
    if profile.allocation_strategy != AllocationStrategy.WARM_POOL:
        return None
    instance_id = claim_instance(profile, workspace.pk)
    if instance_id is None:
        workspace.claim_message = "no warm instance was ready, so it is provisioned on demand"
        workspace.log_event(
            State.REQUESTED,
            State.REQUESTED,
            "no warm instance was ready: provisioning on demand",
            actor=user,
        )
        transaction.on_commit(warmpool.enqueue_loop)  # the pool may need refilling
        return None

    instance = PoolInstance.objects.get(pk=instance_id)
    instance.log_event(State.READY, State.CLAIMED, f"claimed by workspace {workspace.pk}", user)
    name = instance.resource_name
    transition(workspace, State.PROVISIONING, actor=user, message=f"claimed warm instance {name}")
    transition(
        workspace,
        State.READY,
        message="ready (warm instance)",
        ready_at=timezone.now(),
        profile_version=instance.profile_version,
        connection=instance.connection,
        detail=instance.detail | {"pool_instance": name},
        secret=instance.secret,
    )
    # The instance's running stack is the workspace's now; a stack named in the request
    # (or a default the instance lacks) deploys as for any workspace that became ready.

    adopt_services(instance.infrastructure, name, workspace)
    workspace_ready(workspace)
    workspace.claim_message = f"ready now from the warm pool ({name})"
    transaction.on_commit(warmpool.enqueue_loop)  # replenish right away
    return instance


def ready_count(profile) -> int:
    return claimable(profile).count()
