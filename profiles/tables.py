import django_tables2 as tables
from django.db.models import Count

from profiles.models import ComputeProfile, Infrastructure, PartitioningStrategy, ServicesProfile


class InfrastructureTable(tables.Table):
    name = tables.Column(linkify=True)
    kind = tables.Column()
    location = tables.Column(empty_values=(), orderable=False, verbose_name="Where")
    kubernetes_version = tables.Column(verbose_name="Kubernetes")
    profile_count = tables.Column(verbose_name="Compute profiles")
    usable = tables.TemplateColumn(
        template_name="profiles/columns/usable.html", orderable=False, verbose_name="Status"
    )

    class Meta:
        model = Infrastructure
        fields = ["name", "kind", "location", "kubernetes_version", "profile_count", "usable"]


class ComputeProfileTable(tables.Table):
    name = tables.Column(linkify=True)
    infrastructure = tables.Column(linkify=True)
    resources = tables.TemplateColumn(
        template_name="profiles/columns/resources.html", orderable=False
    )
    allocation_strategy = tables.Column(verbose_name="Allocation")
    desired_capacity = tables.Column(verbose_name="Warm pool")
    published = tables.BooleanColumn()

    class Meta:
        model = ComputeProfile
        fields = [
            "name",
            "infrastructure",
            "resources",
            "allocation_strategy",
            "desired_capacity",
            "published",
        ]


class ServicesProfileTable(tables.Table):
    name = tables.Column(linkify=True)
    component_list = tables.TemplateColumn(
        template_name="profiles/columns/components.html", orderable=False, verbose_name="Components"
    )
    turnkey = tables.BooleanColumn()
    published = tables.BooleanColumn()

    class Meta:
        model = ServicesProfile
        fields = ["name", "component_list", "turnkey", "published"]


def infrastructure_rows(queryset):
    return queryset.annotate(profile_count=Count("compute_profiles"))


class PartitioningStrategyTable(tables.Table):
    strategy = tables.Column(
        accessor="pk", linkify=True, verbose_name="Partitioning", orderable=False
    )
    infrastructure = tables.Column(linkify=True)
    gpu_model = tables.Column(verbose_name="GPU model")
    mode = tables.Column(verbose_name="Mode")
    config = tables.Column(accessor="pk", verbose_name="mig-parted config", orderable=False)
    applied_config = tables.Column(verbose_name="Applied")

    class Meta:
        model = PartitioningStrategy
        fields = ["strategy", "infrastructure", "gpu_model", "mode", "config", "applied_config"]

    def render_strategy(self, record) -> str:
        return str(record)

    def render_config(self, record) -> str:
        return record.config_name()
