"""Watched workspaces (issue 12): the degraded state, when each was last checked, and the
"pools: watch" schedule (`pools.watch.sweep`)."""

from django.conf import settings
from django.db import migrations, models


def create_schedule(apps, schema_editor):
    from pools.schedules import ensure_schedules

    ensure_schedules(apps.get_model("django_q", "Schedule"))


def remove_schedule(apps, schema_editor):
    from pools.schedules import WATCH_NAME

    apps.get_model("django_q", "Schedule").objects.filter(name=WATCH_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("pools", "0012_infrastructure_health_schedule"),
        ("portal", "0005_sso_scopes_include_groups"),
        ("profiles", "0007_infrastructure_health"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="workspace",
            name="checked_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="last checked"),
        ),
        migrations.AlterField(
            model_name="poolinstance",
            name="state",
            field=models.CharField(
                choices=[
                    ("requested", "Requested"),
                    ("provisioning", "Provisioning"),
                    ("ready", "Ready"),
                    ("degraded", "Degraded"),
                    ("stopping", "Stopping"),
                    ("stopped", "Stopped"),
                    ("starting", "Starting"),
                    ("claimed", "Claimed"),
                    ("deleting", "Deleting"),
                    ("deleted", "Deleted"),
                    ("failed", "Failed"),
                ],
                db_index=True,
                default="requested",
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="poolinstanceevent",
            name="from_state",
            field=models.CharField(
                choices=[
                    ("requested", "Requested"),
                    ("provisioning", "Provisioning"),
                    ("ready", "Ready"),
                    ("degraded", "Degraded"),
                    ("stopping", "Stopping"),
                    ("stopped", "Stopped"),
                    ("starting", "Starting"),
                    ("claimed", "Claimed"),
                    ("deleting", "Deleting"),
                    ("deleted", "Deleted"),
                    ("failed", "Failed"),
                ],
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="poolinstanceevent",
            name="to_state",
            field=models.CharField(
                choices=[
                    ("requested", "Requested"),
                    ("provisioning", "Provisioning"),
                    ("ready", "Ready"),
                    ("degraded", "Degraded"),
                    ("stopping", "Stopping"),
                    ("stopped", "Stopped"),
                    ("starting", "Starting"),
                    ("claimed", "Claimed"),
                    ("deleting", "Deleting"),
                    ("deleted", "Deleted"),
                    ("failed", "Failed"),
                ],
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="workspace",
            name="state",
            field=models.CharField(
                choices=[
                    ("requested", "Requested"),
                    ("provisioning", "Provisioning"),
                    ("ready", "Ready"),
                    ("degraded", "Degraded"),
                    ("stopping", "Stopping"),
                    ("stopped", "Stopped"),
                    ("starting", "Starting"),
                    ("claimed", "Claimed"),
                    ("deleting", "Deleting"),
                    ("deleted", "Deleted"),
                    ("failed", "Failed"),
                ],
                db_index=True,
                default="requested",
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="workspaceevent",
            name="from_state",
            field=models.CharField(
                choices=[
                    ("requested", "Requested"),
                    ("provisioning", "Provisioning"),
                    ("ready", "Ready"),
                    ("degraded", "Degraded"),
                    ("stopping", "Stopping"),
                    ("stopped", "Stopped"),
                    ("starting", "Starting"),
                    ("claimed", "Claimed"),
                    ("deleting", "Deleting"),
                    ("deleted", "Deleted"),
                    ("failed", "Failed"),
                ],
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="workspaceevent",
            name="to_state",
            field=models.CharField(
                choices=[
                    ("requested", "Requested"),
                    ("provisioning", "Provisioning"),
                    ("ready", "Ready"),
                    ("degraded", "Degraded"),
                    ("stopping", "Stopping"),
                    ("stopped", "Stopped"),
                    ("starting", "Starting"),
                    ("claimed", "Claimed"),
                    ("deleting", "Deleting"),
                    ("deleted", "Deleted"),
                    ("failed", "Failed"),
                ],
                max_length=20,
            ),
        ),
        migrations.AddIndex(
            model_name="workspace",
            index=models.Index(fields=["state", "checked_at"], name="workspace_watch_order"),
        ),
        migrations.RunPython(create_schedule, remove_schedule),
    ]
