"""Which sets of MIG GPU instances fit on one GPU, and where each one goes.

A set is valid iff every count is within the profile's maximum, at most one +me instance
exists, and every instance gets an allowed start with no two overlapping in memory slices
(shared/reference/mig.md). Creation order matters on a real GPU, so placements are searched,
never assumed from the order the caller listed the profiles in.
"""

import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import NamedTuple

from profiles.mig import catalog
from profiles.mig.catalog import GpuGeometry, MigProfile

_TIMES = "\N{MULTIPLICATION SIGN}"  # between a count and a profile name in reasons


class GiPlacement(NamedTuple):
    """A GPU instance at memory slices [start, start + size)."""

    profile: str
    start: int
    size: int


@dataclass(frozen=True)
class LayoutResult:
    ok: bool
    placements: list[GiPlacement] = field(default_factory=list)  # by start, when ok
    reason: str = ""  # why not, when not ok


def validate_layout(gpu_model: str, counts: Mapping[str, int]) -> LayoutResult:
    """Check that `counts` (profile name -> instances) fits on one GPU and place it.

    Empty counts are valid: MIG enabled with no instances (mig-parted's `all-enabled`).
    """
    try:
        geo = catalog.geometry(gpu_model)
    except KeyError as error:
        return LayoutResult(ok=False, reason=error.args[0])
    problem = _count_problem(geo, counts)
    if problem:
        return LayoutResult(ok=False, reason=problem)
    items = _largest_first(geo, counts)
    starts = _place(items)
    if starts is None:
        return LayoutResult(ok=False, reason=_explain_no_room(geo, items))
    # The reference derives that placed instances never over-commit compute slices; a wrong
    # catalog row would break that, so check rather than trust it.
    compute = sum(p.compute_slices for p in items)
    if compute > geo.compute_slices:
        return LayoutResult(
            ok=False, reason=f"needs {compute} compute slices; {geo.model} has {geo.compute_slices}"
        )
    placements = [
        GiPlacement(p.name, s, p.memory_slices) for p, s in zip(items, starts, strict=True)
    ]
    return LayoutResult(ok=True, placements=sorted(placements, key=lambda p: p.start))


def _count_problem(geo: GpuGeometry, counts: Mapping[str, int]) -> str:
    """The first rule that the counts alone break, or ""."""
    known = {p.name: p for p in geo.profiles}
    unknown = [name for name in counts if name not in known]
    if unknown:
        names = ", ".join(known)
        return f"{', '.join(unknown)}: no such MIG profile on {geo.model} (it has {names})"
    for name, count in counts.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            return f"count for {name} must be a whole number ≥ 0, not {count!r}"
        if count > known[name].max_count:
            return (
                f"{count}{_TIMES}{name} exceeds the maximum of {known[name].max_count} "
                f"for {name} on {geo.model}"
            )
    media = {name: count for name, count in counts.items() if known[name].media_extensions}
    if sum(media.values()) > 1:
        return (
            f"{_describe_counts(media)}: the media extensions go to a single instance, "
            f"so at most one +me profile fits on a GPU"
        )
    return ""


def _largest_first(geo: GpuGeometry, counts: Mapping[str, int]) -> list[MigProfile]:
    """One entry per instance; big and inflexible first so the search fails fast."""
    items = [p for p in geo.profiles for _ in range(counts.get(p.name, 0))]
    return sorted(items, key=lambda p: (-p.memory_slices, -p.compute_slices, len(p.starts)))


def _mask(start: int, size: int) -> int:
    return ((1 << size) - 1) << start


def _place(items: Sequence[MigProfile], occupied: int = 0, lowest: int = 0) -> list[int] | None:
    """Starts for `items` in order, by backtracking over memory-slice bitmasks, or None.

    Identical consecutive items take ascending starts (`lowest`), so the search never tries
    the same arrangement twice with two equal instances swapped.
    """
    if not items:
        return []
    first, rest = items[0], items[1:]
    for start in first.starts:
        mask = _mask(start, first.memory_slices)
        if start < lowest or occupied & mask:
            continue
        next_lowest = start + 1 if rest and rest[0] == first else 0
        tail = _place(rest, occupied | mask, next_lowest)
        if tail is not None:
            return [start, *tail]
    return None


def _explain_no_room(geo: GpuGeometry, items: list[MigProfile]) -> str:
    """Name the longest placeable prefix and the instance that no arrangement fits after it."""
    fitting = 1  # any single instance fits an empty GPU
    while _place(items[: fitting + 1]) is not None:
        fitting += 1
    prefix, blocked = items[:fitting], items[fitting]
    used = sum(p.memory_slices for p in prefix)
    described = _describe_counts(Counter(p.name for p in prefix))
    verb = "uses" if len(prefix) == 1 else "use"
    another = "another " if blocked in prefix else ""
    if used + blocked.memory_slices > geo.memory_slices:
        amount = "all" if used == geo.memory_slices else f"{used} of"
        return (
            f"{described} {verb} {amount} {geo.memory_slices} memory slices; "
            f"no room for {another}{blocked.name}"
        )
    starts = ", ".join(map(str, blocked.starts))
    return (
        f"{described} {verb} {used} of {geo.memory_slices} memory slices, and no arrangement "
        f"leaves room for {another}{blocked.name} (allowed starts: {starts})"
    )


def _describe_counts(counts: Mapping[str, int]) -> str:
    return " + ".join(name if n == 1 else f"{n}{_TIMES}{name}" for name, n in counts.items() if n)


def enumerate_layouts(gpu_model: str) -> list[dict[str, int]]:
    """Every valid non-empty layout of the model, biggest profiles first, then by count."""
    return [_as_dict(gpu_model, vector) for vector in _valid_vectors(gpu_model)]


def maximal_layouts(gpu_model: str) -> list[dict[str, int]]:
    """Valid layouts to which no further instance of any profile can be added."""
    valid = set(_valid_vectors(gpu_model))
    size = len(catalog.geometry(gpu_model).profiles)

    def grown(vector: tuple[int, ...], index: int) -> tuple[int, ...]:
        return (*vector[:index], vector[index] + 1, *vector[index + 1 :])

    return [
        _as_dict(gpu_model, vector)
        for vector in _valid_vectors(gpu_model)
        if not any(grown(vector, i) in valid for i in range(size))
    ]


@cache
def _valid_vectors(gpu_model: str) -> tuple[tuple[int, ...], ...]:
    """Valid count vectors, in the catalog's profile order; cached per model."""
    geo = catalog.geometry(gpu_model)
    ranges = [range(p.max_count + 1) for p in geo.profiles]
    valid = []
    for vector in itertools.product(*ranges):
        memory = sum(p.memory_slices * n for p, n in zip(geo.profiles, vector, strict=True))
        if (
            0 < memory <= geo.memory_slices
            and validate_layout(gpu_model, _as_dict(gpu_model, vector)).ok
        ):
            valid.append(vector)
    # Largest profiles (last in the catalog) first, higher counts first.
    return tuple(sorted(valid, key=lambda v: tuple(-n for n in reversed(v))))


def _as_dict(gpu_model: str, vector: Sequence[int]) -> dict[str, int]:
    profiles = catalog.geometry(gpu_model).profiles
    return {p.name: n for p, n in zip(profiles, vector, strict=True) if n}


def placements_problem(gpu_model: str, placements: Sequence[GiPlacement]) -> str:
    """Why these concrete placements cannot coexist on one GPU ("" when they can).

    Checks profiles, sizes, allowed starts and overlap, not counts or +me: those belong to
    validate_layout.
    """
    geo = catalog.geometry(gpu_model)
    occupied = 0
    for name, start, size in placements:
        try:
            mig_profile = catalog.profile(gpu_model, name)
        except KeyError as error:
            return error.args[0]
        if size != mig_profile.memory_slices:
            return f"{name} uses {mig_profile.memory_slices} memory slices, not {size}"
        if start not in mig_profile.starts:
            allowed = ", ".join(map(str, mig_profile.starts))
            return f"{name} cannot start at memory slice {start} on {geo.model} ({allowed})"
        if occupied & _mask(start, size):
            return f"{name} at memory slice {start} overlaps another instance"
        occupied |= _mask(start, size)
    return ""


def slice_map(gpu_model: str, placements: Sequence[GiPlacement]) -> list[str | None]:
    """For drawing: the profile occupying each memory slice, None where free."""
    problem = placements_problem(gpu_model, placements)
    if problem:
        raise ValueError(problem)
    cells: list[str | None] = [None] * catalog.geometry(gpu_model).memory_slices
    for name, start, size in placements:
        cells[start : start + size] = [name] * size
    return cells
