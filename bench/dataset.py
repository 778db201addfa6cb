"""A portal at scale, built fast for benchmarks: `build(Scale(...))` fills an empty database.

Reusable by any benchmark of a page or a query (bench.pages; the overview dashboard's):
every table a hot page reads gets realistic volume, in bulk INSERTs (a few seconds for
10,000 workspaces and 100,000 audit entries), never through the request flow. Call it in a
scratch database (`bench.warmpool.scratch_url`): it assumes the tables are empty.

What it makes, for `Scale(workspaces=W, audit_entries=A)`:
- two infrastructures (local, Kubernetes), `profiles` published compute profiles (one in
  four a warm pool, with ready and claimed instances and loop decisions);
- `users` data scientists spread over `teams` member groups, and one Org admin (`admin`);
- W workspaces over those users in every lifecycle state, `events_per_workspace` events
  each; the data scientist `scientist` owns `own_workspaces` live ones, two in flight (so
  the self-service page polls);
- A audit entries about those workspaces.

`grow()` adds the same again (tests/test_query_pins.py: a page's queries at N and 3N).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import F
from django.utils import timezone

from pools import lifecycle
from pools.lifecycle import State
from pools.models import LoopDecision, PoolInstance, Workspace, WorkspaceEvent
from portal.models import AuditAction, AuditEntry, Team
from portal.roles import Role
from profiles.choices import AllocationStrategy, HealthStatus, InfrastructureKind
from profiles.models import ComputeProfile, Infrastructure, ResourceGroup

PASSWORD = "bench-password"
BATCH = 5_000
POOL_PROVISIONING = timedelta(minutes=4)  # from created to ready, for every pool instance
# How the workspaces spread over states: mostly history (deleted) and running ones.
STATE_WEIGHTS = {
    State.DELETED: 40,
    State.READY: 30,
    State.STOPPED: 10,
    State.FAILED: 8,
    State.PROVISIONING: 4,
    State.REQUESTED: 3,
    State.DELETING: 3,
    State.STARTING: 1,
    State.STOPPING: 1,
}


@dataclass(frozen=True)
class Scale:
    workspaces: int = 10_000
    audit_entries: int = 100_000
    users: int = 1_000
    teams: int = 50
    profiles: int = 20
    events_per_workspace: int = 4
    own_workspaces: int = 20
    ready_per_pool: int = 10
    claimed_per_pool: int = 200
    decisions_per_pool: int = 100


@dataclass
class Dataset:
    admin: object
    scientist: object
    profiles: list
    teams: list
    workspaces: int
    audit_entries: int


def _batched(objects, size: int = BATCH):
    iterator = iter(objects)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _users(scale: Scale):
    password = make_password(PASSWORD)  # hashed once: hashing is what would take the time
    User = get_user_model()
    admin = User.objects.create(username="admin", password=password, is_staff=True)
    scientist = User.objects.create(username="scientist", password=password)
    others = User.objects.bulk_create(
        User(username=f"user{n:05}", password=password, email=f"user{n:05}@example.com")
        for n in range(scale.users)
    )
    Team.objects.create(name="Org admins", role=Role.ORG_ADMIN).members.add(admin)
    teams = Team.objects.bulk_create(
        Team(name=f"Group {n:03}", role=Role.MEMBER, max_workspaces=1_000)
        for n in range(scale.teams)
    )
    Membership = Team.members.through
    Membership.objects.bulk_create(
        Membership(team=teams[n % len(teams)], user=user) for n, user in enumerate(others)
    )
    Membership.objects.bulk_create(
        [Membership(team=teams[0], user=scientist), Membership(team=teams[1], user=scientist)]
    )
    return admin, scientist, others, teams


def _infrastructures():
    local = Infrastructure.objects.create(
        name="Bench host",
        kind=InfrastructureKind.LOCAL,
        health_status=HealthStatus.READY,
        single_user_host=True,
    )
    cluster = Infrastructure.objects.create(
        name="Bench cluster",
        kind=InfrastructureKind.KUBERNETES,
        in_cluster=True,
        health_status=HealthStatus.READY,
    )
    return local, cluster


def _profiles(scale: Scale, teams, first: int = 0):
    local, cluster = Infrastructure.objects.order_by("pk")[:2]
    profiles = ComputeProfile.objects.bulk_create(
        ComputeProfile(
            name=f"Profile {n:03}",
            slug=f"profile-{n:03}",
            infrastructure=local if n % 2 else cluster,
            published=True,
            allocation_strategy=(
                AllocationStrategy.WARM_POOL if n % 4 == 0 else AllocationStrategy.ON_DEMAND
            ),
            desired_capacity=scale.ready_per_pool if n % 4 == 0 else 0,
        )
        for n in range(first, first + scale.profiles)
    )
    ResourceGroup.objects.bulk_create(
        ResourceGroup(profile=profile, gpu_model="", gpu_count=0) for profile in profiles
    )
    # Half the profiles are granted to a few groups, the others are open to everyone.
    Grant = ComputeProfile.teams.through
    Grant.objects.bulk_create(
        Grant(computeprofile=profile, team=teams[n % len(teams)])
        for n, profile in enumerate(profiles)
        if n % 2
    )
    return profiles


def _workspaces(scale: Scale, scientist, users, teams, profiles, now):
    rng = random.Random(17)
    states = rng.choices(
        list(STATE_WEIGHTS), weights=list(STATE_WEIGHTS.values()), k=scale.workspaces
    )
    own_states = [State.PROVISIONING, State.REQUESTED] + [State.READY] * scale.own_workspaces
    made = []
    for n, state in enumerate(states):
        owned = n < scale.own_workspaces
        owner = scientist if owned else users[n % len(users)]
        profile = profiles[n % len(profiles)]
        created = now - timedelta(minutes=n * 7 + 5)
        made.append(
            Workspace(
                owner=owner,
                profile=profile,
                infrastructure_id=profile.infrastructure_id,
                team=teams[n % len(teams)],
                name=f"experiment {n}" if n % 3 else "",
                state=own_states[n] if owned else state,
                created=created,
                state_changed=created + timedelta(minutes=2),
                ready_at=created + timedelta(minutes=2) if state != State.REQUESTED else None,
                expires_at=created + timedelta(hours=24 * (1 + n % 7)) if n % 2 else None,
                connection={"url": f"https://ws-{n}.example/lab"} if state == State.READY else {},
            )
        )
    workspaces = []
    for batch in _batched(made):
        workspaces += lifecycle.create_many(batch, message="requested")
    steps = ["directory created", "environment started", "health check passed"]
    WorkspaceEvent.objects.bulk_create(
        (
            WorkspaceEvent(
                workspace=workspace,
                timestamp=workspace.created + timedelta(seconds=10 * (i + 1)),
                from_state=workspace.state,
                to_state=workspace.state,
                message=steps[i % len(steps)],
            )
            for workspace in workspaces
            for i in range(scale.events_per_workspace - 1)
        ),
        batch_size=BATCH,
    )
    return workspaces


def _pools(scale: Scale, profiles, workspaces, now):
    warm = [p for p in profiles if p.allocation_strategy == AllocationStrategy.WARM_POOL]
    claimed_by = iter(w for w in workspaces if w.state == State.READY)
    instances = []
    for profile in warm:
        instances += [
            PoolInstance(
                profile=profile,
                infrastructure_id=profile.infrastructure_id,
                state=State.READY,
                ready_at=now - timedelta(minutes=n),
            )
            for n in range(scale.ready_per_pool)
        ]
        instances += [
            PoolInstance(
                profile=profile,
                infrastructure_id=profile.infrastructure_id,
                state=State.CLAIMED,
                ready_at=now - timedelta(hours=n + 1),
                claimed_at=now - timedelta(hours=n),
                workspace=next(claimed_by, None),
            )
            for n in range(scale.claimed_per_pool)
        ]
    for batch in _batched(instances):
        lifecycle.create_many(batch, message="requested")
    # Created (auto_now_add) before they were ready, as a provisioning takes: the pages'
    # estimates measure provisioning times from these rows.
    PoolInstance.objects.update(created=F("ready_at") - POOL_PROVISIONING)
    LoopDecision.objects.bulk_create(
        (
            LoopDecision(
                profile=profile,
                time=now - timedelta(minutes=n),
                desired=scale.ready_per_pool,
                ready=scale.ready_per_pool,
                provisioning=0,
                action="none",
                reason="steady",
            )
            for profile in warm
            for n in range(scale.decisions_per_pool)
        ),
        batch_size=BATCH,
    )


def _audit(scale: Scale, admin, workspaces) -> int:
    content_type = ContentType.objects.get_for_model(Workspace)
    actions = list(AuditAction.values)
    entries = (
        AuditEntry(
            actor=admin if n % 5 == 0 else workspace.owner,
            actor_name="admin" if n % 5 == 0 else workspace.owner.username,
            action=actions[n % len(actions)],
            content_type=content_type,
            object_id=str(workspace.pk),
            object_repr=str(workspace),
            message="" if n % 4 else "stopped workspace",
            after={"state": workspace.state, "name": workspace.name},
        )
        for n, workspace in zip(
            range(scale.audit_entries), itertools.cycle(workspaces), strict=False
        )
    )
    made = 0
    for batch in _batched(entries):
        AuditEntry.objects.bulk_create(batch)
        made += len(batch)
    return made


def load() -> Dataset:
    """The dataset `build()` made earlier in this database (to measure it again)."""
    User = get_user_model()
    return Dataset(
        admin=User.objects.get(username="admin"),
        scientist=User.objects.get(username="scientist"),
        profiles=list(ComputeProfile.objects.order_by("slug")),
        teams=list(Team.objects.filter(role=Role.MEMBER).order_by("name")),
        workspaces=Workspace.objects.count(),
        audit_entries=AuditEntry.objects.count(),
    )


def build(scale: Scale = Scale()) -> Dataset:
    """Fill the (empty, migrated) database at `scale`; then ANALYZE, as a live one would be."""
    admin, scientist, users, teams = _users(scale)
    _infrastructures()
    data = Dataset(admin, scientist, [], teams, workspaces=0, audit_entries=0)
    grow(data, scale, users)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return data


def grow(data: Dataset, scale: Scale, users=None) -> Dataset:
    """Add `scale`'s compute profiles, workspaces (the scientist's too), warm-pool
    instances and audit entries again, for the same users (a test compares N with 3N)."""
    if users is None:
        users = list(get_user_model().objects.filter(username__startswith="user"))
    now = timezone.now()
    data.profiles += _profiles(scale, data.teams, first=len(data.profiles))
    workspaces = _workspaces(scale, data.scientist, users, data.teams, data.profiles, now)
    _pools(scale, data.profiles, workspaces, now)
    data.workspaces += len(workspaces)
    data.audit_entries += _audit(scale, data.admin, workspaces)
    return data
