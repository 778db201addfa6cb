import django_tables2 as tables
from django.template.loader import render_to_string

from pools.models import Workspace
from portal.tables import DateTimeColumn


class WorkspaceTable(tables.Table):
    resource_name = tables.Column(
        linkify=True, verbose_name="Workspace", order_by=("id",), accessor="resource_name"
    )
    name = tables.Column()
    owner = tables.Column()
    team = tables.Column(verbose_name="Group")
    profile = tables.Column(linkify=True)
    state = tables.Column()
    created = DateTimeColumn(verbose_name="Requested")
    ready_at = DateTimeColumn(verbose_name="Ready")
    expires_at = DateTimeColumn(verbose_name="Expires")

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

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.badges: dict[str, str] = {}

    def render_state(self, value, record):
        # The badge alone, without the request: a TemplateColumn would run every context
        # processor (the navigation included) once per row. `value` is the state's label;
        # a page holds a few states, each badge is drawn once.
        if record.state not in self.badges:
            context = {"state": record.state, "label": value}
            self.badges[record.state] = render_to_string("workspaces/_state.html", context)
        return self.badges[record.state]
