"""Benchmark fleet placement: `python -m bench.placement [--seed N] [--trials N]`.

1. Quality. On small random fleets (2-4 GPUs on 2-3 hosts) and random request sequences
   with departures, compare the memory slices served by `place` and `first_fit` with the
   optimum: an exhaustive search over every placement choice, under the same rule that a
   request is served whenever it fits when it arrives.
2. Latency. Time each decision on a 64-GPU fleet (8 hosts x 8 GPUs) under churn.
"""

import argparse
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from functools import cache

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
POLICIES: dict[str, Policy] = {"place": place, "first_fit": first_fit}
MODELS = ("A100-40GB", "A100-80GB", "H100-80GB")  # 1g.10gb means two things among these


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


def unit_slices(key: Key) -> int:
    """Memory slices a unit occupies: its slot's, or the whole GPU's."""
    model, profile = key
    if profile is None:
        return catalog.geometry(model).memory_slices
    return catalog.profile(model, profile).memory_slices


def simulate(
    policy: Policy, fleet: list[GpuState], requests: list[Request], events: list[Event]
) -> tuple[int, list[float]]:
    """Memory slices served by the policy, and the seconds each decision took."""
    served = 0
    seconds = []
    model_of = {gpu.gpu_id: gpu.gpu_model for gpu in fleet}
    for kind, index in events:
        request = requests[index]
        if kind == "depart":
            release(fleet, request.allocation_id)
            continue
        began = time.perf_counter()
        placement = policy(fleet, request)
        seconds.append(time.perf_counter() - began)
        if placement is not None:
            served += sum(
                unit_slices((model_of[a.gpu_id], a.profile)) for a in placement.assignments
            )
    return served, seconds


def optimum(fleet: list[GpuState], requests: list[Request], events: list[Event]) -> int:
    """The most memory slices that any sequence of placement choices serves.

    The state is the free units per (host, unit kind) cell plus what each live request
    holds; units of one kind on one host are interchangeable, so this loses nothing. Every
    feasible way to serve an arriving request is tried (each group on any host, split in
    any way across the kinds it matches), and a request that fits must be served.
    """
    units = [
        (gpu.node, (gpu.gpu_model, slot.profile if slot else None))
        for gpu in fleet
        for slot in (gpu.slots or [None])
    ]
    cells = sorted(set(units), key=str)
    weight = [unit_slices(key) for _, key in cells]
    initial = tuple(units.count(cell) for cell in cells)

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
        return max(
            sum(weight[i] * n for i, n in held) + best(position + 1, after, live | {(index, held)})
            for after, held in options
        )

    return best(0, initial, frozenset())


def splits(count: int, available: list[int]) -> Iterator[tuple[int, ...]]:
    """Every way to take `count` units from pools of these sizes."""
    if not available:
        if count == 0:
            yield ()
        return
    for n in range(min(count, available[0]) + 1):
        for rest in splits(count - n, available[1:]):
            yield (n, *rest)


def quality(seed: int, trials: int, departure_rate: float) -> list[tuple]:
    """Per policy: mean and worst share of the optimum, and how often it reached it."""
    rng = random.Random(seed)
    shares: dict[str, list[float]] = {name: [] for name in POLICIES}
    for _ in range(trials):
        gpus = rng.randint(2, 4)
        fleet_args = (rng.randrange(2**32), gpus, rng.randint(2, min(3, gpus)))
        fleet = random_fleet(*fleet_args)
        requests = [random_request(rng, fleet, f"r{i}") for i in range(14)]
        events = random_events(rng, len(requests), departure_rate)
        best = optimum(fleet, requests, events)
        for name, policy in POLICIES.items():
            served, _ = simulate(policy, random_fleet(*fleet_args), requests, events)
            shares[name].append(served / best if best else 1.0)
    return [
        (
            name,
            f"{100 * statistics.mean(values):.2f}%",
            f"{100 * min(values):.1f}%",
            f"{100 * sum(v >= 1 for v in values) / trials:.1f}%",
        )
        for name, values in shares.items()
    ]


def latency(seed: int, decisions: int) -> list[tuple]:
    """Per policy on 64 GPUs under churn: slices served, mean/p50/p99/max ms per decision."""
    rng = random.Random(seed)
    fleet_seed = rng.randrange(2**32)
    sample = random_fleet(fleet_seed, 64, 8)
    requests = [random_request(rng, sample, f"r{i}") for i in range(decisions)]
    events = random_events(rng, decisions, departure_rate=0.9)
    rows = []
    for name, policy in POLICIES.items():
        served, seconds = simulate(policy, random_fleet(fleet_seed, 64, 8), requests, events)
        ms = sorted(1000 * s for s in seconds)
        rows.append(
            (
                name,
                len(ms),
                served,
                f"{statistics.mean(ms):.3f}",
                f"{ms[len(ms) // 2]:.3f}",
                f"{ms[int(len(ms) * 0.99)]:.3f}",
                f"{ms[-1]:.3f}",
            )
        )
    return rows


def table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """Plain text columns: numbers right-aligned, words left-aligned."""
    cells = [list(map(str, headers))] + [list(map(str, row)) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [cells[1][i][:1].isdigit() for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if right else c.ljust(w)
            for c, w, right in zip(row, widths, numeric, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(row) for row in cells[1:]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--decisions", type=int, default=5000)
    args = parser.parse_args()

    print(
        f"Memory slices served as a share of the exhaustive optimum: {args.trials} random"
        " fleets of 2-4 GPUs on 2-3 hosts, 14 requests each"
    )
    rows = []
    for scenario, departure_rate in (("fill", 0.0), ("churn", 0.35)):
        rows += [(scenario, *row) for row in quality(args.seed, args.trials, departure_rate)]
    print(table(("scenario", "policy", "mean", "worst", "at optimum"), rows))
    print()
    print("Per-decision latency on 64 GPUs (8 hosts x 8 GPUs) under churn, in ms")
    headers = ("policy", "decisions", "slices served", "mean", "p50", "p99", "max")
    print(table(headers, latency(args.seed, args.decisions)))


if __name__ == "__main__":
    main()
