import time
from collections import Counter

import pytest

from profiles.mig.placement import (
    GpuState,
    Request,
    ResourceGroup,
    Slot,
    find_placement,
    first_fit,
    place,
    release,
)


def slices(count: int, profile: str, model: str | None = None) -> ResourceGroup:
    return ResourceGroup(count, model, profile)


def whole(count: int, model: str | None = None) -> ResourceGroup:
    return ResourceGroup(count, model)


def request(allocation_id: str, *groups: ResourceGroup) -> Request:
    return Request(allocation_id, groups)


def holders(fleet: list[GpuState]) -> Counter:
    """How many units each allocation holds."""
    held = Counter(gpu.allocation for gpu in fleet if gpu.allocation)
    held.update(s.allocation for gpu in fleet for s in gpu.slots or () if s.allocation)
    return held


def test_a_mig_gpu_gets_its_slots_from_the_layout():
    counts = {"3g.20gb": 1, "2g.10gb": 1, "1g.5gb": 2}
    gpu = GpuState.mig("g0", "A100-40GB", counts)
    assert Counter(s.profile for s in gpu.slots) == counts
    assert all(s.allocation is None for s in gpu.slots)
    with pytest.raises(ValueError, match="no room"):
        GpuState.mig("g1", "A100-40GB", {"3g.20gb": 2, "1g.5gb": 1})


def test_impossible_slots_are_refused():
    with pytest.raises(ValueError, match="overlaps"):
        GpuState("g0", "A100-40GB", slots=[Slot("3g.20gb", 0), Slot("2g.10gb", 2)])


def test_groups_must_name_real_profiles():
    with pytest.raises(KeyError):
        slices(1, "1g.5gb", "A100-80GB")
    with pytest.raises(ValueError):
        slices(1, "9g.99gb")
    with pytest.raises(ValueError):
        whole(0)


def test_a_heterogeneous_request_is_all_or_nothing():
    fleet = [GpuState.mig("g0", "A100-40GB", {"1g.5gb": 7}), GpuState("g1", "A100-40GB")]
    too_big = request("a", slices(2, "1g.5gb"), whole(2, "A100-40GB"))
    assert place(fleet, too_big) is None
    assert holders(fleet) == Counter()

    fits = request("b", slices(2, "1g.5gb"), whole(1, "A100-40GB"))
    placement = place(fleet, fits)
    assert placement is not None
    assert sorted((a.gpu_id, a.profile) for a in placement.assignments) == [
        ("g0", "1g.5gb"),
        ("g0", "1g.5gb"),
        ("g1", None),
    ]
    assert holders(fleet) == Counter({"b": 3})


def test_a_group_comes_from_one_host():
    fleet = [
        GpuState("g0", "H100-80GB", host="h0"),
        GpuState("g1", "H100-80GB", host="h1"),
    ]
    assert place(fleet, request("a", whole(2))) is None
    assert place(fleet, request("b", whole(1), whole(1))) is not None


def test_units_are_never_allocated_twice():
    fleet = [GpuState.mig(f"g{i}", "A100-40GB", {"1g.5gb": 7}, host=f"h{i // 2}") for i in range(4)]
    placed = 0
    while place(fleet, request(f"r{placed}", slices(3, "1g.5gb"))) is not None:
        placed += 1
    assert placed == 8  # each host has 14 slots: 4 groups of 3, twice
    assert sum(holders(fleet).values()) == 24
    assert all(n == 3 for n in holders(fleet).values())


def test_release_frees_exactly_the_allocation():
    fleet = [GpuState.mig("g0", "H100-80GB", {"1g.10gb": 7}), GpuState("g1", "H100-80GB")]
    place(fleet, request("a", slices(3, "1g.10gb"), whole(1)))
    place(fleet, request("b", slices(4, "1g.10gb")))
    assert place(fleet, request("c", slices(1, "1g.10gb"))) is None

    assert release(fleet, "a") == 4
    assert holders(fleet) == Counter({"b": 4})
    assert release(fleet, "a") == 0
    assert place(fleet, request("c", slices(3, "1g.10gb"), whole(1))) is not None


def test_placing_an_allocation_again_returns_what_it_holds():
    fleet = [GpuState.mig("g0", "A100-40GB", {"1g.5gb": 7})]
    first = place(fleet, request("a", slices(2, "1g.5gb")))
    again = place(fleet, request("a", slices(2, "1g.5gb")))
    assert first == again == find_placement(fleet, "a")
    assert holders(fleet) == Counter({"a": 2})


def test_slices_go_to_the_gpu_with_the_fewest_free_slots():
    fleet = [
        GpuState.mig("empty", "A100-40GB", {"1g.5gb": 7}, host="h0"),
        GpuState.mig("used", "A100-40GB", {"1g.5gb": 7}, host="h0"),
    ]
    fleet[1].slots[0].allocation = "someone"
    placement = place(fleet, request("a", slices(2, "1g.5gb")))
    assert {a.gpu_id for a in placement.assignments} == {"used"}


def test_whole_gpus_go_where_they_keep_other_hosts_whole():
    fleet = [GpuState(f"big{i}", "H100-80GB", host="big") for i in range(4)]
    fleet += [GpuState(f"small{i}", "H100-80GB", host="small") for i in range(2)]
    fleet[-1].allocation = "someone"
    placement = place(fleet, request("a", whole(1)))
    assert placement.assignments[0].gpu_id == "small0"
    assert place(fleet, request("b", whole(4))) is not None


def test_best_fit_keeps_room_for_a_big_pod_where_first_fit_does_not():
    def fleet() -> list[GpuState]:
        return [
            GpuState.mig("a", "A100-40GB", {"1g.5gb": 7}, host="h0"),
            GpuState.mig("b", "A100-40GB", {"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1}, host="h1"),
        ]

    for policy, big_pod_fits in ((place, True), (first_fit, False)):
        gpus = fleet()
        assert policy(gpus, request("small", slices(2, "1g.5gb"))) is not None
        assert (policy(gpus, request("big", slices(7, "1g.5gb"))) is not None) == big_pod_fits


def test_a_model_less_group_matches_the_profile_name_on_every_model():
    fleet = [
        GpuState.mig("forty", "A100-40GB", {"1g.10gb": 4}, host="h0"),
        GpuState.mig("eighty", "A100-80GB", {"1g.10gb": 7}, host="h1"),
    ]
    assert place(fleet, request("a", slices(7, "1g.10gb", "A100-40GB"))) is None
    eighty = place(fleet, request("b", slices(7, "1g.10gb")))
    assert {a.gpu_id for a in eighty.assignments} == {"eighty"}
    forty = place(fleet, request("c", slices(4, "1g.10gb")))
    assert {a.gpu_id for a in forty.assignments} == {"forty"}


def test_backtracking_finds_the_arrangement_greedy_misses():
    # The 2-GPU group must take h1; the 1-GPU group must then use h0.
    fleet = [
        GpuState("a", "H100-80GB", host="h0"),
        GpuState("b", "H100-80GB", host="h1"),
        GpuState("c", "H100-80GB", host="h1"),
    ]
    placement = place(fleet, request("r", whole(1), whole(2)))
    assert placement is not None
    assert sorted(a.gpu_id for a in placement.assignments) == ["a", "b", "c"]


def test_a_decision_on_64_gpus_is_fast():
    layouts = [{"1g.10gb": 7}, {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}, {"3g.40gb": 2}]
    fleet = [
        GpuState.mig(f"g{i}", "H100-80GB", layouts[i % 3], host=f"h{i // 8}")
        if i % 4
        else GpuState(f"g{i}", "H100-80GB", host=f"h{i // 8}")
        for i in range(64)
    ]
    began = time.perf_counter()
    for i in range(100):
        place(fleet, request(f"r{i}", slices(2, "1g.10gb"), whole(1)))
    # The budget is 10 ms per decision; a loose bound keeps slow CI machines green.
    assert (time.perf_counter() - began) / 100 < 0.05
