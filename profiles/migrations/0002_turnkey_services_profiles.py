"""Ship the six turnkey services profiles with the product.

The data is written out here (not imported from the component catalog) so this migration
means the same thing forever, whatever the catalog becomes.
"""

from django.db import migrations

TURNKEY = [
    (
        "Jupyter Notebook",
        "jupyter-notebook",
        "JupyterLab with the workspace's GPUs, ready for interactive work.",
        [("notebook", "jupyterlab", "4.4", {})],
    ),
    (
        "Training",
        "training",
        "Distributed PyTorch training with experiment tracking.",
        [
            ("training", "training-runner", "1.0", {"framework": "pytorch"}),
            ("experiment_tracking", "mlflow", "3.1", {}),
        ],
    ),
    (
        "Inference",
        "inference",
        "An HTTP inference server for the workspace's models.",
        [("inference", "inference-server", "1.0", {})],
    ),
    (
        "MLOps Platform",
        "mlops-platform",
        "Pipelines, model registry, feature store, object store and SSO in one stack.",
        [
            ("object_store", "minio", "RELEASE.2025-04-22T22-12-26Z", {}),
            ("model_registry", "mlflow", "3.1", {}),
            ("pipelines", "kubeflow-pipelines", "2.5", {}),
            ("feature_store", "feast", "0.49", {}),
            ("authentication", "oauth2-proxy", "7.9", {"provider": "okta"}),
        ],
    ),
    (
        "Ray",
        "ray",
        "A Ray cluster (head and workers) on the workspace's nodes.",
        [("distributed_compute", "ray", "2.47", {})],
    ),
    (
        "Jobs",
        "jobs",
        "Submit batch jobs to a queue that runs them on the workspace.",
        [("jobs", "job-queue", "1.0", {})],
    ),
]


def create_turnkey(apps, schema_editor):
    ServicesProfile = apps.get_model("profiles", "ServicesProfile")
    ServiceComponent = apps.get_model("profiles", "ServiceComponent")
    for name, slug, description, components in TURNKEY:
        profile, created = ServicesProfile.objects.get_or_create(
            slug=slug,
            defaults={"name": name, "description": description, "turnkey": True},
        )
        if not created:
            continue
        for position, (capability, component, version, parameters) in enumerate(components):
            ServiceComponent.objects.create(
                profile=profile,
                position=position,
                capability=capability,
                component=component,
                version=version,
                parameters=parameters,
            )


def remove_turnkey(apps, schema_editor):
    ServicesProfile = apps.get_model("profiles", "ServicesProfile")
    ServicesProfile.objects.filter(turnkey=True).delete()


class Migration(migrations.Migration):
    dependencies = [("profiles", "0001_initial")]

    operations = [migrations.RunPython(create_turnkey, remove_turnkey)]
