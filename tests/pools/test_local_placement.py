"""The local driver lets the fleet placement engine choose devices (anti-fragmentation)."""

from dataclasses import dataclass

from pools.drivers.base import GroupSpec
from pools.drivers.local import choose_devices
from profiles.mig.nvml import _model_from_name


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


def test_gpus_outside_the_mig_catalog_are_known_by_their_nvml_name():
    assert _model_from_name("Tesla T4") == "T4"
    assert _model_from_name("Some Future GPU") is None
