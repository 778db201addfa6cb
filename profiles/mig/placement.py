"""Fleet placement: choose concrete GPUs and MIG slots for a request.

The model: a GPU is either whole (MIG disabled) or MIG-enabled with a fixed layout of GPU
instances ("slots", created by mig-parted), each free or held by one allocation. A request
is all-or-nothing and made of resource groups. A group is what one pod asks for, and
Kubernetes serves a container's `nvidia.com/gpu: 4` or `nvidia.com/mig-1g.10gb: 2` from a
single node, so every unit of a group comes from one host; different groups may use
different hosts.

Because slots are fixed, fragmentation happens across hosts: a 1-slice request on the host
with the most free slices can leave no host able to serve a later 7-slice pod. `place`
therefore keeps each resource's free capacity concentrated (best fit, scored below).
"""

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import chain

from profiles.mig import catalog, layout

# A kind of unit: (GPU model, MIG profile), with profile None for a whole GPU.
Key = tuple[str, str | None]
_Choice = tuple[str, dict[Key, int]]  # a host and how many units of each kind to take there


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
        placements = [
            layout.GiPlacement(
                s.profile, s.start, catalog.profile(self.gpu_model, s.profile).memory_slices
            )
            for s in self.slots
        ]
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
       a candidate, taking from the host's smallest matching pools first (a pool: the free
       units of one kind, a profile on one model or whole GPUs of one model).
    2. Rank the candidates by how much they lower the fleet's free capacity (see
       `free_capacity`: the sum of squares of free units per resource and host, largest when
       free units sit together, which is what a later multi-unit pod needs). Ties go to the
       earlier host in fleet order, which is where first fit would go.
    3. Backtrack if a later group cannot fit (all-or-nothing), skipping hosts whose free
       units look the same to this request as a host already tried.
    4. Work out first fit's placement too and keep it instead when it leaves more free
       capacity: choosing group by group can miss the best combination, and this way `place`
       never leaves the fleet more fragmented than first fit would.
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


def free_capacity(fleet: Iterable[GpuState]) -> int:
    """How well the fleet's free units serve future pods (higher is better).

    Over every host, the sum of (free units)² for every resource a pod may ask for, both per
    model and for any model (`nvidia.com/gpu`, `nvidia.com/mig-1g.10gb`). Squares reward
    keeping a resource's free units together on one host: 4 free units on one host can serve
    a 4-unit pod, 2 + 2 on two hosts cannot, and 16 > 8. `place` never lowers it more than
    `first_fit` would.
    """
    return sum(
        _capacity(Counter({key: len(u) for key, u in kinds.items()}))
        for kinds in _free_units(fleet).values()
    )


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
    choices = _search(free, groups, relevant, best_fit)
    if choices is None:
        return None
    if best_fit:
        # None when only another split across kinds fits: first fit tries one per host.
        baseline = _search(free, groups, relevant, best_fit=False)
        if baseline is not None and _capacity_lost(free, baseline) < _capacity_lost(free, choices):
            choices = baseline
    assignments = _hold(units, choices, request.allocation_id, best_fit)
    return Placement(request.allocation_id, tuple(assignments))


def _capacity_lost(free: dict[str, Counter], choices: list[_Choice]) -> int:
    """How much the choices lower the free capacity of the hosts they use."""
    after = {node: Counter(free[node]) for node, _ in choices}
    for node, take in choices:
        after[node].subtract(take)
    return sum(_capacity(free[node]) - _capacity(counts) for node, counts in after.items())


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
    best_fit: bool,
) -> list[_Choice] | None:
    """A choice per group, trying better hosts first and backtracking; None if none fit."""
    if not groups:
        return []
    group, rest = groups[0], groups[1:]
    tried = set()
    for node, take in _options(free, group, best_fit):
        # Hosts with the same free units of the kinds this request wants are interchangeable.
        signature = frozenset((key, n) for key, n in free[node].items() if key in relevant and n)
        if signature in tried:
            continue
        tried.add(signature)
        takes: Iterable[dict[Key, int]] = [take]
        if best_fit:
            takes = chain(takes, _other_takes(free[node], group, take, rest))
        for attempt in takes:
            free[node].subtract(attempt)
            tail = _search(free, rest, relevant, best_fit)
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


def _options(free: dict[str, Counter], group: ResourceGroup, best_fit: bool) -> list[_Choice]:
    """Hosts that can serve the group, best first, each with the units it would give.

    Best fit ranks them by the free capacity they would lose, then by fleet order. Taking
    from the smallest pools first loses the least capacity on a host: a square shrinks less
    the smaller it is.
    """
    ranked = []
    for order, (node, counts) in enumerate(free.items()):
        pools = [(key, n) for key, n in counts.items() if n and group.matches(key)]
        if sum(n for _, n in pools) < group.count:
            continue
        if not best_fit:
            ranked.append(((order,), (node, _take(pools, group.count))))
            continue
        pools.sort(key=lambda pool: pool[1])  # drain small pools, keep big ones whole
        take = _take(pools, group.count)
        shrink = _capacity(counts) - _capacity(counts - Counter(take))
        ranked.append(((shrink, order), (node, take)))
    return [option for _, option in sorted(ranked, key=lambda r: r[0])]


def _capacity(counts: Counter) -> int:
    """One host's share of `free_capacity`."""
    any_model: Counter = Counter()
    for (_, profile), n in counts.items():
        any_model[profile] += n
    return sum(n * n for n in counts.values()) + sum(n * n for n in any_model.values())


def _take(pools: Sequence[tuple[Key, int]], count: int) -> dict[Key, int]:
    """Take `count` units from the pools in order."""
    take = {}
    for key, available in pools:
        if count == 0:
            break
        take[key] = min(available, count)
        count -= take[key]
    return take
