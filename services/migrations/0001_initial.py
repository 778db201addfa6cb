"""Service deployments move here from `workspaces`; their tables keep their names."""

import django.db.models.deletion
import django.utils.timezone
import portal.crypto
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('pools', '0007_engine_lifecycle_models'),
        ('profiles', '0003_partitioning_strategies'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # The tables stay where they are (db_table): only Django's view of which app
        # owns the model changes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.CreateModel(
                name='ServiceDeployment',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('state', models.CharField(choices=[('requested', 'Requested'), ('provisioning', 'Provisioning'), ('ready', 'Ready'), ('stopping', 'Stopping'), ('stopped', 'Stopped'), ('starting', 'Starting'), ('claimed', 'Claimed'), ('deleting', 'Deleting'), ('deleted', 'Deleted'), ('failed', 'Failed')], db_index=True, default='requested', max_length=20)),
                    ('state_changed', models.DateTimeField(default=django.utils.timezone.now)),
                    ('heartbeat', models.DateTimeField(default=django.utils.timezone.now)),
                    ('attempts', models.PositiveIntegerField(default=0)),
                    ('failure_reason', models.CharField(blank=True, max_length=300)),
                    ('failure_detail', models.TextField(blank=True, help_text='For administrators only.')),
                    ('target_name', models.CharField(max_length=63)),
                    ('spec', models.JSONField(default=dict)),
                    ('profile_name', models.CharField(max_length=100)),
                    ('created', models.DateTimeField(default=django.utils.timezone.now)),
                    ('ready_at', models.DateTimeField(blank=True, null=True)),
                    ('deleted_at', models.DateTimeField(blank=True, null=True)),
                    ('infrastructure', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='service_deployments', to='profiles.infrastructure')),
                    ('requested_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('services_profile', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='deployments', to='profiles.servicesprofile')),
                    ('workspace', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='service_deployments', to='pools.workspace')),
                ],
                options={
                    'db_table': 'workspaces_servicedeployment',
                    'ordering': ['-created', '-id'],
                },
            ),
            migrations.CreateModel(
                name='ComponentDeployment',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('position', models.PositiveSmallIntegerField(default=0)),
                    ('capability', models.CharField(max_length=30)),
                    ('component', models.CharField(max_length=40)),
                    ('version', models.CharField(blank=True, max_length=40)),
                    ('parameters', models.JSONField(blank=True, default=dict)),
                    ('status', models.CharField(choices=[('pending', 'Pending'), ('deploying', 'Deploying'), ('ready', 'Ready'), ('failed', 'Failed'), ('unavailable', 'Not available here'), ('removed', 'Removed')], default='pending', max_length=20)),
                    ('reason', models.CharField(blank=True, max_length=300)),
                    ('log_tail', models.TextField(blank=True, help_text='Admins and the owner only.')),
                    ('endpoints', models.JSONField(blank=True, default=list)),
                    ('secret', portal.crypto.EncryptedTextField(blank=True, help_text='e.g. the Jupyter token.')),
                    ('detail', models.JSONField(blank=True, default=dict)),
                    ('updated', models.DateTimeField(auto_now=True)),
                    ('deployment', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='components', to='services.servicedeployment')),
                ],
                options={
                    'db_table': 'workspaces_componentdeployment',
                    'ordering': ['position', 'id'],
                },
            ),
            migrations.CreateModel(
                name='ServiceDeploymentEvent',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('timestamp', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                    ('from_state', models.CharField(choices=[('requested', 'Requested'), ('provisioning', 'Provisioning'), ('ready', 'Ready'), ('stopping', 'Stopping'), ('stopped', 'Stopped'), ('starting', 'Starting'), ('claimed', 'Claimed'), ('deleting', 'Deleting'), ('deleted', 'Deleted'), ('failed', 'Failed')], max_length=20)),
                    ('to_state', models.CharField(choices=[('requested', 'Requested'), ('provisioning', 'Provisioning'), ('ready', 'Ready'), ('stopping', 'Stopping'), ('stopped', 'Stopped'), ('starting', 'Starting'), ('claimed', 'Claimed'), ('deleting', 'Deleting'), ('deleted', 'Deleted'), ('failed', 'Failed')], max_length=20)),
                    ('message', models.CharField(blank=True, max_length=300)),
                    ('actor', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('deployment', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='events', to='services.servicedeployment')),
                ],
                options={
                    'db_table': 'workspaces_servicedeploymentevent',
                    'ordering': ['timestamp', 'id'],
                    'abstract': False,
                },
            ),
            migrations.AddConstraint(
                model_name='servicedeployment',
                constraint=models.UniqueConstraint(condition=models.Q(('state__in', ['requested', 'provisioning', 'ready', 'claimed', 'deleting', 'stopping', 'stopped', 'starting'])), fields=('infrastructure', 'target_name'), name='one_live_service_deployment_per_workspace'),
            ),
            migrations.AddConstraint(
                model_name='componentdeployment',
                constraint=models.UniqueConstraint(fields=('deployment', 'component'), name='one_row_per_component_per_deployment'),
            ),
            ],
            database_operations=[],
        ),
    ]
