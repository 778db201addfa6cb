"""Sizing a warm pool by a service-level objective: "P % of requests ready within T seconds".

`size(history, settings, now)` is the policy. It is pure (plain data in, plain data out),
so the control loop (`pools.warmpool`) and the simulator (`bench.pools`) call this very
function: the loop with the portal's own history, the simulator with a replayed trace.

A request is within the SLO when a warm instance is ready for it (a warm hit), or when
on-demand provisioning happens to take at most T seconds. So a share
`needed = (P - F(T)) / (1 - F(T))` of the requests must be warm hits, where F(T) is the
measured share of provisionings on the infrastructure that took at most T seconds.

An instance created at `s` is ready at `s + lead` (lead = provisioning p90). A request that
finds no ready instance takes one on its way (`pools.claims.promise`), and is within the
SLO if that one is ready within T; so the level (ready + provisioning) held at `s` must
cover every request that arrives before `s + lead - T` (`reach`).

Demand comes in bursts, so the level is a function of the *state* of demand,
which only the past defines: the time since the last request (9 buckets, 5 min … 10.7 h),
the requests in the last hour (5 buckets) and the gap between the last two requests
(4 buckets: a stream of requests, or a lone one).

Once a day, from the requests of the last `HISTORY_DAYS` days, the policy learns:

1. how long demand spent in each state (`occupancy`);
2. for each past request at `a`, the state at `a - reach` and the number of requests in
   `(a - reach, a]`: the level that state needed for this request to be served within T
   (`needs`). Levels go up to the pool's maximum; a request that needed more is one no
   level covers, and when those keep the levels from the goal, the SLO is at risk;
3. the cheapest levels for more and more of those requests (`monotone_moves`). Levels
   are monotone: a state with a more recent last request, more requests in the last hour
   or a shorter gap never gets less than a quieter one, so a state the history seldom
   showed still gets what its quieter neighbours get. Each move raises a state and, by
   that rule, every busier state with it; it is the move that wins the most requests per
   level-second (idle GPU time) *counting the busier states it raises*, so the price of
   a move is what the pool will really hold;
4. the goal: the share of past requests the levels must cover. Levels fitted to the past
   cover the future less well than the past, by a gap that depends on the demand, so the
   goal is validated: the smallest goal whose levels, learned without the last
   `VALIDATION_DAYS` days, would have covered `needed` of those days.

Each pass looks up the level of the current state: it rises at once with a claim and
decays as demand stops. Then the admin's bounds apply: minimum, maximum, and the idle
budget, which wins over the SLO (the reason then says the SLO is at risk). With less
than `MIN_HISTORY` of history the level is an Erlang-B estimate at the highest recent
request rate.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate

DAY = 86_400
HISTORY_DAYS = 28
MIN_HISTORY = 2 * DAY  # less than this: the Erlang-B fallback
# The validated levels must cover the needed share of the last VALIDATION_DAYS days in
# full. (Allowing them 0.25-0.5 % less, the ElasticFlow cluster02 missed the SLO: 95.0 %
# rounded, 94.9 %, once requests took instances on their way.)
VALIDATION_DAYS = 7
GOAL_STEP = 0.0025
LEAD_QUANTILE = 90  # provisioning percentile taken as the time an instance needs
DEFAULT_PROVISIONING = 300.0  # seconds, assumed until the infrastructure has history
# The most instances the Erlang-B estimate asks for: ten times the largest pool an admin
# may allow (`profiles.models.MAX_POOL_SIZE`), so it says what the SLO asks beyond the
# maximum, and a share of 100 % (which no number of servers meets) still ends.
MAX_WANTED = 1000

# The state of demand at a moment: time since the last request, requests in the last hour.
DELTA_EDGES = (300, 600, 1200, 2400, 4800, 9600, 19200, 38400)
RECENT_WINDOW = 3600
RECENT_EDGES = (1, 2, 4, 8)
GAP_EDGES = (120, 600, 3600)  # between the last two requests: a stream, or a lone one
_DELTAS = len(DELTA_EDGES) + 1
_RECENTS = len(RECENT_EDGES) + 1
_GAPS = len(GAP_EDGES) + 1
STATES = _DELTAS * _RECENTS * _GAPS
STATE_RANGE = range(STATES)


# -- plain data in ----------------------------------------------------------------------


@dataclass(frozen=True)
class SloSettings:
    """What the administrator asks of one warm pool."""

    percent: float = 95.0  # of requests ready within `seconds`
    seconds: float = 60.0
    idle_budget: float | None = None  # GPU-hours per day the pool may idle; None: no limit
    min_size: int = 0
    max_size: int = 10
    gpu_share: float = 1.0  # GPUs one instance holds; a MIG slice counts as its share

    @property
    def label(self) -> str:
        return f"SLO {self.percent:g} % ≤ {self.seconds:g} s"


@dataclass(frozen=True)
class Provisioning:
    """Measured provisioning times (seconds) on one infrastructure, sorted ascending."""

    samples: tuple[float, ...] = ()

    @classmethod
    def of(cls, samples) -> Provisioning:
        return cls(tuple(sorted(float(s) for s in samples)))

    @property
    def measured(self) -> bool:
        return bool(self.samples)

    def quantile(self, q: float) -> float:
        """Nearest-rank percentile (q in 0..100); the default when nothing was measured."""
        if not self.samples:
            return DEFAULT_PROVISIONING
        rank = max(math.ceil(q / 100 * len(self.samples)), 1)
        return self.samples[rank - 1]

    def within(self, seconds: float) -> float:
        """The share of provisionings that took at most `seconds`."""
        if not self.samples:
            return 1.0 if seconds >= DEFAULT_PROVISIONING else 0.0
        return bisect_right(self.samples, seconds) / len(self.samples)

    @property
    def p50(self) -> float:
        return self.quantile(50)

    @property
    def quantile90(self) -> float:
        return self.quantile(90)


@dataclass
class History:
    """What the policy knows: the past only.

    `arrivals` are the epoch seconds of every request of the profile, ascending, all at or
    before `now`; `since` is when the record starts (nothing is known before). `idle_today`
    is the GPU-hours the pool has idled since `day_start`, the start of the budget's day;
    `day_end` is when that day ends: the next local midnight, 23 or 25 hours later on the
    days clocks change (None: 24 hours later).
    """

    arrivals: Sequence[float]
    provisioning: Provisioning
    day_start: float
    since: float
    idle_today: float = 0.0
    day_end: float | None = None
    previous_target: int | None = None
    # What was learned for a day, kept while the same History object is reused (simulator).
    memo: dict = field(default_factory=dict, repr=False, compare=False)


# -- plain data out ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sizing:
    target: int
    wanted: int  # what the SLO asks before the minimum, maximum and budget
    reason: str
    at_risk: str = ""  # why the SLO may be missed, when it may


# -- the demand state -------------------------------------------------------------------


def state_at(arrivals: Sequence[float], moment: float) -> int:
    """The state after every request at or before `moment`."""
    j = bisect_right(arrivals, moment)
    delta = _DELTAS - 1 if j == 0 else bisect_right(DELTA_EDGES, moment - arrivals[j - 1])
    recent = bisect_right(RECENT_EDGES, j - bisect_right(arrivals, moment - RECENT_WINDOW, 0, j))
    gap = _GAPS - 1 if j < 2 else bisect_right(GAP_EDGES, arrivals[j - 1] - arrivals[j - 2])
    return (delta * _RECENTS + recent) * _GAPS + gap


def describe_state(state: int) -> str:
    rest, gap = divmod(state, _GAPS)
    delta, recent = divmod(rest, _RECENTS)
    if delta == _DELTAS - 1:
        parts = [f"no request for {_duration(DELTA_EDGES[-1])}"]
    else:
        parts = [f"last request under {_duration(DELTA_EDGES[delta])} ago"]
        if gap < _GAPS - 1:
            parts.append(f"under {_duration(GAP_EDGES[gap])} after the one before")
    if recent:
        low = RECENT_EDGES[recent - 1]
        high = RECENT_EDGES[recent] - 1 if recent < len(RECENT_EDGES) else None
        count = f"{low}" if high == low else f"{low}–{high}" if high else f"{low}+"
        parts.append(f"{count} in the last hour")
    return ", ".join(parts)


def _breakpoints(arrivals: Sequence[float], start: float, end: float) -> list[float]:
    """Moments in (start, end) where the state may change; it is constant in between.

    A request starts a new state when it arrives, when the time since it crosses a bucket
    edge (unless another request came first) and when it leaves the last hour.
    """
    points = []
    last = bisect_left(arrivals, end)
    for a in arrivals[bisect_right(arrivals, start - RECENT_WINDOW) : last]:
        if a > start:
            points.append(a)
        if start < a + RECENT_WINDOW < end:
            points.append(a + RECENT_WINDOW)
    for k in range(max(bisect_right(arrivals, start) - 1, 0), last):
        following = arrivals[k + 1] if k + 1 < len(arrivals) else math.inf
        for edge in DELTA_EDGES:
            moment = arrivals[k] + edge
            if moment >= following or moment >= end:
                break
            if moment > start:
                points.append(moment)
    return sorted(set(points))


def occupancy(arrivals: Sequence[float], start: float, end: float) -> list[float]:
    """Seconds spent in each state during [start, end)."""
    spent = [0.0] * STATES
    previous = start
    for point in [*_breakpoints(arrivals, start, end), end]:
        spent[state_at(arrivals, previous)] += point - previous
        previous = point
    return spent


def needs(
    arrivals: Sequence[float], start: float, end: float, reach: float, cap: int
) -> list[list[int]]:
    """Per state, how many requests in [start + reach, end) needed each level up to `cap`
    (`found[state][level]`), and in a last column (`found[state][cap + 1]`) how many
    needed more: no level the pool may hold covers those.

    A request at `a` is served within T when the level held at `a - reach` was at least
    the number of requests in `(a - reach, a]`, itself included: an instance created then
    is ready by `a + T`.
    """
    found = [[0] * (cap + 2) for _ in range(STATES)]
    for k in range(bisect_left(arrivals, start + reach), bisect_left(arrivals, end)):
        moment = arrivals[k] - reach
        level = k - bisect_right(arrivals, moment) + 1
        found[state_at(arrivals, moment)][min(level, cap + 1)] += 1
    return found


def busier_sums(values: Sequence[float]) -> list[float]:
    """For each state, the sum of `values` over it and every busier state.

    The busier states of a state form a box of the (delta, recent, gap) grid: a more
    recent last request, at least as many requests in the last hour, a shorter gap. So
    three running sums, one along each axis, add up every box at once.
    """
    sums = list(values)
    for row in range(0, STATES, _GAPS):  # shorter gaps first
        for state in range(row + 1, row + _GAPS):
            sums[state] += sums[state - 1]
    for delta in range(_DELTAS):  # more requests in the last hour first
        for recent in range(_RECENTS - 2, -1, -1):
            row = (delta * _RECENTS + recent) * _GAPS
            for gap in range(_GAPS):
                sums[row + gap] += sums[row + _GAPS + gap]
    stride = _RECENTS * _GAPS  # more recent last request first
    for state in range(stride, STATES):
        sums[state] += sums[state - stride]
    return sums


def raise_busier(levels: list[int], state: int, level: int) -> None:
    """Raise `state` and every busier state to at least `level`."""
    delta_limit, rest = divmod(state, _RECENTS * _GAPS)
    recent_limit, gap_limit = divmod(rest, _GAPS)
    for delta in range(delta_limit + 1):
        for recent in range(recent_limit, _RECENTS):
            for gap in range(gap_limit + 1):
                busier = (delta * _RECENTS + recent) * _GAPS + gap
                levels[busier] = max(levels[busier], level)


def monotone_moves(spent: Sequence[float], found: list[list[int]]) -> list[tuple[tuple, int]]:
    """The cheapest monotone levels (in level-seconds) for more and more of `found`.

    Greedy: each move raises one state to a level and every busier state with it (levels
    never decrease with activity), and is the move with the most requests won per
    level-second paid, counting what the busier states win and pay too. Returns the
    levels after each move with the requests they cover. The last column of `found`
    (requests that needed more than the cap, `needs`) is never covered.
    """
    covered_at = [list(accumulate(row)) for row in found]  # covered_at[state][level]
    weight = [max(seconds, 1.0) for seconds in spent]  # a state never seen costs little
    top = max((level for row in found for level, n in enumerate(row[:-1]) if n), default=0)
    levels = [0] * STATES
    covered = sum(row[0] for row in found)
    moves = []
    while True:
        best = None  # (gained, paid, state, level)
        for level in range(1, top + 1):
            below = [levels[state] < level for state in STATE_RANGE]
            gained = busier_sums(
                [row[level] - row[levels[s]] if below[s] else 0 for s, row in enumerate(covered_at)]
            )
            if not any(gained):
                continue
            paid = busier_sums(
                [(level - levels[s]) * weight[s] if below[s] else 0.0 for s in STATE_RANGE]
            )
            for state in STATE_RANGE:
                won = gained[state]
                if won > 0 and (best is None or won * best[1] > best[0] * paid[state]):
                    best = (won, paid[state], state, level)
        if best is None:
            return moves
        won, _, state, level = best
        raise_busier(levels, state, level)
        covered += won
        moves.append((tuple(levels), covered))


# -- the policy -------------------------------------------------------------------------


def coverage(levels: list[int], found: list[list[int]]) -> float:
    total = sum(map(sum, found))
    if not total:
        return 1.0
    return sum(sum(row[: level + 1]) for row, level in zip(found, levels, strict=True)) / total


@dataclass
class Model:
    """What one day's policy learned: time per state, the requests' needs, the moves."""

    spent: list[float]
    found: list[list[int]]
    moves: list[tuple[tuple, int]]  # monotone levels, requests they cover
    requests: int
    days: float
    covers: list[int] = field(init=False, repr=False)
    beyond: int = field(init=False)  # requests that needed more than the maximum

    def __post_init__(self) -> None:
        self.covers = [covered for _, covered in self.moves]
        self.beyond = sum(row[-1] for row in self.found)

    def levels(self, goal: float) -> tuple[int, ...]:
        """The first levels of the moves that cover `goal` of the learned requests (all of
        the moves when none does; none when no request is wanted)."""
        wanted = goal * self.requests - 1e-9
        if not self.moves or wanted <= 0:
            return (0,) * STATES
        return self.moves[min(bisect_left(self.covers, wanted), len(self.moves) - 1)][0]

    def reaches(self, goal: float) -> bool:
        """Whether levels within the maximum cover `goal` of the learned requests (they
        cover all but those that needed more)."""
        return self.requests - self.beyond >= goal * self.requests - 1e-9


def needed_share(settings: SloSettings, provisioning: Provisioning) -> float:
    """The share of requests that must be warm hits for the SLO to hold."""
    on_demand = provisioning.within(settings.seconds)
    wanted = settings.percent / 100
    if on_demand >= wanted:
        return 0.0
    return (wanted - on_demand) / (1 - on_demand)


def model_for(history: History, start: float, end: float, reach: float, cap: int) -> Model:
    """What the requests in [start, end) teach, with levels up to `cap` (memoised while
    `history` is reused)."""
    key = ("model", start, end, reach, cap)
    if key not in history.memo:
        spent = [0.0] * STATES
        for day_start in _days(start, end):
            day_key = ("occupancy", day_start, min(day_start + DAY, end))
            if day_key not in history.memo:
                history.memo[day_key] = occupancy(history.arrivals, *day_key[1:])
            spent = [a + b for a, b in zip(spent, history.memo[day_key], strict=True)]
        found = needs(history.arrivals, start, end, reach, cap)
        moves = monotone_moves(spent, found)
        history.memo[key] = Model(spent, found, moves, sum(map(sum, found)), (end - start) / DAY)
    return history.memo[key]


def learn(history: History, reach: float, wanted: float, cap: int) -> tuple[Model, float] | None:
    """The model of today (from the days before it) and the goal to give it, with levels
    of at most `cap` instances (the pool's maximum).

    The goal is the share of the learned requests to cover. In-sample it would be
    `wanted`; but levels learned from the past cover the future less well than the past,
    by a gap that depends on the trace. So the goal is validated: levels learned without
    the last `VALIDATION_DAYS` days must cover `wanted` of those days' requests.

    Each move tries every level up to the highest a request needed, so `cap` bounds the
    cost: at the largest maximum (`profiles.models.MAX_POOL_SIZE`, 100), 28 days of
    130,000 requests in bursts of up to 100 take some 6 s to learn, once a day.
    """
    day = history.day_start
    start = max(history.since, day - HISTORY_DAYS * DAY)
    if day - start < MIN_HISTORY:
        return None
    model = model_for(history, start, day, reach, cap)
    key = ("goal", day, start, reach, round(wanted, 4), cap)
    if key not in history.memo:
        split = day - VALIDATION_DAYS * DAY
        goal = wanted
        if split - start >= MIN_HISTORY:
            older = model_for(history, start, split, reach, cap)
            recent = needs(history.arrivals, split, day, reach, cap)
            for step in range(int((1 - wanted) / GOAL_STEP) + 1):
                goal = min(wanted + step * GOAL_STEP, 1.0)
                if coverage(older.levels(goal), recent) >= wanted:
                    break
        history.memo[key] = goal
    return model, history.memo[key]


def _days(start: float, end: float) -> list[float]:
    """Day starts (aligned on `end`) covering [start, end)."""
    starts, day = [], end
    while day > start:
        day -= DAY
        starts.append(max(day, start))
    return starts[::-1]


def waits_for_the_oldest(age: float, p50: float, within: float) -> bool:
    """Which instance on its way a request that finds none ready waits for (the portal,
    `pools.promises`, and the simulator alike): the oldest, `age` seconds old, when it
    should be ready within T (`within`) by the provisioning p50; else the newest, which
    still beats a new provisioning and leaves the sooner ones for the requests to come."""
    return p50 - age <= within


def erlang_b(servers: int, load: float) -> float:
    """The share of arrivals that find all `servers` busy (offered `load` in Erlangs)."""
    blocked = 1.0
    for k in range(1, servers + 1):
        blocked = load * blocked / (k + load * blocked)
    return blocked


FALLBACK_WINDOWS = (300, 900, RECENT_WINDOW, DAY)


def fallback_level(history: History, now: float, reach: float, needed: float) -> tuple[int, str]:
    """Too little history to learn from: Erlang B at the highest recent request rate.

    The rate is the highest of the last 5 min, 15 min, hour and day, so a burst raises the
    level at once and a quiet day keeps a small one.
    """
    arrivals = history.arrivals
    end = bisect_right(arrivals, now)
    counts = [end - bisect_right(arrivals, now - w, 0, end) for w in FALLBACK_WINDOWS]
    rate = max(n / w for n, w in zip(counts, FALLBACK_WINDOWS, strict=True))
    load = rate * reach
    level = 0  # what the SLO asks, even beyond the pool's maximum
    while level < MAX_WANTED and erlang_b(level, load) > 1 - needed:
        level += 1
    return level, f"little history: {counts[2]} requests in the last hour, {counts[3]} in 24 h"


def size(history: History, settings: SloSettings, now: float) -> Sizing:
    """The pool's target at `now`: the least idle cost that keeps the SLO, within bounds."""
    provisioning = history.provisioning
    lead = provisioning.quantile(LEAD_QUANTILE)
    reach = max(lead - settings.seconds, 0.0)  # instances on their way serve within T too
    needed = needed_share(settings, provisioning)
    measured = "" if provisioning.measured else " (assumed)"
    facts = [f"provisioning p90 {lead:.0f} s{measured}"]
    risks = []  # why the SLO may be missed
    if needed == 0:
        wanted = 0
        facts.insert(0, f"on-demand provisioning alone meets it (p50 {provisioning.p50:.0f} s)")
    else:
        learned = learn(history, reach, needed, settings.max_size)
        if learned is None:
            wanted, why = fallback_level(history, now, reach, needed)
        else:
            model, goal = learned
            state = state_at(history.arrivals, now)
            wanted = model.levels(goal)[state]
            why = f"{describe_state(state)}; {_learned_from(model, goal)}"
            if not model.reaches(goal):
                risks.append(
                    f"{model.beyond} of the {model.requests} requests learned from needed "
                    f"more than the maximum of {settings.max_size}"
                )
        facts.insert(0, why)
    target = min(max(wanted, settings.min_size), settings.max_size)
    bounds = [f"the SLO asks for {wanted}"]  # and what binds it
    if wanted > settings.max_size:
        bounds.append(f"the maximum is {settings.max_size}")
    if settings.idle_budget is not None:
        cap, budget = budget_cap(history, settings, now)
        facts.append(budget)
        if target > cap:
            bounds.insert(0, f"the idle budget allows {cap}")
            target = cap
    if len(bounds) > 1:
        risks.insert(0, ", ".join(bounds))
    at_risk = "; ".join(risks)
    previous = history.previous_target
    was = f" (was {previous})" if previous is not None and previous != target else ""
    reason = f"{settings.label}: target {target}{was}: " + ", ".join(facts)
    if at_risk:
        reason = f"SLO at risk: {at_risk}. " + reason
    return Sizing(target=target, wanted=wanted, reason=reason, at_risk=at_risk)


def _learned_from(model: Model, goal: float) -> str:
    if not model.requests:
        return f"no request history yet (none in {model.days:.0f} d): nothing to learn from"
    learned = f"levels learned from {model.requests} requests in {model.days:.0f} d"
    if model.reaches(goal):
        return f"{learned}, set to cover {goal:.1%} of them"
    covered = (model.requests - model.beyond) / model.requests
    return f"{learned}, covering {covered:.1%} of them at most, short of the goal of {goal:.1%}"


def budget_cap(history: History, settings: SloSettings, now: float) -> tuple[int, str]:
    """The most instances that cannot overrun today's idle budget, even if all stay idle
    until the day ends (`History.day_end`).

    The minimum size is always affordable (the settings form checks min x share x 24 h
    fits in the budget), so only the part above it is limited by what is left today.
    """
    budget = settings.idle_budget or 0.0
    text = f"budget {budget:g} GPU-h/day, {history.idle_today:.1f} used today"
    if settings.gpu_share <= 0:
        return settings.max_size, text  # instances without GPUs idle no GPU-hours
    day_end = history.day_start + DAY if history.day_end is None else history.day_end
    hours_left = max((day_end - now) / 3600, 1 / 60)
    floor_cost = settings.min_size * settings.gpu_share * hours_left
    spare = budget - history.idle_today - floor_cost
    affordable = spare / (settings.gpu_share * hours_left)
    # Clamped to the room below the maximum before floor(): a huge budget gives inf here
    # (1e308 GPU-hours in the day's last minute), and floor() of inf or NaN raises.
    room = max(settings.max_size - settings.min_size, 0)
    if math.isfinite(affordable):
        extra = min(max(math.floor(affordable + 1e-9), 0), room)
    else:
        extra = room if affordable > 0 else 0
    return settings.min_size + extra, text


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    hours = seconds / 3600
    return f"{hours:.0f} h" if hours == int(hours) else f"{hours:.1f} h"
