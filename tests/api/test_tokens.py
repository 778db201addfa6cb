"""Personal API tokens: made on the tokens page and shown once, stored hashed, audited;
expired, revoked and read-only tokens refused; CSRF for session calls; a rate per token."""

from datetime import timedelta
from http import HTTPStatus

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from api.models import ApiToken, Scope
from api.throttling import PerTokenThrottle
from portal.models import AuditAction, AuditEntry
from tests.api.conftest import ApiClient

WORKSPACES = "/api/v1/workspaces/"
PROBLEM = "application/problem+json"


@pytest.fixture
def logged_in(client, member):
    client.force_login(member)
    return client


def _create(client, name="CI", scope=Scope.READ, days="30"):
    return client.post("/api/tokens/add/", {"name": name, "scope": scope, "days": days})


def test_the_page_shows_a_new_token_once_and_stores_only_its_hash(logged_in, member):
    response = _create(logged_in, scope=Scope.READ_WRITE)

    assert response.status_code == HTTPStatus.OK
    plaintext = response.context["created"]
    assert plaintext.startswith("gpp_") and plaintext in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    token = ApiToken.objects.get(user=member)
    assert token.scope == Scope.READ_WRITE and token.name == "CI"
    assert plaintext.split("_", 2)[2] not in token.secret_hash
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    assert plaintext not in logged_in.get("/api/tokens/").content.decode()
    entry = AuditEntry.objects.get(action=AuditAction.CREATED, object_id=str(token.pk))
    assert entry.after["secret_hash"] == "(set)"


def test_the_page_rejects_a_bad_form_with_messages_next_to_the_fields(logged_in):
    response = _create(logged_in, name="", days="999")

    assert response.status_code == HTTPStatus.OK
    assert set(response.context["form"].errors) == {"name", "days"}
    assert not ApiToken.objects.exists()


def test_the_email_page_links_to_the_tokens_page(logged_in):
    assert 'href="/api/tokens/"' in logged_in.get("/accounts/email/").content.decode()


def test_a_user_revokes_their_own_token_and_it_stops_working(logged_in, member, token_for):
    plaintext = token_for(member)
    api = ApiClient(plaintext)
    assert api.get(WORKSPACES).status_code == HTTPStatus.OK
    token = ApiToken.objects.get(user=member)

    logged_in.post(f"/api/tokens/{token.pk}/revoke/")

    response = api.get(WORKSPACES)
    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["detail"] == "This API token was revoked."
    assert AuditEntry.objects.filter(
        action=AuditAction.ACTION, object_id=str(token.pk), message__contains="revoked"
    ).exists()


def test_a_member_cannot_revoke_someone_elses_token(logged_in, org_admin, token_for):
    token_for(org_admin)
    token = ApiToken.objects.get(user=org_admin)

    assert logged_in.post(f"/api/tokens/{token.pk}/revoke/").status_code == HTTPStatus.NOT_FOUND
    token.refresh_from_db()
    assert token.revoked_at is None


def test_an_org_admin_sees_and_revokes_everyones_tokens(client, org_admin, member, token_for):
    token_for(member)
    token = ApiToken.objects.get(user=member)
    client.force_login(org_admin)

    page = client.get("/api/tokens/")
    assert list(page.context["everyone"]) == [token]
    client.post(f"/api/tokens/{token.pk}/revoke/")

    token.refresh_from_db()
    assert token.revoked_at is not None


@pytest.mark.django_db
def test_no_credentials_is_a_401_problem_with_the_scheme_to_use():
    response = ApiClient().get(WORKSPACES)

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response["Content-Type"] == PROBLEM
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["status"] == HTTPStatus.UNAUTHORIZED


@pytest.mark.parametrize("presented", ["nonsense", "gpp_000000000000_guess", "gpp_x"])
@pytest.mark.django_db
def test_an_unknown_token_is_refused(presented):
    assert ApiClient(presented).get(WORKSPACES).status_code == HTTPStatus.UNAUTHORIZED


def test_a_token_past_its_expiry_is_refused(member, token_for):
    api = ApiClient(token_for(member))
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = api.get(WORKSPACES)

    assert response.status_code == HTTPStatus.UNAUTHORIZED
    assert response.json()["detail"] == "This API token has expired."


def test_a_deactivated_users_token_is_refused(member, token_for):
    api = ApiClient(token_for(member))
    member.is_active = False
    member.save()

    assert api.get(WORKSPACES).status_code == HTTPStatus.UNAUTHORIZED


def test_a_read_only_token_reads_but_cannot_write(operator, token_for, local_infrastructure):
    api = ApiClient(token_for(operator, Scope.READ))

    assert api.get("/api/v1/infrastructure/").status_code == HTTPStatus.OK
    response = api.post("/api/v1/infrastructure/", {"name": "New", "kind": "local"})

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert "read-only" in response.json()["detail"]
    assert not response.json().get("errors")


def test_a_read_only_token_may_still_ask_whether_a_layout_fits(operator, token_for):
    api = ApiClient(token_for(operator, Scope.READ))

    response = api.post(
        "/api/v1/partitioning/validate-layout/", {"gpu_model": "A100-40GB", "counts": {}}
    )

    assert response.status_code == HTTPStatus.OK


def test_the_token_records_when_it_was_last_used(member, token_for):
    api = ApiClient(token_for(member))
    assert ApiToken.objects.get().last_used is None

    api.get(WORKSPACES)

    assert ApiToken.objects.get().last_used is not None


def test_session_calls_need_the_csrf_token(member):
    client = Client(enforce_csrf_checks=True)
    client.force_login(member)

    assert client.get(WORKSPACES).status_code == HTTPStatus.OK
    response = client.post(WORKSPACES, {}, content_type="application/json")

    assert response.status_code == HTTPStatus.FORBIDDEN
    assert "CSRF" in response.json()["detail"]


def test_the_rate_is_limited_per_token(member, token_for, monkeypatch):
    monkeypatch.setattr(PerTokenThrottle, "THROTTLE_RATES", {"api": "3/minute"})
    cache.clear()
    first, second = ApiClient(token_for(member)), ApiClient(token_for(member))

    statuses = [first.get(WORKSPACES).status_code for _ in range(4)]

    assert statuses == [200, 200, 200, HTTPStatus.TOO_MANY_REQUESTS]
    limited = first.get(WORKSPACES)
    assert limited["Content-Type"] == PROBLEM and int(limited["Retry-After"]) > 0
    assert second.get(WORKSPACES).status_code == HTTPStatus.OK
    cache.clear()


@pytest.mark.django_db
def test_an_unknown_api_path_is_a_404_problem():
    response = ApiClient().get("/api/v1/no-such-thing/")

    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response["Content-Type"] == PROBLEM
