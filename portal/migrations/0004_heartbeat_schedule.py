from django.db import migrations


def create(apps, schema_editor):
    from portal.health import ensure_heartbeat_schedule

    ensure_heartbeat_schedule(apps.get_model("django_q", "Schedule"))


def remove(apps, schema_editor):
    from portal.health import HEARTBEAT_NAME

    apps.get_model("django_q", "Schedule").objects.filter(name=HEARTBEAT_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0003_invitations_and_sso"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create, remove)]
