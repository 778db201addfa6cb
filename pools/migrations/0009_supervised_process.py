"""The registry of supervised processes (issue 11): what the supervisor started, so the
sweep finds a process even when its workspace directory is gone."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("pools", "0008_pool_slo_sizing"),
        ("profiles", "0004_nodepartition_moved_to_engine"),
    ]

    operations = [
        migrations.CreateModel(
            name="SupervisedProcess",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("host", models.CharField(max_length=255)),
                (
                    "boot_id",
                    models.CharField(help_text="The host's boot it was started in.", max_length=36),
                ),
                ("pid", models.PositiveIntegerField()),
                (
                    "start_time",
                    models.BigIntegerField(help_text="Clock ticks since boot (/proc/PID/stat)."),
                ),
                ("argv", models.JSONField(default=list)),
                (
                    "holder",
                    models.CharField(
                        blank=True,
                        db_index=True,
                        help_text="The workspace's resource name.",
                        max_length=100,
                    ),
                ),
                (
                    "directory",
                    models.TextField(help_text="The working directory it was started in."),
                ),
                (
                    "record_path",
                    models.TextField(blank=True, help_text="Where its record file was saved."),
                ),
                ("port", models.PositiveIntegerField(blank=True, null=True)),
                ("uid", models.PositiveIntegerField(blank=True, null=True)),
                ("sandboxed", models.BooleanField(default=False)),
                ("started", models.DateTimeField(auto_now_add=True)),
                (
                    "infrastructure",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="supervised_processes",
                        to="profiles.infrastructure",
                    ),
                ),
            ],
            options={
                "ordering": ["started", "id"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("host", "boot_id", "pid", "start_time"), name="one_row_per_process"
                    )
                ],
            },
        ),
    ]
