"""The warm-pool simulator (`bench.pools`): small inputs, exact expectations."""

from __future__ import annotations

import functools

import pytest

from bench import pools as bench
from pools import sizing

SLO = sizing.SloSettings()
DRAW = bench.Draw([300.0])


def trace(*offsets: float, gpus: float = 1.0) -> bench.Trace:
    start = bench.TRACE_ORIGIN
    return bench.Trace("test", [start + o for o in offsets], gpus)


def test_a_job_less_than_a_minute_after_the_previous_kept_one_is_the_same_request():
    assert bench.merge_bursts([0, 10, 59, 60, 130, 131, 300], 60) == [0, 60, 130, 300]


def test_a_static_pool_serves_from_ready_instances_and_refills_after_each_claim():
    # One instance, ready at 300 s; claimed at 1000 s, the refill is ready at 1300 s.
    result = bench.simulate(trace(1000, 1100, 5000), DRAW, SLO, "static 1", bench.static(1))
    assert result.hits == 2  # 1100 s came before the refill, and takes it on its way
    assert result.waits == [0.0, 200.0, 0.0]
    assert result.attainment == pytest.approx(2 / 3)
    # Held unclaimed: 0–1000, the refill 1000–1100, its refill 1100–5000, then 5000 until
    # the trace ends (5060 s); ready: 300–1000 and 1400–5000.
    assert result.idle_gpu_hours == pytest.approx((1000 + 100 + 3900 + 60) / 3600)
    assert result.ready_gpu_hours == pytest.approx((700 + 3600 + 0) / 3600)


def test_a_request_takes_the_instance_ready_soonest_when_it_is_within_t_else_the_newest():
    # Static 2: both ready at 300 s, claimed at 1000 and 1001; refills A (from 1000) and B
    # (from 1001) are on their way. At 1250 A is 50 s from ready (within 60 s): taken.
    result = bench.simulate(trace(1000, 1001, 1250), DRAW, SLO, "static 2", bench.static(2))
    assert result.waits == [0.0, 0.0, 50.0]
    # At 1100 neither is within 60 s: the newest (B, ready at 1301) is taken, and A stays
    # for the next request (1200: ready at 1300, 100 s away, B's refill is newer still).
    result = bench.simulate(trace(1000, 1001, 1100, 1260), DRAW, SLO, "static 2", bench.static(2))
    assert result.waits == [0.0, 0.0, 201.0, 40.0]


def test_idle_gpu_hours_count_each_instance_at_its_gpus():
    one = bench.simulate(trace(1000), DRAW, SLO, "static 2", bench.static(2))
    eight = bench.simulate(trace(1000, gpus=8), DRAW, SLO, "static 2", bench.static(2))
    assert eight.idle_gpu_hours == pytest.approx(8 * one.idle_gpu_hours)


def test_a_smaller_target_deletes_the_oldest_ready_extras_at_the_next_pass():
    targets = iter([3] * 10 + [1] * 1000)
    result = bench.simulate(trace(2000), DRAW, SLO, "shrinking", lambda now, sim: next(targets))
    assert result.hits == 1
    # Three made at 0 s; at 600 s (the 11th pass) two are deleted after 600 s each; the last
    # waits until claimed at 2000 s, and its refill from 2000 s to the end (2060 s).
    assert result.idle_gpu_hours == pytest.approx((2 * 600 + 2000 + 60) / 3600)


def test_the_oracle_is_a_lower_bound_of_every_policy_that_meets_the_slo():
    t = trace(*[i * 3000.0 for i in range(1, 100)])
    outcome = bench.evaluate(t, DRAW, SLO)
    assert outcome.smallest is not None
    assert outcome.smallest.attainment >= 0.95
    meeting = [r for r in outcome.rows if r.attainment >= 0.95]
    assert all(outcome.oracle.idle_gpu_hours <= r.idle_gpu_hours for r in meeting)
    # The oracle serves exactly the needed share, each instance made one provisioning ahead.
    assert outcome.oracle.hits == 95
    assert outcome.oracle.idle_gpu_hours == pytest.approx(95 * 300 / 3600)


def test_the_slo_policy_in_the_simulator_is_the_loops_policy_function(monkeypatch):
    calls = []
    real = sizing.size

    def spy(history, settings, now):
        calls.append(now)
        return real(history, settings, now)

    monkeypatch.setattr(sizing, "size", spy)
    t = trace(1000, 2000)
    bench.simulate(t, DRAW, SLO, "slo", bench.SloPolicy(SLO, t.start))
    assert len(calls) > 2


def test_the_slo_policy_sees_only_the_past():
    seen = []
    real = sizing.size

    class Watching(bench.SloPolicy):
        def __call__(self, now, sim):
            seen.append(all(a <= now for a in sim.arrivals))
            return super().__call__(now, sim)

    t = trace(1000, 2000, 3000)
    bench.simulate(t, DRAW, SLO, "slo", Watching(SLO, t.start))
    assert seen and all(seen)
    assert sizing.size is real


def test_csv_input_takes_seconds_or_iso_times_and_filters_by_gpus(tmp_path):
    csv_file = tmp_path / "arrivals.csv"
    csv_file.write_text(
        "time,gpus,duration\n"
        "2024-05-06T09:00:00,1,3600\n"
        "2024-05-06T09:00:30,1,3600\n"
        "2024-05-06T09:05:00,8,60\n"
        "2024-05-06T10:00:00+00:00,1,\n"
    )
    loaded = bench.load_csv(csv_file, gpus=1, within=60)
    assert len(loaded.arrivals) == 2
    assert loaded.arrivals[1] - loaded.arrivals[0] == 3600
    seconds = tmp_path / "seconds.csv"
    seconds.write_text("submission_time,num_gpu\n0,1\n120,1\n")
    assert bench.load_csv(seconds, gpus=1, within=60).arrivals == [
        bench.TRACE_ORIGIN,
        bench.TRACE_ORIGIN + 120,
    ]


def test_it_runs_on_a_csv_with_an_empirical_provisioning_list_and_writes_a_chart(tmp_path, capsys):
    csv_file = tmp_path / "arrivals.csv"
    rows = [f"{day * 86400 + 32400 + k * 90},1" for day in range(9) for k in range(6)]
    csv_file.write_text("time,gpus\n" + "\n".join(rows) + "\n")
    chart = tmp_path / "chart.svg"
    argv = [str(csv_file), "--provisioning", "240,300,420", "--chart", str(chart)]
    assert bench.main([*argv, "--chart-week", "0"]) == 0
    out = capsys.readouterr().out
    assert "static 0" in out and "SLO policy (95 % ≤ 60 s)" in out and "oracle" in out
    assert "p95 wait" in out and "idle GPU-h/day" in out and "median" in out
    assert chart.read_text().startswith("<svg")


def test_without_shared_data_or_a_csv_it_replays_a_synthetic_demo_and_says_so(
    monkeypatch, tmp_path, capsys
):
    monkeypatch.setattr(bench, "TRACES", tmp_path / "missing.tar.gz")
    monkeypatch.setattr(bench, "synthetic", functools.partial(bench.synthetic, days=5))
    assert bench.main([]) == 0
    out = capsys.readouterr().out
    assert "a synthetic demo trace" in out
    assert "synthetic (synthetic demo data)" in out
