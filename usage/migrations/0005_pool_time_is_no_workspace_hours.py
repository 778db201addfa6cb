"""Warm-pool idle time counts no workspace-hours (`usage.ledger.intervals`): fix the rows
written before, which the ledger rebuilds only on an instance's next event."""

from django.db import migrations


def pool_time_is_idle_time(apps, schema_editor):
    UsageInterval = apps.get_model("usage", "UsageInterval")
    UsageInterval.objects.filter(kind="warm_idle").update(counts_workspace=False)


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0004_usage_counts_in_64_bits"),
    ]

    operations = [migrations.RunPython(pool_time_is_idle_time, migrations.RunPython.noop)]
