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
        (
            "Idle workspaces",
            ["idle_stop_hours", "idle_warning_minutes", "idle_max_snoozes"],
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
            "idle_stop_hours",
            "idle_warning_minutes",
            "idle_max_snoozes",
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

    def clean(self):
        cleaned = super().clean()
        # Left empty (or not sent by an older form): the model's defaults.
        for name in ("idle_warning_minutes", "idle_max_snoozes"):
            if cleaned.get(name) is None and name not in self.errors:
                cleaned[name] = Team._meta.get_field(name).default
        hours, minutes = cleaned.get("idle_stop_hours"), cleaned.get("idle_warning_minutes")
        if hours and minutes and minutes >= hours * 60:
            self.add_error(
                "idle_warning_minutes",
                f"The warning must come before the stop: less than {hours * 60} minutes.",
            )
        return cleaned

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The choices come from the relations themselves: the portal layer never imports
        # the catalog.
        for name in ("compute_profiles", "services_profiles"):
            field = self.fields[name]
            field.queryset = field.queryset.order_by("name")
            field.required = False
        for name in ("idle_warning_minutes", "idle_max_snoozes"):
            self.fields[name].required = False


class AddMemberForm(forms.Form):
    user = forms.ModelChoiceField(queryset=get_user_model().objects.none(), label="Add member")

    def __init__(self, *args, team: Team, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = (
            get_user_model().objects.filter(is_active=True).exclude(teams=team).order_by("username")
        )
