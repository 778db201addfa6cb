import django_filters
from django import forms
from django.contrib.contenttypes.models import ContentType
from django.forms.utils import flatatt
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst

from portal.models import AuditAction, AuditEntry, Team
from portal.roles import Role


class ListSelect(forms.Select):
    """Django's select drawn in Python, the same markup: its template includes a template
    per option (a select of 52 options took 1.3 ms that way, 0.45 ms this way), and the
    list filters draw a hundred-odd options on every page view."""

    def render(self, name, value, attrs=None, renderer=None):
        widget = self.get_context(name, value, attrs)["widget"]
        groups = ((_group(label, options),) for label, options, _ in widget["optgroups"])
        html = format_html_join("", "{}", groups)
        return format_html('<select name="{}"{}>{}</select>', name, flatatt(widget["attrs"]), html)


def _group(label: str | None, options: list[dict]) -> str:
    html = format_html_join(
        "",
        '<option value="{}"{}>{}</option>',
        ((option["value"], flatatt(option["attrs"]), option["label"]) for option in options),
    )
    return format_html('<optgroup label="{}">{}</optgroup>', label, html) if label else html


class TypeChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return capfirst(obj.name)  # "Compute profile", not "profiles | compute profile"


class TypeFilter(django_filters.ModelChoiceFilter):
    field_class = TypeChoiceField


class AuditFilterSet(django_filters.FilterSet):
    actor_name = django_filters.CharFilter(lookup_expr="icontains", label="Who")
    action = django_filters.ChoiceFilter(
        choices=AuditAction.choices, empty_label="Any action", widget=ListSelect
    )
    content_type = TypeFilter(
        queryset=ContentType.objects.filter(
            app_label__in=["portal", "profiles", "pools", "workspaces"]
        ),
        empty_label="Any type",
        label="Type",
        widget=ListSelect,
    )
    object_repr = django_filters.CharFilter(lookup_expr="icontains", label="Object")

    class Meta:
        model = AuditEntry
        fields = ["actor_name", "action", "content_type", "object_repr"]


class TeamFilterSet(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains", label="Search")
    role = django_filters.ChoiceFilter(
        choices=Role.choices, empty_label="Any role", widget=ListSelect
    )

    class Meta:
        model = Team
        fields = ["name", "role"]
