import pytest

from profiles.choices import HealthStatus, InfrastructureKind
from profiles.models import Infrastructure
from tests.workspace_fixtures import (  # noqa: F401
    fake_gpus,
    kubernetes_cluster,
    qcluster,
    shared_database,
    starter,
    sync_tasks,
    workspace_factory,
    workspaces_root,
)


@pytest.fixture
def data_center(db):
    """Two hosts of four A100-80GB: eight GPUs the portal can count."""
    return Infrastructure.objects.create(
        name="Rack 1",
        kind=InfrastructureKind.DATA_CENTER,
        platform="bare_metal",
        hosts="gpu1\ngpu2",
        gpu_model="A100-80GB",
        gpus_per_node=4,
        health_status=HealthStatus.READY,
    )
