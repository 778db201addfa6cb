"""The local driver lets the fleet placement engine choose devices (anti-fragmentation)."""

from dataclasses import dataclass

from pools.drivers.base import GroupSpec
from pools.drivers.local import choose_devices
from profiles.mig.nvml import _model_from_name, inventory
from tests.mig.fake_nvml import FakeNvml


@dataclass(frozen=True)
class Mig:
    uuid: str
    profile: str
    start: int | None = None


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    gpu_model: str | None
    mig_devices: tuple = ()
    name: str = "NVIDIA A100-SXM4-40GB"

    @property
    def mig_enabled(self) -> bool:
        return bool(self.mig_devices)


def seven_slices(gpu: str) -> tuple[Mig, ...]:
    return tuple(Mig(f"{gpu}-s{n}", "1g.5gb") for n in range(7))


def test_a_slice_goes_to_the_partly_used_gpu_and_keeps_the_empty_one_whole():
    empty = Gpu(0, "GPU-b", "A100-40GB", seven_slices("GPU-b"))
    busy = Gpu(1, "GPU-a", "A100-40GB", seven_slices("GPU-a"))
    taken = {f"GPU-a-s{n}" for n in range(6)}
    group = GroupSpec(index=0, gpu_model="A100-40GB", gpu_count=1, mig_profile="1g.5gb")
    ((chosen_group, device),) = choose_devices("ws-1", [group], [empty, busy], taken)
    assert chosen_group is group
    assert device == ("GPU-a-s6", 1, "NVIDIA A100-SXM4-40GB", "1g.5gb")


def test_heterogeneous_groups_get_their_own_kinds_or_nothing():
    whole = Gpu(0, "GPU-w", "A100-40GB")
    split = Gpu(1, "GPU-m", "A100-40GB", (Mig("m1", "3g.20gb", 0), Mig("m2", "3g.20gb", 4)))
    groups = [
        GroupSpec(index=0, gpu_model="A100-40GB", gpu_count=1),
        GroupSpec(index=1, gpu_model="A100-40GB", gpu_count=2, mig_profile="3g.20gb"),
    ]
    chosen = choose_devices("ws-2", groups, [whole, split], set())
    assert [(g.index, d[0]) for g, d in chosen] == [(0, "GPU-w"), (1, "m1"), (1, "m2")]
    assert choose_devices("ws-3", groups, [whole, split], {"m2"}) is None


def test_a_mig_enabled_gpu_without_instances_is_not_a_whole_gpu():
    """Between `nvidia-smi -mig 1` and the instances' creation CUDA sees nothing on it, and
    the slices made later would go to others while one workspace held it whole."""
    (gpu,) = inventory(FakeNvml(mig_mode=(1, 1), mig_devices=())).gpus
    assert gpu.mig_enabled and not gpu.mig_devices
    group = GroupSpec(index=0, gpu_model="A100-40GB", gpu_count=1)
    assert choose_devices("ws-1", [group], [gpu], taken=set()) is None


def test_a_gpu_whose_own_uuid_is_taken_offers_none_of_its_slices():
    split = Gpu(0, "GPU-m", "A100-40GB", seven_slices("GPU-m"))
    group = GroupSpec(index=0, gpu_model="A100-40GB", gpu_count=1, mig_profile="1g.5gb")
    assert choose_devices("ws-1", [group], [split], {"GPU-m"}) is None


def test_gpus_outside_the_mig_catalog_are_known_by_their_nvml_name():
    assert _model_from_name("Tesla T4") == "T4"
    assert _model_from_name("Some Future GPU") is None


# A GPU instance divided into compute instances (the MIG guide's "MIG Device Names": a
# 3g.20gb instance split into 1c compute instances shows as devices named 1c.3g.20gb, all
# at the instance's first memory slice) is no slice to hand out, and spoils nothing else.


def test_a_gpu_with_compute_instances_does_not_break_placement_of_another_whole_gpu():
    whole = Gpu(0, "GPU-whole", "A100-40GB")
    # What NVML reports after `nvidia-smi mig -cgi 9,9 -C` and `-cci 0,0,0 -gi <second>`:
    # one 3g.20gb device at slice 0 and three 1c.3g.20gb devices of the GI at slice 4.
    split = Gpu(
        1,
        "GPU-split",
        "A100-40GB",
        (
            Mig("MIG-a", "3g.20gb", 0),
            Mig("MIG-b", "1c.3g.20gb", 4),
            Mig("MIG-c", "1c.3g.20gb", 4),
            Mig("MIG-d", "1c.3g.20gb", 4),
        ),
    )
    group = GroupSpec(index=0, gpu_model="A100-40GB", gpu_count=1)
    chosen = choose_devices("ws-1", [group], [whole, split], set())
    assert chosen is not None
    assert [device[0] for _, device in chosen] == ["GPU-whole"]


def test_the_full_compute_instance_slice_of_such_a_gpu_is_still_placeable():
    split = Gpu(
        1,
        "GPU-split",
        "A100-40GB",
        (
            Mig("MIG-a", "3g.20gb", 0),
            Mig("MIG-b", "1c.3g.20gb", 4),
            Mig("MIG-c", "1c.3g.20gb", 4),
        ),
    )
    group = GroupSpec(index=0, gpu_model="A100-40GB", gpu_count=1, mig_profile="3g.20gb")
    chosen = choose_devices("ws-2", [group], [split], set())
    assert chosen is not None
    assert [device[0] for _, device in chosen] == ["MIG-a"]
