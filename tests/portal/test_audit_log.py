from http import HTTPStatus

import pytest
from django.urls import reverse

from portal import audit, users
from portal.models import AuditEntry
from profiles.models import Infrastructure

pytestmark = pytest.mark.django_db


def test_change_tracker_records_only_real_changes(org_admin, aws_infrastructure):
    tracker = audit.ChangeTracker(aws_infrastructure)
    assert tracker.record(org_admin) is None
    aws_infrastructure.region = "eu-west-1"
    aws_infrastructure.save()
    entry = tracker.record(org_admin)
    assert entry.changes() == [("region", "us-east-1", "eu-west-1")]
    assert entry.actor_name == "olga"


def test_secret_changes_are_logged_without_the_value(org_admin, aws_infrastructure):
    tracker = audit.ChangeTracker(aws_infrastructure)
    aws_infrastructure.credentials = {"access_key_id": "AKIAXXXX", "secret_access_key": "shh"}
    aws_infrastructure.save()
    entry = tracker.record(org_admin)
    assert entry.before["credentials"] == "(not set)"
    assert entry.after["credentials"] == "(changed)"
    assert "shh" not in str(entry.after)


def test_entries_written_by_one_request_share_its_id(admin_client):
    admin_client.post(
        reverse("profiles:infrastructure_add"),
        {"name": "Local", "kind": "local", "gpus_per_node": "0"},
    )
    entry = AuditEntry.objects.get()
    assert entry.request_id is not None


def test_audit_pages_show_who_what_and_the_difference(admin_client, org_admin):
    infrastructure = Infrastructure.objects.create(name="Old name", kind="local")
    tracker = audit.ChangeTracker(infrastructure)
    infrastructure.name = "New name"
    infrastructure.save()
    entry = tracker.record(org_admin)
    response = admin_client.get(reverse("portal:auditentry_list"), {"action": "updated"})
    assert response.status_code == HTTPStatus.OK
    assert b"New name" in response.content
    response = admin_client.get(entry.get_absolute_url())
    page = response.content.decode()
    assert "Old name" in page
    assert "New name" in page
    assert "olga" in page


def test_audit_log_is_not_for_members(client, member):
    client.force_login(member)
    response = client.get(reverse("portal:auditentry_list"))
    assert response.status_code == HTTPStatus.FORBIDDEN


@pytest.mark.parametrize(("role", "sees_people"), [("operator", False), ("viewer", True)])
def test_entries_about_people_are_for_those_who_may_see_users(
    client, request, org_admin, member, role, sees_people
):
    """An Operator may read the audit log but not users and groups: the entries about an
    account (its address, its groups) stay out of the log's list and detail pages."""
    users.add_user(org_admin, "newcomer", "newcomer@example.com", [], None)
    about_a_user = AuditEntry.objects.get(object_repr="newcomer")
    infrastructure = Infrastructure.objects.create(name="Lab", kind="local")
    audit.record_created(org_admin, infrastructure)
    client.force_login(request.getfixturevalue(role))

    listed = client.get(reverse("portal:auditentry_list")).content.decode()
    detail = client.get(about_a_user.get_absolute_url())

    assert "Lab" in listed
    assert ("newcomer" in listed) is sees_people
    assert detail.status_code == (HTTPStatus.OK if sees_people else HTTPStatus.NOT_FOUND)
