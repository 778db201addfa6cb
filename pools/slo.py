"""SLO sizing against the portal's records: what `pools.sizing` (pure) is fed, and what the
pool page shows about it.

- `sizings(profiles, pools, now)`: one `sizing.size()` per profile whose pool is sized by
  its SLO, from a fixed number of queries whatever the number of profiles: request
  arrivals per profile, provisioning times per infrastructure (pool instances and
  on-demand workspaces: creation to ready), GPU-hours idled today, and the last target.
- `report(profile, pool, now)`: the last 7 days for the page: SLO attainment, idle
  GPU-hours per day, and a chart of target, ready and claims.

Idle GPU-hours are the GPUs pool instances hold while no user has claimed them: from their
creation (provisioning included) until they are claimed or leave the pool, leaving out
the time a workspace waited for one (promised to it, `pools.promises`, even if it gave
it back: the usage ledger charges that workspace), each weighted by the GPUs it held (its
`gpu_share`, a MIG slice counting as its share of a GPU), not by its profile as edited
since. The simulator (`bench.pools`) counts the same way.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings as django_settings
from django.db.models import (
    Exists,
    F,
    OuterRef,
    Q,
    Subquery,
    Window,
    prefetch_related_objects,
)
from django.db.models.functions import RowNumber

from pools import promises, sizing
from pools.lifecycle import State
from pools.models import (
    LoopDecision,
    Pool,
    PoolInstance,
    PoolInstanceEvent,
    Workspace,
    WorkspaceEvent,
)
from portal import charts
from profiles.choices import InfrastructureKind
from profiles.mig import catalog as mig_catalog
from profiles.models import MAX_POOL_SIZE, ComputeProfile
from usage.ledger import PROMISED_SPAN, promise_marks, spans

PROVISIONING_SAMPLES = 200  # the newest provisionings per infrastructure
# What the policy learned for a day, per profile, kept between passes of this process: the
# policy learns from the requests before today, so while those are the same, so is what it
# learns (`sizing.History.memo`). Keyed by everything the learning reads.
_LEARNED: dict[int, tuple[tuple, dict]] = {}
REPORT_WINDOW = timedelta(days=7)
# States in which an instance is the pool's, not a user's: its GPUs idle.
HELD_STATES = (State.REQUESTED, State.PROVISIONING, State.READY)
LEFT_STATES = (State.DELETING, State.DELETED, State.FAILED)


def gpu_share(profile) -> float:
    """GPUs one instance of `profile` holds: whole GPUs, plus each MIG slice as the share of
    its GPU's compute slices (3g.40gb on an H100: 3/7)."""
    share = 0.0
    for group in profile.resource_groups.all():
        if not group.mig_profile:
            share += group.gpu_count * group.node_count
            continue
        try:
            slices = mig_catalog.profile(group.gpu_model, group.mig_profile).compute_slices
            whole = mig_catalog.geometry(group.gpu_model).compute_slices
        except KeyError:
            slices, whole = 1, 7  # unknown to the catalog: the smallest slice of a 7-slice GPU
        share += group.gpu_count * group.node_count * slices / whole
    return share


def settings_for(pool: Pool, profile) -> sizing.SloSettings:
    return sizing.SloSettings(
        percent=pool.slo_percent,
        seconds=pool.slo_seconds,
        idle_budget=pool.idle_budget,
        min_size=pool.min_size,
        # The policy learns levels up to the maximum: one stored before it was bounded
        # must not make it learn without end.
        max_size=min(pool.max_size, MAX_POOL_SIZE),
        gpu_share=gpu_share(profile),
    )


def day_start(now: datetime) -> datetime:
    """Midnight of `now`'s day in the organisation's time zone: the idle budget's day."""
    local = now.astimezone(ZoneInfo(django_settings.TIME_ZONE))
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def day_end(now: datetime) -> datetime:
    """The next midnight in the organisation's time zone: 23 or 25 hours after the day's
    start on the days clocks change."""
    tomorrow = day_start(now).date() + timedelta(days=1)
    return datetime.combine(tomorrow, time(), tzinfo=ZoneInfo(django_settings.TIME_ZONE))


# -- what the policy is fed -------------------------------------------------------------


def arrivals(profile_ids, since: datetime, now: datetime) -> dict[int, list[float]]:
    """Request times per profile (epoch seconds, ascending): every workspace requested."""
    rows = (
        Workspace.objects.filter(profile_id__in=profile_ids, created__gte=since, created__lte=now)
        .order_by("created")
        .values_list("profile_id", "created")
    )
    found: dict[int, list[float]] = defaultdict(list)
    for profile_id, created in rows:
        found[profile_id].append(created.timestamp())
    return found


# Before anything is measured on an infrastructure: what its kind typically needs, in
# seconds (the request page's estimate and the promise's choice alike).
ASSUMED_PROVISIONING = {
    InfrastructureKind.LOCAL: 0.0,
    InfrastructureKind.KUBERNETES: 180.0,
    InfrastructureKind.DATA_CENTER: 600.0,
    InfrastructureKind.PUBLIC_CLOUD: 900.0,
}


def assumed_provisioning(kind: str) -> float:
    return ASSUMED_PROVISIONING.get(kind, 600.0)


def patience(kind: str, measured: sizing.Provisioning | None) -> promises.Patience:
    """How long a workspace waits for the instance promised to it: by the provisioning p90
    `measured` on its infrastructure, else by what the infrastructure's kind needs."""
    if measured is None:
        return promises.Patience.of(assumed_provisioning(kind), measured=False)
    return promises.Patience.of(measured.quantile90, measured=True)


def provisioning(infrastructure_ids, now: datetime) -> dict[int, sizing.Provisioning]:
    """Measured provisioning times per infrastructure over the history window: creation to
    ready of the newest pool instances and workspaces provisioned on demand (one query).
    A workspace that waited for an instance on its way and then was provisioned on demand
    (`pools.promises.settle`) is left out: its time to ready was not all provisioning."""
    since = now - timedelta(days=sizing.HISTORY_DAYS)
    instances = PoolInstance.objects.filter(
        infrastructure_id__in=infrastructure_ids, ready_at__gte=since, ready_at__lte=now
    )
    waited = WorkspaceEvent.objects.filter(
        workspace=OuterRef("pk"), message__startswith=promises.WAITING_FOR
    )
    on_demand = Workspace.objects.filter(
        infrastructure_id__in=infrastructure_ids,
        ready_at__gte=since,
        ready_at__lte=now,
        pool_instance__isnull=True,
    ).exclude(
        Exists(waited)
    )  # a fallback after waiting for an instance: its time was not all provisioning
    # Unordered: SQLite allows no ORDER BY inside a UNION.
    both = _newest(instances).union(_newest(on_demand), all=True)
    samples: dict[int, list[tuple[datetime, float]]] = defaultdict(list)
    for infrastructure_id, ready_at, took in both:
        samples[infrastructure_id].append((ready_at, took.total_seconds()))
    return {
        infrastructure_id: sizing.Provisioning.of(
            seconds for _, seconds in sorted(rows)[-PROVISIONING_SAMPLES:]
        )
        for infrastructure_id, rows in samples.items()
    }


def _newest(provisioned):
    """(infrastructure, ready at, time to ready) of the newest PROVISIONING_SAMPLES rows of each
    infrastructure, in any order: the newest of both tables together are among them, and the
    database leaves out the rest (thousands of rows a month) instead of Python."""
    newest_first = Window(
        RowNumber(),
        partition_by="infrastructure_id",
        order_by=(F("ready_at").desc(), F("created").asc()),  # ties as `provisioning` sorts
    )
    return (
        provisioned.annotate(newness=newest_first, took=F("ready_at") - F("created"))
        .filter(newness__lte=PROVISIONING_SAMPLES)
        .values_list("infrastructure_id", "ready_at", "took")
        .order_by()
    )


def _held(profile_ids, since: datetime, now: datetime):
    """The instances held in [since, now]."""
    return PoolInstance.objects.filter(profile_id__in=profile_ids, created__lt=now).filter(
        Q(state__in=HELD_STATES)
        | Q(claimed_at__gt=since)
        | Q(state__in=LEFT_STATES, state_changed__gt=since)
    )


def _promised_spans(held) -> dict[int, list[tuple[datetime, datetime | None]]]:
    """Per instance of `held`, the spans in which a workspace waited for it: from each
    promise to its giving back (None: not given back), by the usage ledger's rule
    (`usage.ledger.promise_marks`) applied to the events that start and end a promise."""
    events = (
        PoolInstanceEvent.objects.filter(instance__in=held.values("pk"))
        .filter(
            Q(message__startswith=promises.PROMISED) | Q(message__startswith=promises.GIVEN_BACK)
        )
        .only("instance_id", "timestamp", "to_state", "message")
        .order_by("instance_id", "timestamp", "id")
    )
    by_instance: dict[int, list] = defaultdict(list)
    for event in events:
        by_instance[event.instance_id].append(event)
    return {
        instance_id: [
            (start, end)
            for state, start, end in spans(promise_marks(marks))
            if state == PROMISED_SPAN
        ]
        for instance_id, marks in by_instance.items()
    }


def idle_gpu_hours(
    profile_ids, since: datetime, now: datetime, shares: dict[int, float]
) -> dict[int, float]:
    """GPU-hours per profile that its pool instances idled in [since, now]: two queries.

    Each instance weighs the GPUs it held (`PoolInstance.gpu_share`); one made without
    them weighs its profile's `shares` now."""
    held = _held(profile_ids, since, now)
    promised = _promised_spans(held)
    rows = held.values_list(
        "pk", "profile_id", "state", "created", "claimed_at", "state_changed", "gpu_share"
    )
    hours: dict[int, float] = defaultdict(float)
    for pk, profile_id, state, created, claimed_at, changed, share in rows:
        # Claimed, or promised to a workspace waiting for it now (`pools.promises`): idle
        # until then. Else held until now, or until it left.
        end = claimed_at or (now if state in HELD_STATES else changed)
        if end is None:
            continue
        start, stop = max(created, since), min(end, now)
        waited = sum(_hours(max(a, start), min(b or now, stop)) for a, b in promised.get(pk, ()))
        weight = shares.get(profile_id, 0.0) if share is None else share
        hours[profile_id] += (_hours(start, stop) - waited) * weight
    return hours


def _hours(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.0) / 3600


def previous_targets(profile_ids) -> dict[int, int]:
    """The desired size of each profile's last loop decision (one query, one index look-up
    per profile)."""
    last = LoopDecision.objects.filter(profile_id=OuterRef("pk")).order_by("-time", "-id")
    rows = (
        ComputeProfile.objects.filter(pk__in=profile_ids)
        .annotate(previous=Subquery(last.values("desired")[:1]))
        .values_list("pk", "previous")
    )
    return {pk: previous for pk, previous in rows if previous is not None}


def sizings(profiles, pools: dict[int, Pool], now: datetime) -> dict[int, sizing.Sizing]:
    """The SLO policy's answer for every profile whose pool is sized by its SLO."""
    chosen = [p for p in profiles if p.pk in pools and pools[p.pk].sized_by_slo]
    if not chosen:
        return {}
    ids = [p.pk for p in chosen]
    prefetch_related_objects(chosen, "resource_groups")  # for gpu_share, in one query
    today, tomorrow = day_start(now), day_end(now)
    since = today - timedelta(days=sizing.HISTORY_DAYS)
    requests = arrivals(ids, since, now)
    measured = provisioning({p.infrastructure_id for p in chosen}, now)
    settings = {p.pk: settings_for(pools[p.pk], p) for p in chosen}
    shares = {pk: each.gpu_share for pk, each in settings.items()}
    idle = idle_gpu_hours(ids, today, now, shares)
    previous = previous_targets(ids)
    result = {}
    for profile in chosen:
        history = sizing.History(
            arrivals=requests.get(profile.pk, []),
            provisioning=measured.get(profile.infrastructure_id, sizing.Provisioning()),
            day_start=today.timestamp(),
            day_end=tomorrow.timestamp(),
            since=max(since, profile.created).timestamp(),
            idle_today=idle.get(profile.pk, 0.0),
            previous_target=previous.get(profile.pk),
        )
        history.memo = _learned(profile.pk, history)
        result[profile.pk] = sizing.size(history, settings[profile.pk], now.timestamp())
    return result


def _learned(profile_id: int, history: sizing.History) -> dict:
    """The memo of what was learned for the profile today, while its inputs are the same."""
    before = tuple(a for a in history.arrivals if a < history.day_start)
    key = (history.day_start, history.since, hash(before), len(before))
    kept = _LEARNED.get(profile_id)
    if kept is None or kept[0] != key:
        kept = _LEARNED[profile_id] = (key, {})
    return kept[1]


# -- what the page shows ----------------------------------------------------------------


@dataclass
class Report:
    requests: int
    within: int  # ready within the SLO's T
    pending: int  # not ready yet, and asked less than T ago: not counted
    idle_per_day: float  # GPU-hours
    chart: charts.Chart

    @property
    def attainment(self) -> float | None:
        return self.within / self.requests if self.requests else None

    @property
    def attainment_label(self) -> str:
        value = self.attainment
        return "—" if value is None else f"{value:.1%}".replace("%", " %")


def attainment_counts(profile_id: int, seconds: float, since: datetime, now: datetime):
    """(requests, within T, pending) for the workspaces of a profile requested since."""
    requests = within = pending = 0
    rows = Workspace.objects.filter(profile_id=profile_id, created__gte=since).values_list(
        "created", "ready_at"
    )
    for created, ready_at in rows:
        if ready_at is None and (now - created).total_seconds() <= seconds:
            pending += 1
            continue
        requests += 1
        within += ready_at is not None and (ready_at - created).total_seconds() <= seconds
    return requests, within, pending


def chart(profile_id: int, claimed: list[datetime], now: datetime) -> charts.Chart:
    """Target and ready (steps, from the decision log) and `claimed` per hour (bars)."""
    since = now - REPORT_WINDOW
    rows = list(
        LoopDecision.objects.filter(profile_id=profile_id, time__gte=since)
        .order_by("time", "id")
        .values_list("time", "desired", "ready")
    )
    hours = int(REPORT_WINDOW.total_seconds() // 3600)
    claims = [0] * hours
    for claimed_at in claimed:
        if since <= claimed_at < now:
            claims[min(int((claimed_at - since).total_seconds() // 3600), hours - 1)] += 1
    hour = timedelta(hours=1)
    return charts.time_chart(
        "Target, ready instances and claims per hour, last 7 days",
        "instances; claims per hour",
        [
            charts.Series("target", "Target", [(t, d) for t, d, _ in rows], dashed=True),
            charts.Series("ready", "Ready", [(t, r) for t, _, r in rows]),
            charts.Series(
                "claims",
                "Claims per hour",
                [(since + h * hour, n) for h, n in enumerate(claims) if n],
                kind=charts.BARS,
                bucket=hour,
            ),
        ],
        since,
        now,
        empty_message="No decisions or claims in the last 7 days.",
    )


def report(profile, pool: Pool, now: datetime) -> Report:
    """The last 7 days of a pool sized by its SLO (or that could be)."""
    since = now - REPORT_WINDOW
    requests, within, pending = attainment_counts(profile.pk, pool.slo_seconds, since, now)
    idle = idle_gpu_hours([profile.pk], since, now, {profile.pk: gpu_share(profile)})
    # Per day of the window the profile existed: days before it are no data, not days
    # without idle time (a Pool row is made on first use, so the profile tells).
    existed = (now - max(since, profile.created)) / timedelta(days=1)
    claimed = _held([profile.pk], since, now).exclude(claimed_at=None)
    return Report(
        requests=requests,
        within=within,
        pending=pending,
        idle_per_day=idle.get(profile.pk, 0.0) / existed if existed > 0 else 0.0,
        chart=chart(profile.pk, list(claimed.values_list("claimed_at", flat=True)), now),
    )
