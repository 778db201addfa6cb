from django.db import migrations


def create(apps, schema_editor):
    from pools.schedules import ensure_schedules

    ensure_schedules(apps.get_model("django_q", "Schedule"))


def remove(apps, schema_editor):
    from pools.schedules import WARM_POOL_LOOP_NAME

    apps.get_model("django_q", "Schedule").objects.filter(name=WARM_POOL_LOOP_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("pools", "0003_warm_pools")]

    operations = [migrations.RunPython(create, remove)]
