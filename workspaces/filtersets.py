import django_filters
from django.contrib.auth import get_user_model

from pools.lifecycle import WORKSPACE_LIFECYCLE, State
from pools.models import Workspace
from portal.models import Team
from profiles.models import ComputeProfile


class WorkspaceFilterSet(django_filters.FilterSet):
    owner = django_filters.ModelChoiceFilter(
        queryset=get_user_model().objects.order_by("username"), empty_label="Any user"
    )
    team = django_filters.ModelChoiceFilter(
        queryset=Team.objects.all(), empty_label="Any group", label="Group"
    )
    profile = django_filters.ModelChoiceFilter(
        queryset=ComputeProfile.objects.all(), empty_label="Any profile"
    )
    state = django_filters.ChoiceFilter(
        choices=[(s, State(s).label) for s in WORKSPACE_LIFECYCLE.states],
        empty_label="Any state",
    )

    class Meta:
        model = Workspace
        fields = ["owner", "team", "profile", "state"]
