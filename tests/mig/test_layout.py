import itertools
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from profiles.mig import catalog
from profiles.mig.layout import (
    GiPlacement,
    enumerate_layouts,
    maximal_layouts,
    slice_map,
    validate_layout,
)


def brute_force_layouts(model: str) -> set[frozenset]:
    """Every valid layout, found independently of the validator: tile the memory slices
    left to right (each slice empty or the start of an instance allowed there), then keep
    the tilings whose counts respect the maxima and the single +me (or +me.all) rule."""
    geo = catalog.geometry(model)
    options = [(p.name, s, p.memory_slices) for p in geo.profiles for s in p.starts]

    def tilings(position: int, chosen: tuple[str, ...]):
        if position >= geo.memory_slices:
            yield chosen
            return
        yield from tilings(position + 1, chosen)
        for name, start, size in options:
            if start == position and start + size <= geo.memory_slices:
                yield from tilings(position + size, (*chosen, name))

    maxima = {p.name: p.max_count for p in geo.profiles}
    layouts = set()
    for chosen in tilings(0, ()):
        counts = Counter(chosen)
        media = sum(n for name, n in counts.items() if "+me" in name)  # +me or +me.all
        if counts and media <= 1 and all(n <= maxima[name] for name, n in counts.items()):
            layouts.add(frozenset(counts.items()))
    return layouts


def check_placements(model: str, counts: dict[str, int], placements: list[GiPlacement]) -> None:
    """The validator's placements must be the requested instances, each at an allowed
    start, with the right size and no shared memory slice."""
    assert Counter(p.profile for p in placements) == Counter(
        {name: n for name, n in counts.items() if n}
    )
    used: set[int] = set()
    for name, start, size in placements:
        mig_profile = catalog.profile(model, name)
        assert start in mig_profile.starts
        assert size == mig_profile.memory_slices
        cells = set(range(start, start + size))
        assert not cells & used
        assert max(cells) < catalog.geometry(model).memory_slices
        used |= cells
    compute = sum(catalog.profile(model, p.profile).compute_slices for p in placements)
    assert compute <= catalog.geometry(model).compute_slices


@pytest.mark.parametrize("model", ["A100-40GB", "H100-80GB", "A30", "B200", "RTX-PRO-6000"])
def test_enumeration_matches_the_brute_force(model):
    layouts = enumerate_layouts(model)
    assert {frozenset(layout.items()) for layout in layouts} == brute_force_layouts(model)
    assert len(layouts) == len({frozenset(layout.items()) for layout in layouts})
    for layout in layouts:
        result = validate_layout(model, layout)
        assert result.ok
        check_placements(model, layout, result.placements)
        drawn = slice_map(model, result.placements)
        assert len(drawn) - drawn.count(None) == sum(p.size for p in result.placements)


@pytest.mark.parametrize("model", ["A100-40GB", "H100-80GB"])
def test_every_count_vector_is_judged_like_the_brute_force(model):
    """Not only the valid ones: every combination of counts up to max + 1."""
    valid = brute_force_layouts(model)
    profiles = catalog.geometry(model).profiles
    for vector in itertools.product(*(range(p.max_count + 2) for p in profiles)):
        counts = {p.name: n for p, n in zip(profiles, vector, strict=True) if n}
        if counts:
            assert validate_layout(model, counts).ok == (frozenset(counts.items()) in valid)


def test_enumeration_is_deterministic():
    assert enumerate_layouts("A100-40GB") == enumerate_layouts("A100-40GB")
    assert enumerate_layouts("A100-40GB")[0] == {"7g.40gb": 1}


@pytest.mark.parametrize("model", ["A100-40GB", "H100-80GB", "A30"])
def test_maximal_layouts_admit_no_further_instance(model):
    valid = brute_force_layouts(model)
    maximal = maximal_layouts(model)
    names = [p.name for p in catalog.geometry(model).profiles]
    for layout in maximal:
        for name in names:
            grown = Counter(layout) + Counter({name: 1})
            assert frozenset(grown.items()) not in valid
    expected = [
        layout
        for layout in enumerate_layouts(model)
        if all(frozenset((Counter(layout) + Counter({n: 1})).items()) not in valid for n in names)
    ]
    assert maximal == expected
    assert {"1g.5gb": 7} in maximal_layouts("A100-40GB")
    assert {"1g.5gb": 6, "1g.10gb": 1} in maximal_layouts("A100-40GB")


@pytest.mark.parametrize(
    "counts",
    [
        {"1g.5gb": 7},
        {"3g.20gb": 2},
        {"3g.20gb": 1, "2g.10gb": 1, "1g.5gb": 2},
        {"4g.20gb": 1, "3g.20gb": 1},
        {"2g.10gb": 3, "1g.5gb": 1},
        # The guide's creation-order trap: 19,19,14,9 fails on a GPU, 9,19,14,19 succeeds.
        {"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1},
    ],
)
def test_the_reference_valid_layouts_are_valid(counts):
    result = validate_layout("A100-40GB", counts)
    assert result.ok, result.reason
    check_placements("A100-40GB", counts, result.placements)


@pytest.mark.parametrize(
    ("counts", "reason"),
    [
        ({"1g.5gb": 8}, "8×1g.5gb exceeds the maximum of 7 for 1g.5gb on A100-40GB"),
        ({"4g.20gb": 2}, "2×4g.20gb exceeds the maximum of 1 for 4g.20gb on A100-40GB"),
        ({"3g.20gb": 2, "1g.5gb": 1}, "2×3g.20gb use all 8 memory slices; no room for 1g.5gb"),
        ({"7g.40gb": 1, "1g.5gb": 1}, "7g.40gb uses all 8 memory slices; no room for 1g.5gb"),
    ],
)
def test_the_reference_invalid_layouts_are_rejected_with_a_reason(counts, reason):
    result = validate_layout("A100-40GB", counts)
    assert not result.ok
    assert result.placements == []
    assert result.reason == reason


@pytest.mark.parametrize("other", ["1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb"])
def test_7g_takes_nothing_else(other):
    assert not validate_layout("A100-40GB", {"7g.40gb": 1, other: 1}).ok


def test_the_order_of_the_request_does_not_matter():
    forward = {"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1}
    backward = dict(reversed(forward.items()))
    assert validate_layout("A100-40GB", forward) == validate_layout("A100-40GB", backward)


def test_alignment_failures_are_explained():
    result = validate_layout("A100-40GB", {"2g.10gb": 3, "1g.5gb": 2})
    assert result.reason == (
        "3×2g.10gb + 1g.5gb use 7 of 8 memory slices, and no arrangement leaves room for "
        "another 1g.5gb (allowed starts: 0, 1, 2, 3, 4, 5, 6)"
    )


def test_slice_7_is_reached_only_by_the_wide_profiles():
    assert validate_layout("A100-40GB", {"1g.5gb": 6, "1g.10gb": 1}).ok
    assert not validate_layout("A100-40GB", {"1g.5gb": 7, "1g.5gb+me": 1}).ok


def test_unknown_profiles_are_rejected_by_name():
    result = validate_layout("A100-40GB", {"1g.6gb": 1})
    assert not result.ok
    assert result.reason.startswith("1g.6gb: no such MIG profile on A100-40GB")


def test_unknown_models_are_rejected():
    assert "unknown MIG GPU model" in validate_layout("T4", {"1g.5gb": 1}).reason


@pytest.mark.parametrize("count", [-1, 1.5, "2", True])
def test_counts_must_be_whole_numbers(count):
    result = validate_layout("A100-40GB", {"1g.5gb": count})
    assert not result.ok
    assert "whole number" in result.reason


def test_an_empty_layout_is_valid_mig_enabled_without_instances():
    assert validate_layout("A100-40GB", {}) == validate_layout("A100-40GB", {"1g.5gb": 0})
    assert validate_layout("A100-40GB", {}).ok


def test_only_one_media_extension_instance_fits_even_across_profiles():
    result = validate_layout("A30", {"1g.6gb+me": 1, "2g.12gb+me": 1})
    assert not result.ok
    assert "at most one +me profile" in result.reason
    assert validate_layout("A30", {"2g.12gb+me": 1, "1g.6gb": 2}).ok


def test_the_name_collision_is_resolved_by_model():
    assert validate_layout("A100-80GB", {"1g.10gb": 7}).ok
    result = validate_layout("A100-40GB", {"1g.10gb": 7})
    assert result.reason == "7×1g.10gb exceeds the maximum of 4 for 1g.10gb on A100-40GB"
    assert validate_layout("A100-40GB", {"1g.10gb": 4}).ok
    assert not validate_layout("A100-40GB", {"1g.10gb": 4, "1g.5gb": 1}).ok
    assert validate_layout("A100-80GB", {"1g.10gb": 4, "1g.20gb": 1, "1g.10gb+me": 1}).ok


def test_slice_map_draws_each_memory_slice():
    placements = [
        GiPlacement("2g.10gb", 0, 2),
        GiPlacement("1g.5gb", 2, 1),
        GiPlacement("3g.20gb", 4, 4),
    ]
    assert slice_map("A100-40GB", placements) == [
        "2g.10gb",
        "2g.10gb",
        "1g.5gb",
        None,
        "3g.20gb",
        "3g.20gb",
        "3g.20gb",
        "3g.20gb",
    ]


@pytest.mark.parametrize(
    "placements",
    [
        [GiPlacement("3g.20gb", 0, 4), GiPlacement("2g.10gb", 2, 2)],  # overlap
        [GiPlacement("1g.5gb", 7, 1)],  # not an allowed start
        [GiPlacement("2g.10gb", 0, 1)],  # wrong size
        [GiPlacement("1g.6gb", 0, 1)],  # not an A100-40GB profile
    ],
)
def test_slice_map_refuses_impossible_placements(placements):
    with pytest.raises(ValueError):
        slice_map("A100-40GB", placements)


@st.composite
def layouts(draw):
    model = draw(st.sampled_from(catalog.mig_capable_models()))
    names = [p.name for p in catalog.geometry(model).profiles]
    chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=4))
    counts = {name: draw(st.integers(0, 8)) for name in chosen}
    return model, counts


@given(layouts())
def test_accepted_layouts_have_disjoint_placements_at_allowed_starts(model_and_counts):
    model, counts = model_and_counts
    result = validate_layout(model, counts)
    if result.ok:
        check_placements(model, counts, result.placements)
    else:
        assert result.reason and not result.placements


@given(layouts(), st.randoms())
def test_validity_does_not_depend_on_the_order_profiles_are_given(model_and_counts, rng):
    model, counts = model_and_counts
    items = list(counts.items())
    rng.shuffle(items)
    assert validate_layout(model, dict(items)).ok == validate_layout(model, counts).ok


@given(layouts())
def test_validity_agrees_with_the_brute_force(model_and_counts):
    model, counts = model_and_counts
    nonzero = frozenset((name, n) for name, n in counts.items() if n)
    if nonzero:
        assert validate_layout(model, counts).ok == (nonzero in _brute(model))


_BRUTE: dict[str, set[frozenset]] = {}


def _brute(model: str) -> set[frozenset]:
    if model not in _BRUTE:
        _BRUTE[model] = brute_force_layouts(model)
    return _BRUTE[model]
