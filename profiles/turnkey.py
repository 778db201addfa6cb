"""The six turnkey services profiles the product ships.

Written out as data, not derived from the component catalog, so what ships stays fixed
whatever the catalog becomes. `ensure_turnkey` is idempotent: the data migration ships them
and the demo loader re-creates any that a test database flush removed.
"""

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


def ensure_turnkey(services_profile_model, service_component_model) -> int:
    """Create the turnkey profiles that are missing; return how many were created.

    Takes the model classes so the data migration can pass its historical models.
    """
    created_count = 0
    for name, slug, description, components in TURNKEY:
        profile, created = services_profile_model.objects.get_or_create(
            slug=slug,
            defaults={"name": name, "description": description, "turnkey": True},
        )
        if not created:
            continue
        created_count += 1
        for position, (capability, component, version, parameters) in enumerate(components):
            service_component_model.objects.create(
                profile=profile,
                position=position,
                capability=capability,
                component=component,
                version=version,
                parameters=parameters,
            )
    return created_count
