"""How long a new workspace of a profile will take: at once when its warm pool has a ready
instance, else the median provisioning time measured on its infrastructure (pool instances
and on-demand workspaces, `pools.slo.provisioning`), else a default for its kind."""

from django.utils import timezone

from pools import slo
from pools.claims import ready_counts
from profiles.choices import AllocationStrategy, InfrastructureKind

# Before any history exists: what each kind of infrastructure typically needs, in minutes.
DEFAULT_MINUTES = {
    InfrastructureKind.LOCAL: 0,
    InfrastructureKind.KUBERNETES: 3,
    InfrastructureKind.DATA_CENTER: 10,
    InfrastructureKind.PUBLIC_CLOUD: 15,
}
MEASURED = "provisioning p50 on this infrastructure"


def estimates(profiles) -> dict[int, str]:
    """{profile id: estimate} in two queries however many profiles (infrastructure loaded);
    one when they are annotated with `ready_now` (`pools.claims.ready_now`)."""
    warm = [p for p in profiles if p.allocation_strategy == AllocationStrategy.WARM_POOL]
    ready = {p.pk: p.ready_now for p in warm if hasattr(p, "ready_now")}
    ready |= ready_counts([p for p in warm if p.pk not in ready])
    measured = slo.provisioning({p.infrastructure_id for p in profiles}, timezone.now())
    return {
        p.pk: _wording(p, ready.get(p.pk, 0), measured.get(p.infrastructure_id)) for p in profiles
    }


def estimate(profile) -> str:
    return estimates([profile])[profile.pk]


def _wording(profile, ready: int, measured) -> str:
    if ready:
        return "ready now (warm)"
    if measured is None:
        minutes = DEFAULT_MINUTES.get(profile.infrastructure.kind, 10)
        return "ready in seconds" if minutes == 0 else f"about {minutes} minutes"
    seconds = measured.p50
    if seconds < 60:
        return f"under a minute ({MEASURED})"
    minutes = round(seconds / 60)
    return f"about {minutes} minute{'s' if minutes != 1 else ''} ({MEASURED})"
