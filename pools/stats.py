"""What the pools page shows: warm-hit rate, time-to-ready percentiles, idle hours, chart."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import BooleanField, Case, ExpressionWrapper, F, Q, Sum, Value, When
from django.db.models.functions import Greatest, Least
from django.db.models.lookups import GreaterThan

from pools.lifecycle import State
from pools.models import LoopDecision, PoolInstance, Workspace
from portal import charts

WINDOW = timedelta(days=7)
# A warm hit: a workspace given a pool instance that was ready when it was claimed (not one
# that waited for an instance on its way, `pools.promises`: that one was claimed first).
WARM_HIT = Q(pool_instance__ready_at__lte=F("pool_instance__claimed_at"))


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`, None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[rank - 1]


@dataclass
class Summary:
    requests: int
    warm_hits: int
    warm_p50: float | None
    warm_p95: float | None
    others_p50: float | None
    others_p95: float | None
    idle_hours_24h: float
    idle_hours_7d: float

    @property
    def hit_rate(self) -> float | None:
        return self.warm_hits / self.requests if self.requests else None


def summarize(profile_ids: list[int], now: datetime) -> Summary:
    """Over the last 7 days, for the workspaces and instances of `profile_ids`."""

    since = now - WINDOW
    rows = (
        Workspace.objects.filter(profile_id__in=profile_ids, created__gte=since)
        .annotate(to_ready=F("ready_at") - F("created"))  # one duration, not two timestamps
        .annotate(hit=ExpressionWrapper(WARM_HIT, output_field=BooleanField()))
        .values_list("to_ready", "hit")
        .order_by()
    )
    warm, others, requests, hits = [], [], 0, 0
    for to_ready, hit in rows:
        requests += 1
        hits += bool(hit)
        if to_ready is not None:
            (warm if hit else others).append(to_ready.total_seconds())
    idle_24h, idle_7d = idle_hours(profile_ids, [now - timedelta(hours=24), since], now)
    return Summary(
        requests=requests,
        warm_hits=hits,
        warm_p50=percentile(warm, 50),
        warm_p95=percentile(warm, 95),
        others_p50=percentile(others, 50),
        others_p95=percentile(others, 95),
        idle_hours_24h=idle_24h,
        idle_hours_7d=idle_7d,
    )


def idle_hours(profile_ids: list[int], starts: list[datetime], now: datetime) -> list[float]:
    """Instance-hours the instances of `profile_ids` spent ready and unclaimed between each
    of `starts` and `now`, summed by the database in one query.

    An instance idles from `ready_at` until it is claimed, or starts deleting (its
    `state_changed` then), or until now while it is still ready.
    """
    idle_end = Least(
        Case(
            When(state=State.READY, then=Value(now)),
            When(claimed_at__isnull=False, then=F("claimed_at")),
            default=F("state_changed"),
        ),
        Value(now),
    )
    sums = {}
    for n, since in enumerate(starts):
        idle_start = Greatest(F("ready_at"), Value(since))
        sums[f"idle_{n}"] = Sum(idle_end - idle_start, filter=Q(GreaterThan(idle_end, idle_start)))
    instances = PoolInstance.objects.filter(profile_id__in=profile_ids, ready_at__lt=now)
    totals = instances.aggregate(**sums)
    return [(totals[name] or timedelta()).total_seconds() / 3600 for name in sums]


def format_seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 60:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def chart(profile_id: int, now: datetime, hours: int = 24) -> charts.Chart:
    """Desired vs ready over the last `hours`, as steps (from the decision log)."""
    since = now - timedelta(hours=hours)
    rows = list(
        LoopDecision.objects.filter(profile_id=profile_id, time__gte=since)
        .order_by("time", "id")
        .values_list("time", "desired", "ready")
    )
    return charts.time_chart(
        f"Desired and ready instances, last {hours} hours",
        "instances",
        [
            charts.Series("desired", "Desired", [(t, d) for t, d, _ in rows], dashed=True),
            charts.Series("ready", "Ready", [(t, r) for t, _, r in rows]),
        ],
        since,
        now,
        empty_message="The loop has not decided anything for this profile in this period.",
    )
