"""Warm instances come with their profile's default stack; a claim hands the stack over."""

# ruff: noqa: F811
import pytest

from pools import tasks, warmpool
from pools.lifecycle import State
from pools.models import PoolInstance
from profiles.choices import AllocationStrategy
from profiles.models import ServicesProfile
from services import actions as services_actions
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


def waiting_for_an_instance(profile, member) -> tuple:
    """A request made while the pool's one instance is still provisioning."""
    warmpool.reconcile_profile(profile.pk)
    instance = PoolInstance.objects.get(profile=profile, state=State.REQUESTED)
    PoolInstance.objects.filter(pk=instance.pk).update(state=State.PROVISIONING)
    workspace = actions.request_workspace(member, profile, name="")
    assert workspace.state == State.PROVISIONING
    return instance, workspace


def test_a_workspace_that_waited_for_its_instance_gets_the_default_stack_once(
    warm_jobs_profile, member, django_capture_on_commit_callbacks
):
    instance, workspace = waiting_for_an_instance(warm_jobs_profile, member)
    with django_capture_on_commit_callbacks():
        assert tasks.provision_pool_instance(instance.pk) == "ready"
    workspace.refresh_from_db()
    assert workspace.state == State.READY
    [deployment] = ServiceDeployment.objects.filter(infrastructure=instance.infrastructure)
    assert deployment.services_profile.name == "Jobs"
    assert (deployment.workspace, deployment.target_name) == (workspace, instance.resource_name)


def test_a_stack_asked_for_while_waiting_is_deployed_on_the_adopted_instance(
    warm_jobs_profile, member, django_capture_on_commit_callbacks
):
    instance, workspace = waiting_for_an_instance(warm_jobs_profile, member)
    chosen = ServicesProfile.objects.get(name="Jupyter Notebook")
    with django_capture_on_commit_callbacks():
        services_actions.deploy(member, workspace, chosen)
    asked = ServiceDeployment.objects.get(workspace=workspace)
    assert asked.target_name == f"ws-{workspace.pk}"  # its own name, while it waits
    with django_capture_on_commit_callbacks() as callbacks:
        assert tasks.provision_pool_instance(instance.pk) == "ready"
    asked.refresh_from_db()
    # It follows the workspace onto the instance, and it is the only stack there: the
    # instance's default was not deployed on top of it.
    assert asked.target_name == instance.resource_name
    assert asked.workspace_spec().name == instance.resource_name
    assert list(ServiceDeployment.objects.values_list("pk", flat=True)) == [asked.pk]
    assert len(callbacks) >= 1  # its deployment is enqueued now that the workspace is ready
