from datetime import timedelta

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from pools.lifecycle import GPU_STATES, WORKSPACE_LIFECYCLE, State
from pools.models import Workspace
from portal.filtersets import ListSelect
from portal.models import Team
from profiles import catalog
from profiles.models import ComputeProfile, Infrastructure

# Requests not ready yet: what a user is waiting for.
WAITING_STATES = (State.REQUESTED, State.PROVISIONING, State.STARTING)
FAILURE_WINDOW = timedelta(hours=24)

# The overview's figures link to this list filtered by these (its counts use them too).
ACTIVITIES = {
    "waiting": ("Waiting to be ready", lambda now: Q(state__in=WAITING_STATES)),
    "holding_gpus": ("Holding GPUs", lambda now: Q(state__in=GPU_STATES)),
    "failed_24h": (
        "Failed in the last 24 hours",
        lambda now: Q(state=State.FAILED, state_changed__gte=now - FAILURE_WINDOW),
    ),
}


def activity(key: str, now) -> Q:
    return ACTIVITIES[key][1](now)


class WorkspaceFilterSet(django_filters.FilterSet):
    # A text box, not a list of every user: thousands of options would cost the page most
    # of its time and nobody scrolls them. `owner` (an id) stays for links and the API.
    user = django_filters.CharFilter(
        field_name="owner__username", lookup_expr="icontains", label="User"
    )
    owner = django_filters.ModelChoiceFilter(
        queryset=get_user_model().objects.all(), widget=forms.HiddenInput
    )
    team = django_filters.ModelChoiceFilter(
        queryset=Team.objects.all(), empty_label="Any group", label="Group", widget=ListSelect
    )
    profile = django_filters.ModelChoiceFilter(
        queryset=ComputeProfile.objects.all(), empty_label="Any profile", widget=ListSelect
    )
    infrastructure = django_filters.ModelChoiceFilter(
        queryset=Infrastructure.objects.all(), empty_label="Any infrastructure", widget=ListSelect
    )
    gpu_model = django_filters.ChoiceFilter(
        field_name="profile__resource_groups__gpu_model",
        choices=catalog.choices_gpu_models,
        empty_label="Any GPU",
        label="GPU model",
        distinct=True,
        widget=ListSelect,
    )
    state = django_filters.ChoiceFilter(
        choices=[(s, State(s).label) for s in WORKSPACE_LIFECYCLE.states],
        empty_label="Any state",
        widget=ListSelect,
    )
    activity = django_filters.ChoiceFilter(
        choices=[(key, label) for key, (label, _) in ACTIVITIES.items()],
        empty_label="Any activity",
        method="filter_activity",
        widget=ListSelect,
    )
    failure_reason = django_filters.CharFilter(label="Failure reason")

    class Meta:
        model = Workspace
        fields = [
            "owner",
            "team",
            "profile",
            "infrastructure",
            "gpu_model",
            "state",
            "activity",
            "failure_reason",
        ]

    def filter_activity(self, queryset, name, value):
        return queryset.filter(activity(value, timezone.now()))
