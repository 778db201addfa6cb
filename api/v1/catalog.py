"""Infrastructure, compute profiles, services profiles and partitionings (`generic`), and
the MIG layout check the partitioning pages use."""

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from api.forms import NOT_BOOLEAN, bind
from api.problems import Conflict
from api.v1 import serializers as out
from api.v1.generic import PageBackedViewSet, write_docs
from pools import mig_apply, partitions
from pools.forms import DrainForm
from pools.partitions import PartitioningRefused
from profiles import cloning, partitioning_views
from profiles import views as pages
from profiles.mig import layout


@write_docs(out.InfrastructureSerializer, "infrastructure entry")
class InfrastructureViewSet(PageBackedViewSet):
    """Infrastructure. Secrets (credentials, password, SSH key, kubeconfig) are write-only."""

    list_page = pages.InfrastructureList
    edit_page = pages.InfrastructureEdit
    delete_page = pages.InfrastructureDelete
    output_serializer = out.InfrastructureSerializer
    queryset = pages.InfrastructureList.queryset

    @extend_schema(
        summary="Check now: the engine checks the entry; health_status follows the result",
        request=None,
        responses={202: out.InfrastructureSerializer},
    )
    @action(detail=True, methods=["post"])
    def check(self, request, pk=None):
        infrastructure = self.get_object()
        infrastructure.request_health_check()
        return self._response(self.get_object(), code=202)


@write_docs(out.ComputeProfileSerializer, "compute profile")
class ComputeProfileViewSet(PageBackedViewSet):
    """Compute profiles with their resource groups (a write replaces the groups in order)."""

    list_page = pages.ComputeProfileList
    edit_page = pages.ComputeProfileEdit
    delete_page = pages.ComputeProfileDelete
    rows_key = "resource_groups"
    output_serializer = out.ComputeProfileSerializer
    queryset = pages.ComputeProfileList.queryset


@write_docs(out.ServicesProfileSerializer, "services profile")
class ServicesProfileViewSet(PageBackedViewSet):
    """Services profiles; turnkey ones are read-only (409), as on the pages."""

    list_page = pages.ServicesProfileList
    edit_page = pages.ServicesProfileEdit
    delete_page = pages.ServicesProfileDelete
    rows_key = "components"
    output_serializer = out.ServicesProfileSerializer
    queryset = pages.ServicesProfileList.queryset

    @extend_schema(
        summary="Clone the profile (turnkey ones too): an unpublished copy to customise",
        request=None,
        responses={201: out.ServicesProfileSerializer},
    )
    @action(detail=True, methods=["post"])
    def clone(self, request, pk=None):
        clone = cloning.clone_services_profile(request.user, self.get_object())
        return self._response(self.get_queryset().get(pk=clone.pk), code=201)


@write_docs(out.PartitioningStrategySerializer, "partitioning")
class PartitioningViewSet(PageBackedViewSet):
    """How each infrastructure's GPUs of a model are partitioned (MIG)."""

    list_page = partitioning_views.PartitioningList
    edit_page = partitioning_views.PartitioningEdit
    delete_page = partitioning_views.PartitioningDelete
    output_serializer = out.PartitioningStrategySerializer
    queryset = partitioning_views.PartitioningList.queryset

    @extend_schema(
        summary="Validate a MIG layout of one GPU: whether it fits, why not, and where "
        "each instance goes",
        request=out.LayoutRequestSerializer,
        responses={200: out.LayoutResultSerializer},
    )
    @action(detail=False, methods=["post"], url_path="validate-layout", read_only=True)
    def validate_layout(self, request):
        body = out.LayoutRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        wanted = body.validated_data
        result = layout.validate_layout(wanted["gpu_model"], wanted["counts"])
        data = {
            "ok": result.ok,
            "reason": result.reason,
            "placements": [p._asdict() for p in result.placements],
        }
        return Response(data)

    @extend_schema(
        summary="Apply the partitioning: write the mig-parted ConfigMap and label the nodes "
        "(Kubernetes); 409 with the reason while it cannot be applied",
        request=None,
        responses={202: out.PartitioningStrategySerializer},
    )
    @action(detail=True, methods=["post"])
    def apply(self, request, pk=None):
        strategy = self.get_object()
        try:
            mig_apply.request_apply(request.user, strategy)
        except PartitioningRefused as refused:
            raise Conflict(str(refused)) from refused
        return self._response(self.get_object(), code=202)

    @extend_schema(
        summary="Drain a node (no new workspaces) or put it back in service",
        request=out.DrainRequestSerializer,
        responses={200: out.PartitioningStrategySerializer},
    )
    @action(detail=True, methods=["post"])
    def drain(self, request, pk=None):
        strategy = self.get_object()
        body = request.data if isinstance(request.data, dict) else {}
        draining = body.get("draining", False)
        if not isinstance(draining, bool):  # "false" and "no" are true to Python
            raise ValidationError({"draining": [NOT_BOOLEAN]})
        form = bind(
            DrainForm,
            {"node": body.get("node"), "draining": "1" if draining else ""},
            user=request.user,
        )
        try:
            partitions.change_draining(
                request.user, strategy, form.cleaned_data["node"], form.cleaned_data["draining"]
            )
        except PartitioningRefused as refused:
            raise Conflict(str(refused)) from refused
        return self._response(self.get_object())

    @extend_schema(
        summary="Read the nodes' MIG state labels again (in the background)",
        request=None,
        responses={202: out.PartitioningStrategySerializer},
    )
    @action(detail=True, methods=["post"])
    def refresh(self, request, pk=None):
        strategy = self.get_object()
        mig_apply.request_refresh(strategy)
        return self._response(strategy, code=202)
