"""The warm-pools pages: every pool at a glance, one pool in detail, pause/resume, schedules."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from pools import slo, stats, warmpool
from pools.filtersets import PoolScheduleFilterSet
from pools.forms import PoolScheduleForm, PoolSloForm
from pools.lifecycle import State
from pools.models import LoopDecision, Pool, PoolInstance, PoolSchedule
from pools.tables import PoolScheduleTable
from portal.roles import CHANGE, VIEW, Area, has_perm
from portal.urlhelpers import id_param
from portal.views.generic import (
    ObjectDeleteView,
    ObjectDetailView,
    ObjectEditView,
    ObjectListView,
    require,
)
from profiles.choices import AllocationStrategy
from profiles.models import ComputeProfile

RECENT_CLAIMS = 10
DECISIONS_SHOWN = 50


def _get_profile_for_user(request: HttpRequest, profile_pk: int, action: str = VIEW):
    """The one access helper: 403 without the Warm pools area, 404 for an unknown profile."""
    require(request.user, Area.POOLS, action)
    queryset = ComputeProfile.objects.select_related("infrastructure")
    return get_object_or_404(queryset, pk=profile_pk)


def _recent_claims(profile_ids=None):
    claims = PoolInstance.objects.filter(state=State.CLAIMED).select_related(
        "profile", "workspace__owner"
    )
    if profile_ids is not None:
        claims = claims.filter(profile_id__in=profile_ids)
    return claims.order_by("-claimed_at", "-pk")[:RECENT_CLAIMS]


def _rows(decisions, now):
    ids = [d.profile.pk for d in decisions]
    claimed = dict(
        PoolInstance.objects.filter(
            profile_id__in=ids, state=State.CLAIMED, claimed_at__gte=now - stats.WINDOW
        )
        .values_list("profile_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return [
        {
            "profile": d.profile,
            "decision": d,
            "pool": d.pool,
            "claimed": claimed.get(d.profile.pk, 0),
        }
        for d in decisions
    ]


def _summary_context(summary: stats.Summary) -> dict:
    return {
        "summary": summary,
        "hit_rate": f"{summary.hit_rate:.0%}" if summary.hit_rate is not None else "—",
        "warm_p50": stats.format_seconds(summary.warm_p50),
        "warm_p95": stats.format_seconds(summary.warm_p95),
        "others_p50": stats.format_seconds(summary.others_p50),
        "others_p95": stats.format_seconds(summary.others_p95),
    }


@login_required
@require_GET
def pool_list(request: HttpRequest) -> HttpResponse:
    require(request.user, Area.POOLS, VIEW)
    now = timezone.now()
    rows = _rows(warmpool.plan(None, now), now)
    ids = [row["profile"].pk for row in rows]
    context = {
        "rows": rows,
        "halted": [row for row in rows if row["pool"] and row["pool"].halted],
        "claims": _recent_claims(),
        "can_change": has_perm(request.user, Area.POOLS, CHANGE),
        **_summary_context(stats.summarize(ids, now)),
    }
    return render(request, "pools/pool_list.html", context)


@login_required
@require_GET
def pool_detail(request: HttpRequest, profile_pk: int) -> HttpResponse:
    profile = _get_profile_for_user(request, profile_pk)
    now = timezone.now()
    decisions = warmpool.plan([profile.pk], now)
    row = _rows(decisions, now)[0] if decisions else None
    desired, reason = warmpool.effective_desired(profile, profile.pool_schedules.all(), now)
    pool = Pool.objects.filter(profile=profile).first()
    if row and pool is not None and pool.sized_by_slo:
        desired, reason = row["decision"].desired, row["decision"].reason
    context = {
        "profile": profile,
        "row": row,
        "desired": desired,
        "reason": reason,
        "is_warm": profile.allocation_strategy == AllocationStrategy.WARM_POOL,
        "pool": pool,
        "slo": slo.report(profile, pool or Pool(profile=profile), now),
        "chart": stats.chart(profile.pk, now),
        "decisions": LoopDecision.objects.filter(profile=profile)[:DECISIONS_SHOWN],
        "schedules": profile.pool_schedules.all(),
        "instances": PoolInstance.objects.filter(
            profile=profile, state__in=warmpool.POOL_STATES
        ).order_by("created", "pk"),
        "claims": _recent_claims([profile.pk]),
        "can_change": has_perm(request.user, Area.POOLS, CHANGE),
        **_summary_context(stats.summarize([profile.pk], now)),
    }
    return render(request, "pools/pool_detail.html", context)


@login_required
@require_POST
def pool_pause(request: HttpRequest, profile_pk: int) -> HttpResponse:
    profile = _get_profile_for_user(request, profile_pk, CHANGE)
    warmpool.pause(request.user, profile)
    messages.success(request, f"Paused the warm pool of {profile}: the loop leaves it alone.")
    return redirect("pools:pool_detail", profile.pk)


@login_required
@require_POST
def pool_resume(request: HttpRequest, profile_pk: int) -> HttpResponse:
    profile = _get_profile_for_user(request, profile_pk, CHANGE)
    warmpool.resume(request.user, profile)
    messages.success(request, f"Resumed the warm pool of {profile}; failures were reset.")
    return redirect("pools:pool_detail", profile.pk)


# -- schedules (the generic catalog views: permission checks and audit entries) ---------


class PoolScheduleList(ObjectListView):
    queryset = PoolSchedule.objects.select_related("profile")
    table = PoolScheduleTable
    filterset = PoolScheduleFilterSet
    empty_message = (
        "No schedules. A schedule changes a pool's desired capacity in a weekly window, "
        "e.g. 2 instead of 9 on Saturdays and Sundays."
    )


class PoolScheduleDetail(ObjectDetailView):
    queryset = PoolSchedule.objects.select_related("profile")
    template_name = "pools/poolschedule_detail.html"


class PoolScheduleEdit(ObjectEditView):
    queryset = PoolSchedule.objects.all()
    form_class = PoolScheduleForm

    def new_object(self, request):
        schedule = PoolSchedule()
        schedule.profile_id = id_param(request.GET.get("profile"))
        return schedule


class PoolScheduleDelete(ObjectDeleteView):
    queryset = PoolSchedule.objects.all()


class PoolSizingEdit(ObjectEditView):
    """How a profile's warm pool is sized: fixed capacity, or an SLO (`PoolSloForm`)."""

    queryset = Pool.objects.select_related("profile__infrastructure")
    form_class = PoolSloForm
    template_name = "pools/pool_sizing.html"
    addable = False

    def get_object(self, request, pk):
        profile = _get_profile_for_user(request, pk, CHANGE)
        return Pool.objects.filter(profile=profile).first() or Pool(profile=profile)

    def get(self, request, profile_pk: int):
        return super().get(request, pk=profile_pk)

    def post(self, request, profile_pk: int):
        return super().post(request, pk=profile_pk)

    def save(self, request, form):
        pool = form.save()
        transaction.on_commit(warmpool.enqueue_loop)  # the new sizing applies at once
        return pool

    def render_form(self, request, form, obj):
        now = timezone.now()
        measured = slo.provisioning([obj.profile.infrastructure_id], now)
        context = self.base_context(request) | {
            "form": form,
            "object": obj,
            "profile": obj.profile,
            "provisioning": measured.get(obj.profile.infrastructure_id),
            "gpu_share": slo.gpu_share(obj.profile),
        }
        return render(request, self.template_name, context)
