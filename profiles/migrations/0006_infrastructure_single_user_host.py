"""Org admins may mark the local infrastructure a single-user host (issue 11): offered to
every user although its workspaces cannot be isolated."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("profiles", "0005_infrastructure_in_cluster"),
    ]

    operations = [
        migrations.AddField(
            model_name="infrastructure",
            name="single_user_host",
            field=models.BooleanField(
                default=False,
                help_text="Offer this machine to every user although its workspaces are not "
                "isolated from the portal and from each other. Only Org admins may set this.",
                verbose_name="Single-user host",
            ),
        ),
    ]
