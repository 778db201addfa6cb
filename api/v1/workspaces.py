"""Workspaces: list, request, stop, start, delete, events, services and the secret, through
the pages' access helper (`workspaces.access`) and actions (`workspaces.actions`,
`services.actions`): the same checks, quota messages and audit entries as the pages."""

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from api.forms import bind
from api.problems import Conflict
from api.v1 import serializers as out
from api.v1.generic import IntegerIdViewSet
from pools.models import Workspace
from portal.roles import CHANGE, USE, VIEW, Area
from portal.urlhelpers import id_param
from portal.views.generic import require
from profiles.models import ComputeProfile
from services import actions as services
from services.models import ServiceDeployment
from workspaces import access, actions
from workspaces.filtersets import WorkspaceFilterSet
from workspaces.forms import WorkspaceRequestForm

DEPLOYMENT_ID = OpenApiParameter("deployment_pk", int, OpenApiParameter.PATH)


class WorkspaceViewSet(mixins.ListModelMixin, IntegerIdViewSet):
    """Your workspaces (every workspace for Workspaces administrators)."""

    serializer_class = out.WorkspaceSerializer
    filterset_class = WorkspaceFilterSet
    queryset = Workspace.objects.none()  # for the schema; `get_queryset` decides

    def get_queryset(self):
        access._require_workspace_access(self.request.user, VIEW)
        return Workspace.objects.for_user(self.request.user, VIEW).select_related(
            "owner", "team", "profile", "infrastructure"
        )

    def _workspace(self, pk, action_name: str = VIEW) -> Workspace:
        return access.get_workspace_for_user(self.request, pk, action_name)

    def _answer(self, workspace: Workspace, code=status.HTTP_200_OK) -> Response:
        workspace.refresh_from_db()
        return Response(out.WorkspaceSerializer(workspace).data, status=code)

    def retrieve(self, request, pk=None):
        return self._answer(self._workspace(pk))

    @extend_schema(
        summary="Request a workspace: 201 with it, or 403/409 with the refusal reason",
        request=out.WorkspaceRequestSerializer,
        responses={201: out.WorkspaceSerializer},
    )
    def create(self, request):
        require(request.user, Area.SELF_SERVICE, USE)
        body = request.data if isinstance(request.data, dict) else {}
        profile = _requested_profile(body.get("profile"))
        form = bind(
            WorkspaceRequestForm,
            {key: body[key] for key in ("name", "services_profile") if key in body},
            user=request.user,
        )
        stack = form.cleaned_data["services_profile"]
        try:
            with transaction.atomic():  # a refused deploy leaves no workspace either
                workspace = actions.request_workspace(
                    request.user, profile, form.cleaned_data["name"]
                )
                if stack:
                    services.deploy(request.user, workspace, stack)
        except actions.RequestRefused as refused:
            usable = ComputeProfile.objects.usable_by(request.user).filter(pk=profile.pk)
            if not usable.exists():
                raise PermissionDenied(str(refused)) from refused
            raise Conflict(str(refused)) from refused
        except services.ServicesRefused as refused:
            raise Conflict(f"Services not deployed: {refused}") from refused
        answer = self._answer(workspace, status.HTTP_201_CREATED)
        answer["Location"] = request.build_absolute_uri(f"{request.path}{workspace.pk}/")
        return answer

    def _power(self, pk, move) -> Response:
        workspace = self._workspace(pk, CHANGE)
        try:
            move(self.request.user, workspace)
        except actions.RequestRefused as refused:
            raise Conflict(str(refused)) from refused
        return self._answer(workspace, status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Delete the workspace (202: deleting)",
        request=None,
        responses={202: out.WorkspaceSerializer},
    )
    def destroy(self, request, pk=None):
        return self._power(pk, actions.delete_workspace)

    @extend_schema(
        summary="Stop a ready workspace: GPUs released, files kept",
        request=None,
        responses={202: out.WorkspaceSerializer},
    )
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        return self._power(pk, actions.stop_workspace)

    @extend_schema(
        summary="Start a stopped workspace, if the quota has room",
        request=None,
        responses={202: out.WorkspaceSerializer},
    )
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        return self._power(pk, actions.start_workspace)

    @extend_schema(
        summary="The workspace's lifecycle events, oldest first",
        responses={200: out.WorkspaceEventSerializer(many=True)},
    )
    @action(detail=True, methods=["get"])
    def events(self, request, pk=None):
        workspace = self._workspace(pk)
        events = workspace.events.select_related("actor").order_by("timestamp", "pk")
        page = self.paginate_queryset(events)
        return self.get_paginated_response(out.WorkspaceEventSerializer(page, many=True).data)

    @extend_schema(
        summary="The services deployed into the workspace, newest first",
        responses={200: out.ServiceDeploymentSerializer(many=True)},
    )
    @action(detail=True, methods=["get"], url_path="services")
    def services_list(self, request, pk=None):
        workspace = self._workspace(pk)
        deployments = workspace.service_deployments.prefetch_related("components").order_by(
            "-created", "-pk"
        )
        page = self.paginate_queryset(deployments)
        return self.get_paginated_response(out.ServiceDeploymentSerializer(page, many=True).data)

    @extend_schema(
        summary="Deploy a services profile into the workspace",
        request=out.DeployRequestSerializer,
        responses={201: out.ServiceDeploymentSerializer},
    )
    @services_list.mapping.post
    def services_deploy(self, request, pk=None):
        workspace = self._workspace(pk, CHANGE)
        body = request.data if isinstance(request.data, dict) else {}
        chosen = services.chosen_profile(
            request.user, workspace, str(body.get("services_profile", ""))
        )
        if chosen is None:
            raise ValidationError({"services_profile": ["Choose a services profile to deploy."]})
        try:
            deployment = services.deploy(request.user, workspace, chosen)
        except services.ServicesRefused as refused:
            raise Conflict(str(refused)) from refused
        return Response(
            out.ServiceDeploymentSerializer(deployment).data, status=status.HTTP_201_CREATED
        )

    def _deployment(self, pk, deployment_pk) -> ServiceDeployment:
        workspace = self._workspace(pk, CHANGE)
        deployment = get_object_or_404(ServiceDeployment, pk=deployment_pk, workspace=workspace)
        deployment.workspace = workspace
        return deployment

    def _act_on_deployment(self, pk, deployment_pk, act) -> Response:
        deployment = self._deployment(pk, deployment_pk)
        try:
            act(self.request.user, deployment)
        except services.ServicesRefused as refused:
            raise Conflict(str(refused)) from refused
        deployment.refresh_from_db()
        return Response(out.ServiceDeploymentSerializer(deployment).data, status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Redeploy a ready or failed services deployment (fresh credentials)",
        parameters=[DEPLOYMENT_ID],
        request=None,
        responses={202: out.ServiceDeploymentSerializer},
    )
    @action(detail=True, methods=["post"], url_path="services/<int:deployment_pk>/redeploy")
    def services_redeploy(self, request, pk=None, deployment_pk=None):
        return self._act_on_deployment(pk, deployment_pk, services.redeploy)

    @extend_schema(
        summary="Remove a services deployment from the workspace",
        parameters=[DEPLOYMENT_ID],
        request=None,
        responses={202: out.ServiceDeploymentSerializer},
    )
    @action(detail=True, methods=["post"], url_path="services/<int:deployment_pk>/remove")
    def services_remove(self, request, pk=None, deployment_pk=None):
        return self._act_on_deployment(pk, deployment_pk, services.remove)

    @extend_schema(
        summary="The workspace's secret (e.g. its Jupyter token): for its owner, once",
        request=None,
        responses={200: out.SecretSerializer},
    )
    @action(detail=True, methods=["post"])
    def secret(self, request, pk=None):
        workspace = self._workspace(pk)
        return Response({"secret": actions.reveal_secret(request.user, workspace)})


def _requested_profile(value) -> ComputeProfile:
    pk = id_param(str(value)) if value is not None else None
    profile = ComputeProfile.objects.filter(pk=pk).first() if pk is not None else None
    if profile is None:
        raise ValidationError({"profile": ["Choose a compute profile you may use."]})
    return profile
