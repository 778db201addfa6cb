"""Fleet placement: choose concrete GPUs and MIG slots for a request.

The model: a GPU is either whole (MIG disabled) or MIG-enabled with a fixed layout of GPU
instances ("slots", created by mig-parted), each free or held by one allocation. A request
is all-or-nothing and made of resource groups. A group is what one pod asks for, and
Kubernetes serves a container's `nvidia.com/gpu: 4` or `nvidia.com/mig-1g.10gb: 2` from a
single node, so every unit of a group comes from one host; different groups may use
different hosts.

Because slots are fixed, fragmentation happens across hosts: a 1-slice request on the host
with the most free slices can leave no host able to serve a later 7-slice pod, and a
request that accepts any model can take the last slot of a model that another request
needs. `place` therefore scores each choice by the pods it leaves the fleet unable to serve
(`_Outlook`).
"""

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from itertools import chain

from profiles.mig import catalog, layout

# A kind of unit: (GPU model, MIG profile), with profile None for a whole GPU.
Key = tuple[str, str | None]
_Choice = tuple[str, dict[Key, int]]  # a host and how many units of each kind to take there

# The pods `place` keeps room for (`_Outlook`): 1, 2 or 3 units of one kind, half of them
# 1-unit pods, and the share of pods that accept any GPU model. They are the benchmark's
# request mix (bench.placement); its quality barely moved with an any-model share of 0.2 or
# 0.6, or with sizes 1-3 equally likely.
POD_SIZES = {1: 0.5, 2: 0.25, 3: 0.25}
ANY_MODEL_SHARE = 0.4
# A choice within this factor of the cheapest expected loss is as good a bet, and then
# `place` goes where first fit goes. With 1.0 (always the cheapest) the benchmark's mean
# was higher in 9 of 10 runs (seeds 1-5, fill and churn; by up to 0.28 points), but more
# fleets did worse than under first fit, and on seed 2 one fill fleet did worse than first
# fit's worst (71.4 % against 76.5 %).
FIRST_FIT_TOLERANCE = 1.5
WHOLE_GPU_SLICES = 8  # a whole GPU outside the MIG catalog counts as 8 memory slices


@dataclass
class Slot:
    """One GPU instance of a MIG layout."""

    profile: str
    start: int
    allocation: str | None = None


@dataclass
class GpuState:
    """One GPU: whole when `slots` is None, else MIG-enabled with these GPU instances."""

    gpu_id: str
    gpu_model: str
    host: str = ""  # "" when unknown: the GPU then counts as a host of its own
    slots: list[Slot] | None = None
    allocation: str | None = None  # the holder of a whole GPU

    def __post_init__(self) -> None:
        if self.slots is None:
            return
        try:
            placements = [
                layout.GiPlacement(
                    s.profile, s.start, catalog.profile(self.gpu_model, s.profile).memory_slices
                )
                for s in self.slots
            ]
        except KeyError as error:  # not a GPU instance profile of the model
            raise ValueError(f"GPU {self.gpu_id}: {error.args[0]}") from None
        problem = layout.placements_problem(self.gpu_model, placements)
        if problem:
            raise ValueError(f"GPU {self.gpu_id}: {problem}")

    @classmethod
    def mig(
        cls, gpu_id: str, gpu_model: str, counts: Mapping[str, int], host: str = ""
    ) -> "GpuState":
        """A MIG GPU with all slots free, laid out as validate_layout places `counts`."""
        result = layout.validate_layout(gpu_model, counts)
        if not result.ok:
            raise ValueError(f"GPU {gpu_id}: {result.reason}")
        slots = [Slot(p.profile, p.start) for p in result.placements]
        return cls(gpu_id, gpu_model, host, slots=slots)

    @property
    def node(self) -> str:
        return self.host or self.gpu_id


@dataclass(frozen=True)
class ResourceGroup:
    """N whole GPUs, or N MIG slots of `profile`; `gpu_model` None accepts any model.

    Without a model, a profile name matches every GPU that has a profile of that name, as
    the device plugin's `nvidia.com/mig-1g.10gb` does (a 2-slice 1g on A100-40GB, a 1-slice
    1g on A100-80GB): pass the model whenever the difference matters.
    """

    count: int
    gpu_model: str | None = None
    profile: str | None = None

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"a resource group needs a count ≥ 1, not {self.count}")
        if self.profile is None:
            return
        if self.gpu_model is not None:
            catalog.profile(self.gpu_model, self.profile)  # raises KeyError if unknown
        elif not _models_with_profile(self.profile):
            raise ValueError(f"no GPU in the catalog has a MIG profile {self.profile!r}")

    def matches(self, key: Key) -> bool:
        model, profile = key
        return profile == self.profile and self.gpu_model in (None, model)


@dataclass(frozen=True)
class Request:
    allocation_id: str
    groups: tuple[ResourceGroup, ...]

    def __post_init__(self) -> None:
        if not self.allocation_id or not self.groups:
            raise ValueError("a request needs an allocation id and at least one group")


@dataclass(frozen=True)
class Assignment:
    gpu_id: str
    host: str
    profile: str | None  # None: the whole GPU
    start: int | None  # first memory slice of the slot


@dataclass(frozen=True)
class Placement:
    allocation_id: str
    assignments: tuple[Assignment, ...]


def _models_with_profile(profile_name: str) -> list[str]:
    return [
        model
        for model in catalog.mig_capable_models()
        if any(p.name == profile_name for p in catalog.geometry(model).profiles)
    ]


@dataclass
class _Unit:
    """A whole GPU or one slot: the thing an allocation holds."""

    gpu: GpuState
    slot: Slot | None

    @property
    def key(self) -> Key:
        return (self.gpu.gpu_model, None if self.slot is None else self.slot.profile)

    @property
    def holder(self) -> str | None:
        return self.gpu.allocation if self.slot is None else self.slot.allocation

    def hold(self, allocation_id: str | None) -> None:
        if self.slot is None:
            self.gpu.allocation = allocation_id
        else:
            self.slot.allocation = allocation_id

    def assignment(self) -> Assignment:
        if self.slot is None:
            return Assignment(self.gpu.gpu_id, self.gpu.node, None, None)
        return Assignment(self.gpu.gpu_id, self.gpu.node, self.slot.profile, self.slot.start)


def _units(fleet: Iterable[GpuState]) -> Iterator[_Unit]:
    for gpu in fleet:
        if gpu.slots is None:
            yield _Unit(gpu, None)
        else:
            yield from (_Unit(gpu, slot) for slot in gpu.slots)


def _free_units(fleet: Iterable[GpuState]) -> dict[str, dict[Key, list[_Unit]]]:
    """Free units by host, then by key, in fleet order."""
    free: dict[str, dict[Key, list[_Unit]]] = defaultdict(lambda: defaultdict(list))
    for unit in _units(fleet):
        if unit.holder is None:
            free[unit.gpu.node][unit.key].append(unit)
    return free


def place(fleet: Sequence[GpuState], request: Request) -> Placement | None:
    """Place the request so the fleet stays usable; mark the units; None if it cannot fit.

    1. Handle groups largest first. For each, every host with enough matching free units is
       a candidate, with the split across the kinds it matches there (a profile on any
       model) that costs least.
    2. Rank the candidates by their cost: the pods the fleet is expected to be asked for
       next and could no longer serve (`_Outlook`), so a request takes units from where they
       are plentiful for the demand, not from the last slots of a model or from a host that
       still has room for a multi-unit pod. The cost is an expectation, so the candidates
       within FIRST_FIT_TOLERANCE of the cheapest are taken in fleet order, where first fit
       would go; among equally cheap ones, the host with the fewest matching free units
       (best fit), keeping emptier hosts for pods bigger than the cost weighs.
    3. Backtrack if a later group cannot fit (all-or-nothing), skipping hosts whose free
       units look the same to this request as a host already tried.
    4. Work out first fit's placement too and keep it when it costs at most
       FIRST_FIT_TOLERANCE times as much (and not the same): choosing group by group can
       miss the best combination, and `place` differs from first fit only where the
       difference is clear.
    5. Within a host, take slots on the GPUs with the fewest free slots, so that partly used
       GPUs fill up and others stay entirely free; on one GPU, take the slot that keeps the
       longest run of free memory slices (the catalog's placement geometry), where a larger
       GPU instance could still be created.

    Placing an allocation id that already holds units returns its placement unchanged, so a
    retried task does not allocate twice.
    """
    return _allocate(fleet, request, best_fit=True)


def first_fit(fleet: Sequence[GpuState], request: Request) -> Placement | None:
    """Baseline for the benchmark: the same all-or-nothing search, taking the first host
    (in fleet order) with room and the first free units on it."""
    return _allocate(fleet, request, best_fit=False)


def release(fleet: Iterable[GpuState], allocation_id: str) -> int:
    """Free every unit the allocation holds; return how many there were."""
    held = [unit for unit in _units(fleet) if unit.holder == allocation_id]
    for unit in held:
        unit.hold(None)
    return len(held)


def find_placement(fleet: Iterable[GpuState], allocation_id: str) -> Placement | None:
    """What the allocation holds now, or None."""
    held = tuple(unit.assignment() for unit in _units(fleet) if unit.holder == allocation_id)
    return Placement(allocation_id, held) if held else None


def _allocate(fleet: Sequence[GpuState], request: Request, best_fit: bool) -> Placement | None:
    """Decide on counts per host and unit kind, then hold concrete units."""
    existing = find_placement(fleet, request.allocation_id)
    if existing is not None:
        return existing
    units = _free_units(fleet)
    free = {
        node: Counter({key: len(u) for key, u in kinds.items()}) for node, kinds in units.items()
    }
    groups = sorted(request.groups, key=lambda g: -g.count)
    relevant = {
        key for counts in free.values() for key in counts if any(g.matches(key) for g in groups)
    }
    if not relevant:
        return None
    outlook = _Outlook(fleet, free, relevant) if best_fit else None
    choices = _search(free, groups, relevant, outlook)
    if choices is None:
        return None
    if outlook is not None:
        # None when only another split across kinds fits: first fit tries one per host.
        baseline = _search(free, groups, relevant, None)
        if baseline is not None and _first_fit_stands(outlook, baseline, choices):
            choices = baseline
    assignments = _hold(units, choices, request.allocation_id, best_fit)
    return Placement(request.allocation_id, tuple(assignments))


def _first_fit_stands(outlook: "_Outlook", first: list[_Choice], best: list[_Choice]) -> bool:
    """Whether first fit's choice costs at most FIRST_FIT_TOLERANCE times the best one
    found; at equal cost the best one stands, as its hosts were ranked best fit first."""
    first_cost, best_cost = outlook.loss(first), outlook.loss(best)
    close = first_cost <= FIRST_FIT_TOLERANCE * best_cost
    return close and not math.isclose(first_cost, best_cost, rel_tol=1e-9)


@dataclass(frozen=True)
class _Pod:
    """A pod the fleet may be asked for: `count` units of one of `keys`, on one host."""

    keys: tuple[Key, ...]
    count: int
    slices: int  # memory slices it asks for
    share: float  # its share of the pods asked for


class _Outlook:
    """What the fleet can still serve, and how much of it a choice takes away.

    Demand is read from the fleet itself: operators lay GPUs out for the pods they expect,
    so each GPU stands for an equal share of the pods, split evenly over its slots (a
    whole GPU: one kind). A pod asks for POD_SIZES units of that kind, on its model or, for
    ANY_MODEL_SHARE of them, on any model with that profile.

    The fleet can serve N such pods (per host, its matching free units // count, summed).
    Over the next H requests, about as many as the free memory slices can hold, the pods of
    one kind asked for are taken as Poisson(H x share): the n-th servable pod is used with
    probability P(D >= n). A choice that lowers N from N to N - d therefore costs
    slices x (P(D >= N - d + 1) + ... + P(D >= N)): nearly nothing from a kind with room to
    spare, a lot from the last units of a kind or the last host with room for a big pod.
    """

    def __init__(self, fleet: Sequence[GpuState], free: dict[str, Counter], relevant: set[Key]):
        self.free = free
        pods = _pods(tuple(_layout(gpu) for gpu in fleet))
        free_slices = sum(
            n * _unit_slices(key) for counts in free.values() for key, n in counts.items()
        )
        horizon = free_slices / sum(pod.slices * pod.share for pod in pods)
        self.pods = [pod for pod in pods if relevant.intersection(pod.keys)]
        self.servable = [
            sum(_servable(counts, pod) for counts in free.values()) for pod in self.pods
        ]
        self.mean = [horizon * pod.share for pod in self.pods]

    def loss(self, choices: Sequence[_Choice]) -> float:
        """The expected memory slices of pods the choices leave unservable."""
        after: dict[str, Counter] = {}
        for node, take in choices:
            after.setdefault(node, Counter(self.free[node])).subtract(take)
        total = 0.0
        for pod, servable, mean in zip(self.pods, self.servable, self.mean, strict=True):
            lost = sum(
                _servable(self.free[node], pod) - _servable(counts, pod)
                for node, counts in after.items()
            )
            if lost:
                total += pod.slices * sum(
                    _tail(mean, n) for n in range(servable - lost + 1, servable + 1)
                )
        return total


def _layout(gpu: GpuState) -> tuple[Key, ...]:
    """The kinds of the GPU's units, free or held."""
    if gpu.slots is None:
        return ((gpu.gpu_model, None),)
    return tuple((gpu.gpu_model, slot.profile) for slot in gpu.slots)


@lru_cache(maxsize=64)
def _pods(layouts: tuple[tuple[Key, ...], ...]) -> tuple[_Pod, ...]:
    """The pods a fleet with these GPU layouts will be asked for (see `_Outlook`)."""
    share: Counter = Counter()
    for units in layouts:
        for key in units:
            share[key] += 1 / len(units)
    by_profile: dict[str | None, list[Key]] = defaultdict(list)
    for key in share:
        by_profile[key[1]].append(key)
    total = sum(share.values())
    kinds = [((key,), _unit_slices(key), (1 - ANY_MODEL_SHARE) * share[key]) for key in share]
    kinds += [
        (tuple(keys), min(map(_unit_slices, keys)), ANY_MODEL_SHARE * sum(share[k] for k in keys))
        for keys in by_profile.values()
    ]
    return tuple(
        _Pod(keys, count, count * slices, weight / total * size_share)
        for keys, slices, weight in kinds
        for count, size_share in POD_SIZES.items()
    )


def _servable(counts: Counter, pod: _Pod) -> int:
    return sum(counts[key] for key in pod.keys) // pod.count


@lru_cache(maxsize=65536)
def _tail(mean: float, n: int) -> float:
    """P(D >= n) for D ~ Poisson(mean), n >= 1."""
    term = math.exp(-mean)
    below = term
    for k in range(1, n):
        term *= mean / k
        below += term
    return max(0.0, 1.0 - below)


@cache
def _unit_slices(key: Key) -> int:
    """Memory slices of a slot, or of a whole GPU."""
    model, profile = key
    if profile is not None:
        return catalog.profile(model, profile).memory_slices
    if model in catalog.mig_capable_models():
        return catalog.geometry(model).memory_slices
    return WHOLE_GPU_SLICES


def _hold(
    units: dict[str, dict[Key, list[_Unit]]],
    choices: list[_Choice],
    allocation_id: str,
    best_fit: bool,
) -> list[Assignment]:
    """Hold the chosen number of units of each kind on each host.

    Best fit takes each unit from the GPU with the fewest free units, and on that GPU the
    slot that leaves the longest run of memory slices outside held slots; first fit takes
    them in fleet order.
    """
    free_per_gpu = Counter(
        u.gpu.gpu_id for kinds in units.values() for us in kinds.values() for u in us
    )
    assignments = []
    for node, take in choices:
        for key, count in take.items():
            pool = units[node][key]
            for _ in range(count):
                index = 0
                if best_fit:
                    index = min(
                        range(len(pool)),
                        key=lambda i: (free_per_gpu[pool[i].gpu.gpu_id], -_run_after(pool[i])),
                    )
                unit = pool.pop(index)
                free_per_gpu[unit.gpu.gpu_id] -= 1
                unit.hold(allocation_id)
                assignments.append(unit.assignment())
    return assignments


def _run_after(unit: _Unit) -> int:
    """The longest run of memory slices outside held slots on the unit's GPU, once the unit
    is held too (0 for a whole GPU)."""
    if unit.slot is None:
        return 0
    gpu = unit.gpu
    held = _slot_mask(gpu.gpu_model, unit.slot.profile, unit.slot.start)
    for slot in gpu.slots or ():
        if slot.allocation is not None:
            held |= _slot_mask(gpu.gpu_model, slot.profile, slot.start)
    return _longest_free_run(held, catalog.geometry(gpu.gpu_model).memory_slices)


@cache
def _slot_mask(gpu_model: str, profile: str, start: int) -> int:
    size = catalog.profile(gpu_model, profile).memory_slices
    return ((1 << size) - 1) << start


@cache
def _longest_free_run(held: int, slices: int) -> int:
    longest = run = 0
    for i in range(slices):
        run = 0 if held >> i & 1 else run + 1
        longest = max(longest, run)
    return longest


def _search(
    free: dict[str, Counter],
    groups: Sequence[ResourceGroup],
    relevant: set[Key],
    outlook: _Outlook | None,
) -> list[_Choice] | None:
    """A choice per group, trying better hosts first and backtracking; None if none fit.
    Without an outlook, hosts come in fleet order (first fit)."""
    if not groups:
        return []
    group, rest = groups[0], groups[1:]
    tried = set()
    for node, take in _options(free, group, outlook):
        # Hosts with the same free units of the kinds this request wants are interchangeable.
        signature = frozenset((key, n) for key, n in free[node].items() if key in relevant and n)
        if signature in tried:
            continue
        tried.add(signature)
        takes: Iterable[dict[Key, int]] = [take]
        if outlook is not None:
            takes = chain(takes, _other_takes(free[node], group, take, rest))
        for attempt in takes:
            free[node].subtract(attempt)
            tail = _search(free, rest, relevant, outlook)
            free[node].update(attempt)
            if tail is not None:
                return [(node, attempt), *tail]
    return None


def _other_takes(
    counts: Counter, group: ResourceGroup, tried: dict[Key, int], rest: Sequence[ResourceGroup]
) -> Iterator[dict[Key, int]]:
    """Other ways to split the group across its kinds on one host, for when a later group
    of the request needs the units the first way took (so `place` finds a placement whenever
    one exists). Only a group matching several kinds, e.g. a profile on any model, has them."""
    pools = [(key, n) for key, n in counts.items() if n and group.matches(key)]
    if len(pools) < 2 or not any(g.matches(key) for g in rest for key, _ in pools):
        return
    for split in _splits(group.count, [n for _, n in pools]):
        take = {key: n for (key, _), n in zip(pools, split, strict=True) if n}
        if take != tried:
            yield take


def _splits(count: int, available: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """Every way to take `count` units from pools of these sizes, in order."""
    if not available:
        if count == 0:
            yield ()
        return
    for n in range(min(count, available[0]), -1, -1):
        for rest in _splits(count - n, available[1:]):
            yield (n, *rest)


def _options(
    free: dict[str, Counter], group: ResourceGroup, outlook: _Outlook | None
) -> list[_Choice]:
    """Hosts that can serve the group, best first, each with the units it would give.

    Without an outlook, hosts come in fleet order, each taking its kinds in order (first
    fit). With one, each host offers its cheapest split across the kinds the group matches;
    the hosts that cost at most FIRST_FIT_TOLERANCE times the cheapest come first, in fleet
    order, then the others by cost. Among hosts of equal cost, the one with the fewest
    matching free units goes first (best fit): the cost cannot tell them apart, and a pod
    bigger than those it weighs may need the emptier host.
    """
    options = []
    for node, counts in free.items():
        pools = [(key, n) for key, n in counts.items() if n and group.matches(key)]
        if sum(n for _, n in pools) < group.count:
            continue
        if outlook is None:
            options.append((0.0, (node, _take(pools, group.count))))
            continue
        takes = (
            {key: n for (key, _), n in zip(pools, split, strict=True) if n}
            for split in _splits(group.count, [n for _, n in pools])
        )
        # The first split is first fit's, so it wins ties.
        options.append(
            min(((outlook.loss([(node, t)]), (node, t)) for t in takes), key=lambda o: o[0])
        )
    if outlook is None or not options:
        return [choice for _, choice in options]
    good_enough = FIRST_FIT_TOLERANCE * min(cost for cost, _ in options)
    close = [cost for cost, _ in options if cost <= good_enough]

    def rank(option: tuple[float, _Choice]) -> tuple[int, float, int]:
        cost, (node, _) = option
        if cost > good_enough:
            return (1, cost, 0)
        # Where hosts cost the same, the one with the fewest matching free units goes first.
        same = next(i for i, other in enumerate(close) if math.isclose(cost, other, rel_tol=1e-9))
        return (0, same, sum(n for key, n in free[node].items() if group.matches(key)))

    return [choice for _, choice in sorted(options, key=rank)]


def _take(pools: Sequence[tuple[Key, int]], count: int) -> dict[Key, int]:
    """Take `count` units from the pools in order."""
    take = {}
    for key, available in pools:
        if count == 0:
            break
        take[key] = min(available, count)
        count -= take[key]
    return take
