from django import forms
from django.contrib.auth import get_user_model

from portal.forms import PortalFormMixin
from portal.models import Team


class TeamForm(PortalFormMixin, forms.ModelForm):
    fieldsets = [("Group", ["name", "description", "role", "members"], "")]

    members = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.filter(is_active=True).order_by("username"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = Team
        fields = ["name", "description", "role", "members"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2})}
