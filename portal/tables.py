import django_tables2 as tables

from portal.models import AuditEntry, Invitation, Team


class AuditTable(tables.Table):
    timestamp = tables.DateTimeColumn(linkify=True, format="Y-m-d H:i:s")
    actor_name = tables.Column(verbose_name="Who")
    action = tables.Column()
    content_type = tables.Column(verbose_name="Type", accessor="content_type__model")
    object_repr = tables.Column(verbose_name="Object")
    message = tables.Column()

    class Meta:
        model = AuditEntry
        fields = ["timestamp", "actor_name", "action", "content_type", "object_repr", "message"]


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
    last_login = tables.DateTimeColumn(format="Y-m-d H:i", default="Never")
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
    created = tables.DateTimeColumn(format="Y-m-d H:i")
    expires_at = tables.DateTimeColumn(format="Y-m-d H:i", verbose_name="Expires")
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
