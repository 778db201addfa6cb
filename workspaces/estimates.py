"""How long a new workspace of a profile will take: at once when its warm pool has a ready
instance, else the median provisioning time measured on its infrastructure (pool instances
and on-demand workspaces, `pools.slo.provisioning`), else a default for its kind."""

from django.utils import timezone

from pools import slo
from pools.claims import ready_count
from profiles.choices import AllocationStrategy, InfrastructureKind

# Before any history exists: what each kind of infrastructure typically needs, in minutes.
DEFAULT_MINUTES = {
    InfrastructureKind.LOCAL: 0,
    InfrastructureKind.KUBERNETES: 3,
    InfrastructureKind.DATA_CENTER: 10,
    InfrastructureKind.PUBLIC_CLOUD: 15,
}
MEASURED = "provisioning p50 on this infrastructure"


def estimate(profile) -> str:
    if profile.allocation_strategy == AllocationStrategy.WARM_POOL and ready_count(profile):
        return "ready now (warm)"
    infrastructure_id = profile.infrastructure_id
    measured = slo.provisioning([infrastructure_id], timezone.now()).get(infrastructure_id)
    if measured is None:
        minutes = DEFAULT_MINUTES.get(profile.infrastructure.kind, 10)
        return "ready in seconds" if minutes == 0 else f"about {minutes} minutes"
    seconds = measured.p50
    if seconds < 60:
        return f"under a minute ({MEASURED})"
    minutes = round(seconds / 60)
    return f"about {minutes} minute{'s' if minutes != 1 else ''} ({MEASURED})"
