"""The six turnkey services profiles the product ships.

Written out as data (capability, component, version, parameters), not derived from the
component catalog's defaults, so what ships stays fixed whatever the catalog's defaults
become; the components are named by their classes. `ensure_turnkey` is idempotent: the data
migration ships them and the demo loader re-creates any that a test database flush removed.
"""

from django.utils.text import slugify

from services.components import (
    Capability,
    Feast,
    InferenceServer,
    JobQueue,
    JupyterLab,
    KubeflowPipelines,
    MinIO,
    MLflow,
    OAuth2Proxy,
    Ray,
    TrainingRunner,
)

# (name, description, [(capability, component, version, parameters)]); the slug is the
# name's.
STACKS = [
    (
        "Jupyter Notebook",
        "JupyterLab with the workspace's GPUs, ready for interactive work.",
        [(Capability.NOTEBOOK, JupyterLab, "4.4", {})],
    ),
    (
        "Training",
        "Distributed PyTorch training with experiment tracking.",
        [
            (Capability.TRAINING, TrainingRunner, "1.0", {"framework": "pytorch"}),
            (Capability.EXPERIMENT_TRACKING, MLflow, "3.1", {}),
        ],
    ),
    (
        "Inference",
        "An HTTP inference server for the workspace's models.",
        [(Capability.INFERENCE, InferenceServer, "1.0", {})],
    ),
    (
        "MLOps Platform",
        "Pipelines, model registry, feature store, object store and SSO in one stack.",
        [
            (Capability.OBJECT_STORE, MinIO, "RELEASE.2025-04-22T22-12-26Z", {}),
            (Capability.MODEL_REGISTRY, MLflow, "3.1", {}),
            (Capability.PIPELINES, KubeflowPipelines, "2.5", {}),
            (Capability.FEATURE_STORE, Feast, "0.49", {}),
            (Capability.AUTHENTICATION, OAuth2Proxy, "7.9", {"provider": "okta"}),
        ],
    ),
    (
        "Ray",
        "A Ray cluster (head and workers) on the workspace's nodes.",
        [(Capability.DISTRIBUTED_COMPUTE, Ray, "2.47", {})],
    ),
    (
        "Jobs",
        "Submit batch jobs to a queue that runs them on the workspace.",
        [(Capability.JOBS, JobQueue, "1.0", {})],
    ),
]

# (name, slug, description, [(capability, component code, version, parameters)])
TURNKEY = [
    (
        name,
        slugify(name),
        description,
        [(str(cap), cls.code, version, params) for cap, cls, version, params in rows],
    )
    for name, description, rows in STACKS
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
