from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from portal import audit, filtersets, tables
from portal import users as user_actions
from portal.models import AuditEntry, Team
from portal.roles import CHANGE, ROLE_DESCRIPTIONS, Area, has_perm, is_admin_user
from portal.team_forms import AddMemberForm, TeamForm
from portal.views.generic import (
    ObjectDeleteView,
    ObjectDetailView,
    ObjectEditView,
    ObjectListView,
    require,
)


@login_required
def home(request):
    """Administrators land on the admin overview, everyone else on self-service."""
    if is_admin_user(request.user):
        return redirect("overview:index")
    return redirect("workspaces:self_service")


class AuditList(ObjectListView):
    # The list shows no snapshots: the rows leave their JSON in the database.
    queryset = AuditEntry.objects.select_related("content_type").defer("before", "after")
    table = tables.AuditTable
    filterset = filtersets.AuditFilterSet
    addable = False
    empty_message = "Nothing has changed yet. Every create, edit and delete will appear here."


class AuditDetail(ObjectDetailView):
    queryset = AuditEntry.objects.select_related("content_type", "actor")
    template_name = "portal/audit_detail.html"
    addable = False

    def extra_context(self, request, obj) -> dict:
        related = AuditEntry.objects.filter(
            content_type=obj.content_type, object_id=obj.object_id
        ).exclude(pk=obj.pk)[:20]
        return {
            "history": related,
            "changes": audit.readable_changes(obj),
            "can_see_users": has_perm(request.user, Area.USERS, "view"),
        }


class TeamList(ObjectListView):
    queryset = Team.objects.annotate(member_count=Count("members"))
    table = tables.TeamTable
    filterset = filtersets.TeamFilterSet
    empty_message = "No groups yet. Create one and bind it to a role to give people access."


class TeamDetail(ObjectDetailView):
    queryset = Team.objects.prefetch_related("members", "compute_profiles", "services_profiles")
    template_name = "portal/team_detail.html"

    def extra_context(self, request, obj) -> dict:
        sso_granted = set(obj.sso_memberships.values_list("user_id", flat=True))
        members = [(m, m.pk in sso_granted) for m in obj.members.order_by("username")]
        return {
            "role_description": ROLE_DESCRIPTIONS[obj.role],
            "members": members,
            "add_member_form": AddMemberForm(team=obj),
            "sso_mappings": obj.sso_mappings.all(),
        }


class TeamEdit(ObjectEditView):
    queryset = Team.objects.all()
    form_class = TeamForm

    def save(self, request, form):
        # Changing the role of the last Org-admin group would leave nobody to manage users.
        with user_actions.keeping_an_org_admin():
            return form.save()


class TeamDelete(ObjectDeleteView):
    queryset = Team.objects.all()

    def delete(self, request, obj) -> None:
        with user_actions.keeping_an_org_admin():
            obj.delete()


@login_required
@require_POST
def team_member_add(request, pk: int):
    """Add a member by hand; a membership SSO had granted becomes a manual one."""
    require(request.user, Area.USERS, CHANGE)
    team = get_object_or_404(Team.objects.for_user(request.user, CHANGE), pk=pk)
    form = AddMemberForm(request.POST, team=team)
    if not form.is_valid():
        messages.error(request, "Choose an active user who is not a member yet.")
        return redirect(team)
    user = form.cleaned_data["user"]
    user_actions.add_member(request.user, team, user)
    messages.success(request, f"Added {user.get_username()} to “{team}”.")
    return redirect(team)


@login_required
@require_POST
def team_member_remove(request, pk: int, user_pk: int):
    require(request.user, Area.USERS, CHANGE)
    team = get_object_or_404(Team.objects.for_user(request.user, CHANGE), pk=pk)
    user = get_object_or_404(team.members.all(), pk=user_pk)
    try:
        user_actions.remove_member(request.user, team, user)
    except user_actions.LastOrgAdmin as refused:
        messages.error(request, refused.message)
        return redirect(team)
    messages.success(request, f"Removed {user.get_username()} from “{team}”.")
    return redirect(team)
