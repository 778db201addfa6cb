"""What the pools page shows: warm-hit rate, time-to-ready percentiles, idle hours, chart."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q

from pools.lifecycle import State
from pools.models import LoopDecision, PoolInstance, Workspace

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
        idle_hours_24h=idle_hours(profile_ids, now - timedelta(hours=24), now),
        idle_hours_7d=idle_hours(profile_ids, since, now),
    )


def idle_hours(profile_ids: list[int], since: datetime, now: datetime) -> float:
    """Instance-hours spent ready and unclaimed between `since` and `now`.

    An instance idles from `ready_at` until it is claimed, or starts deleting (its
    `state_changed` then), or until now while it is still ready.
    """
    rows = (
        PoolInstance.objects.filter(profile_id__in=profile_ids, ready_at__lt=now)
        .filter(
            Q(state=State.READY)
            | Q(claimed_at__gt=since)
            | Q(state__in=[State.DELETING, State.DELETED, State.FAILED], state_changed__gt=since)
        )
        .values_list("state", "ready_at", "claimed_at", "state_changed")
    )
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


@dataclass
class Chart:
    width: int
    height: int
    desired_points: str
    ready_points: str
    y_max: int
    start: datetime | None
    end: datetime | None


def chart(profile_id: int, now: datetime, hours: int = 24, width: int = 600, height: int = 160):
    """Desired vs ready over the last `hours`, as SVG polyline points (from the log)."""
    since = now - timedelta(hours=hours)
    rows = list(
        LoopDecision.objects.filter(profile_id=profile_id, time__gte=since)
        .order_by("time", "id")
        .values_list("time", "desired", "ready")
    )
    y_max = max([1, *(max(d, r) for _, d, r in rows)])
    span = (now - since).total_seconds()
    pad = 4

    def point(when: datetime, value: int) -> str:
        x = pad + (when - since).total_seconds() / span * (width - 2 * pad)
        y = height - pad - value / y_max * (height - 2 * pad)
        return f"{x:.1f},{y:.1f}"

    def steps(index: int) -> str:
        points = []
        for i, row in enumerate(rows):
            if i:  # a step: hold the previous value until this decision
                points.append(point(row[0], rows[i - 1][index]))
            points.append(point(row[0], row[index]))
        return " ".join(points)

    return Chart(
        width=width,
        height=height,
        desired_points=steps(1),
        ready_points=steps(2),
        y_max=y_max,
        start=rows[0][0] if rows else None,
        end=rows[-1][0] if rows else None,
    )
