"""Showback: the ledger's intervals added up per group, profile, user or infrastructure
and month, and priced with a `PriceBook`.

The rows of the periods are read in one query (plain values, with their group's and user's
names), clipped to each period and to "now" (open intervals are still running), and their
hours added up per label and resource line in one pass; each distinct line is priced once
at the end. A report costs a fixed number of queries however many workspaces there are.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.utils import timezone

from pools.lifecycle import State
from pools.models import PoolInstance
from usage.models import UsageInterval
from usage.prices import Line, PriceBook


@dataclass
class Totals:
    """What one group (or profile, user…) used in one period, and what it cost."""

    label: str
    workspace_hours: float = 0.0
    gpu_hours: float = 0.0  # whole GPUs
    mig_slice_hours: float = 0.0
    gpu_equivalent_hours: float = 0.0  # whole GPUs plus slices as their share of a GPU
    storage_gb_hours: float = 0.0
    cost: Decimal = field(default_factory=Decimal)
    complete: bool = True  # False: something used had no price (counted as free)

    def add(self, line: Line, counts_workspace: bool, hours: float, book: PriceBook) -> None:
        if counts_workspace:
            self.workspace_hours += hours
        self.gpu_hours += line.gpus * hours
        self.mig_slice_hours += line.mig_slices * hours
        self.gpu_equivalent_hours += line.gpu_share * hours
        self.storage_gb_hours += line.storage_gb * hours
        rate = book.rate(line)
        self.cost += rate.per_hour * Decimal(str(round(hours, 6)))
        self.complete = self.complete and rate.complete


# Each breakdown: its heading, and the value column of `_FIELDS` that labels a row.
DIMENSIONS: dict[str, tuple[str, int]] = {
    "group": ("Group", 0),
    "user": ("User", 1),
    "profile": ("Profile", 2),
    "infrastructure": ("Infrastructure", 3),
}
_UNNAMED = ("No group", "(deleted user)", "(deleted profile)", "(deleted infrastructure)")
# A warm pool's idle time is no group's or user's: it is shown as what it is there (its
# profile and infrastructure are its own).
WARM_POOLS = "Warm pools"
_POOL_LABELS = {DIMENSIONS["group"][1], DIMENSIONS["user"][1]}
_LINE_FIELDS = (
    "gpu_model", "gpus", "mig_slices", "gpu_share", "instance_type", "instances", "storage_gb",
    "provider", "region",
)  # fmt: skip


def _fields() -> tuple[str, ...]:
    username = f"owner__{get_user_model().USERNAME_FIELD}"
    labels = ("team__name", username, "profile_name", "infrastructure_name")
    return (*labels, "kind", "start", "end", "counts_workspace", *_LINE_FIELDS)


def _label(row, column: int) -> str:
    if row[4] == UsageInterval.Kind.WARM_IDLE and column in _POOL_LABELS:
        return WARM_POOLS
    return row[column] or _UNNAMED[column]


def month_start(day: date) -> datetime:
    """Midnight of the first of `day`'s month, in the organisation's time zone."""
    tz = timezone.get_default_timezone()
    return datetime(day.year, day.month, 1, tzinfo=tz)


def next_month(start: datetime) -> datetime:
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return start.replace(year=year, month=month)


def months(first: datetime, count: int) -> list[tuple[datetime, datetime]]:
    """`count` months from `first` on, as [start, end) pairs."""
    spans, start = [], first
    for _ in range(count):
        end = next_month(start)
        spans.append((start, end))
        start = end
    return spans


def months_ending(last: datetime, count: int) -> list[tuple[datetime, datetime]]:
    """The `count` months up to and including the one starting at `last`."""
    index = last.year * 12 + last.month - 1 - (count - 1)
    return months(last.replace(year=index // 12, month=index % 12 + 1), count)


def _hours(start, end, period_start, period_end) -> float:
    """Hours of [start, end) inside [period_start, period_end); an open interval runs on."""
    begin = start if start > period_start else period_start
    finish = period_end if end is None or end > period_end else end
    return max((finish - begin).total_seconds(), 0) / 3600


def tally(
    intervals, periods: list[tuple[datetime, datetime]], now: datetime, book: PriceBook, by
) -> dict[tuple[str, int, str], Totals]:
    """{(breakdown, period index, label): Totals} of `intervals` in each period, up to
    `now`, for each breakdown in `by` (names of `DIMENSIONS`)."""
    if not periods:
        return {}
    # In UTC: two times of one zone subtract as wall-clock times, so a month of the
    # organisation's time zone with a clock change would count 744 hours, not 743 or 745.
    clipped = [(start.astimezone(UTC), min(end, now).astimezone(UTC)) for start, end in periods]
    columns = [(name, DIMENSIONS[name][1]) for name in by]
    hours: dict[tuple, float] = defaultdict(float)
    rows = intervals.overlapping(clipped[0][0], clipped[-1][1]).values_list(*_fields())
    for row in rows:
        start, end, counts_workspace, line = row[5], row[6], row[7], row[8:]
        for index, (period_start, period_end) in enumerate(clipped):
            spent = _hours(start, end, period_start, period_end)
            if spent <= 0:
                continue
            for name, column in columns:
                hours[(name, index, _label(row, column), line, counts_workspace)] += spent
    result: dict[tuple[str, int, str], Totals] = {}
    for (name, index, label, line, counts_workspace), spent in hours.items():
        totals = result.setdefault((name, index, label), Totals(label))
        totals.add(Line(*line), counts_workspace, spent, book)
    return result


def _ranked(totals) -> list[Totals]:
    return sorted(totals, key=lambda t: (-t.cost, -t.gpu_equivalent_hours, t.label))


def reports(intervals, start, end, now, book: PriceBook, by) -> dict[str, list[Totals]]:
    """One period's totals for each breakdown in `by`, the most expensive first."""
    found = tally(intervals, [(start, end)], now, book, by)
    return {name: _ranked(t for (n, _, _), t in found.items() if n == name) for name in by}


def months_overview(intervals, periods, now, book: PriceBook):
    """For a run of months: the cost of each, and the last one's totals per breakdown."""
    found = tally(intervals, periods, now, book, list(DIMENSIONS))
    costs = [Decimal(0)] * len(periods)
    for (name, index, _), totals in found.items():
        if name == "group":
            costs[index] += totals.cost
    last = len(periods) - 1
    breakdowns = {
        name: _ranked(t for (n, i, _), t in found.items() if n == name and i == last)
        for name in DIMENSIONS
    }
    return costs, breakdowns


def report(intervals, start, end, now, book: PriceBook, by: str) -> list[Totals]:
    return reports(intervals, start, end, now, book, [by])[by]


def hours_saved(start, end) -> dict[str, float]:
    """{profile name: hours users did not wait}: for each warm instance claimed in the
    period, the time it took to provision, which the claimant would otherwise have waited
    (only the part before the claim, for an instance a workspace waited for)."""
    claimed = PoolInstance.objects.filter(
        state=State.CLAIMED,
        claimed_at__gte=start,
        claimed_at__lt=end,
        ready_at__isnull=False,
    )
    saved: dict[str, float] = {}
    rows = claimed.values_list("profile__name", "profile_name", "created", "ready_at", "claimed_at")
    for name, kept_name, created, ready_at, claimed_at in rows:
        label = name or kept_name
        not_waited = min(ready_at, claimed_at) - created
        saved[label] = saved.get(label, 0.0) + not_waited.total_seconds() / 3600
    return saved
