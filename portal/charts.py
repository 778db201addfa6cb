"""Time charts people can read, drawn on the server as SVG (issue 18).

Why SVG from the server, not a vendored JavaScript library (uPlot, Chart.js): the charts
here are small (a few series, at most a few hundred points), the pages are server-rendered
and must work without JavaScript and offline, the Content-Security-Policy allows no inline
script (a library would need a second endpoint for its data), and a screen reader gets a
text summary and a data table from the same template. Axes, ticks in the organisation's
time zone, units, a legend and an empty state are all this module has to add.

A view builds a `Chart` with `time_chart(...)` and the page includes
`includes/chart.html` with `chart=...`. Series are steps (a value held until the next
point: desired, ready), lines, or bars (a value per bucket: claims per hour, spend per day).
"""

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise

from django.utils import timezone
from django.utils.dateformat import format as date_format

# Room for tick labels around the plot, in SVG units.
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 30
STEP, LINE, BARS = "step", "line", "bars"
# The shortest time axis a short history is drawn over.
MIN_SPAN = timedelta(hours=2)
# Colour-blind-safe (Okabe-Ito), each distinct from the others in grey too.
PALETTE = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9"]


@dataclass
class Series:
    key: str  # names the series in the page (its CSS class)
    label: str
    points: list[tuple[datetime, float]]  # time order; for bars, each bucket's start
    kind: str = STEP
    bucket: timedelta | None = None  # bars only: the width of a bucket
    dashed: bool = False


@dataclass
class Tick:
    position: float
    label: str


@dataclass
class DrawnSeries:
    key: str
    label: str
    kind: str
    color: str
    dashed: bool
    path: str = ""  # step and line: an SVG path
    bars: list[tuple[float, float, float, float, str]] = field(default_factory=list)
    markers: list[tuple[float, float, str]] = field(default_factory=list)
    latest: float | None = None
    peak: float | None = None


@dataclass
class Chart:
    title: str
    unit: str
    width: int
    height: int
    start: datetime
    end: datetime
    series: list[DrawnSeries]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    empty_message: str
    history_from: datetime | None = None  # where a short history starts (axis zoomed)

    @property
    def empty(self) -> bool:
        return all(s.latest is None for s in self.series)

    @property
    def plot(self) -> dict:
        """The plot area: where the axes are drawn."""
        return {
            "left": LEFT,
            "top": TOP,
            "right": self.width - RIGHT,
            "bottom": self.height - BOTTOM,
            "width": self.width - LEFT - RIGHT,
            "height": self.height - TOP - BOTTOM,
            "middle_x": LEFT + (self.width - LEFT - RIGHT) / 2,
            "middle_y": TOP + (self.height - TOP - BOTTOM) / 2,
        }

    @property
    def summary(self) -> str:
        """What a screen reader hears instead of the picture."""
        if self.empty:
            return self.empty_message
        parts = [
            f"{s.label}: now {_number(s.latest)}, peak {_number(s.peak)}"
            for s in self.series
            if s.latest is not None
        ]
        return f"{'; '.join(parts)} ({self.unit})."


def nice_ceiling(value: float) -> float:
    """The axis maximum: 1, 2, 2.5 or 5 times a power of ten, at least `value` (and 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power  # pragma: no cover (the loop ends at 10)


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


# (longest span, minutes between ticks) for axes of a day or less.
TICK_STEPS = [(3, 30), (6, 60), (12, 120), (36, 360)]


def _time_ticks(start: datetime, end: datetime) -> list[datetime]:
    """Round local times between start and end: half hours to hours within a day, days
    for a week."""
    span = end - start
    local_start = timezone.localtime(start)
    if span <= timedelta(hours=36):
        minutes = next(step for hours, step in TICK_STEPS if span <= timedelta(hours=hours))
        every = timedelta(minutes=minutes)
        first = local_start.replace(minute=0, second=0, microsecond=0)
        first += timedelta(minutes=(minutes - first.hour * 60 % minutes) % minutes)
    else:
        every = timedelta(days=1 if span <= timedelta(days=10) else 7)
        first = local_start.replace(hour=0, minute=0, second=0, microsecond=0)
    ticks, tick = [], first
    while tick <= end:
        if tick >= start:
            ticks.append(tick)
        tick = timezone.localtime(tick + every)
    return ticks


def time_chart(
    title: str,
    unit: str,
    series: list[Series],
    start: datetime,
    end: datetime,
    empty_message: str = "No data in this period yet.",
    width: int = 720,
    height: int = 220,
) -> Chart:
    """Lay out `series` between `start` and `end`, on one value axis in `unit`.

    A history shorter than half the period is drawn over the time it covers (at least
    MIN_SPAN), not squeezed against the right edge, and `history_from` says where it
    starts; points are marked when there are few of them.
    """
    period_start = start
    start = _history_start(series, start, end)
    span = (end - start).total_seconds() or 1
    plot_width, plot_height = width - LEFT - RIGHT, height - TOP - BOTTOM
    values = [v for s in series for _, v in s.points]
    y_max = nice_ceiling(max([0, *values]))

    def x(when: datetime) -> float:
        return LEFT + min(max((when - start).total_seconds() / span, 0), 1) * plot_width

    def y(value: float) -> float:
        return TOP + plot_height - value / y_max * plot_height

    drawn = []
    for index, s in enumerate(series):
        shown = [(t, v) for t, v in s.points if t <= end]
        item = DrawnSeries(s.key, s.label, s.kind, PALETTE[index % len(PALETTE)], s.dashed)
        if shown:
            item.latest, item.peak = shown[-1][1], max(v for _, v in shown)
        if s.kind == BARS:
            width_units = (s.bucket or timedelta(hours=1)).total_seconds() / span * plot_width
            item.bars = [
                (x(t), y(v), max(width_units - 1, 1), y(0) - y(v), _title(t, v, unit))
                for t, v in shown
                if v
            ]
        else:
            item.path = _path(shown, s.kind, x, y, end)
            if len(shown) <= 24:
                item.markers = [(x(t), y(v), _title(t, v, unit)) for t, v in shown]
        drawn.append(item)
    divisions = _divisions(y_max)
    y_ticks = [
        Tick(y(y_max * i / divisions), _number(y_max * i / divisions)) for i in range(divisions + 1)
    ]
    x_format = "H:i" if end - start <= timedelta(hours=36) else "D j"
    x_ticks = [Tick(x(t), _format(t, x_format)) for t in _time_ticks(start, end)]
    chart = Chart(title, unit, width, height, start, end, drawn, x_ticks, y_ticks, empty_message)
    chart.history_from = start if start > period_start else None
    return chart


def _history_start(series: list[Series], start: datetime, end: datetime) -> datetime:
    """Where the time axis starts: the period's start, or shortly before the first point
    when the history covers less than half the period."""
    firsts = [s.points[0][0] for s in series if s.points]
    if not firsts or min(firsts) <= start + (end - start) / 2:
        return start
    first = min(min(firsts), end - MIN_SPAN)
    return max(start, first - (end - first) / 10)


def _divisions(y_max: float) -> int:
    """Ticks at round values: whole numbers up to 5 (counts never get 0.5 or 1.25), then
    steps of 1, 2 or 5 times a power of ten."""
    if y_max <= 5 and float(y_max).is_integer():
        return int(y_max)
    mantissa = y_max / 10 ** math.floor(math.log10(y_max))
    return 4 if mantissa == 2 else 5


def _path(points, kind: str, x, y, end: datetime) -> str:
    """An SVG path: a step holds each value until the next point, and the last until `end`."""
    if not points:
        return ""
    commands = [f"M{x(points[0][0]):.1f},{y(points[0][1]):.1f}"]
    for (_, previous), (when, value) in pairwise(points):
        if kind == STEP:
            commands.append(f"L{x(when):.1f},{y(previous):.1f}")
        commands.append(f"L{x(when):.1f},{y(value):.1f}")
    if kind == STEP:
        commands.append(f"L{x(end):.1f},{y(points[-1][1]):.1f}")
    return " ".join(commands)


def _format(when: datetime, spec: str) -> str:
    # As the |date filter does: in the current (organisation's) time zone.
    return date_format(timezone.localtime(when), spec)


def _title(when: datetime, value: float, unit: str) -> str:
    return f"{_format(when, 'D j M H:i')}: {_number(value)} {unit}"
