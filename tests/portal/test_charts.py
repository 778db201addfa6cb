"""Server-drawn charts: axes, units, a legend and an empty state; readable with a short
history (issue 18)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.template.loader import render_to_string
from django.test import override_settings

from portal import charts

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0, 1), (1, 1), (3, 5), (7, 10), (12, 20), (24, 25), (260, 500)]
)
def test_the_value_axis_ends_on_a_round_number(value, ceiling):
    assert charts.nice_ceiling(value) == ceiling


def day_chart(points, **kwargs):
    series = [charts.Series("ready", "Ready", points)]
    return charts.time_chart("Ready", "instances", series, NOW - timedelta(hours=24), NOW, **kwargs)


@override_settings(TIME_ZONE="Europe/Berlin")
def test_the_time_axis_has_round_local_hours_over_a_day():
    chart = day_chart([(NOW - timedelta(hours=23), 1), (NOW - timedelta(hours=1), 2)])
    labels = [tick.label for tick in chart.x_ticks]
    assert labels == ["18:00", "00:00", "06:00", "12:00"]  # 11:00–13:00 UTC+1
    assert [tick.label for tick in chart.y_ticks] == ["0", "1", "2"]  # whole instances
    assert chart.history_from is None


@pytest.mark.parametrize(
    ("peak", "ticks"),
    [(3, "0 1 2 3 4 5"), (7, "0 2 4 6 8 10"), (12, "0 5 10 15 20"), (2.2, "0 0.5 1 1.5 2 2.5")],
)
def test_value_ticks_are_round(peak, ticks):
    chart = day_chart([(NOW - timedelta(hours=20), peak)])
    assert " ".join(tick.label for tick in chart.y_ticks) == ticks


def test_a_week_has_one_tick_a_day():
    series = [charts.Series("claims", "Claims", [], kind=charts.BARS)]
    chart = charts.time_chart("Claims", "claims", series, NOW - timedelta(days=7), NOW)
    assert [tick.label for tick in chart.x_ticks] == [
        "Tue 24",
        "Wed 25",
        "Thu 26",
        "Fri 27",
        "Sat 28",
        "Sun 29",
        "Mon 30",
    ]


def test_a_short_history_is_drawn_over_the_time_it_covers_and_holds_the_last_value():
    chart = day_chart([(NOW - timedelta(minutes=30), 3)])
    ready = chart.series[0]
    assert chart.history_from == NOW - timedelta(hours=2, minutes=12)  # 2 h, and a margin
    assert [tick.label for tick in chart.x_ticks] == ["10:00", "10:30", "11:00", "11:30", "12:00"]
    assert len(ready.markers) == 1
    start_x = float(ready.path.split()[0][1:].split(",")[0])
    end_x = float(ready.path.split()[-1][1:].split(",")[0])
    assert chart.plot["left"] < start_x < chart.plot["right"] - 0.1 * chart.plot["width"]
    assert end_x == chart.plot["right"]  # held until now
    assert chart.summary == "Ready: now 3, peak 3 (instances)."
    html = render_to_string("includes/chart.html", {"chart": chart})
    assert "only recent history, shown from" in html


def test_the_rendered_chart_has_axes_units_a_legend_and_a_summary():
    html = render_to_string("includes/chart.html", {"chart": day_chart([(NOW, 1)])})
    assert '<path class="ready"' in html
    assert 'aria-label="Ready: Ready: now 1, peak 1 (instances)."' in html
    assert "(instances)" in html  # the unit beside the title
    assert html.count('class="tick"') == 2 + 5  # 0 and 1; 12:00 to 12:00 every 6 hours
    assert '<ul class="chart-legend">' in html and "Ready <span" in html


def test_an_empty_chart_says_so_inside_its_axes():
    chart = day_chart([], empty_message="Nothing decided yet.")
    html = render_to_string("includes/chart.html", {"chart": chart})
    assert chart.empty
    assert '<text class="empty"' in html and "Nothing decided yet." in html
    assert 'class="axis"' in html
