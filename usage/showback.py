"""Showback: the ledger's intervals added up per group, profile, user or infrastructure
and month, and priced with a `PriceBook`.

The rows of a period are read in one query (with their group and user), clipped to the
period and to "now" (open intervals are still running), and added up in Python: the price
of each distinct resource line is computed once, so a report costs a fixed number of
queries however many workspaces there are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from django.utils import timezone

from pools.lifecycle import State
from pools.models import PoolInstance
from usage.models import UsageInterval
from usage.prices import Line, PriceBook, Rate


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

    def add(self, row: UsageInterval, hours: float, rate: Rate) -> None:
        if row.counts_workspace:
            self.workspace_hours += hours
        self.gpu_hours += row.gpus * hours
        self.mig_slice_hours += row.mig_slices * hours
        self.gpu_equivalent_hours += row.gpu_share * hours
        self.storage_gb_hours += row.storage_gb * hours
        self.cost += rate.per_hour * Decimal(str(hours))
        self.complete = self.complete and rate.complete


def _team_label(row) -> str:
    return row.team.name if row.team_id else "No group"


def _user_label(row) -> str:
    return row.owner.get_username() if row.owner_id else "Warm pools"


DIMENSIONS: dict[str, tuple[str, Callable]] = {
    "group": ("Group", _team_label),
    "profile": ("Profile", lambda row: row.profile_name or "(deleted profile)"),
    "user": ("User", _user_label),
    "infrastructure": ("Infrastructure", lambda row: row.infrastructure_name or "(deleted)"),
}


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


def _line(row: UsageInterval) -> Line:
    return Line(
        gpu_model=row.gpu_model,
        gpus=row.gpus,
        mig_slices=row.mig_slices,
        gpu_share=row.gpu_share,
        instance_type=row.instance_type,
        instances=row.instances,
        storage_gb=row.storage_gb,
        provider=row.provider,
        region=row.region,
    )


def tally(
    intervals, periods: list[tuple[datetime, datetime]], now: datetime, book: PriceBook, by: str
) -> dict[tuple[int, str], Totals]:
    """{(period index, label): Totals} of `intervals` in each period, up to `now`."""
    if not periods:
        return {}
    label_of = DIMENSIONS[by][1]
    first, last = periods[0][0], min(periods[-1][1], now)
    rows = intervals.overlapping(first, last).select_related("team", "owner")
    rates: dict[Line, Rate] = {}
    result: dict[tuple[int, str], Totals] = {}
    for row in rows:
        line = _line(row)
        if line not in rates:
            rates[line] = book.rate(line)
        label = label_of(row)
        for index, (start, end) in enumerate(periods):
            hours = row.hours(start, min(end, now))
            if hours > 0:
                totals = result.setdefault((index, label), Totals(label))
                totals.add(row, hours, rates[line])
    return result


def cost_per_period(intervals, periods, now: datetime, book: PriceBook) -> list[Decimal]:
    found = tally(intervals, periods, now, book, "group")
    return [
        sum((t.cost for (i, _), t in found.items() if i == index), Decimal(0))
        for index in range(len(periods))
    ]


def report(intervals, start, end, now, book: PriceBook, by: str) -> list[Totals]:
    """One period's totals per `by`, the most expensive first."""
    found = tally(intervals, [(start, end)], now, book, by)
    return sorted(found.values(), key=lambda t: (-t.cost, -t.gpu_equivalent_hours, t.label))


def hours_saved(start, end) -> dict[str, float]:
    """{profile name: hours users did not wait}: for each warm instance claimed in the
    period, the time it took to provision, which the claimant would otherwise have waited."""
    claimed = PoolInstance.objects.filter(
        state=State.CLAIMED,
        claimed_at__gte=start,
        claimed_at__lt=end,
        ready_at__isnull=False,
    )
    saved: dict[str, float] = {}
    rows = claimed.values_list("profile__name", "profile_name", "created", "ready_at")
    for name, kept_name, created, ready_at in rows:
        label = name or kept_name
        saved[label] = saved.get(label, 0.0) + (ready_at - created).total_seconds() / 3600
    return saved
