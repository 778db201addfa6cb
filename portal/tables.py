from datetime import datetime

import django_tables2 as tables
from django.core.paginator import EmptyPage
from django.utils import formats, timezone
from django.utils.text import capfirst

from portal.models import AuditEntry, Invitation, Team
from portal.urlhelpers import id_param

PER_PAGE = 50


def configure(table: tables.Table, request, per_page: int = PER_PAGE) -> tables.Table:
    """Sort and paginate a table from the query string, whatever the query string holds.

    Unlike django-tables2's RequestConfig, the page size is the view's (`?per_page=0` would
    divide by zero, `-1` fail on an empty page), and a page number that is not one, or lies
    past the end, shows the first or the last page.
    """
    table.request = request
    if order_by := request.GET.getlist(table.prefixed_order_by_field):
        table.order_by = order_by
    page = id_param(request.GET.get(table.prefixed_page_field)) or 1
    try:
        table.paginate(per_page=per_page, page=page)
    except EmptyPage:
        table.paginate(per_page=per_page, page=table.paginator.num_pages)
    return table


class DateTimeColumn(tables.Column):
    """django-tables2's DateTimeColumn without its cost: that one compiles a template for
    every cell, the bulk of a list page's time. Same output: the local time in `format`
    (a `date` filter format or a format setting's name)."""

    def __init__(self, format: str = "SHORT_DATETIME_FORMAT", **kwargs):
        self.format = format
        super().__init__(**kwargs)

    def render(self, value):
        return formats.date_format(timezone.localtime(value), self.format)

    def value(self, value):
        return value.isoformat(sep=" ") if isinstance(value, datetime) else value


class AuditTable(tables.Table):
    timestamp = DateTimeColumn(linkify=True, format="Y-m-d H:i:s")
    actor_name = tables.Column(verbose_name="Who")
    action = tables.Column()
    content_type = tables.Column(verbose_name="Type", order_by="content_type__model")
    object_repr = tables.Column(verbose_name="Object")
    message = tables.Column()

    class Meta:
        model = AuditEntry
        fields = ["timestamp", "actor_name", "action", "content_type", "object_repr", "message"]

    def render_content_type(self, value) -> str:
        return capfirst(value.name)  # "Compute profile", not "computeprofile"


class TeamTable(tables.Table):
    name = tables.Column(linkify=True)
    role = tables.Column()
    member_count = tables.Column(verbose_name="Members")
    max_gpus = tables.Column(verbose_name="GPUs", default="∞")
    max_mig_slices = tables.Column(verbose_name="MIG slices", default="∞")
    max_workspaces = tables.Column(verbose_name="Workspaces", default="∞")

    class Meta:
        model = Team
        fields = [
            "name",
            "role",
            "member_count",
            "max_gpus",
            "max_mig_slices",
            "max_workspaces",
            "description",
        ]


class UserTable(tables.Table):
    username = tables.Column(linkify=("portal:user_detail", {"pk": tables.A("pk")}))
    email = tables.Column()
    groups = tables.Column(accessor="pk", verbose_name="Groups", orderable=False)
    last_login = DateTimeColumn(format="Y-m-d H:i", default="Never")
    is_active = tables.BooleanColumn(verbose_name="Active")
    active_workspaces = tables.Column(
        accessor="pk", verbose_name="Active workspaces", orderable=False
    )

    class Meta:
        fields = ["username", "email", "groups", "last_login", "is_active", "active_workspaces"]

    def __init__(self, *args, workspace_counts: dict[int, int] | None = None, **kwargs):
        self.workspace_counts = workspace_counts or {}
        super().__init__(*args, **kwargs)

    def render_active_workspaces(self, record):
        return self.workspace_counts.get(record.pk, 0)

    def render_groups(self, record):
        return ", ".join(team.name for team in record.teams.all()) or "—"


class InvitationTable(tables.Table):
    email = tables.Column()
    groups = tables.Column(accessor="pk", verbose_name="Groups", orderable=False)
    invited_by = tables.Column()
    created = DateTimeColumn(format="Y-m-d H:i")
    expires_at = DateTimeColumn(format="Y-m-d H:i", verbose_name="Expires")
    status = tables.Column(accessor="pk", orderable=False)
    actions = tables.TemplateColumn(
        template_name="portal/invitation_actions.html", orderable=False, verbose_name=""
    )

    class Meta:
        model = Invitation
        fields = ["email", "groups", "invited_by", "created", "expires_at", "status", "actions"]

    def render_groups(self, record):
        return ", ".join(team.name for team in record.groups.all()) or "—"

    def render_status(self, record):
        return record.status
