"""The fleet the placement engine sees on a Kubernetes cluster.

`build_fleet` turns the cluster's GPU nodes (their allocatable `nvidia.com/gpu` and
`nvidia.com/mig-<profile>` counts) and its live pods into `placement.GpuState`s, holding
what the pods already request; `hosts_by_group` reads the node of each group back from a
placement. The Kubernetes driver (`pools.drivers.kubernetes`) places new workspaces with
them; nothing here talks to the cluster.
"""

from __future__ import annotations

from pools.drivers import k8s_manifests as m
from pools.drivers.base import NodeInfo
from profiles.catalog import gpu_model_for_product_label
from profiles.mig import catalog as mig_catalog
from profiles.mig import layout, placement

IN_USE = "in-use"  # the allocation id of units that pods already request
DONE_PHASES = ("Succeeded", "Failed")


def is_gpu_node(node: NodeInfo) -> bool:
    allocatable = getattr(node, "allocatable", {}) or {}
    return any(count > 0 for count in allocatable.values())


def _node_model(node: NodeInfo) -> tuple[str, bool]:
    """(the model key of the node's GPUs, whether its MIG slices can be modelled).

    The key is the catalog code only when the node's `nvidia.com/gpu.product` label is the
    one the manifests' nodeSelector uses for that model (`k8s_manifests.product_label`):
    a pin to a node the selector excludes would never schedule. Other nodes (the PCIe
    board of a model, the "single" MIG strategy's decorated label, unknown GPUs) keep the
    raw label, which no group with a model matches; their MIG slices are left out.
    """
    label = node.labels.get(m.PRODUCT_LABEL, "")
    model = gpu_model_for_product_label(label) if label else None
    if model is None or m.product_label(model.code) != label:
        return label or "unknown", False
    return model.code, model.code in mig_catalog.mig_capable_models()


def _mig_profile(gpu_model: str, resource: str) -> str | None:
    """The catalog profile behind `nvidia.com/mig-<name>` (1g.5gb.me -> 1g.5gb+me)."""
    for profile in mig_catalog.geometry(gpu_model).profiles:
        if mig_catalog.k8s_resource_name(profile.name) == resource:
            return profile.name
    return None


def _pack_slots(gpu_model: str, counts: dict[str, int]) -> list[dict[str, int]]:
    """Per-GPU layouts holding `counts` slices, packed greedily, largest profile first.

    An approximation: Kubernetes exposes per-node counts of each MIG resource, not which
    GPU holds which slice. It does not change where a group lands (the engine picks a
    host by its free units per kind), only which GPU id an assignment names.
    """
    size = {p.name: p.memory_slices for p in mig_catalog.geometry(gpu_model).profiles}
    gpus: list[dict[str, int]] = []
    for name in sorted(counts, key=lambda n: (-size[n], n)):
        for _ in range(counts[name]):
            for gpu in gpus:
                trial = {**gpu, name: gpu.get(name, 0) + 1}
                if layout.validate_layout(gpu_model, trial).ok:
                    gpu[name] = trial[name]
                    break
            else:
                gpus.append({name: 1})
    return gpus


def _pod_requests(pod: dict) -> dict[str, int]:
    """GPU and MIG units a pod holds: its containers' requests (requests default to limits),
    or its largest init container's when that is more, as the scheduler counts them."""

    def amounts(container: dict) -> dict[str, int]:
        resources = container.get("resources") or {}
        merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        return {
            k: m.count(v)
            for k, v in merged.items()
            if k == m.GPU_RESOURCE or k.startswith("nvidia.com/mig-")
        }

    spec = pod.get("spec") or {}
    total: dict[str, int] = {}
    for container in spec.get("containers") or []:
        for key, n in amounts(container).items():
            total[key] = total.get(key, 0) + n
    for container in spec.get("initContainers") or []:
        for key, n in amounts(container).items():
            total[key] = max(total.get(key, 0), n)
    return total


def pod_node(pod: dict) -> str | None:
    """The Node a live pod uses: where it is bound (`spec.nodeName`, the Node's name), else
    the Node it is pinned to (a pod the portal just pinned and the scheduler has not bound
    yet)."""
    if (pod.get("status") or {}).get("phase") in DONE_PHASES:
        return None
    spec = pod.get("spec") or {}
    return spec.get("nodeName") or m.pod_pin(spec)


def build_fleet(nodes: list[NodeInfo], pods: list[dict]) -> list[placement.GpuState]:
    """The placement engine's view of the cluster's GPU nodes, with what `pods` hold.

    Per node: one whole GPU per allocatable `nvidia.com/gpu`, and the allocatable
    `nvidia.com/mig-<profile>` slices (the device plugin's mixed strategy) packed onto GPUs
    of the node's model (`_pack_slots`). Units the pods request on the node are held.
    """
    used: dict[str, dict[str, int]] = {}
    for pod in pods:
        node = pod_node(pod)
        if node:
            on_node = used.setdefault(node, {})
            for key, n in _pod_requests(pod).items():
                on_node[key] = on_node.get(key, 0) + n
    fleet = []
    for node in nodes:
        model, mig_ok = _node_model(node)
        allocatable = getattr(node, "allocatable", {}) or {}
        held = dict(used.get(node.name, {}))
        node_gpus = []
        # Capped: an allocatable amount is a number anyone who may update a node writes.
        for i in range(min(allocatable.get(m.GPU_RESOURCE, 0), m.MAX_GPUS_PER_NODE)):
            node_gpus.append(placement.GpuState(f"{node.name}/gpu-{i}", model, node.name))
        slices: dict[str, int] = {}
        if mig_ok:
            for resource, count in allocatable.items():
                profile = _mig_profile(model, resource)
                if profile and count > 0:
                    slices[profile] = min(count, m.MAX_SLICES_PER_NODE)
        for i, counts in enumerate(_pack_slots(model, slices) if slices else []):
            node_gpus.append(
                placement.GpuState.mig(f"{node.name}/mig-{i}", model, counts, node.name)
            )
        for gpu in node_gpus:
            for unit in [None] if gpu.slots is None else gpu.slots:
                key = (
                    m.GPU_RESOURCE if unit is None else mig_catalog.k8s_resource_name(unit.profile)
                )
                if held.get(key, 0) > 0:
                    held[key] -= 1
                    if unit is None:
                        gpu.allocation = IN_USE
                    else:
                        unit.allocation = IN_USE
        fleet.extend(node_gpus)
    return fleet


def hosts_by_group(groups, chosen: placement.Placement) -> list[str]:
    """The host of each group. `place` handles groups largest first (a stable sort) and
    lists each group's units together, so the assignments split by count in that order."""
    hosts: dict[int, str] = {}
    at = 0
    for i in sorted(range(len(groups)), key=lambda i: -groups[i].gpu_count):
        units = chosen.assignments[at : at + groups[i].gpu_count]
        at += groups[i].gpu_count
        found = {unit.host for unit in units}
        if len(found) != 1:
            raise RuntimeError(f"the placement of group {groups[i].index} spans {found}")
        hosts[i] = found.pop()
    return [hosts[i] for i in range(len(groups))]
