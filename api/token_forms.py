from django import forms

from api.models import Scope

EXPIRY_CHOICES = [(7, "7 days"), (30, "30 days"), (90, "90 days"), (365, "1 year")]


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=100, help_text="What the token is for, e.g. “CI pipeline” or “notebook”."
    )
    scope = forms.ChoiceField(
        choices=Scope.choices,
        initial=Scope.READ,
        help_text="Read only: the token can look but not change anything.",
    )
    days = forms.TypedChoiceField(
        label="Expires after", choices=EXPIRY_CHOICES, coerce=int, initial=30
    )
