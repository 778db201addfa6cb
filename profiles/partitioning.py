"""What a partitioning strategy means for the fleet: the layout it puts on each GPU, the
slices the infrastructure then offers, which nodes may be repartitioned, and draining.

Views, forms, the apply task and the workspaces engineer's placement all call these small
functions, so the rules live in one place.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from profiles.choices import InfrastructureKind, PartitioningMode
from profiles.mig import catalog as mig_catalog
from profiles.mig import layout, migparted
from profiles.models import Infrastructure, PartitioningStrategy, ResourceGroup

WHOLE_GPUS = "whole GPUs"


@dataclass(frozen=True)
class FleetShape:
    """How many GPUs of one model an infrastructure has, as far as the portal knows."""

    gpus_per_node: int
    nodes: int | None  # None: not fixed (cloud autoscaling, every node of a cluster)
    basis: str  # where the numbers come from, in words

    @property
    def gpus(self) -> int | None:
        return None if self.nodes is None else self.nodes * self.gpus_per_node


@dataclass(frozen=True)
class Block:
    """One box of the memory-slice drawing: a GPU instance, or a free slice (label None)."""

    label: str | None
    start: int
    size: int

    @property
    def column(self) -> str:
        """CSS grid-column: the memory slices it covers."""
        return f"{self.start + 1} / span {self.size}"

    @property
    def end(self) -> int:
        return self.start + self.size - 1

    @property
    def css(self) -> str:
        if self.label is None:
            return "free"
        return "gi whole" if self.label.startswith("whole") else f"gi size-{self.size}"


@dataclass(frozen=True)
class Drawing:
    """What the slice template draws: the blocks over the model's memory slices."""

    blocks: list[Block]
    slices: int

    @property
    def scale(self) -> list[int]:
        return list(range(self.slices))


def drawing_for(gpu_model: str, placements: Iterable[layout.GiPlacement]) -> Drawing:
    slices = mig_catalog.geometry(gpu_model).memory_slices
    return Drawing(blocks_for(gpu_model, placements), slices)


def blocks_for(gpu_model: str, placements: Iterable[layout.GiPlacement]) -> list[Block]:
    """The drawing of one GPU: its instances, and a free box for each unused memory slice."""
    placements = list(placements)
    cells = layout.slice_map(gpu_model, placements)
    drawn = [Block(p.profile, p.start, p.size) for p in placements]
    drawn += [Block(None, index, 1) for index, name in enumerate(cells) if name is None]
    return sorted(drawn, key=lambda b: b.start)


@dataclass(frozen=True)
class Preview:
    """The live feedback of the strategy form: validity, the drawing, the fleet's offer."""

    gpu_model: str
    ok: bool
    reason: str = ""
    per_gpu: dict[str, int] | None = None  # None: whole GPUs
    blocks: list[Block] = field(default_factory=list)  # the memory-slice drawing
    shape: FleetShape | None = None

    @property
    def drawing(self) -> Drawing | None:
        if not self.blocks:
            return None
        return Drawing(self.blocks, mig_catalog.geometry(self.gpu_model).memory_slices)

    @property
    def offer_rows(self) -> list[tuple[str, int, int, int | None]]:
        """(what, per GPU, per node, whole fleet or None) for each profile offered."""
        if not self.ok or self.shape is None:
            return []
        counts = {WHOLE_GPUS: 1} if self.per_gpu is None else self.per_gpu
        gpus = self.shape.gpus
        return [
            (name, n, n * self.shape.gpus_per_node, None if gpus is None else n * gpus)
            for name, n in counts.items()
            if n
        ]


def layout_counts(
    gpu_model: str, mode: str, layout_name: str = "", custom: Mapping[str, int] | None = None
) -> tuple[dict[str, int] | None, str]:
    """The per-GPU counts a choice means (None: MIG off), and why it is invalid ("" if not)."""
    if mode == PartitioningMode.WHOLE:
        return None, ""
    if mode == PartitioningMode.NAMED:
        named = mig_catalog.named_layouts(gpu_model).get(layout_name)
        if named is None:
            return None, f"{layout_name or 'no layout'} is not a named layout of {gpu_model}"
        return (dict(named.mig_devices) if named.mig_enabled else None), ""
    counts = {name: n for name, n in (custom or {}).items() if n}
    if not counts:
        return {}, (
            "a custom mix needs at least one instance (for MIG on without instances, "
            "choose the named layout all-enabled)"
        )
    result = layout.validate_layout(gpu_model, counts)
    return counts, result.reason


def preview(
    gpu_model: str,
    per_gpu: dict[str, int] | None,
    problem: str = "",
    infrastructure: Infrastructure | None = None,
    node_names: Iterable[str] = (),
) -> Preview:
    shape = fleet_shape(infrastructure, gpu_model, node_names) if infrastructure else None
    if problem:
        return Preview(gpu_model, ok=False, reason=problem, per_gpu=per_gpu, shape=shape)
    slices = mig_catalog.geometry(gpu_model).memory_slices
    if per_gpu is None:
        whole = [Block("whole GPU (MIG off)", 0, slices)]
        return Preview(gpu_model, ok=True, per_gpu=None, blocks=whole, shape=shape)
    result = layout.validate_layout(gpu_model, per_gpu)
    if not result.ok:
        return Preview(gpu_model, ok=False, reason=result.reason, per_gpu=per_gpu, shape=shape)
    blocks = blocks_for(gpu_model, result.placements)
    return Preview(gpu_model, ok=True, per_gpu=per_gpu, blocks=blocks, shape=shape)


def strategy_preview(strategy: PartitioningStrategy) -> Preview:
    per_gpu, problem = layout_counts(
        strategy.gpu_model, strategy.mode, strategy.layout_name, strategy.custom_counts
    )
    return preview(
        strategy.gpu_model, per_gpu, problem, strategy.infrastructure, strategy.node_list()
    )


def fleet_shape(
    infrastructure: Infrastructure, gpu_model: str, node_names: Iterable[str] = ()
) -> FleetShape:
    """GPUs of `gpu_model` per node and how many nodes a partitioning covers."""
    per_node = infrastructure.gpu_offer().get(gpu_model, 0)
    listed = len(set(node_names))
    kind = infrastructure.kind
    if kind == InfrastructureKind.PUBLIC_CLOUD:
        return FleetShape(
            per_node,
            listed or None,
            f"per node of the largest enabled instance type with {per_node}× {gpu_model}; "
            "cloud nodes are added on demand",
        )
    if kind == InfrastructureKind.DATA_CENTER:
        nodes = listed or len(infrastructure.host_list())
        return FleetShape(per_node, nodes, f"{nodes} hosts × {per_node} GPUs per node")
    if kind == InfrastructureKind.LOCAL:
        return FleetShape(per_node, 1, f"this machine's {per_node} {gpu_model} GPUs (NVML)")
    if listed:
        return FleetShape(per_node, listed, f"{listed} listed nodes × {per_node} GPUs per node")
    return FleetShape(
        per_node, None, f"per node ({per_node} GPUs); every {gpu_model} node of the cluster"
    )


def offered_per_gpu(infrastructure: Infrastructure) -> dict[str, dict[str, int]]:
    """GPU model → MIG profile → instances per GPU, over the infrastructure's partitionings."""
    offered: dict[str, dict[str, int]] = {}
    for strategy in infrastructure.partitionings.all():
        per_gpu, problem = layout_counts(
            strategy.gpu_model, strategy.mode, strategy.layout_name, strategy.custom_counts
        )
        if per_gpu and not problem:
            offered[strategy.gpu_model] = per_gpu
    return offered


def slices_gone(profile, offered: Mapping[str, Mapping[str, int]]) -> str:
    """Why the compute profile's MIG groups cannot be placed ("" when they can): they ask for
    slices that `offered` (its infrastructure's `offered_per_gpu`) no longer has."""
    gone = sorted(
        {
            f"{group.mig_profile} of {group.gpu_model}"
            for group in profile.resource_groups.all()
            if group.mig_profile and not offered.get(group.gpu_model, {}).get(group.mig_profile)
        }
    )
    if not gone:
        return ""
    return (
        f"The partitioning of {profile.infrastructure} offers no {', '.join(gone)} slices any "
        "more; change its partitioning, or this profile's resource groups."
    )


def slices_taken(
    strategy: PartitioningStrategy, offered: Mapping[str, int] | None = None
) -> dict[str, list[str]]:
    """Slice → the compute profiles asking for it, of the slices the strategy (as saved)
    offers that compute profiles of its infrastructure ask for and `offered` (instances
    per GPU of what replaces it; None: nothing) lacks."""
    taken = set(strategy.per_gpu_counts() or {}) - {
        n for n, count in (offered or {}).items() if count
    }
    groups = ResourceGroup.objects.filter(
        profile__infrastructure=strategy.infrastructure_id,
        gpu_model=strategy.gpu_model,
        mig_profile__in=taken,
    ).select_related("profile")
    found: dict[str, set[str]] = {}
    for group in groups:
        found.setdefault(group.mig_profile, set()).add(str(group.profile))
    return {name: sorted(profiles) for name, profiles in sorted(found.items())}


def slices_in_use(strategy: PartitioningStrategy, offered: Mapping[str, int] | None = None) -> str:
    """Why the strategy may not be deleted, or changed to offer only `offered`, "" when it
    may (`slices_taken`). Deleting and editing share this rule, so neither strands a
    compute profile."""
    taken = slices_taken(strategy, offered)
    if not taken:
        return ""
    names = ", ".join(sorted({name for profiles in taken.values() for name in profiles}))
    return (
        f"Compute profiles ask for MIG slices of {strategy.gpu_model} here ({names}) that this "
        f"would take away: {', '.join(taken)}. Change them to whole GPUs or to slices it "
        "keeps first."
    )


def deletion_refusal(strategy: PartitioningStrategy) -> str:
    """Why the strategy may not be deleted ("" when it may): its slices are in use, or nodes
    drain for it (deleting would put them back in service unsaid). Deleting leaves the
    nodes' partitioning and labels as they are."""
    in_use = slices_in_use(strategy)
    if in_use:
        return in_use
    draining = sorted(strategy.node_states.filter(draining=True).values_list("name", flat=True))
    if draining:
        return (
            f"Nodes drain for this partitioning ({', '.join(draining)}); deleting it would "
            "put them back in service. Put them back (or apply, then put them back) first."
        )
    return ""


def infrastructure_config(
    infrastructure: Infrastructure, kept: Mapping[str, list] | None = None
) -> dict[str, Any]:
    """One mig-parted config for every partitioning of the infrastructure.

    The custom ConfigMap replaces the operator's default one, so it carries the named
    layouts of the infrastructure's GPU models as well as each custom mix (filtered to its
    model by PCI device id). `kept` are configs applied before that nodes are still
    labelled with: each stays unless a current one has its name (and so its content).
    """
    strategies = list(infrastructure.partitionings.all())
    models = sorted({s.gpu_model for s in strategies}) or None
    config = migparted.default_config(models)
    for strategy in strategies:
        if strategy.mode == PartitioningMode.CUSTOM:
            counts = strategy.per_gpu_counts()
            config["mig-configs"][strategy.config_name()] = [
                migparted.entry(counts, [strategy.gpu_model])
            ]
    for name, entries in (kept or {}).items():
        config["mig-configs"].setdefault(name, entries)
    return config
