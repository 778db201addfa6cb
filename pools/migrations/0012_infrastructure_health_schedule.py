"""The schedule that checks every infrastructure entry's health (`pools.health.check_all`)."""

from django.db import migrations


def create(apps, schema_editor):
    from pools.schedules import ensure_schedules

    ensure_schedules(apps.get_model("django_q", "Schedule"))


def remove(apps, schema_editor):
    from pools.schedules import INFRASTRUCTURE_HEALTH_NAME

    apps.get_model("django_q", "Schedule").objects.filter(name=INFRASTRUCTURE_HEALTH_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("pools", "0011_history_keeps_names"),
        ("profiles", "0007_infrastructure_health"),
    ]

    operations = [migrations.RunPython(create, remove)]
