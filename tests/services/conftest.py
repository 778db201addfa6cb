"""Fixtures for services profiles: a ready local workspace, and helpers to deploy into it."""

import time

import pytest

from pools import tasks
from pools.lifecycle import State
from portal.roles import Role
from profiles.models import ServicesProfile
from services import actions as services
from services import tasks as service_tasks
from services.backends.local import stop_all
from services.models import ServiceDeployment
from tests.workspace_fixtures import (  # noqa: F401
    fake_gpus,
    kubernetes_cluster,
    starter,
    sync_tasks,
    workspace_factory,
    workspaces_root,
)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "local_services: starts real JupyterLab/MLflow/Ray/jobs-queue processes (slow)",
    )


@pytest.fixture
def scientist(user_factory):
    return user_factory("dana", Role.MEMBER)


@pytest.fixture
def gpu_profile(local_infrastructure, profile_factory):
    return profile_factory(
        local_infrastructure, "One A100", groups=(("A100-40GB", 1),), published=True
    )


@pytest.fixture
def ready_workspace(scientist, gpu_profile, workspaces_root, fake_gpus, workspace_factory):  # noqa: F811
    """A local workspace provisioned for real (directory, env file, GPU-aaaa allocated)."""
    workspace = workspace_factory(scientist, gpu_profile)
    assert tasks.provision_workspace(workspace.pk) == "ready"
    workspace.refresh_from_db()
    assert workspace.state == State.READY
    yield workspace
    # Never leave processes behind, whatever the test did.
    stop_all(workspaces_root / workspace.resource_name)


def drive(deployment_pk: int, timeout: float = 180, pause: float = 0.5) -> str:
    """Run the deploy task's steps in-process, as the scheduler runs the step each one
    schedules, until one does not schedule another; return that step's result."""
    deadline = time.monotonic() + timeout
    while True:
        result = service_tasks.deploy_services(deployment_pk)
        if not result.endswith("still starting") or time.monotonic() > deadline:
            return result
        time.sleep(pause)  # the test waits, not a worker


@pytest.fixture
def deploy(scientist):
    """Deploy a services profile (by name or object) and run the deploy task in-process."""

    def run(workspace, profile, user=None) -> ServiceDeployment:
        if isinstance(profile, str):
            profile = ServicesProfile.objects.get(name=profile)
        deployment = services.deploy(user or scientist, workspace, profile)
        drive(deployment.pk)
        deployment.refresh_from_db()
        return deployment

    return run


def remove(user, deployment) -> ServiceDeployment:
    services.remove(user, deployment)
    service_tasks.remove_services(deployment.pk)
    deployment.refresh_from_db()
    return deployment
