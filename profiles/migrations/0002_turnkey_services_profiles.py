"""Ship the six turnkey services profiles with the product (data in profiles/turnkey.py)."""

from django.db import migrations

from profiles.turnkey import ensure_turnkey


def create_turnkey(apps, schema_editor):
    ensure_turnkey(
        apps.get_model("profiles", "ServicesProfile"),
        apps.get_model("profiles", "ServiceComponent"),
    )


def remove_turnkey(apps, schema_editor):
    ServicesProfile = apps.get_model("profiles", "ServicesProfile")
    ServicesProfile.objects.filter(turnkey=True).delete()


class Migration(migrations.Migration):
    dependencies = [("profiles", "0001_initial")]

    operations = [migrations.RunPython(create_turnkey, remove_turnkey)]
