"""Server-rendered bar charts: the geometry of an inline SVG with an axis, gridlines and a
label on every bar (templates/usage/_bar_chart.html). No chart library: static/ ships none,
and an SVG with a title, a description and text labels reads the same with a screen reader.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

WIDTH = 720
LABEL_WIDTH = 180  # the bars' labels, left of the plot
VALUE_WIDTH = 90  # the value printed after the longest bar
BAR_HEIGHT = 22
GAP = 8
AXIS_HEIGHT = 28
TICKS = 5


@dataclass(frozen=True)
class Bar:
    label: str
    text: str
    y: float
    width: float


@dataclass(frozen=True)
class Tick:
    text: str
    x: float


@dataclass(frozen=True)
class BarChart:
    title: str
    description: str
    bars: list[Bar]
    ticks: list[Tick]
    height: float
    plot_left: float = LABEL_WIDTH
    plot_width: float = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    width: float = WIDTH
    bar_height: float = BAR_HEIGHT

    @property
    def axis_y(self) -> float:
        return self.height - AXIS_HEIGHT


def nice_step(top: float) -> float:
    """A step of 1, 2 or 5 times a power of ten that splits 0..top into at most 5 parts."""
    if top <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(top / TICKS))
    for factor in (1, 2, 5, 10):
        if top / (factor * magnitude) <= TICKS:
            return factor * magnitude
    return 10 * magnitude


def bar_chart(title: str, items: list[tuple[str, float]], fmt: Callable[[float], str]) -> BarChart:
    """Horizontal bars of `items` (label, value) on an axis from 0, values printed by `fmt`."""
    top = max((value for _, value in items), default=0.0)
    step = nice_step(top)
    axis_max = step * max(math.ceil(top / step), 1)
    plot_width = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    bars = [
        Bar(
            label=label[:28],
            text=fmt(value),
            y=GAP + index * (BAR_HEIGHT + GAP),
            width=plot_width * value / axis_max,
        )
        for index, (label, value) in enumerate(items)
    ]
    ticks = [
        Tick(fmt(step * i), LABEL_WIDTH + plot_width * step * i / axis_max)
        for i in range(round(axis_max / step) + 1)
    ]
    height = GAP + len(items) * (BAR_HEIGHT + GAP) + AXIS_HEIGHT
    description = "; ".join(f"{label}: {fmt(value)}" for label, value in items) or "No data."
    return BarChart(title, description, bars, ticks, height)


def dollars(value: float) -> str:
    return f"${value:,.2f}" if value < 1000 else f"${value:,.0f}"


def hours(value: float) -> str:
    return f"{value:,.1f} h" if value < 100 else f"{value:,.0f} h"
