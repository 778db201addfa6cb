import django_filters
from django import forms
from django.db.models import Q

from profiles import catalog
from profiles.choices import (
    AllocationStrategy,
    HealthStatus,
    InfrastructureKind,
    PartitioningMode,
)
from profiles.mig import catalog as mig_catalog
from profiles.models import ComputeProfile, Infrastructure, PartitioningStrategy, ServicesProfile


class AnyYesNo(forms.NullBooleanSelect):
    """A yes/no filter whose blank choice reads "Any" (Django's reads "Unknown")."""

    def __init__(self, attrs=None):
        super().__init__(attrs)
        # "unknown" is the value NullBooleanSelect selects and reads as no choice.
        self.choices = [("unknown", "Any"), ("true", "Yes"), ("false", "No")]


def yes_no_filter(**kwargs) -> django_filters.BooleanFilter:
    return django_filters.BooleanFilter(widget=AnyYesNo, **kwargs)


class SearchFilterSet(django_filters.FilterSet):
    """A free-text `q` over name and description, shared by the catalog lists."""

    q = django_filters.CharFilter(method="search", label="Search")

    def search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(description__icontains=value))


class InfrastructureFilterSet(SearchFilterSet):
    kind = django_filters.ChoiceFilter(choices=InfrastructureKind.choices, empty_label="Any kind")
    provider = django_filters.ChoiceFilter(
        choices=catalog.choices_providers, empty_label="Any provider"
    )
    health_status = django_filters.ChoiceFilter(
        choices=[(s.value, s.label) for s in HealthStatus if s.value],
        empty_label="Any status",
        label="Status",
    )

    class Meta:
        model = Infrastructure
        fields = ["q", "kind", "provider", "health_status"]


class ComputeProfileFilterSet(SearchFilterSet):
    infrastructure = django_filters.ModelChoiceFilter(
        queryset=Infrastructure.objects.all(), empty_label="Any infrastructure"
    )
    allocation_strategy = django_filters.ChoiceFilter(
        choices=AllocationStrategy.choices, empty_label="Any allocation"
    )
    published = yes_no_filter()
    gpu_model = django_filters.ChoiceFilter(
        field_name="resource_groups__gpu_model",
        choices=catalog.choices_gpu_models,
        empty_label="Any GPU",
        distinct=True,
    )

    class Meta:
        model = ComputeProfile
        fields = ["q", "infrastructure", "allocation_strategy", "published", "gpu_model"]


class ServicesProfileFilterSet(SearchFilterSet):
    turnkey = yes_no_filter()
    published = yes_no_filter()

    class Meta:
        model = ServicesProfile
        fields = ["q", "turnkey", "published"]


class PartitioningStrategyFilterSet(django_filters.FilterSet):
    infrastructure = django_filters.ModelChoiceFilter(
        queryset=Infrastructure.objects.all(), empty_label="Any infrastructure"
    )
    gpu_model = django_filters.ChoiceFilter(
        choices=[(m, m) for m in mig_catalog.mig_capable_models()], empty_label="Any GPU"
    )
    mode = django_filters.ChoiceFilter(choices=PartitioningMode.choices, empty_label="Any mode")

    class Meta:
        model = PartitioningStrategy
        fields = ["infrastructure", "gpu_model", "mode"]
