"""On Kubernetes a services stack's GPU components hold GPUs of their own, beside the
workspace's: they count against the group's GPU quota while the stack lives."""

from http import HTTPStatus

import pytest
from django.urls import reverse

from pools.lifecycle import State
from pools.models import Workspace
from portal.models import Team
from profiles.models import ComputeProfile, ServicesProfile
from services import actions as services
from services.models import ServiceDeployment
from workspaces import actions, quotas

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_queue(monkeypatch):
    for name in ("provision", "deprovision", "stop", "start"):
        monkeypatch.setattr(f"pools.tasks.enqueue_{name}", lambda pk: None)
    for name in ("deploy", "remove"):
        monkeypatch.setattr(f"services.tasks.enqueue_{name}", lambda pk: None)


@pytest.fixture
def one_a100(kubernetes_cluster):
    profile = ComputeProfile.objects.create(
        name="One A100", infrastructure=kubernetes_cluster, published=True
    )
    profile.resource_groups.create(gpu_model="A100-40GB", gpu_count=1, storage_gb=100)
    return profile


def llm_stack(gpus: int, name: str = "Big LLM") -> ServicesProfile:
    stack = ServicesProfile.objects.create(name=name, published=True)
    stack.components.create(
        capability="inference", component="inference-server", parameters={"gpus": gpus}
    )
    return stack


def allow_gpus(user, gpus: int) -> Team:
    team = user.teams.get()
    Team.objects.filter(pk=team.pk).update(max_gpus=gpus)
    return team


def ready_workspace(user, profile) -> Workspace:
    workspace = actions.request_workspace(user, profile)
    Workspace.objects.filter(pk=workspace.pk).update(state=State.READY)
    return Workspace.objects.get(pk=workspace.pk)


def gpus_in_use(user) -> int:
    return quotas.usage_of(user)[0].used["gpus"]


def test_a_request_whose_stack_needs_gpus_beyond_the_quota_is_refused_409(client, member, one_a100):
    """POST /api/v1/workspaces/ with a services profile of a 4-GPU inference server, in a
    group allowed 1 GPU: 409 saying why, and no workspace is left."""
    allow_gpus(member, 1)
    client.force_login(member)
    answer = client.post(
        "/api/v1/workspaces/",
        {"profile": one_a100.pk, "name": "llm", "services_profile": llm_stack(4).pk},
        content_type="application/json",
    )
    assert answer.status_code == HTTPStatus.CONFLICT
    assert (
        "Services not deployed: Quota reached: group “member group” allows 1 concurrent GPU "
        "and has 1 in use; the services profile “Big LLM” needs 4."
    ) in answer.json()["detail"]
    assert not Workspace.objects.exists()
    assert gpus_in_use(member) == 0


def test_a_stack_deployed_into_a_workspace_counts_in_the_quota_while_it_lives(member, one_a100):
    """Deployed into a ready workspace, a 1-GPU stack is charged to the workspace's group:
    2 GPUs in use. A second such workspace's stack no longer fits a quota of 3; once the
    first stack is removed, its GPU is free again."""
    allow_gpus(member, 3)
    first = ready_workspace(member, one_a100)
    stack = llm_stack(1)
    deployment = services.deploy(member, first, stack)
    assert gpus_in_use(member) == 2

    second = ready_workspace(member, one_a100)
    with pytest.raises(services.ServicesRefused, match="has 3 in use; the services profile"):
        services.deploy(member, second, stack)
    assert not ServiceDeployment.objects.filter(workspace=second).exists()

    services.remove(member, deployment)
    ServiceDeployment.objects.filter(pk=deployment.pk).update(state=State.DELETED)
    assert gpus_in_use(member) == 2
    services.deploy(member, second, stack)
    assert gpus_in_use(member) == 3


def test_the_quota_page_shows_the_stacks_gpus_in_use(client, member, one_a100):
    allow_gpus(member, 4)
    services.deploy(member, ready_workspace(member, one_a100), llm_stack(2))
    client.force_login(member)
    page = client.get(reverse("workspaces:self_service")).content.decode()
    assert "<td>3 of 4</td>" in page


def test_a_stopped_workspaces_stack_holds_no_gpu_and_is_counted_again_at_start(member, one_a100):
    """Stopped, neither the workspace nor its stack holds a GPU; its Start needs both
    again, 1 + 2, and is refused where only 2 are free."""
    allow_gpus(member, 3)
    workspace = ready_workspace(member, one_a100)
    services.deploy(member, workspace, llm_stack(2))
    Workspace.objects.filter(pk=workspace.pk).update(state=State.STOPPED)
    assert gpus_in_use(member) == 0
    ready_workspace(member, one_a100)  # takes one of the three
    with pytest.raises(actions.RequestRefused, match="has 1 in use; starting it needs 3"):
        actions.start_workspace(member, Workspace.objects.get(pk=workspace.pk))


def test_on_the_local_driver_a_stacks_gpus_are_the_workspaces(
    member, local_infrastructure, profile_factory
):
    """Locally, components run on the workspace's own GPUs: nothing more is counted."""
    profile = profile_factory(
        local_infrastructure, "Local A100", groups=[("A100-40GB", 1)], published=True
    )
    allow_gpus(member, 1)
    services.deploy(member, ready_workspace(member, profile), llm_stack(1))
    assert gpus_in_use(member) == 1


def test_a_failed_stack_is_redeployed_only_where_its_gpus_fit(member, one_a100):
    """A failed stack counts against no quota; redeploying it takes its GPUs again, so it
    is refused once another workspace took them."""
    allow_gpus(member, 2)
    workspace = ready_workspace(member, one_a100)
    deployment = services.deploy(member, workspace, llm_stack(1))
    ServiceDeployment.objects.filter(pk=deployment.pk).update(state=State.FAILED)
    ready_workspace(member, one_a100)
    deployment = ServiceDeployment.objects.get(pk=deployment.pk)
    with pytest.raises(services.ServicesRefused, match="allows 2 concurrent GPUs"):
        services.redeploy(member, deployment)
    assert ServiceDeployment.objects.get(pk=deployment.pk).state == State.FAILED


def test_a_stack_whose_profile_was_taken_away_is_neither_redeployed_nor_started(
    member, one_a100, org_admin
):
    """Once the services profile is unpublished, its owner may not redeploy the stack, nor
    start the stopped workspace that would deploy it again."""
    workspace = ready_workspace(member, one_a100)
    stack = llm_stack(1)
    deployment = services.deploy(member, workspace, stack)
    ServiceDeployment.objects.filter(pk=deployment.pk).update(state=State.READY)
    ServicesProfile.objects.filter(pk=stack.pk).update(published=False)

    with pytest.raises(services.ServicesRefused, match="You may no longer use the services"):
        services.redeploy(member, ServiceDeployment.objects.get(pk=deployment.pk))
    ServiceDeployment.objects.filter(pk=deployment.pk).update(state=State.REQUESTED)
    Workspace.objects.filter(pk=workspace.pk).update(state=State.STOPPED)
    with pytest.raises(actions.RequestRefused, match="Its owner may no longer use the services"):
        actions.start_workspace(org_admin, Workspace.objects.get(pk=workspace.pk))


def test_the_compute_profiles_default_stack_comes_with_the_profile(member, one_a100):
    """A stack that is the compute profile's default may be redeployed by anyone who may
    use the compute profile, whichever groups its services profile lists."""
    stack = llm_stack(1)
    ComputeProfile.objects.filter(pk=one_a100.pk).update(default_services_profile=stack)
    stack.teams.add(Team.objects.create(name="Other lab", role="member"))
    workspace = ready_workspace(member, ComputeProfile.objects.get(pk=one_a100.pk))
    deployment = ServiceDeployment.objects.create(
        workspace=workspace,
        services_profile=stack,
        profile_name=stack.name,
        infrastructure=workspace.infrastructure,
        target_name=workspace.resource_name,
        state=State.READY,
    )
    assert services.redeploy(member, deployment)


def test_a_request_is_refused_when_the_profiles_default_stack_would_overrun_the_quota(
    member, one_a100
):
    """The default stack follows every workspace of the profile without asking (deployed
    when it is ready, or with a warm instance), so its GPUs are checked at the request: a
    1-GPU profile with a 1-GPU default stack does not fit a 1-GPU quota."""
    allow_gpus(member, 1)
    ComputeProfile.objects.filter(pk=one_a100.pk).update(default_services_profile=llm_stack(1))
    profile = ComputeProfile.objects.get(pk=one_a100.pk)

    with pytest.raises(actions.RequestRefused) as refused:
        actions.request_workspace(member, profile)
    assert str(refused.value) == (
        "Quota reached: group “member group” allows 1 concurrent GPU and has 0 in use; "
        "this profile with its default services needs 2."
    )
    assert not Workspace.objects.exists()


def test_a_request_fits_when_the_quota_has_room_for_the_default_stack_too(member, one_a100):
    allow_gpus(member, 2)
    ComputeProfile.objects.filter(pk=one_a100.pk).update(default_services_profile=llm_stack(1))
    workspace = actions.request_workspace(member, ComputeProfile.objects.get(pk=one_a100.pk))
    assert workspace.gpus == 1  # the stack's GPU is counted on the stack once it exists
