"""Warm pools: each profile's pool as the pools page shows it, the loop's decisions, and
pause / resume (the engine's audited `warmpool.pause` / `resume`)."""

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import action
from rest_framework.response import Response

from api.v1 import serializers as out
from api.v1.generic import IntegerIdViewSet, PageBackedViewSet, write_docs
from pools import views as pool_pages
from pools import warmpool
from pools.models import LoopDecision, Pool
from portal.roles import CHANGE, Area

PROFILE_ID = OpenApiParameter("profile_id", int, OpenApiParameter.PATH)


def _status_rows(profile_ids=None) -> list[dict]:
    """The pools page's rows (its own helper), so the API shows exactly what the page does."""
    now = timezone.now()
    return pool_pages._rows(warmpool.plan(profile_ids, now), now)


class PoolViewSet(IntegerIdViewSet):
    """Warm pools, keyed by their compute profile's id."""

    area = Area.POOLS
    lookup_field = "profile_id"
    serializer_class = out.PoolStatusSerializer
    queryset = LoopDecision.objects.none()  # for the schema; the rows come from the loop

    @extend_schema(summary="Every warm pool: desired, ready, provisioning, paused, halted")
    def list(self, request):
        rows = _status_rows()
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(out.PoolStatusSerializer(page, many=True).data)

    @extend_schema(summary="One warm pool", parameters=[PROFILE_ID])
    def retrieve(self, request, profile_id: int):
        profile = pool_pages._get_profile_for_user(request, profile_id)
        rows = _status_rows([profile.pk])
        if not rows:
            return Response(_unmanaged(profile))
        return Response(out.PoolStatusSerializer(rows[0]).data)

    @extend_schema(
        summary="The control loop's recent decisions for the pool, newest first",
        parameters=[PROFILE_ID],
        responses={200: out.LoopDecisionSerializer(many=True)},
    )
    @action(detail=True, methods=["get"])
    def decisions(self, request, profile_id: int):
        profile = pool_pages._get_profile_for_user(request, profile_id)
        page = self.paginate_queryset(LoopDecision.objects.filter(profile=profile))
        return self.get_paginated_response(out.LoopDecisionSerializer(page, many=True).data)

    @extend_schema(summary="Pause the pool: the loop leaves it alone", parameters=[PROFILE_ID])
    @action(detail=True, methods=["post"])
    def pause(self, request, profile_id: int):
        profile = pool_pages._get_profile_for_user(request, profile_id, CHANGE)
        warmpool.pause(request.user, profile)
        return self.retrieve(request, profile_id)

    @extend_schema(summary="Resume the pool and forget its failures", parameters=[PROFILE_ID])
    @action(detail=True, methods=["post"])
    def resume(self, request, profile_id: int):
        profile = pool_pages._get_profile_for_user(request, profile_id, CHANGE)
        warmpool.resume(request.user, profile)
        return self.retrieve(request, profile_id)


def _unmanaged(profile) -> dict:
    """A profile the loop does not manage (not a warm-pool profile, or unpublished)."""
    pool = Pool.objects.filter(profile=profile).first()
    return {
        "profile": profile.pk,
        "profile_name": profile.name,
        "desired": 0,
        "ready": 0,
        "provisioning": 0,
        "action": "none",
        "reason": "Not a warm-pool profile the loop manages.",
        "claimed_recently": 0,
        "paused": bool(pool and pool.paused),
        "halted": bool(pool and pool.halted),
        "last_failure": pool.last_failure if pool else "",
    }


@write_docs(out.PoolScheduleSerializer, "warm-pool schedule")
class PoolScheduleViewSet(PageBackedViewSet):
    """Weekly windows that change a warm pool's desired capacity (the pools pages' own)."""

    list_page = pool_pages.PoolScheduleList
    edit_page = pool_pages.PoolScheduleEdit
    delete_page = pool_pages.PoolScheduleDelete
    output_serializer = out.PoolScheduleSerializer
    queryset = pool_pages.PoolScheduleList.queryset
