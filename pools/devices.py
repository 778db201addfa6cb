"""The NVIDIA device nodes a local workspace's sandbox may open: those of its own GPUs.

`CUDA_VISIBLE_DEVICES` only tells CUDA which GPUs to show; a process can unset it, and
with every /dev/nvidia* node in its /dev it could use any GPU of the host, another
workspace's included. So the sandbox (`pools.isolation.sandbox_argv`) gets only:

- the control nodes every CUDA process needs (/dev/nvidiactl, /dev/nvidia-uvm and
  /dev/nvidia-uvm-tools);
- for a whole GPU, /dev/nvidia<minor>;
- for a MIG device, its parent GPU's node plus the two capability nodes that grant access
  to its GPU instance and its compute instance, /dev/nvidia-caps/nvidia-cap<N>. The N of
  each is in /proc/driver/nvidia-caps/mig-minors (lines such as "gpu3/gi2/ci0/access 30",
  where 3 is the parent's minor), as the NVIDIA container toolkit reads it. The nodes that
  configure or monitor MIG (the file's "config" and "monitor") are never given.

A device whose nodes cannot be worked out fails the start with the reason (`DeviceError`)
rather than running without its GPU or with more than it holds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from profiles.mig.nvml import GpuInfo

CONTROL_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")
MIG_MINORS = Path("/proc/driver/nvidia-caps/mig-minors")
CAPS_DIR = "/dev/nvidia-caps"


class DeviceError(OSError):
    """The device nodes of an allocated GPU or MIG device are not known."""


def parse_mig_minors(text: str) -> dict[str, int]:
    """ "gpu3/gi2/access 21" lines as {"gpu3/gi2/access": 21}; other lines are skipped."""
    minors = {}
    for line in text.splitlines():
        name, _, number = line.strip().rpartition(" ")
        if name.startswith("gpu") and number.isdigit():
            minors[name] = int(number)
    return minors


def device_nodes(uuids: Iterable[str], gpus: Sequence[GpuInfo], mig_minors: dict[str, int]):
    """The nodes the devices with these UUIDs need, control nodes first; [] for none."""
    wanted = list(dict.fromkeys(uuids))
    if not wanted:
        return []
    nodes = dict.fromkeys(CONTROL_NODES)
    for uuid in wanted:
        nodes.update(dict.fromkeys(_nodes_of(uuid, gpus, mig_minors)))
    return list(nodes)


def _nodes_of(uuid: str, gpus: Sequence[GpuInfo], mig_minors: dict[str, int]) -> list[str]:
    for gpu in gpus:
        if gpu.uuid == uuid:
            return [_gpu_node(gpu, uuid)]
        for mig in gpu.mig_devices:
            if mig.uuid != uuid:
                continue
            if mig.gpu_instance_id is None or mig.compute_instance_id is None:
                raise DeviceError(f"NVML does not say which MIG instance {uuid} is.")
            instance = f"gpu{gpu.minor}/gi{mig.gpu_instance_id}"
            caps = [f"{instance}/access", f"{instance}/ci{mig.compute_instance_id}/access"]
            missing = [cap for cap in caps if cap not in mig_minors]
            if missing:
                raise DeviceError(f"{MIG_MINORS} does not list {', '.join(missing)} ({uuid}).")
            return [_gpu_node(gpu, uuid)] + [f"{CAPS_DIR}/nvidia-cap{mig_minors[c]}" for c in caps]
    raise DeviceError(f"GPU {uuid} is not on this host any more.")


def _gpu_node(gpu: GpuInfo, uuid: str) -> str:
    if gpu.minor is None:
        raise DeviceError(f"NVML does not say the device node of GPU {gpu.uuid} ({uuid}).")
    return f"/dev/nvidia{gpu.minor}"


def nodes_for(uuids: Sequence[str], gpus: Sequence[GpuInfo]) -> list[str]:
    """This host's device nodes for these allocated devices of `gpus` (this host's NVML
    inventory; see the module's docstring).

    Nodes the host does not have are left out: the driver creates /dev/nvidia-uvm-tools,
    for one, only when something asks for it.
    """
    try:
        mig_minors = parse_mig_minors(MIG_MINORS.read_text())
    except OSError:
        mig_minors = {}  # no MIG on this host: a MIG device then fails with the reason
    return [node for node in device_nodes(uuids, gpus, mig_minors) if os.path.exists(node)]
