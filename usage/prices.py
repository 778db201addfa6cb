"""What usage costs: the prices administrators set, else the public cloud prices.

A `PriceBook` reads every `Price` row once (one query), so a page that prices many
profiles or ledger rows adds no query per row. An hour of a resource group costs:
- its cloud instances, where its instance type has a price (per instance-hour), else
- its GPUs at the price of its GPU model (a MIG slice at its share of the GPU),
- plus its storage at the price per GB-month (a month counted as 730 hours, as the cloud
  providers do).
What has no price costs nothing, and `Rate.complete` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from profiles.mig import catalog as mig_catalog
from usage import public_prices
from usage.models import Price

HOURS_PER_MONTH = Decimal(730)


@dataclass(frozen=True)
class Line:
    """One resource group as priced: what it holds for an hour."""

    gpu_model: str = ""
    gpus: int = 0  # whole GPUs
    mig_slices: int = 0
    gpu_share: float = 0.0  # GPUs, each MIG slice as its share of one
    instance_type: str = ""
    instances: int = 0
    storage_gb: int = 0
    provider: str = ""
    region: str = ""


@dataclass(frozen=True)
class Rate:
    per_hour: Decimal
    complete: bool  # False: something it holds has no price, and counts as free


def gpu_share(gpu_model: str, mig_profile: str) -> float:
    """The share of its GPU one MIG slice is (3g.40gb on an H100: 3 of 7 compute slices);
    1 for a whole GPU. A slice the catalog does not know counts as the smallest of 7."""
    if not mig_profile:
        return 1.0
    try:
        slices = mig_catalog.profile(gpu_model, mig_profile).compute_slices
        return slices / mig_catalog.geometry(gpu_model).compute_slices
    except KeyError:
        return 1 / 7


def lines_of(profile) -> list[Line]:
    """A profile's resource groups as priced while it runs (its resource groups prefetched)."""
    infrastructure = profile.infrastructure
    lines = []
    for group in profile.resource_groups.all():
        count = group.gpu_count * group.node_count
        lines.append(
            Line(
                gpu_model=group.gpu_model if count else "",
                gpus=0 if group.mig_profile else count,
                mig_slices=count if group.mig_profile else 0,
                gpu_share=count * gpu_share(group.gpu_model, group.mig_profile),
                instance_type=group.instance_type,
                instances=group.node_count if group.instance_type else 0,
                storage_gb=group.storage_gb * group.node_count,
                provider=infrastructure.provider,
                region=infrastructure.region,
            )
        )
    return lines


class PriceBook:
    def __init__(self, prices=None):
        rows = list(Price.objects.all()) if prices is None else list(prices)
        self._prices = {(p.kind, p.key, p.region): p.amount for p in rows}
        self._rates: dict[Line, Rate] = {}

    def gpu_hour(self, gpu_model: str) -> Decimal | None:
        return self._prices.get((Price.Kind.GPU_MODEL, gpu_model, ""))

    def instance_hour(self, provider: str, instance_type: str, region: str) -> Decimal | None:
        """The administrator's price for the region, else for every region, else the public
        on-demand price."""
        for key in ((instance_type, region), (instance_type, "")):
            if (Price.Kind.INSTANCE_TYPE, *key) in self._prices:
                return self._prices[(Price.Kind.INSTANCE_TYPE, *key)]
        return public_prices.instance_hour(provider, instance_type, region)

    def storage_gb_month(self) -> Decimal | None:
        return self._prices.get((Price.Kind.STORAGE, "", ""))

    def rate(self, line: Line) -> Rate:
        if line not in self._rates:
            self._rates[line] = self._rate(line)
        return self._rates[line]

    def _rate(self, line: Line) -> Rate:
        total, complete = Decimal(0), True
        instance = (
            self.instance_hour(line.provider, line.instance_type, line.region)
            if line.instance_type and line.instances
            else None
        )
        if instance is not None:
            total += instance * line.instances
        elif line.gpu_share:
            gpu = self.gpu_hour(line.gpu_model)
            complete = gpu is not None
            total += (gpu or 0) * Decimal(str(line.gpu_share))
        if line.storage_gb:
            storage = self.storage_gb_month()
            complete = complete and storage is not None
            total += (storage or 0) * line.storage_gb / HOURS_PER_MONTH
        return Rate(total, complete)

    def profile_rate(self, profile) -> Rate:
        rates = [self.rate(line) for line in lines_of(profile)]
        return Rate(sum((r.per_hour for r in rates), Decimal(0)), all(r.complete for r in rates))


def describe(rate: Rate) -> str:
    """ "about $1.20 per hour"; empty when nothing it holds has a price."""
    if not rate.per_hour:
        return ""
    text = f"about ${rate.per_hour:,.2f} per hour"
    return text if rate.complete else f"{text} (not all of it has a price)"


def annotate_costs(profiles) -> None:
    """Set `cost` ("about $1.20 per hour") on each profile (resource groups prefetched,
    infrastructure loaded): one query for the prices, none per profile."""
    book = PriceBook()
    for profile in profiles:
        profile.cost = describe(book.profile_rate(profile))
