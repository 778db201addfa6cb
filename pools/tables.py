import django_tables2 as tables

from pools.models import PoolSchedule


class PoolScheduleTable(tables.Table):
    window = tables.Column(linkify=True, empty_values=(), orderable=False, accessor="pk")
    profile = tables.Column()
    days = tables.Column(accessor="days_label", orderable=False, verbose_name="Days")
    start_time = tables.TimeColumn(format="H:i", verbose_name="From")
    end_time = tables.TimeColumn(format="H:i", verbose_name="Until")
    desired_capacity = tables.Column(verbose_name="Desired")

    class Meta:
        model = PoolSchedule
        fields = ["window", "profile", "days", "start_time", "end_time", "desired_capacity"]

    def render_window(self, record):
        return str(record)
