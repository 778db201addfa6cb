"""The schedule of the ledger's pass (`usage.ledger.run`)."""

from django.db import migrations


def create(apps, schema_editor):
    from usage.schedules import ensure_schedules

    ensure_schedules(apps.get_model("django_q", "Schedule"))


def remove(apps, schema_editor):
    from usage.schedules import LEDGER_NAME

    apps.get_model("django_q", "Schedule").objects.filter(name=LEDGER_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("usage", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create, remove)]
