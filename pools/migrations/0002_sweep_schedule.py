from django.db import migrations


def create(apps, schema_editor):
    from pools.schedules import ensure_schedules

    ensure_schedules(apps.get_model("django_q", "Schedule"))


def remove(apps, schema_editor):
    from pools.schedules import SWEEP_NAME

    apps.get_model("django_q", "Schedule").objects.filter(name=SWEEP_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("pools", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create, remove)]
