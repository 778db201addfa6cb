"""`/metrics`: the engine's state, read from the database at scrape time.

Every number here is an aggregate query over the shared database, made when Prometheus
scrapes, so any web process reports the same values however many web and worker processes
there are (nothing is counted in process memory). A scrape costs a fixed number of
queries, whatever the number of workspaces and instances. The HTTP latency histogram and
the task-queue gauges come from `portal.metrics`.

- `portal_workspaces{state,profile}`, `portal_pool_instances{state,profile}`: rows by state.
- `portal_warm_pool_ready`, `portal_warm_pool_desired` per warm-pool profile: claimable
  instances, and the capacity the loop aimed at in its latest pass (a schedule's, or the
  SLO policy's target when the pool is sized by its SLO).
- `portal_warm_pool_claims_total{profile,result}`: requests for a warm-pool profile that got
  a ready instance (`hit`) or were provisioned on demand (`miss`).
- `portal_warm_pool_idle_instance_seconds_total{profile}`: time instances spent ready and
  unclaimed (the pools page's "idle hours", since the beginning).
- Histograms, from the rows' timestamps and lifecycle events:
  `portal_workspace_ready_duration_seconds{profile,source}` (request → ready, what the
  user waits; `source` is `warm` or `on_demand`),
  `portal_pool_instance_provisioning_duration_seconds{profile}` (request → ready of a warm
  instance) and `portal_workspace_start_duration_seconds{profile}` (Start of a stopped
  workspace → ready).
- `portal_failures_total{kind,profile,reason}`: transitions to failed, and starts that gave
  up back to stopped, by reason (the message with its numbers replaced by N, so ids do
  not multiply the series).
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import timedelta

from django.db.models import (
    Case,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.http import HttpResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from pools import warmpool
from pools.lifecycle import State
from pools.models import (
    LoopDecision,
    PoolInstance,
    PoolInstanceEvent,
    PoolSchedule,
    Workspace,
    WorkspaceEvent,
)
from portal import metrics as portal_metrics
from profiles.choices import AllocationStrategy
from profiles.models import ComputeProfile

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)
REASON_LENGTH = 120


def _profile_name(path: str = "") -> Coalesce:
    """The profile's name, or the name kept once the profile was deleted (pools.history)."""
    return Coalesce(f"{path}profile__name", f"{path}profile_name")


def _duration(start: str, end: str) -> ExpressionWrapper:
    return ExpressionWrapper(F(end) - F(start), output_field=DurationField())


def _histogram_rows(queryset, labels: list[str]) -> list[tuple[tuple, list[int], float]]:
    """Per label combination: cumulative bucket counts (+Inf last) and the sum in seconds.

    `queryset` must annotate `duration`; one GROUP BY query with a filtered count per
    bucket.
    """
    buckets = {
        f"le_{i}": Count("pk", filter=Q(duration__lte=timedelta(seconds=bound)))
        for i, bound in enumerate(DURATION_BUCKETS)
    }
    rows = queryset.values(*labels).annotate(
        total=Count("pk"), duration_sum=Sum("duration"), **buckets
    )
    result = []
    for row in rows.order_by(*labels):
        counts = [row[f"le_{i}"] for i in range(len(DURATION_BUCKETS))] + [row["total"]]
        seconds = row["duration_sum"].total_seconds() if row["duration_sum"] else 0.0
        result.append((tuple(str(row[label]) for label in labels), counts, seconds))
    return result


def _histogram(
    name: str, documentation: str, label_names: list[str], rows
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=label_names)
    for labels, counts, seconds in rows:
        bounds = [str(float(b)) for b in DURATION_BUCKETS] + ["+Inf"]
        family.add_metric(list(labels), list(zip(bounds, counts, strict=True)), seconds)
    return family


def normalize_reason(message: str) -> str:
    """A failure message as a label: numbers (ids, counts) become N, and it is cut short."""
    return re.sub(r"\d+", "N", message).strip()[:REASON_LENGTH] or "unknown"


class EngineCollector:
    """The engine's gauges, counters and histograms, aggregated from the database."""

    def collect(self):
        now = timezone.now()
        yield from self._states()
        yield from self._warm_pools(now)
        yield from self._durations()
        yield self._failures()

    def _states(self):
        for model, name, documentation in (
            (Workspace, "portal_workspaces", "Workspaces by lifecycle state and profile."),
            (PoolInstance, "portal_pool_instances", "Warm-pool instances by state and profile."),
        ):
            family = GaugeMetricFamily(name, documentation, labels=["state", "profile"])
            rows = (
                model.objects.annotate(profile_label=_profile_name())
                .values_list("state", "profile_label")
                .annotate(n=Count("pk"))
            )
            for state, profile, n in rows.order_by("state", "profile_label"):
                family.add_metric([state, profile], n)
            yield family

    def _warm_pools(self, now):
        profiles = [
            p
            for p in warmpool.managed_profiles()
            if p.allocation_strategy == AllocationStrategy.WARM_POOL
        ]
        counts = warmpool.count_instances(profiles)
        schedules = defaultdict(list)
        for schedule in PoolSchedule.objects.filter(profile__in=profiles):
            schedules[schedule.profile_id].append(schedule)
        # What the loop aimed at in its latest pass (a schedule, or the SLO policy when the
        # pool is sized by its SLO); a pool the loop has not seen yet: its configured value.
        latest = LoopDecision.objects.filter(profile=OuterRef("pk")).order_by("-time", "-pk")
        aimed = dict(
            ComputeProfile.objects.filter(pk__in=[p.pk for p in profiles])
            .annotate(desired=Subquery(latest.values("desired")[:1]))
            .values_list("pk", "desired")
        )
        ready = GaugeMetricFamily(
            "portal_warm_pool_ready", "Claimable warm instances.", labels=["profile"]
        )
        desired = GaugeMetricFamily(
            "portal_warm_pool_desired",
            "Warm instances the loop aimed at in its latest pass (schedules, SLO sizing).",
            labels=["profile"],
        )
        for profile in profiles:
            ready.add_metric([profile.name], counts[profile.pk].ready)
            target = aimed.get(profile.pk)
            if target is None:
                target, _ = warmpool.effective_desired(profile, schedules[profile.pk], now)
            desired.add_metric([profile.name], target)
        yield ready
        yield desired

        claims = CounterMetricFamily(
            "portal_warm_pool_claims",
            "Workspace requests of warm-pool profiles that got a ready instance (hit) or not.",
            labels=["profile", "result"],
        )
        rows = (
            Workspace.objects.filter(profile__allocation_strategy=AllocationStrategy.WARM_POOL)
            .values_list("profile__name")
            .annotate(
                hits=Count("pk", filter=Q(pool_instance__isnull=False)),
                misses=Count("pk", filter=Q(pool_instance__isnull=True)),
            )
        )
        for profile, hits, misses in rows.order_by("profile__name"):
            claims.add_metric([profile, "hit"], hits)
            claims.add_metric([profile, "miss"], misses)
        yield claims

        idle = CounterMetricFamily(
            "portal_warm_pool_idle_instance_seconds",
            "Instance-seconds warm instances spent ready and unclaimed.",
            labels=["profile"],
        )
        # As pools.stats.idle_hours: an instance idles from ready_at until it is claimed, or
        # starts deleting (state_changed), or until now while it is still ready.
        idle_end = Case(
            When(state=State.READY, then=Value(now)),
            When(claimed_at__isnull=False, then=F("claimed_at")),
            default=F("state_changed"),
        )
        rows = (
            PoolInstance.objects.filter(ready_at__isnull=False)
            .annotate(
                idle=ExpressionWrapper(idle_end - F("ready_at"), output_field=DurationField())
            )
            .annotate(profile_label=_profile_name())
            .values_list("profile_label")
            .annotate(seconds=Sum("idle"))
        )
        for profile, seconds in rows.order_by("profile_label"):
            idle.add_metric([profile], max(seconds.total_seconds(), 0.0) if seconds else 0.0)
        yield idle

    def _durations(self):
        ready = Workspace.objects.filter(ready_at__isnull=False).annotate(
            profile_label=_profile_name(),
            duration=_duration("created", "ready_at"),
            source=Case(
                When(pool_instance__isnull=False, then=Value("warm")),
                default=Value("on_demand"),
            ),
        )
        yield _histogram(
            "portal_workspace_ready_duration_seconds",
            "From a workspace request to ready: what the user waits.",
            ["profile", "source"],
            _histogram_rows(ready, ["profile_label", "source"]),
        )
        instances = PoolInstance.objects.filter(ready_at__isnull=False).annotate(
            profile_label=_profile_name(), duration=_duration("created", "ready_at")
        )
        yield _histogram(
            "portal_pool_instance_provisioning_duration_seconds",
            "From a warm instance's creation to ready.",
            ["profile"],
            _histogram_rows(instances, ["profile_label"]),
        )
        started = WorkspaceEvent.objects.filter(
            workspace=OuterRef("workspace"),
            from_state=State.STOPPED,
            to_state=State.STARTING,
            timestamp__lte=OuterRef("timestamp"),
        ).order_by("-timestamp", "-pk")
        starts = (
            WorkspaceEvent.objects.filter(from_state=State.STARTING, to_state=State.READY)
            .annotate(started=Subquery(started.values("timestamp")[:1]))
            .filter(started__isnull=False)
            .annotate(
                profile_label=_profile_name("workspace__"),
                duration=_duration("started", "timestamp"),
            )
        )
        yield _histogram(
            "portal_workspace_start_duration_seconds",
            "From Start of a stopped workspace to ready.",
            ["profile"],
            _histogram_rows(starts, ["profile_label"]),
        )

    def _failures(self):
        family = CounterMetricFamily(
            "portal_failures",
            "Workspaces and warm instances that failed, and starts that gave up, by reason.",
            labels=["kind", "profile", "reason"],
        )
        failed = Q(to_state=State.FAILED) & ~Q(from_state=State.FAILED)
        start_gave_up = Q(from_state=State.STARTING, to_state=State.STOPPED)
        totals: dict[tuple[str, str, str], int] = defaultdict(int)
        workspace_profile = _profile_name("workspace__")
        for kind, events, profile in (
            ("workspace", WorkspaceEvent.objects.filter(failed), workspace_profile),
            (
                "workspace_start",
                WorkspaceEvent.objects.filter(start_gave_up),
                _profile_name("workspace__"),
            ),
            (
                "pool_instance",
                PoolInstanceEvent.objects.filter(failed),
                _profile_name("instance__"),
            ),
        ):
            rows = (
                events.annotate(profile_label=profile)
                .values_list("profile_label", "message")
                .annotate(n=Count("pk"))
                .order_by()
            )
            for profile_name, message, n in rows:
                totals[(kind, profile_name, normalize_reason(message))] += n
        for labels, n in sorted(totals.items()):
            family.add_metric(list(labels), n)
        return family


@never_cache
@require_GET
def metrics(request):
    status = portal_metrics.access(request)
    if status != 200:
        return HttpResponse(status=status)
    collected = portal_metrics.registry(portal_metrics.QueueCollector(), EngineCollector())
    return HttpResponse(generate_latest(collected), content_type=CONTENT_TYPE_LATEST)


# Included by portal.urls at /metrics (the portal app cannot import the engine).
urlpatterns = [path("", metrics, name="metrics")]
