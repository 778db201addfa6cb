import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

MIG_STATES = [
    ("", "Not applied"),
    ("refused", "Refused (workspaces on the node)"),
    ("pending", "Pending"),
    ("rebooting", "Rebooting"),
    ("success", "Success"),
    ("failed", "Failed"),
]


class Migration(migrations.Migration):
    """Node partitions move through a declared lifecycle with an event row per move."""

    dependencies = [
        ("pools", "0009_supervised_process"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RenameField(
            model_name="nodepartition", old_name="checked_at", new_name="heartbeat"
        ),
        migrations.AddField(
            model_name="nodepartition",
            name="state_changed",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.CreateModel(
            name="NodePartitionEvent",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "timestamp",
                    models.DateTimeField(db_index=True, default=django.utils.timezone.now),
                ),
                ("message", models.CharField(blank=True, max_length=300)),
                (
                    "from_state",
                    models.CharField(blank=True, choices=MIG_STATES, max_length=10),
                ),
                ("to_state", models.CharField(blank=True, choices=MIG_STATES, max_length=10)),
                (
                    "actor",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "node",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="pools.nodepartition",
                    ),
                ),
            ],
            options={"ordering": ["timestamp", "id"], "abstract": False},
        ),
    ]
