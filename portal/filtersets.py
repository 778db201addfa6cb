import django_filters
from django import forms
from django.contrib.contenttypes.models import ContentType
from django.utils.text import capfirst

from portal.models import AuditAction, AuditEntry, Team
from portal.roles import Role


class TypeChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return capfirst(obj.name)  # "Compute profile", not "profiles | compute profile"


class TypeFilter(django_filters.ModelChoiceFilter):
    field_class = TypeChoiceField


class AuditFilterSet(django_filters.FilterSet):
    actor_name = django_filters.CharFilter(lookup_expr="icontains", label="Who")
    action = django_filters.ChoiceFilter(choices=AuditAction.choices, empty_label="Any action")
    content_type = TypeFilter(
        queryset=ContentType.objects.filter(
            app_label__in=["portal", "profiles", "pools", "workspaces"]
        ),
        empty_label="Any type",
        label="Type",
    )
    object_repr = django_filters.CharFilter(lookup_expr="icontains", label="Object")

    class Meta:
        model = AuditEntry
        fields = ["actor_name", "action", "content_type", "object_repr"]


class TeamFilterSet(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains", label="Search")
    role = django_filters.ChoiceFilter(choices=Role.choices, empty_label="Any role")

    class Meta:
        model = Team
        fields = ["name", "role"]
