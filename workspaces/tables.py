import django_tables2 as tables

from pools.models import Workspace


class WorkspaceTable(tables.Table):
    resource_name = tables.Column(
        linkify=True, verbose_name="Workspace", order_by=("id",), accessor="resource_name"
    )
    name = tables.Column()
    owner = tables.Column()
    team = tables.Column(verbose_name="Group")
    profile = tables.Column(linkify=True)
    state = tables.TemplateColumn(template_name="workspaces/columns/state.html")
    created = tables.DateTimeColumn(verbose_name="Requested")
    ready_at = tables.DateTimeColumn(verbose_name="Ready")
    expires_at = tables.DateTimeColumn(verbose_name="Expires")

    class Meta:
        model = Workspace
        fields = [
            "resource_name",
            "name",
            "owner",
            "team",
            "profile",
            "state",
            "created",
            "ready_at",
            "expires_at",
        ]
