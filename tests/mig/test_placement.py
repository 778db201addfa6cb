import random
from collections import Counter

import pytest

from bench import placement as bench
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


def test_an_empty_or_fully_held_fleet_places_nothing():
    assert place([], request("a", whole(1))) is None
    assert (
        place([GpuState("g0", "H100-80GB", allocation="someone")], request("a", whole(1))) is None
    )


def test_whole_gpus_of_a_model_outside_the_mig_catalog_are_placed_best_fit():
    fleet = [GpuState(f"big{i}", "RTX-4090", host="big") for i in range(4)]
    fleet += [GpuState(f"small{i}", "RTX-4090", host="small") for i in range(2)]
    placement = place(fleet, request("a", whole(1, "RTX-4090")))
    assert placement.assignments[0].host == "small"


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


def test_a_model_less_request_leaves_the_last_slots_of_a_model_alone():
    # Both GPUs are laid out for 1g.10gb pods; the A100 has one left, the H100 has seven.
    # First fit takes the A100's last one, and then a pod that needs the A100 cannot fit.
    def fleet() -> list[GpuState]:
        a100 = GpuState.mig("a100", "A100-80GB", {"1g.10gb": 7}, host="h0")
        for slot in a100.slots[1:]:
            slot.allocation = "someone"
        return [a100, GpuState.mig("h100", "H100-80GB", {"1g.10gb": 7}, host="h1")]

    for policy, a100_pod_fits in ((place, True), (first_fit, False)):
        gpus = fleet()
        assert policy(gpus, request("any", slices(1, "1g.10gb"))) is not None
        wanted = request("a100", slices(1, "1g.10gb", "A100-80GB"))
        assert (policy(gpus, wanted) is not None) == a100_pod_fits


def test_a_model_less_request_takes_the_smaller_instance_when_both_have_room():
    # `1g.10gb` is 2 memory slices on an A100-40GB and 1 on an H100: same room left for
    # 1g.10gb pods on either, so the one that keeps more memory free wins over fleet order.
    fleet = [
        GpuState.mig("forty", "A100-40GB", {"1g.10gb": 4}, host="h0"),
        GpuState.mig("h100", "H100-80GB", {"1g.10gb": 7}, host="h1"),
    ]
    placement = place(fleet, request("a", slices(1, "1g.10gb")))
    assert {a.gpu_id for a in placement.assignments} == {"h100"}


def test_hosts_the_score_cannot_tell_apart_are_taken_in_fleet_order():
    fleet = [GpuState.mig(f"g{i}", "H100-80GB", {"1g.10gb": 7}, host=f"h{i}") for i in range(3)]
    placement = place(fleet, request("a", slices(2, "1g.10gb")))
    assert {a.host for a in placement.assignments} == {"h0"}


def test_a_split_that_blocks_a_later_group_is_undone():
    # Draining the smallest pool first gives the model-less group the one A100 slot, which
    # the second group needs; the search must then try the other split on the same host.
    fleet = [
        GpuState.mig("a100", "A100-80GB", {"1g.10gb": 1, "2g.20gb": 1, "4g.40gb": 1}, "h0"),
        GpuState.mig("h100", "H100-80GB", {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}, "h0"),
    ]
    wanted = request("a", slices(2, "1g.10gb"), slices(1, "1g.10gb", "A100-80GB"))
    placement = place(fleet, wanted)
    assert placement is not None
    assert sorted(a.gpu_id for a in placement.assignments) == ["a100", "h100", "h100"]


def test_on_one_gpu_a_slot_is_taken_where_free_memory_stays_in_one_run():
    # Slots listed out of order: taking the first one (start 3) would split the free
    # memory slices in two; start 0 keeps slices 1-7 together.
    gpu = GpuState("g0", "A100-40GB", slots=[Slot("1g.5gb", s) for s in (3, 5, 0, 6, 1, 4, 2)])
    placement = place([gpu], request("a", slices(1, "1g.5gb")))
    assert placement.assignments[0].start == 0
    placement = place([gpu], request("b", slices(1, "1g.5gb")))
    assert placement.assignments[0].start == 1


def random_cases(seed: int, cases: int):
    """Seeded small fleets with what they already hold, and one more request each: the
    benchmark's kind, or one profile on any model and then on one model, where the split of
    the first group decides whether the second fits."""
    rng = random.Random(seed)
    for fleet_args, requests, events in bench.synthetic_instances(seed, cases, 0.35):
        fleet = bench.random_fleet(*fleet_args)
        for kind, index in events[: rng.randrange(len(events))]:
            if kind == "arrive":
                place(fleet, requests[index])
            else:
                release(fleet, requests[index].allocation_id)
        gpu = rng.choice(fleet)
        if gpu.slots is None or rng.random() < 0.5:
            yield fleet, bench.random_request(rng, fleet, "next")
        else:
            profile = rng.choice(gpu.slots).profile
            model_less = slices(rng.randint(1, 4), profile)
            yield fleet, request("next", model_less, slices(1, profile, gpu.gpu_model))


def fits(fleet: list[GpuState], wanted: Request) -> bool:
    """Exhaustively: can each group take its units from one host, split in any way across
    the kinds it matches there?"""
    free = Counter(
        (gpu.node, (gpu.gpu_model, slot.profile if slot else None))
        for gpu in fleet
        for slot in gpu.slots or [None]
        if (slot.allocation if slot else gpu.allocation) is None
    )

    def search(groups: tuple[ResourceGroup, ...]) -> bool:
        if not groups:
            return True
        for host in {host for host, _ in free}:
            cells = [cell for cell in free if cell[0] == host and groups[0].matches(cell[1])]
            for taken in bench.splits(groups[0].count, [free[cell] for cell in cells]):
                free.subtract(dict(zip(cells, taken, strict=True)))
                found = search(groups[1:])
                free.update(dict(zip(cells, taken, strict=True)))
                if found:
                    return True
        return False

    return search(wanted.groups)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_place_finds_room_exactly_when_the_request_fits(seed):
    for fleet, wanted in random_cases(seed, 100):
        expected = fits(fleet, wanted)
        assert (place(fleet, wanted) is not None) == expected


@pytest.mark.parametrize("departure_rate", [0.0, 0.35])
def test_over_many_small_fleets_place_serves_more_than_first_fit(departure_rate):
    """The benchmark's scenarios at a small size. Not on every fleet: an online choice that
    keeps room for one future request can lose to one that, by luck, kept room for another."""
    served = {name: 0 for name in bench.POLICIES}
    better = worse = 0
    for seed in range(1, 6):
        for fleet_args, requests, events in bench.synthetic_instances(seed, 100, departure_rate):
            result = {
                name: bench.simulate(policy, bench.random_fleet(*fleet_args), requests, events)[0]
                for name, policy in bench.POLICIES.items()
            }
            for name, slices_served in result.items():
                served[name] += slices_served
            better += result["place"] > result["first_fit"]
            worse += result["place"] < result["first_fit"]
    assert served["place"] > served["first_fit"]
    assert better > 2 * worse


def test_on_a_busy_fleet_under_churn_place_serves_more_than_first_fit():
    """16 GPUs on 4 hosts, 1,000 requests, most departing: summed over seeds, as one run's
    outcome swings either way with any single different choice."""
    served = {name: 0 for name in bench.POLICIES}
    for seed in range(1, 9):
        rng = random.Random(seed)
        fleet_args = (rng.randrange(2**32), 16, 4)
        sample = bench.random_fleet(*fleet_args)
        requests = [bench.random_request(rng, sample, f"r{i}") for i in range(1000)]
        events = bench.random_events(rng, 1000, departure_rate=0.9)
        for name, policy in bench.POLICIES.items():
            fleet = bench.random_fleet(*fleet_args)
            served[name] += bench.simulate(policy, fleet, requests, events)[0]
    assert served["place"] > served["first_fit"]
