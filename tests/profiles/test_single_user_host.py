"""Issue 11, finding 2: where this machine cannot isolate workspaces, it says so and is
offered only to Org admins until an Org admin marks it a single-user host."""

from http import HTTPStatus

import pytest
from django.urls import reverse

from pools import isolation
from pools.models import Workspace
from profiles.models import ComputeProfile, Infrastructure

pytestmark = pytest.mark.django_db


@pytest.fixture
def cannot_isolate(settings):
    settings.LOCAL_WORKSPACE_ISOLATION = "off"


@pytest.fixture
def starter(local_infrastructure, profile_factory):
    return profile_factory(local_infrastructure, "Starter", published=True)


def local_data(**overrides) -> dict:
    return {"name": "This machine", "kind": "local", "gpus_per_node": "0"} | overrides


def test_a_member_is_not_offered_a_machine_that_cannot_isolate(
    cannot_isolate, starter, member, org_admin, client
):
    assert list(ComputeProfile.objects.usable_by(member)) == []
    assert list(ComputeProfile.objects.usable_by(org_admin)) == [starter]

    client.force_login(member)
    page = client.get(reverse("workspaces:self_service"))
    assert b"Starter" not in page.content
    response = client.post(reverse("workspaces:request", args=[starter.pk]), {"name": "x"})
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert not Workspace.objects.exists()


def test_an_org_admin_marks_it_a_single_user_host_and_members_get_it(
    cannot_isolate, starter, local_infrastructure, member, admin_client
):
    edit = reverse("profiles:infrastructure_edit", args=[local_infrastructure.pk])
    form = admin_client.get(edit)
    assert b"single_user_host" in form.content
    assert b"LOCAL_WORKSPACE_ISOLATION=off" in form.content  # the field says why

    response = admin_client.post(edit, local_data(single_user_host="on"))

    assert response.status_code == HTTPStatus.FOUND
    local_infrastructure.refresh_from_db()
    assert local_infrastructure.single_user_host
    assert list(ComputeProfile.objects.usable_by(member)) == [starter]
    assert "single-user host" in local_infrastructure.isolation_status


def test_an_operator_cannot_mark_it_a_single_user_host(
    cannot_isolate, starter, local_infrastructure, operator, member, client
):
    client.force_login(operator)
    edit = reverse("profiles:infrastructure_edit", args=[local_infrastructure.pk])
    assert b"single_user_host" not in client.get(edit).content

    response = client.post(edit, local_data(single_user_host="on", description="mine"))

    assert response.status_code == HTTPStatus.FOUND
    local_infrastructure.refresh_from_db()
    assert local_infrastructure.description == "mine"
    assert not local_infrastructure.single_user_host
    assert list(ComputeProfile.objects.usable_by(member)) == []


def test_the_status_says_workspaces_are_not_isolated(
    cannot_isolate, local_infrastructure, admin_client
):
    detail = admin_client.get(local_infrastructure.get_absolute_url()).content.decode()
    assert "Workspaces are not isolated" in detail
    assert "Offered only to Org admins" in detail
    listing = admin_client.get(reverse("profiles:infrastructure_list")).content.decode()
    assert "Org admins only" in listing


def test_a_machine_that_isolates_is_offered_to_everyone(starter, member, admin_client):
    capability = isolation.host_capability()
    assert capability.isolated, capability.description  # CI installs bubblewrap
    assert list(ComputeProfile.objects.usable_by(member)) == [starter]
    infrastructure = Infrastructure.objects.get()
    assert not infrastructure.admins_only
    detail = admin_client.get(infrastructure.get_absolute_url()).content.decode()
    assert capability.description.replace("'", "&#x27;") in detail
