"""How long a new workspace of a profile will take: at once when its warm pool has a ready
instance; else, when an instance is on its way (and not late: `pools.promises.Patience`),
until the one a request would wait for is ready (`pools.promises`); else the median
provisioning time measured on its infrastructure (pool instances and on-demand workspaces,
`pools.slo.provisioning`), else what its kind typically needs
(`pools.slo.assumed_provisioning`, as a promise assumes it too)."""

from django.utils import timezone

from pools import promises, sizing, slo
from pools.claims import in_about, on_the_way_times, ready_counts
from profiles.choices import AllocationStrategy

MEASURED = "provisioning p50 on this infrastructure"
ON_ITS_WAY = "a warm instance on its way"


def estimates(profiles) -> dict[int, str]:
    """{profile id: estimate} in two queries however many profiles (infrastructure loaded);
    one when they are annotated with `ready_now` and `pools.claims.on_the_way_annotations`
    (two more for the profiles that are not)."""
    warm = [p for p in profiles if p.allocation_strategy == AllocationStrategy.WARM_POOL]
    ready = {p.pk: p.ready_now for p in warm if hasattr(p, "ready_now")}
    ready |= ready_counts([p for p in warm if p.pk not in ready])
    waiting = [p for p in warm if not ready.get(p.pk)]
    coming = {
        p.pk: (p.first_on_the_way, p.last_on_the_way, p.slo_seconds)
        for p in waiting
        if hasattr(p, "first_on_the_way")
    }
    coming |= on_the_way_times([p for p in waiting if p.pk not in coming])
    now = timezone.now()
    measured = slo.provisioning({p.infrastructure_id for p in profiles}, now)
    return {
        p.pk: _wording(
            p, ready.get(p.pk, 0), coming.get(p.pk), measured.get(p.infrastructure_id), now
        )
        for p in profiles
    }


def estimate(profile) -> str:
    return estimates([profile])[profile.pk]


def _wording(profile, ready: int, coming, measured, now) -> str:
    if ready:
        return "ready now (warm)"
    if coming is not None and coming[0] is not None:
        first, last, within = coming
        kind = profile.infrastructure.kind
        p50 = measured.p50 if measured else slo.assumed_provisioning(kind)
        within = within if within is not None else sizing.SloSettings().seconds
        late = slo.patience(kind, measured).seconds
        wait = promises.expected_wait(p50, within, first, last, now, late)
        if wait is not None:
            return f"{in_about(wait)} ({ON_ITS_WAY})"
    if measured is None:
        minutes = round(slo.assumed_provisioning(profile.infrastructure.kind) / 60)
        return "ready in seconds" if minutes == 0 else f"about {minutes} minutes"
    return f"{in_about(measured.p50)} ({MEASURED})"
