"""What the pools page shows: warm-hit rate, time-to-ready percentiles, idle hours, chart."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q

from pools.lifecycle import State
from pools.models import LoopDecision, PoolInstance, Workspace
from portal import charts

WINDOW = timedelta(days=7)


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
    on_demand_p50: float | None
    on_demand_p95: float | None
    idle_hours_24h: float
    idle_hours_7d: float

    @property
    def hit_rate(self) -> float | None:
        return self.warm_hits / self.requests if self.requests else None


def summarize(profile_ids: list[int], now: datetime) -> Summary:
    """Over the last 7 days, for the workspaces and instances of `profile_ids`."""

    since = now - WINDOW
    rows = Workspace.objects.filter(profile_id__in=profile_ids, created__gte=since).values_list(
        "created", "ready_at", "pool_instance"
    )
    idle_7d = idle_rows(profile_ids, since, now)
    warm, on_demand, requests, hits = [], [], 0, 0
    for created, ready_at, instance in rows:
        requests += 1
        hits += instance is not None
        if ready_at:
            (warm if instance is not None else on_demand).append(
                (ready_at - created).total_seconds()
            )
    return Summary(
        requests=requests,
        warm_hits=hits,
        warm_p50=percentile(warm, 50),
        warm_p95=percentile(warm, 95),
        on_demand_p50=percentile(on_demand, 50),
        on_demand_p95=percentile(on_demand, 95),
        # The week's rows hold the day's: one query for both (a row idle only before the
        # day began adds nothing to the day).
        idle_hours_24h=idle_hours(idle_7d, now - timedelta(hours=24), now),
        idle_hours_7d=idle_hours(idle_7d, since, now),
    )


def idle_rows(profile_ids: list[int], since: datetime, now: datetime) -> list[tuple]:
    """(state, ready at, claimed at, state changed) of the instances of `profile_ids` that
    may have idled between `since` and `now` (what `idle_hours` adds up)."""
    return list(
        PoolInstance.objects.filter(profile_id__in=profile_ids, ready_at__lt=now)
        .filter(
            Q(state=State.READY)
            | Q(claimed_at__gt=since)
            | Q(state__in=[State.DELETING, State.DELETED, State.FAILED], state_changed__gt=since)
        )
        .values_list("state", "ready_at", "claimed_at", "state_changed")
    )


def idle_hours(rows, since: datetime, now: datetime) -> float:
    """Instance-hours spent ready and unclaimed between `since` and `now`, over `rows`.

    An instance idles from `ready_at` until it is claimed, or starts deleting (its
    `state_changed` then), or until now while it is still ready.
    """
    seconds = 0.0
    for state, ready_at, claimed_at, changed in rows:
        end = now if state == State.READY else (claimed_at or changed)
        start = max(ready_at, since)
        if end > start:
            seconds += (min(end, now) - start).total_seconds()
    return seconds / 3600


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
