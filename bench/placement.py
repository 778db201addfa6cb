"""Benchmark fleet placement: `python -m bench.placement [--seed N] [--trials N] ...`.

1. Quality. On small random fleets (2-4 GPUs on 2-3 hosts) and 14 requests each, compare the
   memory slices served by `place` and `first_fit` with the optimum: an exhaustive search
   over every placement choice, under the same rule that a request is served whenever it
   fits when it arrives. A request counts the slices it asks for (`request_slices`), not
   those of the instances that served it. Scenarios: fill (arrivals only), churn
   (departures too) and trace (the sizes, order and lifetimes of 14 consecutive jobs of a
   real trace). Besides mean and worst share, each fleet counts as better, same or worse
   for `place` than first fit.
2. Throughput and latency on 64 GPUs (8 hosts x 8 GPUs): synthetic churn, and a replay of a
   real trace's jobs. Each replay runs `--repeats` times; a decision's time is the fastest
   of its repeats (the decisions are identical), so other processes on a shared machine
   count as little as possible.

The trace scenarios read the ElasticFlow job traces (Microsoft's ITP clusters, 2021; see
`../shared/data/traces/README.md`) from `../shared/data/traces/raw-traces.tar.gz`, or the
file given with `--traces`; without it they are skipped with a message.

Turning a trace job into a request (`trace_request`). The jobs ran on 2021 data-centre GPUs
(V100 class), the fleet here has A100/H100s with 8 memory slices each, and the portal hands
out MIG instances: one trace GPU becomes one memory slice, which keeps the trace's mix of
sizes (1, 2, 4, 8, ... GPUs) in slices:
- 1 GPU -> one 1g instance (1 memory slice), 2 -> one 2g (2 slices), 3-4 -> one 4g (4 slices):
  of the profiles with that many memory slices, the one with most compute, without media
  extensions, on the model of a random GPU of the fleet (the trace names none). The group
  asks for it by profile name on any model, as a pod asking for `nvidia.com/mig-2g.20gb`
  does; on A100-40GB the same name can be a different size (see ResourceGroup).
- 5 or more -> ceil(GPUs / 8) whole GPUs in one group (one pod, so one host) on any model,
  as `nvidia.com/gpu: N` asks: 8 -> 1, 16 -> 2, 64 -> 8.
A job arrives at its submission time and, when it was served, leaves at submission +
duration; a job that does not fit when it arrives is not served (no queue).
"""

import argparse
import csv
import io
import math
import random
import statistics
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from profiles.mig import catalog, layout
from profiles.mig.placement import (
    GpuState,
    Key,
    Placement,
    Request,
    ResourceGroup,
    first_fit,
    place,
    release,
)

Policy = Callable[[Sequence[GpuState], Request], Placement | None]
Event = tuple[str, int]  # ("arrive" | "depart", request index)
FleetArgs = tuple[int, int, int]  # random_fleet's (seed, gpus, hosts)
Instance = tuple[FleetArgs, list[Request], list[Event]]
POLICIES: dict[str, Policy] = {"place": place, "first_fit": first_fit}
MODELS = ("A100-40GB", "A100-80GB", "H100-80GB")  # 1g.10gb means two things among these
TRACES = Path(__file__).resolve().parent.parent.parent / "shared/data/traces/raw-traces.tar.gz"
REQUESTS_PER_FLEET = 14


def random_fleet(seed: int, gpus: int, hosts: int) -> list[GpuState]:
    """GPUs dealt round-robin to hosts; a quarter whole, the rest with a maximal MIG layout.

    Built from a seed so that every policy gets its own identical, untouched fleet.
    """
    rng = random.Random(seed)
    fleet = []
    for index in range(gpus):
        model = rng.choice(MODELS)
        host = f"host{index % hosts}"
        if rng.random() < 0.25:
            fleet.append(GpuState(f"gpu{index}", model, host))
        else:
            counts = rng.choice(layout.maximal_layouts(model))
            fleet.append(GpuState.mig(f"gpu{index}", model, counts, host))
    return fleet


def random_request(rng: random.Random, fleet: Sequence[GpuState], name: str) -> Request:
    """One or two groups, each modelled on a random unit of the fleet."""
    groups = []
    for _ in range(rng.choice((1, 1, 1, 2))):
        gpu = rng.choice(fleet)
        model = gpu.gpu_model if rng.random() < 0.6 else None
        if gpu.slots is None:
            groups.append(ResourceGroup(rng.choice((1, 1, 2)), model))
        else:
            profile = rng.choice(gpu.slots).profile
            groups.append(ResourceGroup(rng.choice((1, 1, 2, 3)), model, profile))
    return Request(name, tuple(groups))


def random_events(rng: random.Random, arrivals: int, departure_rate: float) -> list[Event]:
    """Arrivals in order; after each, an earlier request departs with this probability."""
    events: list[Event] = []
    live: list[int] = []
    for index in range(arrivals):
        events.append(("arrive", index))
        live.append(index)
        if rng.random() < departure_rate:
            events.append(("depart", live.pop(rng.randrange(len(live)))))
    return events


# -- the trace ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    submitted: int  # seconds from the start of collection
    duration: int  # seconds
    gpus: int


def load_jobs(path: Path) -> dict[str, list[Job]]:
    """Each cluster's jobs in submission order, read from the archive without unpacking."""
    clusters = {}
    with tarfile.open(path) as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            if not member.name.endswith(".csv"):
                continue
            text = archive.extractfile(member).read().decode()
            jobs = [
                Job(int(row["submission_time"]), int(row["duration"]), int(row["num_gpu"]))
                for row in csv.DictReader(io.StringIO(text))
            ]
            clusters[Path(member.name).stem] = sorted(jobs, key=lambda job: job.submitted)
    return clusters


@cache
def _mig_profile(model: str, memory_slices: int) -> str:
    """The profile with this many memory slices and the most compute, without +me."""
    candidates = [
        p
        for p in catalog.geometry(model).profiles
        if p.memory_slices == memory_slices and not p.media_extensions
    ]
    return max(candidates, key=lambda p: p.compute_slices).name


def trace_request(job: Job, model: str, name: str) -> Request:
    """The request a trace job makes, sized on `model`: see the module's docstring."""
    if job.gpus > 4:
        return Request(name, (ResourceGroup(math.ceil(job.gpus / 8)),))
    memory_slices = 1 if job.gpus == 1 else 2 if job.gpus == 2 else 4
    return Request(name, (ResourceGroup(1, None, _mig_profile(model, memory_slices)),))


def trace_events(jobs: Sequence[Job]) -> list[Event]:
    """Arrivals at submission time; departures at the end, before arrivals at the same
    second. Departures after the last arrival are left out: they change nothing."""
    last = jobs[-1].submitted
    timed = [(job.submitted, 1, i, "arrive") for i, job in enumerate(jobs)]
    timed += [
        (job.submitted + job.duration, 0, i, "depart")
        for i, job in enumerate(jobs)
        if job.submitted + job.duration <= last
    ]
    return [(kind, i) for _, _, i, kind in sorted(timed)]


def trace_instances(
    clusters: dict[str, list[Job]], seed: int, trials: int, gpus: tuple[int, int]
) -> list[Instance]:
    """Random small fleets, each with the jobs of a window of consecutive jobs of a cluster,
    the window's start drawn uniformly over all jobs."""
    rng = random.Random(seed)
    names = sorted(clusters)
    starts = [(name, i) for name in names for i in range(len(clusters[name]) - REQUESTS_PER_FLEET)]
    instances = []
    for _ in range(trials):
        fleet_args = _small_fleet_args(rng, gpus)
        fleet = random_fleet(*fleet_args)
        name, start = rng.choice(starts)
        jobs = clusters[name][start : start + REQUESTS_PER_FLEET]
        requests = [
            trace_request(job, rng.choice(fleet).gpu_model, f"r{i}") for i, job in enumerate(jobs)
        ]
        instances.append((fleet_args, requests, trace_events(jobs)))
    return instances


# -- measuring ---------------------------------------------------------------------------


def unit_slices(key: Key) -> int:
    """Memory slices a unit occupies: its slot's, or the whole GPU's."""
    model, profile = key
    if profile is None:
        return catalog.geometry(model).memory_slices
    return catalog.profile(model, profile).memory_slices


def request_slices(request: Request) -> int:
    """The memory slices a request asks for, whatever units end up serving it.

    A group on any model counts the fewest slices a model of the benchmark gives it: a
    model-less `1g.10gb` asks for one slice (A100-80GB, H100-80GB) even when the 2-slice
    `1g.10gb` of an A100-40GB serves it. Counting the slices occupied instead would credit
    a policy, and the optimum, for serving a request on a bigger instance than it needs.
    """
    return sum(group.count * min(map(unit_slices, _keys(group))) for group in request.groups)


def _keys(group: ResourceGroup) -> list[Key]:
    """The kinds of unit that can serve the group on the benchmark's models."""
    models = [group.gpu_model] if group.gpu_model else MODELS
    return [
        (model, group.profile)
        for model in models
        if group.profile is None
        or any(p.name == group.profile for p in catalog.geometry(model).profiles)
    ]


def simulate(
    policy: Policy, fleet: list[GpuState], requests: list[Request], events: list[Event]
) -> tuple[int, int, list[float]]:
    """Memory slices and requests served by the policy, and the seconds each decision took."""
    served = accepted = 0
    seconds = []
    for kind, index in events:
        request = requests[index]
        if kind == "depart":
            release(fleet, request.allocation_id)
            continue
        began = time.perf_counter()
        placement = policy(fleet, request)
        seconds.append(time.perf_counter() - began)
        if placement is not None:
            accepted += 1
            served += request_slices(request)
    return served, accepted, seconds


def optimum(fleet: list[GpuState], requests: list[Request], events: list[Event]) -> int:
    """The most memory slices (`request_slices`) that any sequence of placement choices
    serves.

    The state is the free units per (host, unit kind) cell plus what each live request that
    will depart holds; units of one kind on one host are interchangeable, so this loses
    nothing. Every feasible way to serve an arriving request is tried (each group on any
    host, split in any way across the kinds it matches), and a request that fits must be
    served.
    """
    units = [
        (gpu.node, (gpu.gpu_model, slot.profile if slot else None))
        for gpu in fleet
        for slot in (gpu.slots or [None])
    ]
    cells = sorted(set(units), key=str)
    initial = tuple(units.count(cell) for cell in cells)
    # What a request holds matters only if it departs; the others are just fewer free units.
    departing = {index for kind, index in events if kind == "depart"}

    def ways(free: tuple[int, ...], groups: tuple[ResourceGroup, ...]) -> Iterator[tuple]:
        """Every (free units after, units held) that serves all the groups."""
        if not groups:
            yield free, ()
            return
        group, rest = groups[0], groups[1:]
        for host in sorted({host for host, _ in cells}):
            matching = [i for i, (h, key) in enumerate(cells) if h == host and group.matches(key)]
            for taken in splits(group.count, [free[i] for i in matching]):
                after = list(free)
                for i, n in zip(matching, taken, strict=True):
                    after[i] -= n
                held = tuple((i, n) for i, n in zip(matching, taken, strict=True) if n)
                for final, more in ways(tuple(after), rest):
                    yield final, held + more

    @cache
    def best(position: int, free: tuple[int, ...], live: frozenset) -> int:
        if position == len(events):
            return 0
        kind, index = events[position]
        if kind == "depart":
            after = list(free)
            for i, n in dict(live).get(index, ()):
                after[i] += n
            still_live = frozenset(item for item in live if item[0] != index)
            return best(position + 1, tuple(after), still_live)
        options = set(ways(free, requests[index].groups))
        if not options:
            return best(position + 1, free, live)
        return request_slices(requests[index]) + max(
            best(position + 1, after, live | {(index, held)} if index in departing else live)
            for after, held in options
        )

    result = best(0, initial, frozenset())
    best.cache_clear()  # the cache refers to `best` itself: free it now, not at a GC pass
    return result


def splits(count: int, available: list[int]) -> Iterator[tuple[int, ...]]:
    """Every way to take `count` units from pools of these sizes."""
    if not available:
        if count == 0:
            yield ()
        return
    for n in range(min(count, available[0]) + 1):
        for rest in splits(count - n, available[1:]):
            yield (n, *rest)


def _small_fleet_args(rng: random.Random, gpus: tuple[int, int]) -> FleetArgs:
    count = rng.randint(*gpus)
    return (rng.randrange(2**32), count, rng.randint(2, min(3, count)))


def synthetic_instances(
    seed: int, trials: int, departure_rate: float, gpus: tuple[int, int] = (2, 4)
) -> list[Instance]:
    """Random small fleets with random requests (`random_request`) and departures."""
    rng = random.Random(seed)
    instances = []
    for _ in range(trials):
        fleet_args = _small_fleet_args(rng, gpus)
        fleet = random_fleet(*fleet_args)
        requests = [random_request(rng, fleet, f"r{i}") for i in range(REQUESTS_PER_FLEET)]
        instances.append((fleet_args, requests, random_events(rng, len(requests), departure_rate)))
    return instances


@dataclass
class Quality:
    """Per policy, per fleet: memory slices served and the optimum's."""

    served: dict[str, list[int]]
    best: list[int]

    def shares(self, policy: str) -> list[float]:
        return [s / b if b else 1.0 for s, b in zip(self.served[policy], self.best, strict=True)]

    def versus_first_fit(self, policy: str) -> tuple[int, int, int]:
        """Fleets where the policy served more than first fit, as much, and less."""
        pairs = list(zip(self.served[policy], self.served["first_fit"], strict=True))
        return (
            sum(s > f for s, f in pairs),
            sum(s == f for s, f in pairs),
            sum(s < f for s, f in pairs),
        )


def quality(instances: Sequence[Instance]) -> Quality:
    served: dict[str, list[int]] = {name: [] for name in POLICIES}
    best = []
    for fleet_args, requests, events in instances:
        best.append(optimum(random_fleet(*fleet_args), requests, events))
        for name, policy in POLICIES.items():
            served[name].append(simulate(policy, random_fleet(*fleet_args), requests, events)[0])
    return Quality(served, best)


def quality_rows(scenario: str, result: Quality) -> list[tuple]:
    rows = []
    for name in POLICIES:
        shares = result.shares(name)
        better, same, worse = result.versus_first_fit(name)
        rows.append(
            (
                scenario,
                name,
                f"{100 * statistics.mean(shares):.2f}%",
                f"{100 * min(shares):.1f}%",
                f"{100 * sum(v >= 1 for v in shares) / len(shares):.1f}%",
                sum(result.served[name]),
                "-" if name == "first_fit" else f"{better}/{same}/{worse}",
            )
        )
    return rows


def replay(
    scenario: str,
    fleet_args: FleetArgs,
    requests: list[Request],
    events: list[Event],
    repeats: int,
) -> list[tuple]:
    """Per policy on one big fleet: requests and slices served, and ms per decision."""
    rows = []
    baseline = None
    for name, policy in POLICIES.items():
        fastest: list[float] = []
        for _ in range(repeats):
            served, accepted, seconds = simulate(
                policy, random_fleet(*fleet_args), requests, events
            )
            fastest = seconds if not fastest else list(map(min, fastest, seconds))
        ms = sorted(1000 * s for s in fastest)
        if name == "first_fit":
            baseline = served
        rows.append(
            [
                scenario,
                name,
                len(ms),
                accepted,
                served,
                "",
                f"{statistics.mean(ms):.3f}",
                f"{ms[len(ms) // 2]:.3f}",
                f"{ms[int(len(ms) * 0.99)]:.3f}",
                f"{ms[-1]:.3f}",
            ]
        )
    for row in rows:
        row[5] = f"{row[4] - baseline:+d}"
    return [tuple(row) for row in rows]


def table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """Plain text columns: numbers right-aligned, words left-aligned."""
    cells = [list(map(str, headers))] + [list(map(str, row)) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [cells[1][i][:1].isdigit() or cells[1][i][:1] in "+-" for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if right else c.ljust(w)
            for c, w, right in zip(row, widths, numeric, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(row) for row in cells[1:]])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--seeds", type=int, default=1, help="quality over this many seeds from --seed on"
    )
    parser.add_argument(
        "--trials", type=int, default=300, help="small fleets per scenario (0: skip)"
    )
    parser.add_argument("--decisions", type=int, default=5000, help="requests on 64 GPUs")
    parser.add_argument("--repeats", type=int, default=3, help="replays timed on 64 GPUs")
    parser.add_argument("--traces", type=Path, default=TRACES)
    parser.add_argument("--trace-cluster", default="cluster04", help="replayed on 64 GPUs")
    args = parser.parse_args(argv)

    clusters = None
    if args.traces.exists():
        clusters = load_jobs(args.traces)
    else:
        print(f"Trace scenarios skipped: {args.traces} not found (see the module's docstring).")
        print()

    if args.trials:
        print_quality(args, clusters)
        print()
    print_replays(args, clusters)


def print_quality(args: argparse.Namespace, clusters: dict[str, list[Job]] | None) -> None:
    seeds = range(args.seed, args.seed + args.seeds)
    print(
        f"Memory slices served as a share of the exhaustive optimum: {args.trials * len(seeds)}"
        f" random fleets of 2-4 GPUs on 2-3 hosts, {REQUESTS_PER_FLEET} requests each;"
        " vs first fit: fleets where place served more/as much/less"
    )
    scenarios = {
        "fill": [i for s in seeds for i in synthetic_instances(s, args.trials, 0.0)],
        "churn": [i for s in seeds for i in synthetic_instances(s, args.trials, 0.35)],
    }
    if clusters:
        scenarios["trace"] = [
            i for s in seeds for i in trace_instances(clusters, s, args.trials, (2, 4))
        ]
    rows = []
    for scenario, instances in scenarios.items():
        rows += quality_rows(scenario, quality(instances))
    headers = ("scenario", "policy", "mean", "worst", "at optimum", "slices", "vs first fit")
    print(table(headers, rows))


def print_replays(args: argparse.Namespace, clusters: dict[str, list[Job]] | None) -> None:
    print(
        f"On 64 GPUs (8 hosts x 8 GPUs): requests and memory slices served, per-decision ms"
        f" (fastest of {args.repeats} replays)"
    )
    rng = random.Random(args.seed)
    fleet_args = (rng.randrange(2**32), 64, 8)
    sample = random_fleet(*fleet_args)
    requests = [random_request(rng, sample, f"r{i}") for i in range(args.decisions)]
    events = random_events(rng, args.decisions, departure_rate=0.9)
    rows = replay("churn", fleet_args, requests, events, args.repeats)
    if clusters:
        jobs = clusters[args.trace_cluster][: args.decisions]
        requests = [
            trace_request(job, rng.choice(sample).gpu_model, f"r{i}") for i, job in enumerate(jobs)
        ]
        rows += replay(
            f"trace {args.trace_cluster}", fleet_args, requests, trace_events(jobs), args.repeats
        )
    headers = (
        "scenario",
        "policy",
        "decisions",
        "served",
        "slices",
        "vs first fit",
        "mean",
        "p50",
        "p99",
        "max",
    )
    print(table(headers, rows))


if __name__ == "__main__":
    main()
