"""Replay request arrivals through warm-pool policies: `python -m bench.pools [CSV ...]`.

The SLO policy here is `pools.sizing.size`, the very function the control loop calls
(`pools.warmpool`), fed with a `sizing.History` built from the replayed past only.

The model of one pool (one profile):

- the loop runs every `TICK` seconds and right after every claim; each pass sets the
  pool's size (ready + provisioning) to the policy's target: it creates the missing
  instances, which are ready after a provisioning time drawn from the distribution, and
  deletes the oldest ready extras (instances already provisioning are left to finish);
- a request takes the oldest ready instance (a warm hit, ready at once); without one it
  takes an instance on its way (`Sim._promise`, as the portal does) and waits until that
  one is ready; with none on its way it is provisioned on demand and waits a provisioning
  time. It is within the SLO when it waits at most T seconds;
- idle GPU-hours: the GPUs pool instances hold while no user has claimed them, from
  creation (provisioning included) until claimed or deleted.

Policies: static pools of every size from 0 to the smallest that meets the SLO; the
cheapest weekday/weekend schedule that meets it; the SLO policy; an oracle that knows the
future (each served request's instance is created exactly one provisioning time before
it arrives, and only the share the SLO needs is served): the lower bound.

Data: the CSV files given, else the ElasticFlow traces in
`../shared/data/traces/raw-traces.tar.gz` (each cluster's jobs of `--gpus` GPUs are one
profile's requests; a job submitted less than `--merge-within` seconds after the previous
kept one belongs to the same request), else a small synthetic demo. A CSV has a header
with a time column (`time` or `submission_time`: seconds, or ISO 8601), and optionally
`gpus` (or `num_gpu`) and `duration`.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import io
import math
import random
import statistics
import sys
import tarfile
import time as clock
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pools import sizing

TICK = 60  # seconds between two passes of the loop (`schedules.WARM_POOL_LOOP_MINUTES`)
DAY = 86_400
WEEK = 7 * DAY
REPO = Path(__file__).resolve().parent.parent
TRACES = REPO.parent / "shared" / "data" / "traces" / "raw-traces.tar.gz"
# The ElasticFlow traces count seconds from the start of collection, 2021-03-04 (UTC
# assumed: the traces do not say), so weekdays and days are those of that calendar.
TRACE_ORIGIN = datetime(2021, 3, 4, tzinfo=UTC).timestamp()


# -- input ------------------------------------------------------------------------------


@dataclass
class Trace:
    name: str
    arrivals: list[float]  # epoch seconds, ascending
    gpus: float = 1.0
    note: str = ""

    @property
    def start(self) -> float:
        return self.arrivals[0] // DAY * DAY

    @property
    def end(self) -> float:
        return self.arrivals[-1] + TICK

    @property
    def days(self) -> float:
        return (self.end - self.start) / DAY


def merge_bursts(times: Sequence[float], within: float) -> list[float]:
    """Drop every submission less than `within` seconds after the previous kept one."""
    kept: list[float] = []
    for t in sorted(times):
        if not kept or t - kept[-1] >= within:
            kept.append(t)
    return kept


def _seconds(value: str, origin: float) -> float:
    try:
        return origin + float(value)
    except ValueError:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()


def read_rows(text: str, name: str, gpus: float | None, origin: float) -> tuple[list[float], float]:
    """Arrival times of the rows asking for `gpus` GPUs (all rows when None), and the GPUs."""
    reader = csv.DictReader(io.StringIO(text))
    fields = {f.strip().lower(): f for f in reader.fieldnames or []}
    time_field = fields.get("time") or fields.get("submission_time")
    gpu_field = fields.get("gpus") or fields.get("num_gpu")
    if time_field is None:
        raise SystemExit(f"{name}: needs a 'time' (or 'submission_time') column")
    times, sizes = [], set()
    for row in reader:
        size = float(row[gpu_field]) if gpu_field and row[gpu_field] else 1.0
        if gpus is not None and size != gpus:
            continue
        times.append(_seconds(row[time_field].strip(), origin))
        sizes.add(size)
    return times, (gpus if gpus is not None else max(sizes, default=1.0))


def load_csv(path: Path, gpus: float | None, within: float) -> Trace:
    times, size = read_rows(path.read_text(), path.name, gpus, TRACE_ORIGIN)
    return Trace(path.stem, merge_bursts(times, within), size)


def load_elasticflow(path: Path, gpus: float, within: float) -> list[Trace]:
    traces = []
    with tarfile.open(path) as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            if not member.name.endswith(".csv"):
                continue
            text = archive.extractfile(member).read().decode()
            times, _ = read_rows(text, member.name, gpus, TRACE_ORIGIN)
            if times:
                name = Path(member.name).stem
                traces.append(Trace(name, merge_bursts(times, within), gpus))
    return traces


def synthetic(seed: int = 7, days: int = 28) -> Trace:
    """A bursty demo: sessions start more often in working hours, each a few requests."""
    rng = random.Random(seed)
    times, t = [], TRACE_ORIGIN
    end = TRACE_ORIGIN + days * DAY
    while t < end:
        hour = (t - TRACE_ORIGIN) % DAY / 3600
        weekend = (t - TRACE_ORIGIN) // DAY % 7 in (2, 3)  # the origin is a Thursday
        rate = (6 if 8 <= hour < 19 else 1) / 3600 / (3 if weekend else 1)
        t += rng.expovariate(rate)
        moment = t
        for _ in range(min(_geo(rng), 12)):
            times.append(moment)
            moment += rng.uniform(60, 400)
    return Trace("synthetic", merge_bursts(times, 60), 1.0, note="synthetic demo data")


def _geo(rng: random.Random, p: float = 0.4) -> int:
    n = 1
    while rng.random() > p:
        n += 1
    return n


# -- the simulator ----------------------------------------------------------------------


class Draw:
    """Provisioning times: a constant, or draws from an empirical list (seeded)."""

    def __init__(self, samples: Sequence[float], seed: int = 1):
        self.samples = list(samples)
        self.rng = random.Random(seed)

    def __call__(self) -> float:
        if len(self.samples) == 1:
            return self.samples[0]
        return self.rng.choice(self.samples)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples)


@dataclass
class Result:
    policy: str
    requests: int
    hits: int
    within: int  # requests ready within T
    waits: list[float]
    idle_gpu_hours: float  # held by the pool, not claimed (provisioning + ready)
    ready_gpu_hours: float  # of which ready
    days: float
    timeline: list[tuple[float, int, int]] = field(default_factory=list)  # time, target, ready

    @property
    def hit_rate(self) -> float:
        return self.hits / self.requests if self.requests else 1.0

    @property
    def attainment(self) -> float:
        return self.within / self.requests if self.requests else 1.0

    @property
    def idle_per_day(self) -> float:
        return self.idle_gpu_hours / self.days

    def wait(self, q: float) -> float:
        ordered = sorted(self.waits)
        return ordered[max(math.ceil(q / 100 * len(ordered)), 1) - 1] if ordered else 0.0


class Sim:
    """One pool replaying one trace under one policy; see the module docstring."""

    def __init__(self, trace: Trace, draw: Draw, slo: sizing.SloSettings, record: bool = False):
        self.trace, self.draw, self.slo = trace, draw, slo
        self.ready: deque[tuple[float, float]] = deque()  # (created, ready at), oldest first
        self.in_flight: list[tuple[float, float]] = []  # (ready at, created), a heap
        self.arrivals: list[float] = []
        self.provisioned: list[float] = []  # provisioning times seen so far
        self.held = 0.0  # closed instance-seconds held unclaimed
        self.ready_held = 0.0
        self.day_start = trace.start
        self.closed_today = 0.0
        self.record = record
        self.timeline: list[tuple[float, int, int]] = []

    # what policies may read
    def idle_today(self, now: float) -> float:
        """GPU-hours held unclaimed since the start of today, up to `now`."""
        live = [created for created, _ in self.ready] + [c for _, c in self.in_flight]
        seconds = self.closed_today + sum(now - max(c, self.day_start) for c in live)
        return seconds * self.trace.gpus / 3600

    def _close(self, created: float, ready_at: float, now: float) -> None:
        self.held += now - created
        self.ready_held += now - ready_at
        self.closed_today += now - max(created, self.day_start)

    def _settle(self, now: float) -> None:
        while now >= self.day_start + DAY:
            self.day_start += DAY
            self.closed_today = 0.0
        while self.in_flight and self.in_flight[0][0] <= now:
            ready_at, created = heapq.heappop(self.in_flight)
            self.ready.append((created, ready_at))
            self.provisioned.append(ready_at - created)

    def _act(self, now: float, target: int) -> None:
        actual = len(self.ready) + len(self.in_flight)
        for _ in range(target - actual):
            heapq.heappush(self.in_flight, (now + self.draw(), now))
        for _ in range(min(actual - target, len(self.ready))):
            self._close(*self.ready.popleft(), now)
        point = (target, len(self.ready))
        if self.record and (not self.timeline or self.timeline[-1][1:] != point):
            self.timeline.append((now, *point))

    def _promise(self, now: float) -> float:
        """A request finding no ready instance takes one on its way, chosen as the portal
        chooses it (`sizing.waits_for_the_oldest`, by the provisioning p50 measured so far).
        Returns the wait."""
        p50 = sizing.Provisioning.of(self.provisioned[-200:]).p50
        by_age = sorted(range(len(self.in_flight)), key=lambda k: self.in_flight[k][1])
        oldest, newest = by_age[0], by_age[-1]
        age = now - self.in_flight[oldest][1]
        chosen = oldest if sizing.waits_for_the_oldest(age, p50, self.slo.seconds) else newest
        ready_at, created = self.in_flight.pop(chosen)
        heapq.heapify(self.in_flight)
        self.held += now - created  # the user's from now on
        self.closed_today += now - max(created, self.day_start)
        return ready_at - now

    def run(self, name: str, policy: Callable[[float, Sim], int]) -> Result:
        arrivals, end = self.trace.arrivals, self.trace.end
        waits: list[float] = []
        hits = within = 0
        tick, i = self.trace.start, 0
        while i < len(arrivals) or tick <= end:
            if i < len(arrivals) and arrivals[i] <= tick:
                now = arrivals[i]
                i += 1
                self._settle(now)
                if self.ready:
                    self._close(*self.ready.popleft(), now)
                    wait = 0.0
                    hits += 1
                elif self.in_flight:
                    wait = self._promise(now)
                else:
                    wait = self.draw()
                waits.append(wait)
                self.arrivals.append(now)
                within += wait <= self.slo.seconds
            else:
                now = tick
                tick += TICK
                self._settle(now)
            self._act(now, policy(now, self))
        for created, ready_at in self.ready:
            self._close(created, ready_at, end)
        for _, created in self.in_flight:
            self.held += end - created
        gpus = self.trace.gpus / 3600
        return Result(
            name,
            len(arrivals),
            hits,
            within,
            waits,
            self.held * gpus,
            self.ready_held * gpus,
            self.trace.days,
            self.timeline,
        )


def simulate(trace, draw, slo, name, policy, record=False) -> Result:
    return Sim(trace, draw, slo, record).run(name, policy)


# -- policies ---------------------------------------------------------------------------


def static(size: int) -> Callable[[float, Sim], int]:
    return lambda now, sim: size


def weekday_weekend(weekday: int, weekend: int) -> Callable[[float, Sim], int]:
    def policy(now: float, sim: Sim) -> int:
        return weekend if datetime.fromtimestamp(now, UTC).weekday() >= 5 else weekday

    return policy


class SloPolicy:
    """`pools.sizing.size` fed with the replayed past, as the loop feeds it the portal's."""

    def __init__(self, settings: sizing.SloSettings, since: float):
        self.settings = settings
        self.since = since
        self.history: sizing.History | None = None
        self.seen = 0
        self.target: int | None = None

    def __call__(self, now: float, sim: Sim) -> int:
        if self.history is None:
            self.history = sizing.History(
                arrivals=sim.arrivals,
                provisioning=sizing.Provisioning(),
                day_start=sim.day_start,
                since=self.since,
            )
        history = self.history
        if len(sim.provisioned) != self.seen:  # measured so far, as the loop measures
            self.seen = len(sim.provisioned)
            history.provisioning = sizing.Provisioning.of(sim.provisioned[-200:])
        history.day_start = sim.day_start
        if self.settings.idle_budget is not None:
            history.idle_today = sim.idle_today(now)
        history.previous_target = self.target
        self.target = sizing.size(history, self.settings, now).target
        return self.target


def oracle(trace: Trace, draw: Draw, slo: sizing.SloSettings) -> Result:
    """Knows every arrival: each served request's instance is created one provisioning time
    before it and claimed on arrival, and only the share the SLO needs is served."""
    provisioning = sizing.Provisioning.of(draw.samples)
    share = sizing.needed_share(slo, provisioning)
    served = math.ceil(share * len(trace.arrivals) - 1e-9)
    others = len(trace.arrivals) - served
    waits = [0.0] * served + [draw.mean] * others
    within = served + round(others * provisioning.within(slo.seconds))
    held = served * draw.mean * trace.gpus / 3600
    name = "oracle (knows the future)"
    return Result(name, len(waits), served, within, waits, held, 0.0, trace.days)


# -- the benchmark ----------------------------------------------------------------------


@dataclass
class Outcome:
    trace: Trace
    rows: list[Result]
    smallest: Result | None  # the smallest static pool that meets the SLO
    slo: Result
    oracle: Result

    @property
    def ratio(self) -> float | None:
        if self.smallest is None or not self.smallest.idle_gpu_hours:
            return None
        return self.slo.idle_gpu_hours / self.smallest.idle_gpu_hours

    @property
    def ready_ratio(self) -> float | None:
        if self.smallest is None or not self.smallest.ready_gpu_hours:
            return None
        return self.slo.ready_gpu_hours / self.smallest.ready_gpu_hours

    @property
    def oracle_ratio(self) -> float | None:
        if self.smallest is None or not self.smallest.idle_gpu_hours:
            return None
        return self.oracle.idle_gpu_hours / self.smallest.idle_gpu_hours


def evaluate(trace: Trace, draw: Draw, slo: sizing.SloSettings, max_static: int = 32) -> Outcome:
    goal = slo.percent / 100
    rows, smallest = [], None
    for size in range(max_static + 1):
        result = simulate(trace, draw, slo, f"static {size}", static(size))
        rows.append(result)
        if result.attainment >= goal:
            smallest = result
            break
    top = int(smallest.policy.split()[-1]) if smallest else max_static
    best = None
    for weekday in range(top + 1):
        for weekend in range(top + 1):
            if weekday == weekend:
                continue
            result = simulate(
                trace,
                draw,
                slo,
                f"weekday {weekday} / weekend {weekend}",
                weekday_weekend(weekday, weekend),
            )
            if result.attainment >= goal and (
                best is None or result.idle_gpu_hours < best.idle_gpu_hours
            ):
                best = result
    if best is not None:
        rows.append(best)
    slo_result = simulate(
        trace,
        draw,
        slo,
        f"SLO policy ({slo.percent:g} % ≤ {slo.seconds:g} s)",
        SloPolicy(slo, trace.start),
        record=True,
    )
    rows.append(slo_result)
    oracle_result = oracle(trace, draw, slo)
    rows.append(oracle_result)
    return Outcome(trace, rows, smallest, slo_result, oracle_result)


def print_trace(outcome: Outcome, slo: sizing.SloSettings) -> None:
    trace = outcome.trace
    note = f" ({trace.note})" if trace.note else ""
    print(
        f"\n{trace.name}{note}: {len(trace.arrivals):,} requests of {trace.gpus:g} GPU "
        f"in {trace.days:.1f} days"
    )
    print(
        f"  {'policy':<32} {'requests':>8} {'warm-hit':>8} {'≤' + f'{slo.seconds:g}' + ' s':>7} "
        f"{'p50 wait':>8} {'p95 wait':>8} {'p99 wait':>8} {'idle GPU-h/day':>14}"
    )
    for r in outcome.rows:
        mark = " *" if r is outcome.smallest else ""
        print(
            f"  {r.policy + mark:<32} {r.requests:>8,} {r.hit_rate:>8.1%} {r.attainment:>7.1%} "
            f"{r.wait(50):>7.0f}s {r.wait(95):>7.0f}s {r.wait(99):>7.0f}s "
            f"{r.idle_per_day:>14.1f}"
        )
    if not any(r.policy.startswith("weekday") for r in outcome.rows):
        print("  (no weekday/weekend schedule smaller than * meets the SLO)")


def print_summary(outcomes: list[Outcome], slo: sizing.SloSettings) -> bool:
    print(
        f"\nSLO policy vs the smallest static pool meeting the SLO (*), idle GPU-hours "
        f"({slo.label}, one parameter set)"
    )
    print(
        f"  {'trace':<12} {'requests':>8} {'static*':>7} {'static* idle':>12} "
        f"{'SLO idle':>9} {'SLO met':>8} {'ratio':>6} {'oracle ratio':>12} {'ready-only':>10}"
    )
    ratios, met = [], True
    goal = slo.percent / 100
    for o in outcomes:
        ok = o.slo.attainment >= goal
        met &= ok
        ratio = o.ratio
        if ratio is not None:
            ratios.append(ratio)
        print(
            f"  {o.trace.name:<12} {o.slo.requests:>8,} "
            f"{o.smallest.policy.split()[-1] if o.smallest else '—':>7} "
            f"{o.smallest.idle_per_day if o.smallest else 0:>12.1f} "
            f"{o.slo.idle_per_day:>9.1f} {o.slo.attainment:>7.1%}{'' if ok else '!'} "
            f"{_fmt(ratio):>6} {_fmt(o.oracle_ratio):>12} {_fmt(o.ready_ratio):>10}"
        )
    median = statistics.median(ratios) if ratios else None
    oracle_median = statistics.median(
        [o.oracle_ratio for o in outcomes if o.oracle_ratio is not None] or [0]
    )
    ready_median = statistics.median(
        [o.ready_ratio for o in outcomes if o.ready_ratio is not None] or [0]
    )
    print(
        f"  {'median':<12} {'':>8} {'':>7} {'':>12} {'':>9} {'':>8} {_fmt(median):>6} "
        f"{oracle_median:>12.2f} {ready_median:>10.2f}"
    )
    worst = max(ratios) if ratios else None
    reached = met and median is not None and median <= 0.5 and worst <= 0.75
    print(
        f"  goal: SLO met on every trace, ratio ≤ 0.50 in the median and ≤ 0.75 on each: "
        f"{'reached' if reached else 'NOT reached'} (median {_fmt(median)}, worst {_fmt(worst)})"
    )
    print(
        "  ratio: SLO idle / static* idle; idle = GPU-hours held by pool instances no user "
        "has claimed,\n  provisioning included; ready-only: the same ratio counting ready "
        "time only (the pool page's older measure)"
    )
    over = [o for o in outcomes if o.ratio is not None and o.ratio > 0.5]
    if over:
        print("  Why the ratio stays above 0.50 there:")
        for o in over:
            print(f"  - {diagnose(o)}")
    return reached


QUIET = 1200  # seconds without a request after which the next one starts a burst


def diagnose(outcome: Outcome) -> str:
    """Where the SLO policy holds instances: while demand is busy and while it is quiet.

    Quiet time (no request for `QUIET` seconds) has no claims: what the pool holds then
    waits for the requests that start the next burst, which only instances created at
    least one provisioning time earlier can serve. Busy time needs what bursts claim.
    """
    trace, slo = outcome.trace, outcome.slo
    arrivals, timeline = trace.arrivals, slo.timeline
    held = {True: 0.0, False: 0.0}  # quiet? -> level-seconds
    spent = {True: 0.0, False: 0.0}
    step, moment = 0, trace.start
    while moment < trace.end:
        while step + 1 < len(timeline) and timeline[step + 1][0] <= moment:
            step += 1
        last = bisect_right(arrivals, moment)
        quiet = last == 0 or moment - arrivals[last - 1] >= QUIET
        spent[quiet] += TICK
        held[quiet] += (timeline[step][1] if timeline else 0) * TICK
        moment += TICK
    starts = sum(
        1
        for k, a in enumerate(arrivals)
        if any(
            j == 0 or arrivals[j] - arrivals[j - 1] >= QUIET
            for j in range(bisect_right(arrivals, a - 300), k + 1)
        )
    )
    size = int(outcome.smallest.policy.split()[-1])
    total = spent[True] + spent[False]
    busy, quiet = spent[False] / total, spent[True] / total
    busy_level = held[False] / spent[False] if spent[False] else 0.0
    quiet_level = held[True] / spent[True] if spent[True] else 0.0
    needed_quiet = max((0.5 - busy * busy_level / size) / quiet * size, 0.0) if quiet else 0.0
    return (
        f"{trace.name}: busy (a request in the last {QUIET // 60} min) {busy:.0%} of the time, "
        f"holding {busy_level:.1f} (static* {size}); quiet {quiet:.0%}, holding "
        f"{quiet_level:.1f} for the {starts / len(arrivals):.0%} of requests that open a "
        f"burst (their first 5 min); ratio 0.50 would need ≤ {needed_quiet:.1f} when quiet"
    )


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


# -- the chart --------------------------------------------------------------------------


def chart_svg(outcome: Outcome, week: int, width: int = 900) -> str:
    """One week of the trace: requests per hour (top), and the SLO policy's target and
    ready instances against the smallest static pool meeting the SLO (bottom)."""
    trace = outcome.trace
    start = trace.start + week * WEEK
    end = start + WEEK
    pad, title_h, bars_h, gap, levels_h, axis_h = 44, 28, 80, 18, 150, 24
    height = title_h + bars_h + gap + levels_h + axis_h
    plot_w = width - 2 * pad
    hours = [0] * (7 * 24)
    for t in trace.arrivals:
        if start <= t < end:
            hours[int((t - start) // 3600)] += 1
    size = int(outcome.smallest.policy.split()[-1]) if outcome.smallest else 0
    timeline = [row for row in outcome.slo.timeline if row[0] < end]
    before = [row for row in timeline if row[0] < start]
    steps = ([(start, *before[-1][1:])] if before else []) + [r for r in timeline if r[0] >= start]
    bars_max = max(1, *hours)
    level_max = max([1, size, *(max(t, r) for _, t, r in steps)]) + 1
    levels_top = title_h + bars_h + gap

    def x(t: float) -> float:
        return pad + (t - start) / WEEK * plot_w

    def y_bar(n: float) -> float:
        return title_h + bars_h - n / bars_max * bars_h

    def y_level(v: float) -> float:
        return levels_top + levels_h - v / level_max * levels_h

    def path(index: int) -> str:
        points, last = [], None
        for row in steps:
            if last is not None:
                points.append(f"{x(row[0]):.1f},{y_level(last):.1f}")
            points.append(f"{x(row[0]):.1f},{y_level(row[index]):.1f}")
            last = row[index]
        if last is not None:
            points.append(f"{x(end):.1f},{y_level(last):.1f}")
        return " ".join(points)

    bar_w = plot_w / len(hours)
    bars = "".join(
        f'<rect x="{pad + h * bar_w:.1f}" y="{y_bar(n):.1f}" width="{bar_w:.2f}" '
        f'height="{y_bar(0) - y_bar(n):.1f}" fill="#9ecae1"/>'
        for h, n in enumerate(hours)
        if n
    )
    days = "".join(
        f'<line x1="{x(start + d * DAY):.1f}" y1="{title_h}" x2="{x(start + d * DAY):.1f}" '
        f'y2="{levels_top + levels_h}" stroke="#eee"/>'
        f'<text x="{x(start + d * DAY) + 4:.1f}" y="{height - 8}" font-size="11" fill="#555">'
        f"{datetime.fromtimestamp(start + d * DAY, UTC):%a %d %b}</text>"
        for d in range(7)
    )
    labels = (
        f'<text x="{pad - 6}" y="{y_bar(bars_max) + 10:.1f}" font-size="11" '
        f'text-anchor="end" fill="#555">{bars_max}</text>'
        f'<text x="{pad - 6}" y="{y_bar(0):.1f}" font-size="11" text-anchor="end" '
        f'fill="#555">0</text>'
        + "".join(
            f'<text x="{pad - 6}" y="{y_level(v) + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="#555">{v}</text>'
            for v in range(0, level_max + 1, max(level_max // 4, 1))
        )
    )
    title = (
        f"{trace.name}, week {week + 1}. Top: requests per hour. Bottom: SLO policy target "
        f"(orange), ready instances (green), smallest static pool meeting the SLO (dashed, "
        f"{size})"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" role="img" '
        f'aria-label="{title}">'
        f'<rect width="{width}" height="{height}" fill="#fff"/>'
        f'<text x="{pad}" y="18" font-size="12" fill="#333">{title}</text>'
        f"{days}{bars}{labels}"
        f'<line x1="{pad}" y1="{y_level(size):.1f}" x2="{pad + plot_w}" '
        f'y2="{y_level(size):.1f}" stroke="#555" stroke-dasharray="6 4"/>'
        f'<polyline points="{path(1)}" fill="none" stroke="#e6550d" stroke-width="1.5"/>'
        f'<polyline points="{path(2)}" fill="none" stroke="#31a354" stroke-width="1"/>'
        f'<rect x="{pad}" y="{title_h}" width="{plot_w}" height="{bars_h}" fill="none" '
        f'stroke="#ccc"/>'
        f'<rect x="{pad}" y="{levels_top}" width="{plot_w}" height="{levels_h}" fill="none" '
        f'stroke="#ccc"/>'
        "</svg>\n"
    )


# -- command line -----------------------------------------------------------------------


def parse_provisioning(value: str) -> list[float]:
    path = Path(value)
    text = path.read_text().replace(",", "\n").split() if path.is_file() else value.split(",")
    samples = [float(v) for v in text if v.strip()]
    if not samples or min(samples) < 0:
        raise argparse.ArgumentTypeError("give seconds: 300, or 240,300,420, or a file of them")
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="*", type=Path, help="arrivals: time[,gpus[,duration]]")
    parser.add_argument(
        "--provisioning",
        type=parse_provisioning,
        default=[300.0],
        help="seconds: a constant (300), a list (240,300,420) or a file of samples",
    )
    parser.add_argument("--gpus", type=float, default=1, help="the job size to replay")
    parser.add_argument("--merge-within", type=float, default=60)
    parser.add_argument("--min-requests", type=int, default=1000)
    parser.add_argument("--percent", type=float, default=95)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--budget", type=float, default=None, help="idle GPU-h per day")
    parser.add_argument("--min", type=int, default=0)
    parser.add_argument("--max", type=int, default=16)
    parser.add_argument("--chart", type=Path, default=None, help="write an SVG chart here")
    parser.add_argument("--chart-trace", default="", help="the trace to chart (default: first)")
    parser.add_argument("--chart-week", type=int, default=2, help="0 is the first week")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    if args.csv:
        traces = [load_csv(path, args.gpus, args.merge_within) for path in args.csv]
        source = ", ".join(str(p) for p in args.csv)
    elif TRACES.exists():
        traces = load_elasticflow(TRACES, args.gpus, args.merge_within)
        source = f"ElasticFlow traces ({TRACES.name})"
    else:
        traces = [synthetic()]
        source = f"no CSV given and {TRACES} is missing: a synthetic demo trace"
    kept = [t for t in traces if len(t.arrivals) >= args.min_requests]
    skipped = [f"{t.name} ({len(t.arrivals)})" for t in traces if t not in kept]
    if not kept and traces:
        kept, skipped = traces, []  # a small CSV or the demo: replay it anyway
    slo = sizing.SloSettings(
        percent=args.percent,
        seconds=args.seconds,
        idle_budget=args.budget,
        min_size=args.min,
        max_size=args.max,
        gpu_share=args.gpus,
    )
    draw_samples = args.provisioning
    print(f"Data: {source}; requests of {args.gpus:g} GPU, merged within {args.merge_within:g} s")
    print(
        f"Provisioning: {', '.join(f'{s:g}' for s in draw_samples[:8])}"
        f"{' …' if len(draw_samples) > 8 else ''} s; loop every {TICK} s and after each claim"
    )
    if skipped:
        print(f"Skipped (fewer than {args.min_requests:,} requests): {', '.join(skipped)}")
    started = clock.perf_counter()
    outcomes = []
    for trace in kept:
        outcome = evaluate(trace, Draw(draw_samples, args.seed), slo)
        outcomes.append(outcome)
        print_trace(outcome, slo)
    print_summary(outcomes, slo)
    print(f"\n({clock.perf_counter() - started:.1f} s; * = smallest static pool meeting the SLO)")
    if args.chart and outcomes:
        chosen = next((o for o in outcomes if o.trace.name == args.chart_trace), outcomes[0])
        week = min(args.chart_week, max(int(chosen.trace.days // 7) - 1, 0))
        args.chart.parent.mkdir(parents=True, exist_ok=True)
        args.chart.write_text(chart_svg(chosen, week))
        print(f"Chart of {chosen.trace.name}, week {week + 1}: {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
