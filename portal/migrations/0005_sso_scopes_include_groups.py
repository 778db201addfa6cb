"""The default SSO scopes include `groups`.

The configuration row is made on first use, with the default of the time, long before an
administrator turns SSO on: a row that is still off and still has the old default gets
the new one, so following the README gives logins with the groups claim. A row already in
use keeps its scopes (Okta refuses a scope its authorization server does not define).
"""

from django.db import migrations, models

OLD_DEFAULT = "openid profile email"
NEW_DEFAULT = "openid profile email groups"


def forwards(apps, schema_editor):
    config = apps.get_model("portal", "SsoConfiguration")
    config.objects.filter(enabled=False, scopes=OLD_DEFAULT).update(scopes=NEW_DEFAULT)


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0004_heartbeat_schedule"),
    ]

    operations = [
        migrations.AlterField(
            model_name="ssoconfiguration",
            name="scopes",
            field=models.CharField(
                default=NEW_DEFAULT,
                help_text="Space-separated. The portal maps groups from the “groups” claim, "
                "which Okta sends for the “groups” scope; while groups are mapped, a login "
                "without that claim is refused.",
                max_length=200,
            ),
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
