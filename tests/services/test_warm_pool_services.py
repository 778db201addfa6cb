"""Warm instances come with their profile's default stack; a claim hands the stack over."""

# ruff: noqa: F811
import pytest

from pools import tasks, warmpool
from pools.lifecycle import State
from pools.models import PoolInstance
from profiles.choices import AllocationStrategy
from profiles.models import ServicesProfile
from services.models import ServiceDeployment
from tests.workspace_fixtures import workspaces_root  # noqa: F401
from workspaces import actions

pytestmark = pytest.mark.django_db


@pytest.fixture
def warm_jobs_profile(local_infrastructure, profile_factory, workspaces_root):
    profile = profile_factory(
        local_infrastructure,
        "Warm jobs",
        published=True,
        allocation_strategy=AllocationStrategy.WARM_POOL,
        desired_capacity=1,
    )
    profile.default_services_profile = ServicesProfile.objects.get(name="Jobs")
    profile.save()
    return profile


def test_a_ready_instance_gets_the_default_stack_and_the_claim_takes_it(
    warm_jobs_profile, member, django_capture_on_commit_callbacks
):
    warmpool.reconcile_profile(warm_jobs_profile.pk)
    instance = PoolInstance.objects.get(profile=warm_jobs_profile, state=State.REQUESTED)
    with django_capture_on_commit_callbacks():
        assert tasks.provision_pool_instance(instance.pk) == "ready"
    deployment = ServiceDeployment.objects.get(target_name=instance.resource_name)
    assert deployment.services_profile.name == "Jobs"
    assert deployment.workspace is None

    with django_capture_on_commit_callbacks():
        workspace = actions.request_workspace(member, warm_jobs_profile, name="")
    assert workspace.state == State.READY
    deployment.refresh_from_db()
    assert deployment.workspace == workspace
    # The adopted stack is not deployed a second time.
    assert ServiceDeployment.objects.filter(target_name=instance.resource_name).count() == 1
