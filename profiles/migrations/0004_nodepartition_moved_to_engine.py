"""NodePartition moved to the engine (`pools`); its table keeps its name."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('profiles', '0003_partitioning_strategies'),
        ('pools', '0007_engine_lifecycle_models'),
    ]

    operations = [
        # The tables stay where they are (db_table): only Django's view of which app
        # owns the model changes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.DeleteModel(
                name='NodePartition',
            ),
            ],
            database_operations=[],
        ),
    ]
