"""The SLO sizing policy (`pools.sizing`): pure functions of (history, settings, now)."""

from __future__ import annotations

import itertools
import random

import pytest

from pools import sizing
from pools.sizing import DAY, History, Provisioning, SloSettings

START = 1_700_006_400.0  # a midnight (UTC)
SLOW = Provisioning.of([280, 300, 300, 310, 320])  # p90 320 s: much slower than 60 s
FAST = Provisioning.of([20, 25, 30, 30, 35])  # every provisioning within 60 s


def office_hours(days: int, seed: int = 3) -> list[float]:
    """Office-hours demand: 09:00–18:00 a lone request every 20–40 min, and twice a day a
    burst of 8 requests 70 s apart (a sweep); nothing at night."""
    rng = random.Random(seed)
    arrivals = []
    for day in range(days):
        opening = START + day * DAY + 9 * 3600
        moment = opening + rng.uniform(0, 600)
        while moment < opening + 9 * 3600:
            arrivals.append(moment)
            moment += rng.uniform(1200, 2400)
        for burst in (opening + rng.uniform(3600, 7200), opening + rng.uniform(18000, 25000)):
            arrivals.extend(burst + k * 70 for k in range(8))
    return sorted(arrivals)


def history(arrivals, now, provisioning=SLOW, **fields) -> History:
    past = [a for a in arrivals if a <= now]
    return History(
        arrivals=past,
        provisioning=provisioning,
        day_start=(now - START) // DAY * DAY + START,
        since=START,
        **fields,
    )


def size(arrivals, now, settings=None, provisioning=SLOW, **fields) -> sizing.Sizing:
    settings = settings or SloSettings()
    return sizing.size(history(arrivals, now, provisioning, **fields), settings, now)


DEMAND = office_hours(21)
DAY_20 = START + 20 * DAY


def first_request_after(moment: float) -> float:
    return next(a for a in DEMAND if a > moment)


def test_it_keeps_no_pool_when_on_demand_provisioning_already_meets_the_slo():
    result = size(DEMAND, DAY_20 + 10 * 3600, provisioning=FAST)
    assert result.target == 0
    assert "on-demand provisioning alone meets it" in result.reason


def test_provisioning_slower_than_the_slo_makes_it_keep_warm_instances():
    during_a_burst = first_request_after(DAY_20 + 10 * 3600) + 1
    result = size(DEMAND, during_a_burst)
    assert result.target >= 2
    assert "provisioning p90 320 s" in result.reason


def test_the_needed_warm_share_counts_on_demand_provisionings_within_the_slo():
    half = Provisioning.of([30, 40, 300, 400])  # half of them within 60 s
    assert sizing.needed_share(SloSettings(percent=95), half) == pytest.approx(0.9)
    assert sizing.needed_share(SloSettings(percent=95), SLOW) == pytest.approx(0.95)
    assert sizing.needed_share(SloSettings(percent=95), FAST) == 0


def burst_after(moment: float) -> float:
    """The first request of the next burst (8 requests 70 s apart) after `moment`."""
    return next(a for a, b in itertools.pairwise(DEMAND) if a > moment and b - a == 70)


def test_a_burst_of_claims_raises_the_target_at_once_and_it_decays_when_demand_stops():
    opener = burst_after(DAY_20 + 9 * 3600)
    before = size(DEMAND, opener - 1).target
    during = size(DEMAND, opener + 2 * 70 + 1).target  # three requests in 141 s
    assert during > before
    last_of_day = max(a for a in DEMAND if a < DAY_20 + DAY)
    later = [size(DEMAND, last_of_day + hours * 3600).target for hours in (0.01, 1, 3, 8)]
    assert later == sorted(later, reverse=True)
    assert later[-1] < later[0]


def test_quiet_nights_keep_the_fewest_instances():
    night = size(DEMAND, DAY_20 + 3 * 3600)  # 9 hours after the last request
    day = size(DEMAND, first_request_after(DAY_20 + 11 * 3600) + 1)
    assert night.target < day.target
    assert night.target <= 1
    assert "no request for" in night.reason or "last request under" in night.reason


def test_a_budget_that_binds_caps_the_target_and_says_the_slo_is_at_risk():
    moment = first_request_after(DAY_20 + 15 * 3600) + 1
    free = size(DEMAND, moment)
    assert free.target >= 2
    budget = SloSettings(idle_budget=20, min_size=0)
    capped = size(DEMAND, moment, settings=budget, idle_today=18.0)  # 2 GPU-h left for 9 h
    assert capped.target == 0
    assert capped.wanted == free.wanted
    assert capped.at_risk.startswith("the idle budget allows 0")
    assert capped.reason.startswith("SLO at risk: the idle budget allows 0")
    assert "budget 20 GPU-h/day, 18.0 used today" in capped.reason


def test_the_budget_cap_assumes_every_instance_idles_until_midnight():
    h = history(DEMAND, DAY_20 + 14 * 3600, idle_today=12.0)  # 10 h left today
    settings = SloSettings(idle_budget=40, min_size=1, gpu_share=0.5)
    cap, _ = sizing.budget_cap(h, settings, DAY_20 + 14 * 3600)
    # 40 - 12 used - the minimum's 1 x 0.5 x 10 h = 23 GPU-h for 10 h at 0.5 GPU each
    assert cap == 1 + 4


@pytest.mark.parametrize(
    ("hours", "o_clock", "cap"),
    [
        (25, 23.5, 1),  # clocks went back: 1.5 h left at 23:30 by the clock (24.5 h in)
        (25, 24.5, 4),  # 00:30 past the clock's 23:30: half an hour left
        (23, 21.5, 1),  # clocks went forward: 1.5 h left at 22:30 by the clock (21.5 h in)
        (24, 23.5, 4),
    ],
)
def test_the_budget_cap_spreads_the_budget_over_what_is_really_left_of_the_day(hours, o_clock, cap):
    """2 GPU-hours left pay for 4 one-GPU instances for the last half hour, 1 for the last
    1.5 h: on a 23- or 25-hour day too, when `History.day_end` says when it ends."""
    now = DAY_20 + o_clock * 3600
    h = history(DEMAND, now, day_end=DAY_20 + hours * 3600)
    settings = SloSettings(idle_budget=2, max_size=10)
    assert sizing.budget_cap(h, settings, now)[0] == cap


@pytest.mark.parametrize(("budget", "cap"), [(1e308, 10), (float("inf"), 10), (float("nan"), 1)])
def test_the_budget_cap_stays_within_the_bounds_whatever_the_budget(budget, cap):
    # In the day's last minute a huge budget over the hours left overflows to inf.
    last_minute = DAY_20 + DAY - 30
    settings = SloSettings(idle_budget=budget, min_size=1, max_size=10)
    assert sizing.budget_cap(history(DEMAND, last_minute), settings, last_minute)[0] == cap


def test_minimum_and_maximum_bound_the_target_and_a_low_maximum_is_a_risk():
    """Levels are learned up to the maximum: with a maximum of 1, the requests of the
    bursts that needed more are counted as uncovered, and the reason says how many."""
    moment = first_request_after(DAY_20 + 15 * 3600) + 1
    low = size(DEMAND, moment, settings=SloSettings(max_size=1))
    assert low.target == 1
    assert "needed more than the maximum of 1" in low.at_risk
    assert low.reason.startswith("SLO at risk: ")
    assert "at most, short of the goal of" in low.reason
    high = size(DEMAND, DAY_20 + 3 * 3600, settings=SloSettings(min_size=3))
    assert high.target == 3


def class_of(size: int, days: int) -> list[float]:
    """A workshop: `size` requests 4 s apart at 09:00 every day."""
    return [START + day * DAY + 9 * 3600 + 4 * k for day in range(days) for k in range(size)]


def test_levels_are_learned_up_to_the_maximum_beyond_the_old_cap_of_16():
    """A class of 30 every morning needs 30 instances before 09:00 (the 30th request
    arrives 116 s after the first, well within the provisioning time)."""
    before_class = START + 14 * DAY + 9 * 3600 - 120
    result = size(class_of(30, 15), before_class, settings=SloSettings(max_size=50))
    assert result.target >= 29
    assert not result.at_risk
    assert "set to cover" in result.reason


def test_requests_beyond_the_maximum_are_counted_uncovered_and_the_slo_is_at_risk():
    """Under a maximum of 16 the 14 later requests of each class of 30 find none: 14 of 30
    per day (47 %) are uncovered, which no goal of 95 % allows."""
    before_class = START + 14 * DAY + 9 * 3600 - 120
    result = size(class_of(30, 15), before_class, settings=SloSettings(max_size=16))
    assert result.target == 16
    assert (
        result.at_risk == "196 of the 420 requests learned from needed more than the maximum of 16"
    )
    assert "covering 53.3% of them at most" in result.reason


def test_a_burst_asks_erlang_b_beyond_16_and_a_lower_maximum_says_the_slo_is_at_risk():
    """30 requests in the last 150 s with little history: 0.1 requests a second over a
    reach of 260 s is 26 Erlangs, which need 32 instances for 95 %."""
    now = START + DAY + 10 * 3600
    burst = [now - 5 * k for k in range(30)][::-1]
    assert size(burst, now, settings=SloSettings(max_size=50)).target == 32
    capped = size(burst, now, settings=SloSettings(max_size=20))
    assert capped.target == 20
    assert capped.at_risk == "the SLO asks for 32, the maximum is 20"


def test_when_the_budget_and_the_maximum_both_bind_it_says_what_the_slo_asks_and_both():
    now = START + DAY + 23.5 * 3600
    burst = [now - 5 * k for k in range(30)][::-1]
    settings = SloSettings(max_size=20, idle_budget=2)  # 2 GPU-h for half an hour: 4
    result = size(burst, now, settings=settings)
    assert result.target == 4
    assert result.at_risk == "the idle budget allows 4, the SLO asks for 32, the maximum is 20"


def test_with_no_request_at_all_it_says_there_is_no_history_yet():
    result = size([], START + 10 * DAY + 3600)
    assert result.target == 0
    assert "no request history yet (none in 10 d)" in result.reason
    assert "learned from 0 requests" not in result.reason


def test_with_little_history_it_uses_an_erlang_estimate_of_the_recent_rate():
    quiet = size(DEMAND, START + DAY + 3 * 3600)
    assert "little history" in quiet.reason
    busy = size(DEMAND, first_request_after(START + DAY + 10 * 3600) + 1)
    assert busy.target > quiet.target


def test_erlang_b_matches_the_textbook_values():
    assert sizing.erlang_b(0, 1.0) == 1.0
    assert sizing.erlang_b(1, 1.0) == pytest.approx(0.5)
    assert sizing.erlang_b(2, 1.0) == pytest.approx(0.2)
    assert sizing.erlang_b(3, 0.0) == 0.0


def test_the_reason_explains_the_decision():
    moment = first_request_after(DAY_20 + 10 * 3600) + 1
    result = size(DEMAND, moment, settings=SloSettings(idle_budget=100), previous_target=0)
    assert result.reason.startswith(f"SLO 95 % ≤ 60 s: target {result.target} (was 0): ")
    assert "last request under 5 min ago" in result.reason
    assert "in the last hour" in result.reason
    assert "provisioning p90 320 s" in result.reason
    assert "budget 100 GPU-h/day" in result.reason


def test_it_is_pure_the_same_inputs_give_the_same_answer_and_nothing_is_changed():
    moment = DAY_20 + 13 * 3600
    arrivals = [a for a in DEMAND if a <= moment]
    copy = list(arrivals)
    first = size(arrivals, moment)
    second = size(arrivals, moment)
    assert first == second
    assert arrivals == copy


def test_it_uses_only_the_past():
    moment = DAY_20 + 13 * 3600
    past = [a for a in DEMAND if a <= moment]
    with_future = History(arrivals=past, provisioning=SLOW, day_start=START + 20 * DAY, since=START)
    assert sizing.size(with_future, SloSettings(), moment) == size(DEMAND, moment)


# -- the parts ------------------------------------------------------------------------


def test_occupancy_spends_the_whole_window_across_the_states():
    spent = sizing.occupancy(DEMAND, START + DAY, START + 3 * DAY)
    assert sum(spent) == pytest.approx(2 * DAY)
    quiet = sizing.state_at(DEMAND, START + 2 * DAY + 3 * 3600)
    assert spent[quiet] > 0


def test_the_state_is_the_same_between_breakpoints():
    start, end = START + 5 * DAY, START + 6 * DAY
    points = [start, *sizing._breakpoints(DEMAND, start, end), end]
    for a, b in itertools.pairwise(points):
        assert sizing.state_at(DEMAND, a) == sizing.state_at(DEMAND, (a + b) / 2)


def test_needs_count_the_requests_of_the_reach_before_each():
    arrivals = [START + 1000, START + 1090, START + 1180, START + 5000]
    found = sizing.needs(arrivals, START, START + DAY, reach=300, cap=16)
    by_level = [sum(row[level] for row in found) for level in range(4)]
    assert by_level == [0, 2, 1, 1]  # 1000 and 5000 alone, 1090 second, 1180 third


def test_needs_count_requests_beyond_the_cap_in_a_column_no_level_covers():
    arrivals = [START + 1000, START + 1090, START + 1180, START + 5000]
    found = sizing.needs(arrivals, START, START + DAY, reach=300, cap=2)
    assert [sum(row[level] for row in found) for level in range(4)] == [0, 2, 1, 1]
    assert sizing.coverage([2] * sizing.STATES, found) == pytest.approx(3 / 4)


def _grid(state: int) -> tuple[int, int, int]:
    """(delta, recent, gap) buckets of a state."""
    rest, gap = divmod(state, sizing._GAPS)
    delta, recent = divmod(rest, sizing._RECENTS)
    return delta, recent, gap


def _busier(u: int, state: int) -> bool:
    """Whether `u` is `state` or busier: a more recent last request, at least as many
    requests in the last hour, a shorter gap."""
    (du, ru, gu), (ds, rs, gs) = _grid(u), _grid(state)
    return du <= ds and ru >= rs and gu <= gs


def _steps(u: int, state: int) -> int:
    return sum(abs(a - b) for a, b in zip(_grid(u), _grid(state), strict=True))


BUSIEST = sizing.state_at([START + 10 * k for k in range(12)], START + 120)
QUIETEST = sizing.state_at([START], START + 10 * DAY)


def _empty(cap: int = 16):
    return [0.0] * sizing.STATES, [[0] * (cap + 2) for _ in range(sizing.STATES)]


def test_the_busiest_and_quietest_states_are_the_corners_of_the_grid():
    assert _grid(BUSIEST) == (0, sizing._RECENTS - 1, 0)
    assert _grid(QUIETEST) == (sizing._DELTAS - 1, 0, sizing._GAPS - 1)


def test_busier_sums_add_each_state_and_every_busier_one():
    rng = random.Random(5)
    values = [rng.randint(0, 9) for _ in range(sizing.STATES)]
    sums = sizing.busier_sums(values)
    for state in range(sizing.STATES):
        expected = sum(v for u, v in enumerate(values) if _busier(u, state))
        assert sums[state] == expected
    assert sums[BUSIEST] == values[BUSIEST]
    assert sums[QUIETEST] == sum(values)


def test_monotone_moves_buy_the_cheapest_requests_first():
    spent, found = _empty()
    spent[BUSIEST], found[BUSIEST][1] = 100.0, 10  # 10 requests for 100 level-seconds
    spent[QUIETEST], found[QUIETEST][1] = 10_000.0, 10
    moves = sizing.monotone_moves(spent, found)
    assert [covered for _, covered in moves] == [10, 20]
    first, second = moves[0][0], moves[1][0]
    assert first[BUSIEST] == 1 and sum(first) == 1
    assert set(second) == {1}  # the quietest state raised, so is every state


def test_a_move_pays_for_the_busier_states_it_raises():
    """Alone, the quiet state wins 10 requests for 100 level-seconds, better than the busy
    state's 5 for 100; but raising it raises a busier state that demand occupies for a
    day, so the busy state is the cheaper move."""
    spent, found = _empty()
    quiet = sizing.state_at([START], START + 3 * 3600)
    crowded = sizing.state_at([START], START + 3600)  # more recent: busier than quiet
    spent[quiet], found[quiet][1] = 100.0, 10
    spent[crowded] = float(DAY)
    spent[BUSIEST], found[BUSIEST][1] = 100.0, 5
    first_levels, covered = sizing.monotone_moves(spent, found)[0]
    assert covered == 5
    assert first_levels[BUSIEST] == 1 and first_levels[quiet] == 0


def test_learned_levels_are_monotone_in_activity():
    h = history(DEMAND, DAY_20 + 12 * 3600)
    model, _ = sizing.learn(h, 320.0, 0.95, cap=10)
    assert model.moves
    one_step_busier = [
        (state, u)
        for state in range(sizing.STATES)
        for u in range(sizing.STATES)
        if _busier(u, state) and _steps(u, state) == 1
    ]
    for levels, _ in model.moves:
        assert all(levels[u] >= levels[state] for state, u in one_step_busier)


def test_the_validated_goal_is_at_least_the_needed_share():
    h = history(DEMAND, DAY_20 + 12 * 3600)
    learned = sizing.learn(h, 320.0, 0.95, cap=10)
    assert learned is not None
    model, goal = learned
    assert 0.95 <= goal <= 1.0
    assert model.requests > 100
    assert sizing.coverage(model.levels(goal), model.found) >= goal - 1e-9
