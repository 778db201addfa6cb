"""The self-service app keeps no models: they moved to `pools` and `services`."""

from django.db import migrations


# (model, from app, to app): content types follow, so audit entries keep their objects.
MOVED = [
    ("workspace", "workspaces", "pools"),
    ("workspaceevent", "workspaces", "pools"),
    ("nodepartition", "profiles", "pools"),
    ("servicedeployment", "workspaces", "services"),
    ("servicedeploymentevent", "workspaces", "services"),
    ("componentdeployment", "workspaces", "services"),
]


def move_content_types(apps, schema_editor):
    content_type = apps.get_model("contenttypes", "ContentType")
    for model, old, new in MOVED:
        content_type.objects.filter(app_label=old, model=model).update(app_label=new)


def restore_content_types(apps, schema_editor):
    content_type = apps.get_model("contenttypes", "ContentType")
    for model, old, new in MOVED:
        content_type.objects.filter(app_label=new, model=model).update(app_label=old)


class Migration(migrations.Migration):

    dependencies = [
        ('workspaces', '0003_stop_start_states'),
        ('services', '0001_initial'),
        ('contenttypes', '0002_remove_content_type_name'),
    ]

    operations = [
        # The tables stay where they are (db_table): only Django's view of which app
        # owns the model changes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
            migrations.RemoveField(
                model_name='servicedeployment',
                name='infrastructure',
            ),
            migrations.RemoveField(
                model_name='servicedeployment',
                name='requested_by',
            ),
            migrations.RemoveField(
                model_name='servicedeployment',
                name='services_profile',
            ),
            migrations.RemoveField(
                model_name='servicedeployment',
                name='workspace',
            ),
            migrations.RemoveField(
                model_name='servicedeploymentevent',
                name='deployment',
            ),
            migrations.RemoveField(
                model_name='servicedeploymentevent',
                name='actor',
            ),
            migrations.RemoveField(
                model_name='workspace',
                name='infrastructure',
            ),
            migrations.RemoveField(
                model_name='workspace',
                name='owner',
            ),
            migrations.RemoveField(
                model_name='workspace',
                name='profile',
            ),
            migrations.RemoveField(
                model_name='workspace',
                name='team',
            ),
            migrations.RemoveField(
                model_name='workspaceevent',
                name='workspace',
            ),
            migrations.RemoveField(
                model_name='workspaceevent',
                name='actor',
            ),
            migrations.DeleteModel(
                name='ComponentDeployment',
            ),
            migrations.DeleteModel(
                name='ServiceDeployment',
            ),
            migrations.DeleteModel(
                name='ServiceDeploymentEvent',
            ),
            migrations.DeleteModel(
                name='Workspace',
            ),
            migrations.DeleteModel(
                name='WorkspaceEvent',
            ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, restore_content_types),
    ]
