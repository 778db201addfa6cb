import django_tables2 as tables

from portal.models import AuditEntry, Team


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

    class Meta:
        model = Team
        fields = ["name", "role", "member_count", "description"]
