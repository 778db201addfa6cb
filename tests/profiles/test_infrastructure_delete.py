"""Deleting infrastructure and compute profiles: history never blocks, use does.

Deleted workspaces, claimed or failed warm-pool instances and removed service stacks stay as
history with the names of the profile and infrastructure they ran on; a workspace, instance
or stack that may still hold resources blocks the delete, and the delete page names it.
"""

from http import HTTPStatus

import pytest
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.urls import reverse

from pools.lifecycle import State
from pools.models import PoolInstance, Workspace
from portal.models import AuditEntry
from profiles.models import ComputeProfile, Infrastructure
from services.models import ServiceDeployment

pytestmark = pytest.mark.django_db
TOKEN = "metrics-token-of-the-delete-tests"


@pytest.fixture
def starter(local_infrastructure, profile_factory):
    return profile_factory(local_infrastructure, "Starter", published=True)


def make_workspace(owner, profile, state, **fields) -> Workspace:
    return Workspace.objects.create(
        owner=owner,
        profile=profile,
        infrastructure=profile.infrastructure,
        state=state,
        name=f"ws-{state}",
        **fields,
    )


def make_instance(profile, state, **fields) -> PoolInstance:
    return PoolInstance.objects.create(
        profile=profile, infrastructure=profile.infrastructure, state=state, **fields
    )


def make_stack(workspace, state) -> ServiceDeployment:
    return ServiceDeployment.objects.create(
        workspace=workspace,
        infrastructure=workspace.infrastructure,
        target_name=workspace.resource_name,
        profile_name="MLOps",
        state=state,
    )


@pytest.fixture
def history(member, starter):
    """A workspace deleted long ago that had claimed a warm instance and run a stack, and
    a warm instance that failed: everything this infrastructure ever hosted, all done."""
    gone = make_workspace(member, starter, State.DELETED)
    claimed = make_instance(starter, State.CLAIMED, workspace=gone)
    failed = make_instance(starter, State.FAILED, failure_reason="no GPU left")
    stack = make_stack(gone, State.DELETED)
    return {"workspace": gone, "claimed": claimed, "failed": failed, "stack": stack}


def delete_url(obj) -> str:
    name = "infrastructure" if isinstance(obj, Infrastructure) else "computeprofile"
    return reverse(f"profiles:{name}_delete", args=[obj.pk])


def test_history_never_blocks_deleting_the_profile_then_the_infrastructure(
    admin_client, local_infrastructure, starter, history
):
    page = admin_client.get(delete_url(starter))
    assert b"cannot be deleted" not in page.content
    assert "Kept: 2 pool instances, 1 workspace." in page.content.decode()
    response = admin_client.post(delete_url(starter))
    assert response.status_code == HTTPStatus.FOUND
    assert not ComputeProfile.objects.exists()

    page = admin_client.get(delete_url(local_infrastructure))
    assert b"cannot be deleted" not in page.content
    assert "Kept: 2 pool instances, 1 service deployment, 1 workspace." in page.content.decode()
    response = admin_client.post(delete_url(local_infrastructure))
    assert response.status_code == HTTPStatus.FOUND
    assert not Infrastructure.objects.exists()
    assert AuditEntry.objects.get(action="deleted", object_repr="This machine")

    gone = Workspace.objects.get(pk=history["workspace"].pk)
    assert (gone.profile, gone.profile_name) == (None, "Starter")
    assert (gone.infrastructure, gone.infrastructure_name) == (None, "This machine")
    for instance in PoolInstance.objects.all():
        assert (instance.profile_name, instance.infrastructure_name) == ("Starter", "This machine")
        assert instance.profile_id is None and instance.infrastructure_id is None
    assert PoolInstance.objects.get(pk=history["claimed"].pk).workspace == gone
    stack = ServiceDeployment.objects.get(pk=history["stack"].pk)
    assert (stack.infrastructure_id, stack.infrastructure_name) == (None, "This machine")


def test_a_history_workspace_page_names_what_it_ran_on(admin_client, starter, history):
    admin_client.post(delete_url(starter))
    admin_client.post(delete_url(starter.infrastructure))
    page = admin_client.get(history["workspace"].get_absolute_url())
    assert page.status_code == HTTPStatus.OK
    text = page.content.decode()
    assert "Starter (deleted)" in text
    assert "This machine (deleted)" in text


def test_the_names_are_the_ones_at_the_time_of_the_delete(admin_client, starter, history):
    ComputeProfile.objects.filter(pk=starter.pk).update(name="Starter v2")
    admin_client.post(delete_url(starter))
    assert Workspace.objects.get(pk=history["workspace"].pk).profile_name == "Starter v2"


@pytest.mark.parametrize(
    ("state", "label"),
    [
        (State.READY, "(ready)"),
        (State.STOPPED, "(stopped)"),
        (State.DELETING, "(deleting)"),
        # A failed workspace keeps its files until it is deleted.
        (State.FAILED, "(failed)"),
    ],
)
def test_a_workspace_that_may_hold_resources_blocks_both_deletes(
    admin_client, member, local_infrastructure, starter, history, state, label
):
    live = make_workspace(member, starter, state)
    for target in (starter, local_infrastructure):
        page = admin_client.get(delete_url(target)).content.decode()
        assert "cannot be deleted while these depend on it" in page
        assert f"Workspace: ws-{state} {label}" in page
        assert live.get_absolute_url() in page
        # History is not listed: only what blocks.
        assert "ws-deleted" not in page
        response = admin_client.post(delete_url(target))
        assert response.status_code == HTTPStatus.OK
    live.refresh_from_db()
    assert live.profile == starter and live.infrastructure == local_infrastructure
    assert Workspace.objects.get(pk=history["workspace"].pk).profile == starter


def test_the_infrastructure_page_lists_every_blocker_by_kind(
    admin_client, member, local_infrastructure, starter
):
    ready = make_workspace(member, starter, State.READY)
    make_instance(starter, State.READY)
    make_stack(ready, State.READY)
    # A claimed instance is in use while the workspace that adopted it is.
    make_instance(starter, State.CLAIMED, workspace=ready)
    page = admin_client.get(delete_url(local_infrastructure)).content.decode()
    blockers = page.split('id="blockers"')[1].split("</ul>")[0]
    assert "Compute profile: Starter" in blockers
    assert "Workspace: ws-ready (ready)" in blockers
    assert blockers.count("Pool instance: pool-") == 2
    assert "(claimed)" in blockers and "(ready)" in blockers
    assert "Service deployment: MLOps in ws-ready (ready)" in blockers


def test_the_orm_refuses_too(member, local_infrastructure, starter):
    make_workspace(member, starter, State.PROVISIONING)
    with pytest.raises(ProtectedError), transaction.atomic():
        starter.delete()
    with pytest.raises(ProtectedError), transaction.atomic():
        local_infrastructure.delete()


@pytest.mark.parametrize("field", ["profile", "infrastructure"])
def test_the_database_refuses_to_unlink_a_workspace_in_use(member, starter, field):
    ready = make_workspace(member, starter, State.READY)
    with pytest.raises(IntegrityError), transaction.atomic():
        Workspace.objects.filter(pk=ready.pk).update(**{field: None})


def test_the_database_refuses_to_unlink_a_ready_pool_instance_or_stack(member, starter):
    instance = make_instance(starter, State.READY)
    with pytest.raises(IntegrityError), transaction.atomic():
        PoolInstance.objects.filter(pk=instance.pk).update(infrastructure=None)
    stack = make_stack(make_workspace(member, starter, State.READY), State.READY)
    with pytest.raises(IntegrityError), transaction.atomic():
        ServiceDeployment.objects.filter(pk=stack.pk).update(infrastructure=None)


def test_metrics_label_history_with_the_kept_profile_name(
    admin_client, client, settings, starter, history
):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = []
    admin_client.post(delete_url(starter))
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == HTTPStatus.OK
    text = response.content.decode()
    assert 'portal_workspaces{profile="Starter",state="deleted"} 1.0' in text
    assert 'profile="None"' not in text
