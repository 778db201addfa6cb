from django import forms

from pools.models import WEEKDAYS, PoolSchedule
from portal.forms import PortalFormMixin
from profiles.choices import AllocationStrategy
from profiles.models import ComputeProfile


class PoolScheduleForm(PortalFormMixin, forms.ModelForm):
    """A weekly window; the model refuses windows that overlap another of the same profile."""

    weekdays = forms.TypedMultipleChoiceField(
        choices=list(enumerate(WEEKDAYS)),
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
        help_text="The days the window applies, in the organisation's time zone.",
    )
    fieldsets = [
        ("Schedule", ["profile", "name", "weekdays", "start_time", "end_time"], ""),
        ("Capacity", ["desired_capacity"], ""),
    ]

    class Meta:
        model = PoolSchedule
        fields = ["profile", "name", "weekdays", "start_time", "end_time", "desired_capacity"]
        widgets = {
            "start_time": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "end_time": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["profile"].queryset = ComputeProfile.objects.filter(
            allocation_strategy=AllocationStrategy.WARM_POOL
        )
        self.fields[
            "desired_capacity"
        ].help_text = (
            "Ready instances while the window applies, instead of the profile's own value."
        )


class DrainForm(forms.Form):
    """Drain a node of a partitioning, or put it back in service (`draining=1` / `0`).

    A Kubernetes node name is at most 253 characters; a NUL byte or a longer value is
    refused here, before any query sees it.
    """

    node = forms.CharField(max_length=253, strip=False)
    draining = forms.CharField(required=False)

    def clean_draining(self) -> bool:
        return self.cleaned_data["draining"] == "1"
