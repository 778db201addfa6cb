from django import forms
from django.contrib.auth import get_user_model

from portal.forms import PortalFormMixin
from portal.models import Team
from profiles.models import ComputeProfile, ServicesProfile


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

    compute_profiles = forms.ModelMultipleChoiceField(
        queryset=ComputeProfile.objects.order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="A profile that no group lists is open to every member.",
    )
    services_profiles = forms.ModelMultipleChoiceField(
        queryset=ServicesProfile.objects.order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="A profile that no group lists is open to every member.",
    )

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
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}


class AddMemberForm(forms.Form):
    user = forms.ModelChoiceField(queryset=get_user_model().objects.none(), label="Add member")

    def __init__(self, *args, team: Team, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = (
            get_user_model().objects.filter(is_active=True).exclude(teams=team).order_by("username")
        )
