from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.shortcuts import redirect, render

from portal import filtersets, tables
from portal.models import AuditEntry, Team
from portal.roles import ROLE_DESCRIPTIONS, Area, has_perm, is_admin_user
from portal.team_forms import TeamForm
from portal.views.generic import (
    ObjectDeleteView,
    ObjectDetailView,
    ObjectEditView,
    ObjectListView,
    require,
)
from profiles.models import ComputeProfile, Infrastructure, ServicesProfile


@login_required
def home(request):
    """Administrators land on the admin overview, everyone else on self-service."""
    if is_admin_user(request.user):
        return redirect("portal:overview")
    return redirect("workspaces:self_service")


@login_required
def overview(request):
    """The administrator's getting-started checklist, in the order the product brief gives."""
    require(request.user, Area.PROFILES, "view")
    profiles = ComputeProfile.objects.all()
    steps = [
        ("Create infrastructure configuration", Infrastructure.objects.count(),
         "profiles:infrastructure_list"),
        ("Create compute profiles", profiles.count(), "profiles:computeprofile_list"),
        ("Publish a compute profile", profiles.filter(published=True).count(),
         "profiles:computeprofile_list"),
        ("Create services profiles", ServicesProfile.objects.count(),
         "profiles:servicesprofile_list"),
    ]
    return render(request, "portal/overview.html", {"steps": steps})


class AuditList(ObjectListView):
    queryset = AuditEntry.objects.select_related("content_type")
    table = tables.AuditTable
    filterset = filtersets.AuditFilterSet
    addable = False
    empty_message = "Nothing has changed yet. Every create, edit and delete will appear here."


class AuditDetail(ObjectDetailView):
    queryset = AuditEntry.objects.select_related("content_type", "actor")
    template_name = "portal/audit_detail.html"

    def extra_context(self, request, obj) -> dict:
        related = AuditEntry.objects.filter(
            content_type=obj.content_type, object_id=obj.object_id
        ).exclude(pk=obj.pk)[:20]
        return {"history": related, "can_see_users": has_perm(request.user, Area.USERS, "view")}


class TeamList(ObjectListView):
    queryset = Team.objects.annotate(member_count=Count("members"))
    table = tables.TeamTable
    filterset = filtersets.TeamFilterSet
    empty_message = "No groups yet. Create one and bind it to a role to give people access."


class TeamDetail(ObjectDetailView):
    queryset = Team.objects.prefetch_related("members")
    template_name = "portal/team_detail.html"

    def extra_context(self, request, obj) -> dict:
        return {"role_description": ROLE_DESCRIPTIONS[obj.role]}


class TeamEdit(ObjectEditView):
    queryset = Team.objects.all()
    form_class = TeamForm


class TeamDelete(ObjectDeleteView):
    queryset = Team.objects.all()
