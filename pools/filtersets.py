import django_filters

from pools.models import PoolSchedule


class PoolScheduleFilterSet(django_filters.FilterSet):
    class Meta:
        model = PoolSchedule
        fields = ["profile"]
