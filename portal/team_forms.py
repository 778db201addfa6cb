from django import forms
from django.contrib.auth import get_user_model

from portal.forms import PortalFormMixin
from portal.models import Team


class TeamForm(PortalFormMixin, forms.ModelForm):
    """A group: its role, which profiles it may use, and its quotas.

    Members are managed on the group's page (add / remove), not here.
    """

    fieldsets = [
        ("Group", ["name", "description", "role"], ""),
        ("Access", ["compute_profiles", "services_profiles"], ""),
        (
            "Quotas (blank = unlimited)",
            ["max_gpus", "max_mig_slices", "max_workspaces", "max_lifetime_hours"],
            "",
        ),
    ]

    class Meta:
        model = Team
        fields = [
            "name",
            "description",
            "role",
            "compute_profiles",
            "services_profiles",
            "max_gpus",
            "max_mig_slices",
            "max_workspaces",
            "max_lifetime_hours",
        ]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "compute_profiles": forms.CheckboxSelectMultiple,
            "services_profiles": forms.CheckboxSelectMultiple,
        }
        help_texts = {
            "compute_profiles": "A profile that no group lists is open to every member.",
            "services_profiles": "A profile that no group lists is open to every member.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The choices come from the relations themselves: the portal layer never imports
        # the catalog.
        for name in ("compute_profiles", "services_profiles"):
            field = self.fields[name]
            field.queryset = field.queryset.order_by("name")
            field.required = False


class AddMemberForm(forms.Form):
    user = forms.ModelChoiceField(queryset=get_user_model().objects.none(), label="Add member")

    def __init__(self, *args, team: Team, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = (
            get_user_model().objects.filter(is_active=True).exclude(teams=team).order_by("username")
        )
