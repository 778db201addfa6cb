"""The fleet at a glance for the admin overview (issue 18).

Every figure comes from a fixed number of aggregate queries, whatever the number of
workspaces (tests/workspaces/test_overview.py pins the count): GPUs and MIG slices by
infrastructure and model, workspaces by state, requests waiting, failures of the last
24 hours by reason, warm pools with their hit rate, and infrastructure health.

What a workspace holds is what it was given, as quotas count it: the whole GPUs and MIG
slices stored on it when it was requested or last started (`Workspace.gpus`, `mig_slices`),
plus the GPUs its services stack holds of its own (`ServiceDeployment.own_gpus`). A warm
instance holds the `gpu_share` stored when it was made (one made before that was stored:
what its profile holds now). Neither stores the GPU model, so what they hold is laid over
the models and MIG profiles of their profile's resource groups as they are now, in order,
each up to what its group holds now (`_spread`); what an edit since added goes to the last.
Capacity is what the portal knows without asking a cluster: the GPUs NVML sees on this
machine, hosts times GPUs per node in a data center; public clouds and existing clusters
have no fixed total.

A warm pool's "ready" counts the instances a request could claim now (`claims.ready_now`),
not unhealthy ones nor those of an earlier profile version, which still hold their GPUs.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db.models import Count, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from pools.claims import ready_now
from pools.drivers import local
from pools.lifecycle import GPU_STATES, LIVE_STATES, WORKSPACE_LIFECYCLE, State
from pools.models import PoolInstance, Workspace
from pools.stats import WARM_HIT
from profiles.choices import AllocationStrategy, HealthStatus, InfrastructureKind
from profiles.models import ComputeProfile, Infrastructure, ResourceGroup, ServicesProfile
from services.models import ServiceDeployment
from usage.prices import gpu_share
from workspaces.filtersets import FAILURE_WINDOW, WAITING_STATES, activity

# Warm instances that hold (or are about to hold) GPUs and belong to no user.
WARM_STATES = (State.REQUESTED, State.PROVISIONING, State.READY)
HIT_RATE_WINDOW = timedelta(days=7)
WAITING_SHOWN = 5
FAILURE_REASONS_SHOWN = 8
LOCAL_GPUS_CACHE_SECONDS = 300


@dataclass
class GpuRow:
    """One infrastructure's GPUs of one model, or its MIG slices of one profile."""

    infrastructure: Infrastructure
    model: str
    mig_profile: str = ""
    total: int | None = None  # None: no fixed capacity (a cloud, a cluster not counted)
    in_use: int = 0
    warm: int = 0
    failed: int = 0  # held by failed workspaces until they are deleted

    @property
    def unit(self) -> str:
        return "slices" if self.mig_profile else "GPUs"

    @property
    def label(self) -> str:
        return f"{self.model} MIG {self.mig_profile}" if self.mig_profile else self.model

    @property
    def healthy(self) -> bool:
        return self.infrastructure.health_status == HealthStatus.READY

    @property
    def unavailable(self) -> int:
        """Held by failed workspaces, plus whatever is free on infrastructure that is not
        Ready (nobody can get it until a check finds it Ready again)."""
        if self.total is None or self.healthy:
            return self.failed
        return max(self.total - self.in_use - self.warm, self.failed)

    @property
    def idle(self) -> int | None:
        if self.total is None:
            return None
        return max(self.total - self.in_use - self.warm - self.unavailable, 0)


@dataclass
class PoolRow:
    profile_id: int
    name: str
    desired: int
    ready: int = 0
    requests: int = 0
    hits: int = 0
    halted: bool = False
    paused: bool = False
    last_failure: str = ""

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.requests if self.requests else None


@dataclass
class Dashboard:
    gpus: list[GpuRow]
    states: list[tuple[str, str, int]]  # (state, label, count)
    waiting: int
    oldest_waiting: list[Workspace]
    failed_total: int  # workspaces failed in the last 24 hours
    failures: list[tuple[str, int]]  # (reason, count): the commonest reasons among them
    pool_failures: int
    pools: list[PoolRow]
    infrastructure: list[Infrastructure]
    setup_steps: list[tuple[str, int, str]] = field(default_factory=list)

    @property
    def setup_done(self) -> bool:
        return all(count for _, count, _ in self.setup_steps)

    @property
    def halted_pools(self) -> list[PoolRow]:
        return [pool for pool in self.pools if pool.halted]

    @property
    def infrastructure_not_ready(self) -> int:
        return sum(infra.health_status != HealthStatus.READY for infra in self.infrastructure)

    @property
    def health_counts(self) -> list[tuple[str, str, int]]:
        counts = Counter(infra.health_status for infra in self.infrastructure)
        return [(s.value, s.label, counts[s.value]) for s in HealthStatus if counts[s.value]]


def local_gpu_models() -> Counter:
    """GPUs of this machine by model, from NVML, remembered for a few minutes (the
    overview refreshes every few seconds; a GPU does not come and go that often)."""
    found = cache.get("overview:local-gpus")
    if found is None:
        found = Counter(gpu.gpu_model or gpu.name for gpu in local.gpu_inventory())
        cache.set("overview:local-gpus", found, LOCAL_GPUS_CACHE_SECONDS)
    return found


def _capacity(infrastructure: Infrastructure) -> Counter:
    """Whole GPUs by model that the infrastructure has, where the portal knows it."""
    if infrastructure.kind == InfrastructureKind.LOCAL:
        return local_gpu_models()
    if infrastructure.kind == InfrastructureKind.DATA_CENTER and infrastructure.gpu_model:
        hosts = len(infrastructure.host_list())
        return Counter({infrastructure.gpu_model: hosts * infrastructure.gpus_per_node})
    return Counter()


ANY_GPU = "Any GPU"  # the model of a group that names none
# The MIG profile of slices a workspace was given whose profile has no MIG group any more.
UNKNOWN_SLICE = "unknown"


@dataclass(frozen=True)
class Need:
    """What one workspace of a profile holds of one GPU model (or MIG profile) now."""

    model: str
    mig_profile: str
    units: int  # whole GPUs or slices, every node counted

    @property
    def unit_share(self) -> float:
        """One unit's share of a GPU, as warm instances store what they hold."""
        return gpu_share(self.model, self.mig_profile)


def _needs_by_profile() -> dict[int, list[Need]]:
    """What one workspace of each profile holds now, group by group, in order."""
    needs = defaultdict(list)
    groups = (
        ResourceGroup.objects.filter(gpu_count__gt=0)
        .order_by("profile_id", "position", "pk")
        .values_list("profile_id", "gpu_model", "mig_profile", "gpu_count", "node_count")
    )
    for profile_id, model, mig_profile, count, nodes in groups:
        needs[profile_id].append(Need(model or ANY_GPU, mig_profile, count * max(nodes, 1)))
    return needs


@dataclass(frozen=True)
class Held:
    """What the workspaces (or the warm instances) of one profile, on one infrastructure,
    in one state hold together, as stored on them."""

    profile_id: int | None
    infrastructure_id: int | None
    state: str
    count: int
    gpus: int = 0  # workspaces: whole GPUs, their stacks' own included
    mig_slices: int = 0  # workspaces
    share: float = 0.0  # warm instances: GPUs, a slice as its share of one
    share_unknown: int = 0  # warm instances made before their share was stored


def _held_by_workspaces() -> list[Held]:
    """Workspaces not deleted, in one query: their stacks' own GPUs by a subquery (joined,
    they would multiply the sums)."""
    stack_gpus = (
        ServiceDeployment.objects.filter(workspace=OuterRef("pk"), state__in=LIVE_STATES)
        .order_by()
        .values("workspace")
        .annotate(total=Sum("own_gpus"))
        .values("total")
    )
    rows = (
        Workspace.objects.exclude(state=State.DELETED)
        .annotate(stack_gpus=Coalesce(Subquery(stack_gpus), 0))
        .values_list("profile_id", "infrastructure_id", "state")
        .annotate(
            n=Count("id"),
            gpus=Sum("gpus") + Sum("stack_gpus"),
            mig_slices=Sum("mig_slices"),
        )
        .order_by()
    )
    return [Held(*key, count, gpus, mig_slices) for *key, count, gpus, mig_slices in rows]


def _held_by_instances(queryset) -> list[Held]:
    rows = (
        queryset.values_list("profile_id", "infrastructure_id", "state")
        .annotate(
            n=Count("id"),
            share=Sum("gpu_share", default=0.0),
            unknown=Count("id", filter=Q(gpu_share__isnull=True)),
        )
        .order_by()
    )
    return [
        Held(*key, count, share=share, share_unknown=unknown)
        for *key, count, share, unknown in rows
    ]


def _spread(amount: float, parts: list[tuple[Need, float]]) -> list[tuple[Need, float]]:
    """`amount` laid over `parts` ((need, at most) in the groups' order): each gets up to
    its most, the last whatever is left (the profile holds less now than it was given)."""
    spread = []
    for index, (need, most) in enumerate(parts):
        part = amount if index == len(parts) - 1 else min(amount, most)
        spread.append((need, part))
        amount -= part
    return spread


def _workspace_units(held: Held, needs: list[Need], fallback: str) -> list[tuple[Need, int]]:
    """(what, units) workspaces hold, their whole GPUs and their slices each laid over the
    groups of that kind (`needs`); what no group of its kind is left for goes to
    `fallback`, a model."""
    whole = [need for need in needs if not need.mig_profile] or [Need(fallback, "", 1)]
    sliced = [need for need in needs if need.mig_profile] or [Need(fallback, UNKNOWN_SLICE, 1)]
    spread = _spread(held.gpus, [(need, held.count * need.units) for need in whole])
    spread += _spread(held.mig_slices, [(need, held.count * need.units) for need in sliced])
    return [(need, round(units)) for need, units in spread]


def _instance_units(held: Held, needs: list[Need], fallback: str) -> list[tuple[Need, int]]:
    """(what, units) warm instances hold: their GPU share laid over all the groups."""
    needs = needs or [Need(fallback, "", 1)]
    per_instance = sum(need.units * need.unit_share for need in needs)
    share = held.share + held.share_unknown * per_instance
    most = [(need, held.count * need.units * need.unit_share) for need in needs]
    return [(need, round(part / need.unit_share)) for need, part in _spread(share, most)]


def gpu_rows(
    infrastructure: list[Infrastructure],
    profile_infra: dict[int, int],
    workspaces: list[Held],
    instances: list[Held],
) -> list[GpuRow]:
    """GPUs and slices by infrastructure and model: total, in use, warm, failed."""
    needs = _needs_by_profile()
    by_pk = {infra.pk: infra for infra in infrastructure}
    rows: dict[tuple[int, str, str], GpuRow] = {}

    def row(infra_id: int, model: str, mig_profile: str = "") -> GpuRow:
        key = (infra_id, model, mig_profile)
        if key not in rows:
            rows[key] = GpuRow(by_pk[infra_id], model, mig_profile)
        return rows[key]

    for infra in infrastructure:
        for model, n in _capacity(infra).items():
            row(infra.pk, model).total = n
    for profile_id, infra_id in profile_infra.items():  # what profiles offer, even unused
        for need in needs.get(profile_id, []):
            row(infra_id, need.model, need.mig_profile)
    held = [(item, _holding(item.state), _workspace_units) for item in workspaces]
    held += [(item, "warm", _instance_units) for item in instances]
    for item, attribute, units_of in held:
        if attribute is None or item.infrastructure_id not in by_pk:
            continue
        fallback = by_pk[item.infrastructure_id].gpu_model or ANY_GPU
        for need, units in units_of(item, needs.get(item.profile_id, []), fallback):
            if units:
                target = row(item.infrastructure_id, need.model, need.mig_profile)
                setattr(target, attribute, getattr(target, attribute) + units)
    return sorted(rows.values(), key=lambda r: (r.infrastructure.name, r.model, r.mig_profile))


def _holding(state: str) -> str | None:
    """What a workspace in `state` does with the GPUs it was given."""
    if state in GPU_STATES:
        return "in_use"
    return "failed" if state == State.FAILED else None


def workspace_states(workspaces: list[Held]) -> list[tuple[str, str, int]]:
    """Workspaces by state, in lifecycle order (deleted ones are history, not counted)."""
    counts = Counter()
    for item in workspaces:
        counts[item.state] += item.count
    order = [s for s in State if s in WORKSPACE_LIFECYCLE.states and s != State.DELETED]
    return [(s.value, s.label, counts[s.value]) for s in order if counts[s.value]]


def pool_rows(profiles: list[dict], now: datetime) -> list[PoolRow]:
    """Warm pools: instances a request could claim now, 7-day hit rate (requests served
    warm), halted ones."""
    warm = [p for p in profiles if p["allocation_strategy"] == AllocationStrategy.WARM_POOL]
    rows = {
        p["pk"]: PoolRow(p["pk"], p["name"], p["desired_capacity"], ready=p["ready_now"])
        for p in warm
    }
    for p in warm:  # the pool's row came with the profile's (a profile may have none yet)
        target = rows[p["pk"]]
        target.halted = bool(p["pool__halted"])
        target.paused = bool(p["pool__paused"])
        target.last_failure = p["pool__last_failure"] or ""
    requests = (
        Workspace.objects.filter(profile_id__in=rows, created__gte=now - HIT_RATE_WINDOW)
        .values_list("profile_id")
        .annotate(n=Count("id"), hits=Count("pool_instance", filter=WARM_HIT))
        .order_by()
    )
    for profile_id, n, hits in requests:
        rows[profile_id].requests, rows[profile_id].hits = n, hits
    return sorted(rows.values(), key=lambda r: (not r.halted, r.name))


def build(now: datetime | None = None) -> Dashboard:
    now = now or timezone.now()
    infrastructure = list(Infrastructure.objects.order_by("name"))
    profiles = list(
        ComputeProfile.objects.annotate(ready_now=ready_now()).values(
            "pk",
            "name",
            "infrastructure_id",
            "published",
            "allocation_strategy",
            "desired_capacity",
            "pool__halted",
            "pool__paused",
            "pool__last_failure",
            "ready_now",
        )
    )
    profile_infra = {p["pk"]: p["infrastructure_id"] for p in profiles}
    workspaces = _held_by_workspaces()
    # Warm instances and those that failed in the window, counted in one query. One
    # promised to a waiting workspace (`pools.promises`) is that workspace's GPUs already.
    counted = _held_by_instances(
        PoolInstance.objects.filter(
            Q(state__in=WARM_STATES, workspace__isnull=True)
            | Q(state=State.FAILED, state_changed__gte=now - FAILURE_WINDOW)
        )
    )
    instances = [item for item in counted if item.state != State.FAILED]
    waiting = Workspace.objects.filter(activity("waiting", now))
    # Every reason of the window's failures with its count: few distinct ones, so one query
    # gives both the total and the commonest reasons.
    failures = Counter(
        dict(
            Workspace.objects.filter(activity("failed_24h", now))
            .values_list("failure_reason")
            .annotate(n=Count("id"))
            .order_by()
        )
    )
    return Dashboard(
        gpus=gpu_rows(infrastructure, profile_infra, workspaces, instances),
        states=workspace_states(workspaces),
        waiting=sum(item.count for item in workspaces if item.state in WAITING_STATES),
        oldest_waiting=list(
            waiting.select_related("owner", "profile").order_by("created", "pk")[:WAITING_SHOWN]
        ),
        failed_total=failures.total(),
        failures=sorted(failures.items(), key=lambda item: (-item[1], item[0]))[
            :FAILURE_REASONS_SHOWN
        ],
        pool_failures=sum(item.count for item in counted if item.state == State.FAILED),
        pools=pool_rows(profiles, now),
        infrastructure=infrastructure,
        setup_steps=[
            (
                "Create infrastructure configuration",
                len(infrastructure),
                "profiles:infrastructure_list",
            ),
            ("Create compute profiles", len(profiles), "profiles:computeprofile_list"),
            (
                "Publish a compute profile",
                sum(p["published"] for p in profiles),
                "profiles:computeprofile_list",
            ),
            (
                "Create services profiles",
                ServicesProfile.objects.count(),
                "profiles:servicesprofile_list",
            ),
        ],
    )
