"""Workspaces and node partitions are lifecycle objects of the engine: their models move
here from `workspaces` and `profiles`, their tables keep their names."""

import django.db.models.deletion
import django.utils.timezone
import portal.crypto
from django.conf import settings
from django.db import migrations, models


MOVED_FUNCTIONS = {"profiles.mig_apply.refresh_state": "pools.mig_apply.refresh_state"}


def rename_task_functions(apps, schema_editor):
    """Schedules name their task by dotted path; follow the module to its new home."""
    schedule = apps.get_model("django_q", "Schedule")
    for old, new in MOVED_FUNCTIONS.items():
        schedule.objects.filter(func=old).update(func=new)


def restore_task_functions(apps, schema_editor):
    schedule = apps.get_model("django_q", "Schedule")
    for old, new in MOVED_FUNCTIONS.items():
        schedule.objects.filter(func=new).update(func=old)


class Migration(migrations.Migration):

    dependencies = [
        ('pools', '0006_stop_start_states'),
        ('portal', '0003_invitations_and_sso'),
        ('profiles', '0003_partitioning_strategies'),
        ('workspaces', '0003_stop_start_states'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # The tables stay where they are (db_table): only Django's view of which app
        # owns the model changes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.CreateModel(
                name='Workspace',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('state', models.CharField(choices=[('requested', 'Requested'), ('provisioning', 'Provisioning'), ('ready', 'Ready'), ('stopping', 'Stopping'), ('stopped', 'Stopped'), ('starting', 'Starting'), ('claimed', 'Claimed'), ('deleting', 'Deleting'), ('deleted', 'Deleted'), ('failed', 'Failed')], db_index=True, default='requested', max_length=20)),
                    ('state_changed', models.DateTimeField(default=django.utils.timezone.now)),
                    ('heartbeat', models.DateTimeField(default=django.utils.timezone.now)),
                    ('attempts', models.PositiveIntegerField(default=0)),
                    ('failure_reason', models.CharField(blank=True, max_length=300)),
                    ('failure_detail', models.TextField(blank=True, help_text='For administrators only.')),
                    ('profile_version', models.PositiveIntegerField(default=1)),
                    ('name', models.CharField(blank=True, max_length=60)),
                    ('gpus', models.PositiveIntegerField(default=0)),
                    ('mig_slices', models.PositiveIntegerField(default=0)),
                    ('connection', models.JSONField(blank=True, default=dict)),
                    ('detail', models.JSONField(blank=True, default=dict, help_text='What the driver made.')),
                    ('secret', portal.crypto.EncryptedTextField(blank=True, help_text='e.g. a Jupyter token; shown once.')),
                    ('secret_shown', models.BooleanField(default=False)),
                    ('created', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                    ('ready_at', models.DateTimeField(blank=True, null=True)),
                    ('deleted_at', models.DateTimeField(blank=True, null=True)),
                    ('expires_at', models.DateTimeField(blank=True, null=True)),
                    ('infrastructure', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='workspaces', to='profiles.infrastructure')),
                    ('owner', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='workspaces', to=settings.AUTH_USER_MODEL)),
                    ('profile', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='workspaces', to='profiles.computeprofile')),
                    ('team', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='workspaces', to='portal.team')),
                ],
                options={
                    'db_table': 'workspaces_workspace',
                    'ordering': ['-created', '-id'],
                },
            ),
            migrations.AlterField(
                model_name='poolinstance',
                name='workspace',
                field=models.OneToOneField(blank=True, help_text='The workspace that claimed it and now owns its resources.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='pool_instance', to='pools.workspace'),
            ),
            migrations.CreateModel(
                name='WorkspaceEvent',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('timestamp', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                    ('from_state', models.CharField(choices=[('requested', 'Requested'), ('provisioning', 'Provisioning'), ('ready', 'Ready'), ('stopping', 'Stopping'), ('stopped', 'Stopped'), ('starting', 'Starting'), ('claimed', 'Claimed'), ('deleting', 'Deleting'), ('deleted', 'Deleted'), ('failed', 'Failed')], max_length=20)),
                    ('to_state', models.CharField(choices=[('requested', 'Requested'), ('provisioning', 'Provisioning'), ('ready', 'Ready'), ('stopping', 'Stopping'), ('stopped', 'Stopped'), ('starting', 'Starting'), ('claimed', 'Claimed'), ('deleting', 'Deleting'), ('deleted', 'Deleted'), ('failed', 'Failed')], max_length=20)),
                    ('message', models.CharField(blank=True, max_length=300)),
                    ('actor', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('workspace', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='events', to='pools.workspace')),
                ],
                options={
                    'db_table': 'workspaces_workspaceevent',
                    'ordering': ['timestamp', 'id'],
                    'abstract': False,
                },
            ),
            migrations.CreateModel(
                name='NodePartition',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('name', models.CharField(max_length=253)),
                    ('draining', models.BooleanField(default=False, help_text='No new workspaces are placed here while it drains.')),
                    ('state', models.CharField(blank=True, choices=[('', 'Not applied'), ('refused', 'Refused (workspaces on the node)'), ('pending', 'Pending'), ('rebooting', 'Rebooting'), ('success', 'Success'), ('failed', 'Failed')], max_length=10)),
                    ('config_label', models.CharField(blank=True, help_text='nvidia.com/mig.config as last read.', max_length=63)),
                    ('message', models.CharField(blank=True, max_length=300)),
                    ('checked_at', models.DateTimeField(blank=True, null=True)),
                    ('strategy', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='node_states', to='profiles.partitioningstrategy')),
                ],
                options={
                    'db_table': 'profiles_nodepartition',
                    'ordering': ['name'],
                    'constraints': [models.UniqueConstraint(fields=('strategy', 'name'), name='unique_node_partition')],
                },
            ),
            migrations.AddIndex(
                model_name='workspace',
                index=models.Index(fields=['state', 'heartbeat'], name='workspaces__state_6da9c7_idx'),
            ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(rename_task_functions, restore_task_functions),
    ]
