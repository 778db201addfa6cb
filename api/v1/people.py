"""Users, groups and invitations (changes: Org admins; reads: whoever the pages let read
them) and the audit log (read only), through the pages' forms and audited actions."""

from django.contrib.auth import get_user_model
from django.db.models import Count, Prefetch, Q
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from api.forms import bind, form_request_serializer
from api.problems import Conflict
from api.v1 import serializers as out
from api.v1.generic import IntegerIdViewSet, PageBackedViewSet, write_docs
from portal import invitations
from portal import users as user_actions
from portal.models import Invitation, Team
from portal.roles import Area
from portal.team_forms import AddMemberForm
from portal.user_forms import InvitationForm, UserAddForm, UserSearchForm
from portal.views import pages

User = get_user_model()


@write_docs(out.TeamSerializer, "group")
class GroupViewSet(PageBackedViewSet):
    """Groups: a role, the profiles its members may use, and quotas."""

    list_page = pages.TeamList
    edit_page = pages.TeamEdit
    delete_page = pages.TeamDelete
    output_serializer = out.TeamSerializer
    prefetch = ("members", "compute_profiles", "services_profiles")
    queryset = Team.objects.annotate(member_count=Count("members"))

    @extend_schema(
        summary="Add a member by hand (a membership SSO had granted becomes a manual one)",
        request=out.MemberRequestSerializer,
        responses={200: out.TeamSerializer},
    )
    @action(detail=True, methods=["post"], url_path="members")
    def add_member(self, request, pk=None):
        team = self.get_object()
        form = bind(AddMemberForm, request.data, user=request.user, team=team)
        user_actions.add_member(request.user, team, form.cleaned_data["user"])
        return self._response(self.get_object())

    @extend_schema(
        summary="Take a member out of the group (an SSO-granted membership too); 409 if "
        "nobody would be left to manage users",
        parameters=[OpenApiParameter("user_pk", int, OpenApiParameter.PATH)],
        request=None,
        responses={200: out.TeamSerializer},
    )
    @action(detail=True, methods=["delete"], url_path="members/<int:user_pk>")
    def remove_member(self, request, pk=None, user_pk=None):
        team = self.get_object()
        user = get_object_or_404(team.members.all(), pk=user_pk)
        try:
            user_actions.remove_member(request.user, team, user)
        except user_actions.LastOrgAdmin as refused:
            raise Conflict(refused.message) from refused
        return self._response(self.get_object())


class AuditViewSet(PageBackedViewSet):
    """The audit trail: every change, who made it, before and after (secrets as markers)."""

    list_page = pages.AuditList
    output_serializer = out.AuditEntrySerializer
    queryset = pages.AuditList.queryset
    http_method_names = ["get", "head", "options"]

    def get_queryset(self):
        # The page leaves each entry's snapshots in the database; the API returns them.
        return super().get_queryset().defer(None)


class UserViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, IntegerIdViewSet):
    """Users are never deleted: deactivating keeps their history and ends their sessions."""

    area = Area.USERS
    serializer_class = out.UserSerializer

    def get_queryset(self):
        users = User.objects.order_by("username").prefetch_related(
            Prefetch("teams", queryset=Team.objects.order_by("name"))
        )
        if self.action != "list":
            return users
        search = UserSearchForm(self.request.query_params)
        if not search.is_valid():
            return users.none()  # as the page: a NUL byte or an overlong value matches nobody
        query = search.cleaned_data["q"]
        return users.filter(Q(username__icontains=query) | Q(email__icontains=query))

    @extend_schema(parameters=[OpenApiParameter("q", str, description="Username or email.")])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    def get_serializer_class(self):
        if self.action == "create":
            return form_request_serializer(UserAddForm, "UserAdd")
        return out.UserSerializer

    @extend_schema(
        summary="Add a user (or, with send_invitation, invite them: 202, no user yet)",
        responses={201: out.UserSerializer, 202: out.InvitationSerializer},
    )
    def create(self, request):
        form = bind(UserAddForm, request.data, user=request.user)
        data = form.cleaned_data
        if data["send_invitation"]:
            invitation = invitations.invite(request.user, data["email"], data["groups"])
            return Response(out.InvitationSerializer(invitation).data, status.HTTP_202_ACCEPTED)
        try:
            user = user_actions.add_user(
                request.user, data["username"], data["email"], data["groups"], data["password"]
            )
        except user_actions.UsernameTaken as taken:  # by a request at the same moment
            raise ValidationError({"username": taken.messages}) from taken
        except user_actions.EmailTaken as taken:  # by a request at the same moment
            raise ValidationError({"email": taken.messages}) from taken
        return Response(out.UserSerializer(user).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Deactivate the user and end their sessions", request=None)
    @action(detail=True, methods=["post"])
    def deactivate(self, request, pk=None):
        user = get_object_or_404(User, pk=pk, is_active=True)
        if user == request.user:
            raise Conflict("You cannot deactivate your own account.")
        try:
            user_actions.deactivate(request.user, user)
        except user_actions.LastOrgAdmin as refused:
            raise Conflict(refused.message) from refused
        return Response(out.UserSerializer(user).data)

    @extend_schema(summary="Reactivate the user", request=None)
    @action(detail=True, methods=["post"])
    def reactivate(self, request, pk=None):
        user = get_object_or_404(User, pk=pk, is_active=False)
        user_actions.reactivate(request.user, user)
        return Response(out.UserSerializer(user).data)


class InvitationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, IntegerIdViewSet):
    """Invitations by email; the link's token is never returned (only its hash is stored)."""

    area = Area.USERS
    serializer_class = out.InvitationSerializer

    def get_queryset(self):
        return (
            Invitation.objects.for_user(self.request.user, "view")
            .select_related("invited_by")
            .prefetch_related("groups")
        )

    def get_serializer_class(self):
        if self.action == "create":
            return form_request_serializer(InvitationForm, "InvitationWrite")
        return out.InvitationSerializer

    @extend_schema(summary="Invite someone by email", responses={201: out.InvitationSerializer})
    def create(self, request):
        form = bind(InvitationForm, request.data, user=request.user)
        invitation = invitations.invite(
            request.user, form.cleaned_data["email"], form.cleaned_data["groups"]
        )
        return Response(out.InvitationSerializer(invitation).data, status.HTTP_201_CREATED)

    def _pending(self, pk) -> Invitation:
        return get_object_or_404(
            self.get_queryset(), pk=pk, accepted_at__isnull=True, revoked_at__isnull=True
        )

    @extend_schema(summary="Send a new link; the old one stops working", request=None)
    @action(detail=True, methods=["post"])
    def resend(self, request, pk=None):
        invitation = self._pending(pk)
        invitations.resend(request.user, invitation)
        return Response(out.InvitationSerializer(invitation).data)

    @extend_schema(summary="Withdraw the invitation", request=None)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        invitation = self._pending(pk)
        invitations.revoke(request.user, invitation)
        return Response(out.InvitationSerializer(invitation).data)
