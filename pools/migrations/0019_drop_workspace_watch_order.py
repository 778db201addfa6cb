# The watch takes due workspaces by (state, heartbeat), which `workspaces__state_6da9c7_idx`
# serves; no query filters or sorts workspaces by `checked_at` any more, so this index only
# cost every check's UPDATE a write.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("pools", "0018_schedule_capacity_maximum"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="workspace", name="workspace_watch_order"),
    ]
