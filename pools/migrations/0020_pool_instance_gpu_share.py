# Each warm-pool instance keeps the GPUs it holds, so an edit of its profile does not
# rewrite the idle GPU-hours it was charged (`pools.slo`); the rows already there take
# their profile's as it is now, the best left to know.

from django.db import migrations, models


def backfill(apps, schema_editor):
    from pools.slo import gpu_share

    profiles = apps.get_model("profiles", "ComputeProfile").objects
    instances = apps.get_model("pools", "PoolInstance").objects
    for profile in profiles.filter(pool_instances__isnull=False).distinct():
        instances.filter(profile=profile).update(gpu_share=gpu_share(profile))


class Migration(migrations.Migration):
    dependencies = [
        ("pools", "0019_drop_workspace_watch_order"),
        ("profiles", "0008_resource_and_pool_size_maxima"),
    ]

    operations = [
        migrations.AddField(
            model_name="poolinstance",
            name="gpu_share",
            field=models.FloatField(
                blank=True,
                help_text=(
                    "GPUs it holds, a MIG slice as its share of a GPU, as its profile was when "
                    "it was made: its idle GPU-hours weigh this, whatever edits the profile "
                    "since."
                ),
                null=True,
            ),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
