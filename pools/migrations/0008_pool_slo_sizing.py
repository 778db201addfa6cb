"""Warm pools sized by a service-level objective (issue 14): the SLO settings of a pool, and
decision reasons long enough to explain an SLO decision."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("pools", "0007_engine_lifecycle_models"),
    ]

    operations = [
        migrations.AddField(
            model_name="pool",
            name="sizing",
            field=models.CharField(
                choices=[
                    ("fixed", "Fixed capacity (the profile's desired capacity and schedules)"),
                    ("slo", "Service-level objective (the loop sizes the pool)"),
                ],
                default="fixed",
                max_length=10,
            ),
        ),
        migrations.AddField(
            model_name="pool",
            name="slo_percent",
            field=models.FloatField(
                default=95.0, help_text="e.g. 95: 95 % of requests …", verbose_name="SLO: % of requests"
            ),
        ),
        migrations.AddField(
            model_name="pool",
            name="slo_seconds",
            field=models.PositiveIntegerField(
                default=60,
                help_text="… ready within this many seconds.",
                verbose_name="SLO: ready within (seconds)",
            ),
        ),
        migrations.AddField(
            model_name="pool",
            name="idle_budget",
            field=models.FloatField(
                blank=True,
                help_text="At most this many idle GPU-hours a day (a MIG slice counts as its share of a GPU); the budget wins over the SLO. Empty: no limit.",
                null=True,
                verbose_name="idle budget (GPU-hours per day)",
            ),
        ),
        migrations.AddField(
            model_name="pool",
            name="min_size",
            field=models.PositiveIntegerField(default=0, verbose_name="minimum size"),
        ),
        migrations.AddField(
            model_name="pool",
            name="max_size",
            field=models.PositiveIntegerField(default=10, verbose_name="maximum size"),
        ),
        migrations.AlterField(
            model_name="loopdecision",
            name="reason",
            field=models.CharField(max_length=500),
        ),
    ]
