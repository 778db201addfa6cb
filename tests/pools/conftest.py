import pytest

from pools import tasks
from tests.pools.warm_fixtures import warm_profile  # noqa: F401


@pytest.fixture
def gpu_profile(local_infrastructure, profile_factory):
    return profile_factory(local_infrastructure, "One A100", groups=[("A100-40GB", 1)])


@pytest.fixture
def ready_gpu_workspace(member, gpu_profile, workspace_factory, fake_gpus, workspaces_root):
    """A workspace on the local driver holding one (fake) A100, ready."""
    workspace = workspace_factory(member, gpu_profile)
    assert tasks.provision_workspace(workspace.pk) == "ready"
    workspace.refresh_from_db()
    return workspace
