from django import forms

from pools import slo
from pools.models import WEEKDAYS, Pool, PoolSchedule
from portal.forms import PortalFormMixin
from profiles.choices import AllocationStrategy
from profiles.models import MAX_POOL_SIZE, ComputeProfile


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


# Some 40,000 GPUs idling all day: a bigger budget means no limit, which is an empty field
# (and 1e308 GPU-hours would only overflow the sizing arithmetic).
MAX_IDLE_BUDGET = 1_000_000
# The SLO's bounds, as the form's messages state them: a share up to 99.9 % (100 % cannot
# be promised), and a wait of at most a day.
MAX_SLO_PERCENT = 99.9
MAX_SLO_SECONDS = 86_400


class PoolSloForm(PortalFormMixin, forms.ModelForm):
    """How a warm pool is sized: the profile's fixed capacity, or a service-level objective
    the loop meets at the least idle cost (`pools.sizing`)."""

    # Shown whatever the sizing (the page's show-when script reads a select, not radios; a
    # hidden set would not be submitted): they apply when the pool is sized by its SLO.
    fieldsets = [
        ("Sizing", ["sizing"], ""),
        ("Service-level objective (when sized by SLO)", ["slo_percent", "slo_seconds"], ""),
        ("Bounds (when sized by SLO)", ["idle_budget", "min_size", "max_size"], ""),
    ]

    class Meta:
        model = Pool
        fields = ["sizing", "slo_percent", "slo_seconds", "idle_budget", "min_size", "max_size"]
        widgets = {"sizing": forms.RadioSelect}

    def clean(self):
        cleaned = super().clean()
        percent = cleaned.get("slo_percent")
        seconds = cleaned.get("slo_seconds")
        budget = cleaned.get("idle_budget")
        low, high = cleaned.get("min_size"), cleaned.get("max_size")
        if percent is not None and not 50 <= percent <= MAX_SLO_PERCENT:
            self.add_error(
                "slo_percent",
                f"Give a share of requests from 50 to {MAX_SLO_PERCENT:g}: "
                "100 % cannot be promised.",
            )
        if seconds is not None and not 1 <= seconds <= MAX_SLO_SECONDS:
            self.add_error("slo_seconds", f"Give from 1 to {MAX_SLO_SECONDS:,} seconds (a day).")
        if high is not None and not 1 <= high <= MAX_POOL_SIZE:
            self.add_error("max_size", f"Give a maximum from 1 to {MAX_POOL_SIZE}.")
        elif low is not None and high is not None and low > high:
            self.add_error("min_size", f"The minimum is above the maximum ({high}).")
        if budget is not None:
            self._clean_budget(budget, low or 0)
        profile = self.instance.profile
        if cleaned.get("sizing") == Pool.Sizing.SLO and (
            profile.allocation_strategy != AllocationStrategy.WARM_POOL
        ):
            self.add_error(
                "sizing",
                f"{profile} is provisioned on demand; make it a warm-pool profile first.",
            )
        return cleaned

    def _clean_budget(self, budget: float, low: int) -> None:
        if budget <= 0:
            self.add_error("idle_budget", "Give a positive number of GPU-hours, or leave it empty.")
            return
        if budget > MAX_IDLE_BUDGET:
            self.add_error(
                "idle_budget",
                f"Give at most {MAX_IDLE_BUDGET:,} GPU-hours a day, or leave it empty: no limit.",
            )
            return
        share = slo.gpu_share(self.instance.profile)
        floor = low * share * 24
        if floor > budget:
            self.add_error(
                "idle_budget",
                f"The minimum of {low} instances of {share:g} GPU can idle {floor:g} GPU-hours "
                "a day: give at least that, or a lower minimum.",
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
