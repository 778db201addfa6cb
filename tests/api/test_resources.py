"""The API does what the pages do, with their rules and messages: workspace requests and
their refusals, power actions, compute profiles through the form with ETag / If-Match,
the MIG layout check, warm pools, users, group members, services-profile clones and the
audit trail."""

import threading
from http import HTTPStatus

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from api.v1.generic import PageBackedViewSet
from pools.lifecycle import State
from pools.models import Pool, Workspace
from portal.models import AuditAction, AuditEntry, SsoMembership, Team
from portal.user_forms import UserAddForm
from profiles.forms.compute import ResourceGroupForm
from profiles.models import ComputeProfile, ServicesProfile

PROFILES = "/api/v1/compute-profiles/"
WORKSPACES = "/api/v1/workspaces/"
PROBLEM = "application/problem+json"
# A valid address of 308 characters.
LONG_EMAIL = "a" * 60 + "@" + ("b" * 60 + ".") * 4 + "com"


@pytest.fixture
def starter(local_infrastructure, profile_factory):
    local_infrastructure.single_user_host = True
    local_infrastructure.save()
    return profile_factory(local_infrastructure, "Starter", published=True)


@pytest.fixture
def member_api(member, api_for):
    return api_for(member)


@pytest.fixture
def operator_api(operator, api_for):
    return api_for(operator)


def _no_new_workspace(before: int) -> bool:
    return Workspace.objects.count() == before


# -- workspaces ---------------------------------------------------------------------------


def test_a_workspace_request_answers_201_with_the_workspace(member_api, member, starter):
    response = member_api.post(WORKSPACES, {"profile": starter.pk, "name": "notebook"})

    assert response.status_code == HTTPStatus.CREATED
    body = response.json()
    assert body["name"] == "notebook" and body["state"] == State.REQUESTED
    assert body["owner"] == member.username and body["profile"] == starter.pk
    assert response["Location"].endswith(f"{WORKSPACES}{body['id']}/")
    assert AuditEntry.objects.filter(action=AuditAction.CREATED, object_id=str(body["id"]))
    assert member_api.get(f"{WORKSPACES}{body['id']}/").json()["id"] == body["id"]


def test_a_request_over_the_quota_is_409_with_the_quota_message(member_api, member, starter):
    Team.objects.filter(members=member).update(max_workspaces=0)
    before = Workspace.objects.count()

    response = member_api.post(WORKSPACES, {"profile": starter.pk})

    assert response.status_code == HTTPStatus.CONFLICT
    assert response["Content-Type"] == PROBLEM
    assert response.json()["detail"].startswith("Quota reached: group “member group” allows 0")
    assert _no_new_workspace(before)


def test_a_request_for_a_profile_one_may_not_use_is_403_with_the_access_message(
    member_api, starter
):
    starter.teams.add(Team.objects.create(name="Vision team"))
    before = Workspace.objects.count()

    response = member_api.post(WORKSPACES, {"profile": starter.pk})

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json()["detail"] == "You may not use the compute profile “Starter”."
    assert _no_new_workspace(before)


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "profile"),
        ({"profile": "²"}, "profile"),
        ({"profile": 2**63}, "profile"),
        ({"profile": None, "services_profile": 999999}, "profile"),
    ],
)
def test_a_malformed_request_is_400_and_creates_nothing(member_api, starter, body, field):
    before = Workspace.objects.count()

    response = member_api.post(WORKSPACES, body)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert field in response.json()["errors"]
    assert _no_new_workspace(before)


def test_an_unknown_services_profile_gets_the_forms_message(member_api, starter):
    response = member_api.post(WORKSPACES, {"profile": starter.pk, "services_profile": 999999})

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["errors"] == {
        "services_profile": ["Choose a services profile from the list."]
    }


def test_stopping_a_workspace_that_is_not_ready_is_409_with_the_reason(
    member_api, member, starter, workspace_factory
):
    workspace = workspace_factory(member, starter, state=State.PROVISIONING)

    response = member_api.post(f"{WORKSPACES}{workspace.pk}/stop/")

    assert response.status_code == HTTPStatus.CONFLICT
    assert response.json()["detail"] == (
        "Only a ready workspace can be stopped; this one is provisioning."
    )


def test_stop_and_delete_move_the_workspace_and_its_events_say_so(
    member_api, member, starter, workspace_factory
):
    workspace = workspace_factory(member, starter, state=State.READY)

    stopped = member_api.post(f"{WORKSPACES}{workspace.pk}/stop/")
    events = member_api.get(f"{WORKSPACES}{workspace.pk}/events/").json()["results"]

    assert stopped.status_code == HTTPStatus.ACCEPTED
    assert stopped.json()["state"] == State.STOPPING
    assert events[-1]["to_state"] == State.STOPPING and events[-1]["actor"] == member.username


def test_another_members_workspace_is_not_found(
    api_for, user_factory, member, starter, workspace_factory
):
    workspace = workspace_factory(member, starter, state=State.READY)
    other = api_for(user_factory("otto2", "member"))

    assert other.get(f"{WORKSPACES}{workspace.pk}/").status_code == HTTPStatus.NOT_FOUND
    assert other.delete(f"{WORKSPACES}{workspace.pk}/").status_code == HTTPStatus.NOT_FOUND
    assert other.get(WORKSPACES).json()["count"] == 0


def test_the_workspace_list_takes_the_pages_filters(
    operator_api, member, starter, workspace_factory
):
    workspace_factory(member, starter, state=State.READY)
    workspace_factory(member, starter, state=State.FAILED)

    ready = operator_api.get(WORKSPACES, {"state": "ready"}).json()
    bad = operator_api.get(WORKSPACES, {"state": "nonsense"})

    assert [w["state"] for w in ready["results"]] == ["ready"]
    assert bad.status_code == HTTPStatus.BAD_REQUEST and "state" in bad.json()["errors"]


def test_the_workspace_secret_is_revealed_to_its_owner_once(
    member_api, member, operator_api, starter, workspace_factory
):
    workspace = workspace_factory(member, starter, state=State.READY, secret="s3cr3t-token")
    url = f"{WORKSPACES}{workspace.pk}/secret/"

    assert "s3cr3t-token" not in member_api.get(f"{WORKSPACES}{workspace.pk}/").content.decode()
    assert operator_api.post(url).json() == {"secret": ""}
    assert member_api.post(url).json() == {"secret": "s3cr3t-token"}
    assert member_api.post(url).json() == {"secret": ""}


# -- compute profiles ---------------------------------------------------------------------


def _profile_body(infrastructure, **fields) -> dict:
    return {
        "name": "Large",
        "infrastructure": infrastructure.pk,
        "published": True,
        "resource_groups": [{"cpu": 8, "ram_gb": 32}],
    } | fields


def test_publishing_a_compute_profile_creates_and_audits_it(operator_api, local_infrastructure):
    response = operator_api.post(PROFILES, _profile_body(local_infrastructure))

    assert response.status_code == HTTPStatus.CREATED, response.content
    body = response.json()
    assert body["published"] is True and body["resource_groups"][0]["cpu"] == 8
    assert response["ETag"]
    assert AuditEntry.objects.filter(action=AuditAction.CREATED, object_id=str(body["id"]))


def test_profile_errors_are_the_forms_messages_per_field(operator_api, aws_infrastructure):
    body = _profile_body(
        aws_infrastructure, resource_groups=[{"gpu_model": "H100-80GB", "gpu_count": 9}]
    )

    response = operator_api.post(PROFILES, body)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    errors = response.json()["errors"]
    assert errors["resource_groups[0].gpu_count"] == [
        "One node offers at most 8× H100-80GB; the GPU count is per node (its one node "
        "gets it): for more, raise the node count."
    ]
    assert not ComputeProfile.objects.filter(name="Large").exists()


def test_an_unknown_field_is_named(operator_api, local_infrastructure):
    response = operator_api.post(PROFILES, _profile_body(local_infrastructure, colour="red"))

    assert response.json()["errors"] == {"colour": ["Unknown field."]}


def test_a_profile_update_needs_if_match_and_refuses_a_stale_one(
    operator_api, starter, org_admin, api_for
):
    url = f"{PROFILES}{starter.pk}/"
    etag = operator_api.get(url)["ETag"]

    missing = operator_api.patch(url, {"description": "mine"})
    first = operator_api.patch(url, {"description": "mine"}, **{"If-Match": etag})
    second = api_for(org_admin).patch(url, {"description": "theirs"}, **{"If-Match": etag})

    assert missing.status_code == HTTPStatus.PRECONDITION_REQUIRED
    assert first.status_code == HTTPStatus.OK and first["ETag"] != etag
    assert second.status_code == HTTPStatus.PRECONDITION_FAILED
    starter.refresh_from_db()
    assert starter.description == "mine"
    entry = AuditEntry.objects.get(action=AuditAction.UPDATED, object_id=str(starter.pk))
    assert entry.after["description"] == "mine"


def test_a_patch_keeps_the_resource_groups_it_does_not_mention(operator_api, starter):
    url = f"{PROFILES}{starter.pk}/"
    before = operator_api.get(url)

    response = operator_api.patch(url, {"published": False}, **{"If-Match": before["ETag"]})

    assert response.status_code == HTTPStatus.OK, response.content
    assert response.json()["resource_groups"] == before.json()["resource_groups"]
    assert response.json()["published"] is False


def _on_its_own_connection(request) -> None:
    try:
        request()
    finally:
        connection.close()


@pytest.fixture
def between_read_and_lock(monkeypatch):
    """`between_read_and_lock(other)`: the next PATCH, once it has read its object and before
    it locks the row, waits while `other()` runs to its commit on a connection of its own.
    Returns that thread, to join."""

    def arrange(other) -> threading.Thread:
        thread = threading.Thread(target=_on_its_own_connection, args=(other,))
        original = PageBackedViewSet.get_object

        def get_object(viewset):
            obj = original(viewset)
            if viewset.action == "partial_update" and thread.ident is None:
                thread.start()
                thread.join(timeout=10)  # (a PATCH that locked first would keep it waiting)
            return obj

        monkeypatch.setattr(PageBackedViewSet, "get_object", get_object)
        return thread

    return arrange


@pytest.mark.django_db(transaction=True)
def test_two_patches_of_the_same_version_cannot_both_win(
    operator_api, org_admin, api_for, starter, between_read_and_lock
):
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL; SQLite serialises writers by itself")
    url = f"{PROFILES}{starter.pk}/"
    etag = operator_api.get(url)["ETag"]
    answers = {}

    def alice():
        answers["alice"] = operator_api.patch(url, {"published": False}, **{"If-Match": etag})

    alice_thread = between_read_and_lock(alice)
    bob = api_for(org_admin).patch(url, {"description": "bob's"}, **{"If-Match": etag})
    alice_thread.join(timeout=30)

    assert answers["alice"].status_code == HTTPStatus.OK
    assert bob.status_code == HTTPStatus.PRECONDITION_FAILED
    starter.refresh_from_db()
    assert starter.published is False and starter.description != "bob's"


@pytest.fixture
def fresh_process_row_fields():
    """The row form's field list as a fresh web process has it: Django's inline formset
    appends "profile" to it in place the first time a profile form is built, and earlier
    tests in this process may have done so. Restored afterwards."""
    shared = ResourceGroupForm.Meta.fields
    saved = list(shared)
    shared[:] = [name for name in shared if name != "profile"]
    yield
    shared[:] = saved


def test_an_unchanged_profile_keeps_its_etag_when_someone_opens_its_form(
    fresh_process_row_fields, operator_api, org_admin, starter
):
    url = f"{PROFILES}{starter.pk}/"
    first = operator_api.get(url)
    browser = Client()
    browser.force_login(org_admin)

    edit_page = browser.get(reverse("profiles:computeprofile_edit", args=[starter.pk]))
    second = operator_api.get(url)
    changed = operator_api.patch(url, {"description": "mine"}, **{"If-Match": first["ETag"]})

    assert edit_page.status_code == HTTPStatus.OK
    assert second.json() == first.json() and second["ETag"] == first["ETag"]
    assert changed.status_code == HTTPStatus.OK, changed.content


def test_a_profile_in_use_cannot_be_deleted(operator_api, member, starter, workspace_factory):
    workspace_factory(member, starter, state=State.READY)

    response = operator_api.delete(f"{PROFILES}{starter.pk}/")

    assert response.status_code == HTTPStatus.CONFLICT
    assert "in use" in response.json()["detail"]
    assert ComputeProfile.objects.filter(pk=starter.pk).exists()


def test_a_member_cannot_read_the_admin_catalog(member_api):
    response = member_api.get(PROFILES)

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert response.json()["detail"] == "You may not view profiles."


# -- partitioning, pools, people, audit -----------------------------------------------------


@pytest.mark.parametrize(
    "counts, ok, reason",
    [
        ({"3g.20gb": 2}, True, ""),
        ({"7g.40gb": 1, "1g.5gb": 1}, False, "7g.40gb"),
        ({"9g.99gb": 1}, False, "9g.99gb"),
    ],
)
def test_validate_layout_answers_the_reason_and_the_placement(operator_api, counts, ok, reason):
    response = operator_api.post(
        "/api/v1/partitioning/validate-layout/", {"gpu_model": "A100-40GB", "counts": counts}
    )

    body = response.json()
    assert response.status_code == HTTPStatus.OK and body["ok"] is ok
    assert reason in body["reason"]
    assert bool(body["placements"]) is ok


def test_pausing_and_resuming_a_pool_is_audited(operator_api, starter):
    starter.allocation_strategy = "warm_pool"
    starter.desired_capacity = 1
    starter.save()

    paused = operator_api.post(f"/api/v1/pools/{starter.pk}/pause/")
    assert paused.status_code == HTTPStatus.OK and paused.json()["paused"] is True
    resumed = operator_api.post(f"/api/v1/pools/{starter.pk}/resume/")

    assert resumed.json()["paused"] is False
    assert not Pool.objects.get(profile=starter).paused
    messages = set(AuditEntry.objects.values_list("message", flat=True))
    assert {"paused the warm pool", "resumed the warm pool (was paused)"} <= messages


def test_users_and_invitations_are_for_org_admins_to_change(org_admin, operator, api_for, member):
    admin, operator_api = api_for(org_admin), api_for(operator)
    invite = {"email": "new@example.com", "groups": [member.teams.get().pk]}

    assert operator_api.post("/api/v1/invitations/", invite).status_code == HTTPStatus.FORBIDDEN
    created = admin.post("/api/v1/invitations/", invite)
    duplicate = admin.post("/api/v1/users/", {"username": "x", "email": member.email})

    assert created.status_code == HTTPStatus.CREATED
    assert created.json()["groups"] == ["member group"]
    assert duplicate.status_code == HTTPStatus.BAD_REQUEST and "email" in duplicate.json()["errors"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        # Valid, but longer than the 254 characters User.email and Invitation.email hold.
        ("/api/v1/users/", {"username": "x", "email": LONG_EMAIL}, "email"),
        ("/api/v1/invitations/", {"email": LONG_EMAIL}, "email"),
        # 9 characters as sent, 162 as Django stores them (NFKC).
        ("/api/v1/users/", {"username": "\ufdfa" * 9, "email": "x@example.com"}, "username"),
        # Fullwidth "OLGA": stored as "OLGA", a case twin of the admin "olga".
        (
            "/api/v1/users/",
            {"username": "\uff2f\uff2c\uff27\uff21", "email": "x@example.com"},
            "username",
        ),
    ],
    ids=["user-email", "invitation-email", "username-expands", "username-case-twin"],
)
def test_what_could_not_be_stored_is_a_400_not_a_500(org_admin, api_for, path, body, field):
    response = api_for(org_admin).post(path, body)

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert field in response.json()["errors"]


def test_a_username_taken_meanwhile_is_a_400_not_a_500(org_admin, api_for, member, monkeypatch):
    # As if another request created "mia" between the form's check and the insert.
    monkeypatch.setattr(UserAddForm, "clean_username", lambda form: form.cleaned_data["username"])

    response = api_for(org_admin).post(
        "/api/v1/users/", {"username": "mia", "email": "x@example.com"}
    )

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["errors"]["username"] == ["This username is taken; choose another."]


def test_the_audit_log_is_read_only_and_filtered_like_its_page(org_admin, api_for, starter):
    admin = api_for(org_admin)

    listed = admin.get("/api/v1/audit/", {"action": "created"}).json()
    refused = admin.post("/api/v1/audit/", {})

    assert listed["count"] >= 1 and {e["action"] for e in listed["results"]} == {"created"}
    assert refused.status_code == HTTPStatus.METHOD_NOT_ALLOWED


# -- group members and services-profile clones ----------------------------------------------


def test_adding_and_removing_a_member_is_audited_and_answers_the_group(
    org_admin, api_for, member, viewer
):
    admin, team = api_for(org_admin), member.teams.get()
    members = f"/api/v1/groups/{team.pk}/members/"

    added = admin.post(members, {"user": viewer.pk})
    again = admin.post(members, {"user": viewer.pk})
    removed = admin.delete(f"{members}{member.pk}/")
    not_a_member = admin.delete(f"{members}{member.pk}/")

    assert added.status_code == HTTPStatus.OK and added.json()["members"] == ["mia", "vic"]
    assert again.status_code == HTTPStatus.BAD_REQUEST and "user" in again.json()["errors"]
    assert removed.status_code == HTTPStatus.OK and removed.json()["members"] == ["vic"]
    assert not_a_member.status_code == HTTPStatus.NOT_FOUND
    changes = AuditEntry.objects.filter(
        content_type__model="team", object_id=str(team.pk), action=AuditAction.UPDATED
    )
    assert changes.count() == 2


def test_adding_a_member_makes_an_sso_granted_membership_a_manual_one(org_admin, api_for, member):
    team = Team.objects.create(name="Okta group")
    team.members.add(member)
    SsoMembership.objects.create(team=team, user=member)
    team.members.remove(member)  # as an Okta login that no longer maps to the group leaves it

    api_for(org_admin).post(f"/api/v1/groups/{team.pk}/members/", {"user": member.pk})

    assert list(team.members.all()) == [member]
    assert not SsoMembership.objects.filter(team=team).exists()


def test_removing_the_last_org_admin_is_409_with_the_reason(org_admin, api_for):
    team = org_admin.teams.get()

    refused = api_for(org_admin).delete(f"/api/v1/groups/{team.pk}/members/{org_admin.pk}/")

    assert refused.status_code == HTTPStatus.CONFLICT
    assert refused["Content-Type"] == PROBLEM
    assert "nobody would be left to manage users" in refused.json()["detail"]
    assert list(team.members.all()) == [org_admin]


def test_only_org_admins_change_members(operator, api_for, member):
    team = member.teams.get()

    refused = api_for(operator).delete(f"/api/v1/groups/{team.pk}/members/{member.pk}/")

    assert refused.status_code == HTTPStatus.FORBIDDEN
    assert list(team.members.all()) == [member]


def test_cloning_a_turnkey_profile_answers_an_unpublished_audited_copy(operator, api_for):
    operator_api = api_for(operator)
    turnkey = ServicesProfile.objects.get(slug="jobs")

    first = operator_api.post(f"/api/v1/services-profiles/{turnkey.pk}/clone/")
    second = operator_api.post(f"/api/v1/services-profiles/{turnkey.pk}/clone/")

    assert first.status_code == HTTPStatus.CREATED
    copy = ServicesProfile.objects.get(pk=first.json()["id"])
    assert (copy.name, copy.published, copy.turnkey) == (f"{turnkey.name} (copy)", False, False)
    assert second.json()["name"] == f"{turnkey.name} (copy) 2"
    components = ("position", "capability", "component", "version", "parameters")
    assert list(copy.components.values_list(*components)) == list(
        turnkey.components.values_list(*components)
    )
    assert AuditEntry.objects.filter(
        content_type__model="servicesprofile",
        object_id=str(copy.pk),
        action=AuditAction.CREATED,
        actor=operator,
    ).exists()
