"""How long a new workspace of a profile will take: at once when its warm pool has a ready
instance, else from recent on-demand history, else a default."""

from statistics import median

from django.db.models import F

from pools.claims import ready_count
from pools.models import Workspace
from profiles.choices import AllocationStrategy, InfrastructureKind

RECENT = 20
# Before any history exists: what each kind of infrastructure typically needs, in minutes.
DEFAULT_MINUTES = {
    InfrastructureKind.LOCAL: 0,
    InfrastructureKind.KUBERNETES: 3,
    InfrastructureKind.DATA_CENTER: 10,
    InfrastructureKind.PUBLIC_CLOUD: 15,
}


def _recent_seconds(queryset) -> list[float]:
    rows = (
        queryset.filter(ready_at__isnull=False)
        .annotate(took=F("ready_at") - F("created"))
        .order_by("-ready_at")
        .values_list("took", flat=True)[:RECENT]
    )
    return [took.total_seconds() for took in rows]


def time_to_ready(profile) -> float | None:
    """Median seconds to ready of the profile's recent on-demand workspaces, else its
    infrastructure's (warm-pool claims are instant and say nothing about provisioning)."""
    on_demand = Workspace.objects.filter(pool_instance__isnull=True)
    samples = _recent_seconds(on_demand.filter(profile=profile))
    if not samples:
        samples = _recent_seconds(on_demand.filter(infrastructure_id=profile.infrastructure_id))
    return median(samples) if samples else None


def estimate(profile) -> str:
    if profile.allocation_strategy == AllocationStrategy.WARM_POOL:
        ready = ready_count(profile)
        if ready:
            return f"ready in seconds ({ready} warm)"
    seconds = time_to_ready(profile)
    if seconds is None:
        minutes = DEFAULT_MINUTES.get(profile.infrastructure.kind, 10)
        return "ready in seconds" if minutes == 0 else f"about {minutes} minutes"
    if seconds < 60:
        return "ready in seconds"
    minutes = round(seconds / 60)
    return "about 1 minute" if minutes <= 1 else f"about {minutes} minutes"
