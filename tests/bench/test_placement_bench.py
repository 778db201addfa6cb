"""The placement benchmark (`bench.placement`): its trace scenario and its yardsticks."""

import csv
import io
import tarfile

import pytest

from bench import placement as bench
from profiles.mig.placement import GpuState, Request, ResourceGroup


def job(gpus: int, submitted: int = 0, duration: int = 600) -> bench.Job:
    return bench.Job(submitted, duration, gpus)


@pytest.mark.parametrize(
    ("model", "gpus", "profile"),
    [
        ("H100-80GB", 1, "1g.10gb"),
        ("H100-80GB", 2, "2g.20gb"),
        ("H100-80GB", 4, "4g.40gb"),
        ("A100-40GB", 1, "1g.5gb"),
        ("A100-40GB", 2, "2g.10gb"),
        ("A100-40GB", 3, "4g.20gb"),
    ],
)
def test_a_small_job_asks_for_one_instance_with_a_memory_slice_per_gpu(model, gpus, profile):
    request = bench.trace_request(job(gpus), model, "r0")
    assert request.groups == (ResourceGroup(1, None, profile),)


@pytest.mark.parametrize(("gpus", "whole"), [(5, 1), (8, 1), (16, 2), (32, 4), (64, 8)])
def test_a_big_job_asks_for_whole_gpus_on_one_host(gpus, whole):
    request = bench.trace_request(job(gpus), "A100-80GB", "r0")
    assert request.groups == (ResourceGroup(whole),)


def test_a_job_leaves_before_one_arriving_the_same_second_and_late_departures_are_dropped():
    jobs = [job(1, 0, 10), job(1, 10, 100), job(1, 20, 5)]
    assert bench.trace_events(jobs) == [
        ("arrive", 0),
        ("depart", 0),
        ("arrive", 1),
        ("arrive", 2),
    ]


def test_jobs_are_read_per_cluster_from_the_archive_in_submission_order(tmp_path):
    path = tmp_path / "raw-traces.tar.gz"
    rows = [("b", 30, 700, 8), ("a", 10, 600, 1)]
    with tarfile.open(path, "w:gz") as archive:
        for name, text in (("cluster01.csv", _csv(rows)), ("LICENSE", "MIT")):
            data = text.encode()
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    assert bench.load_jobs(path) == {"cluster01": [job(1, 10, 600), job(8, 30, 700)]}


def _csv(rows) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["job_id", "submission_time", "duration", "num_gpu"])
    writer.writerows(rows)
    return out.getvalue()


@pytest.mark.parametrize(
    ("group", "slices"),
    [
        (ResourceGroup(1, "A100-40GB", "1g.10gb"), 2),
        (ResourceGroup(1, None, "1g.10gb"), 1),  # 2 slices on an A100-40GB, 1 elsewhere
        (ResourceGroup(3, None, "2g.20gb"), 6),
        (ResourceGroup(2), 16),
    ],
)
def test_a_request_counts_the_memory_slices_it_asks_for(group, slices):
    assert bench.request_slices(Request("r0", (group,))) == slices


def test_a_model_less_request_counts_the_same_wherever_it_is_served():
    # Only the 2-slice 1g.10gb of an A100-40GB is free: serving the 1-slice request there
    # uses two slices but serves one, for the policy and for the optimum alike.
    def fleet() -> list[GpuState]:
        return [GpuState.mig("g0", "A100-40GB", {"1g.10gb": 4}, host="h0")]

    requests = [Request("r0", (ResourceGroup(1, None, "1g.10gb"),))]
    events = [("arrive", 0)]
    assert bench.simulate(bench.place, fleet(), requests, events)[0] == 1
    assert bench.optimum(fleet(), requests, events) == 1


@pytest.mark.parametrize("departure_rate", [0.0, 0.35])
def test_no_policy_serves_more_than_the_optimum(departure_rate):
    for fleet_args, requests, events in bench.synthetic_instances(3, 20, departure_rate):
        best = bench.optimum(bench.random_fleet(*fleet_args), requests, events)
        for policy in bench.POLICIES.values():
            served, _, _ = bench.simulate(policy, bench.random_fleet(*fleet_args), requests, events)
            assert served <= best


def test_without_the_traces_the_trace_scenarios_are_skipped_with_a_message(tmp_path, capsys):
    missing = tmp_path / "raw-traces.tar.gz"
    bench.main(["--trials", "3", "--decisions", "40", "--repeats", "1", "--traces", str(missing)])
    out = capsys.readouterr().out
    assert f"Trace scenarios skipped: {missing} not found" in out
    scenarios = {line.split()[0] for line in out.splitlines() if line.count("%") >= 3}
    assert scenarios == {"fill", "churn"}
    assert not [line for line in out.splitlines() if line.startswith("trace ")]
