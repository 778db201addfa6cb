"""403, 404 and 500 pages: in the portal's layout, with navigation, logout and a way on.

The 500 page must render even when the error came from the database or from a context
processor, which the layout itself needs: then the plain fallback page is served.
This module is also the URLconf of its tests: the portal's URLs plus three that fail.
"""

from http import HTTPStatus

import pytest
from django.db import OperationalError, connection
from django.shortcuts import render
from django.urls import path

from portal import urls as portal_urls
from portal.models import Team

# -- the URLconf of these tests -----------------------------------------------------------


def boom(request):
    raise RuntimeError("a bug in a view")


class DatabaseOutage:
    """A connection wrapper that fails every query once `down` is set (by the view)."""

    down = False

    def __call__(self, execute, sql, params, many, context):
        if self.down:
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)


OUTAGE = DatabaseOutage()


def database_down(request):
    OUTAGE.down = True
    Team.objects.count()  # raises: the database went away mid-request


def broken_context_processor(request):
    raise RuntimeError("a bug in a context processor")


def page(request):
    return render(request, "404.html")


urlpatterns = [
    *portal_urls.urlpatterns,
    path("__boom__/", boom),
    path("__database_down__/", database_down),
    path("__page__/", page),
]
handler403 = portal_urls.handler403
handler404 = portal_urls.handler404
handler500 = portal_urls.handler500

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.test_error_pages")]

LOGOUT_BUTTON = b'action="/accounts/logout/"'


@pytest.fixture
def anyone(client):
    client.raise_request_exception = False
    return client


@pytest.fixture
def as_member(anyone, member):
    anyone.force_login(member)
    return anyone


@pytest.fixture
def as_admin(anyone, org_admin):
    anyone.force_login(org_admin)
    return anyone


# -- 404 ------------------------------------------------------------------------------------


def test_404_is_in_the_layout_with_navigation_and_logout(as_admin):
    response = as_admin.get("/no/such/page/")
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert b'id="error-404"' in response.content
    assert b"/admin/infrastructure/" in response.content  # the admin navigation
    assert LOGOUT_BUTTON in response.content
    assert b'href="/"' in response.content  # the way on


def test_404_of_an_object_that_is_not_yours_says_what_to_do(as_member):
    response = as_member.get("/workspaces/999999/")
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert b"What to do next" in response.content
    assert b"is not yours to see" in response.content
    assert b"/workspaces/" in response.content  # the member's Self-service link


def test_404_for_an_anonymous_visitor_offers_the_login(anyone):
    response = anyone.get("/no/such/page/")
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert b'href="/accounts/login/"' in response.content
    assert LOGOUT_BUTTON not in response.content


def test_404_escapes_and_shortens_a_hostile_path(anyone):
    response = anyone.get("/<script>alert(1)</script>" + "x" * 500)
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert b"<script>alert" not in response.content
    assert b"x" * 300 not in response.content


# -- 403 ------------------------------------------------------------------------------------


def test_403_says_why_and_keeps_the_navigation(as_member):
    response = as_member.get("/admin/infrastructure/")
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert b'id="error-403"' in response.content
    assert b"You may not view infrastructure." in response.content
    assert b"/workspaces/" in response.content  # the member's Self-service link
    assert LOGOUT_BUTTON in response.content
    assert b"ask your administrator for a role" in response.content


def test_403_for_a_user_in_no_group_asks_them_to_see_an_administrator(anyone, user_factory):
    lonely = user_factory("lonely")  # in no group: e.g. their Okta groups no longer map
    anyone.force_login(lonely)
    response = anyone.get("/workspaces/")
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert b'id="sso-no-access"' in response.content
    assert b"ask your administrator" in response.content
    assert LOGOUT_BUTTON in response.content


# -- 500 ------------------------------------------------------------------------------------


def test_500_is_in_the_layout_with_the_request_reference(as_admin):
    response = as_admin.get("/__boom__/")
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert b'id="error-500"' in response.content
    assert b"/admin/infrastructure/" in response.content
    assert LOGOUT_BUTTON in response.content
    reference = response["X-Request-ID"].encode()
    assert b'<code id="request-id">' + reference + b"</code>" in response.content
    assert b"a bug in a view" not in response.content


def test_500_for_an_anonymous_visitor(anyone):
    response = anyone.get("/__boom__/")
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert b'id="error-500"' in response.content


def test_500_renders_when_the_database_is_gone(as_admin):
    OUTAGE.down = False
    with connection.execute_wrapper(OUTAGE):
        try:
            response = as_admin.get("/__database_down__/")
        finally:
            OUTAGE.down = False
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    # The layout needs the user's groups from the database: the plain page stands in.
    assert b'id="error-500"' in response.content
    assert b'href="/accounts/logout/"' in response.content
    assert b'<code id="request-id">' + response["X-Request-ID"].encode() in response.content
    assert b"server closed the connection" not in response.content


def test_500_renders_when_a_context_processor_fails(as_admin, settings):
    engine = settings.TEMPLATES[0]
    processors = [*engine["OPTIONS"]["context_processors"]]
    processors.append("tests.test_error_pages.broken_context_processor")
    settings.TEMPLATES = [
        engine | {"OPTIONS": engine["OPTIONS"] | {"context_processors": processors}}
    ]
    response = as_admin.get("/__page__/")
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert b'id="error-500"' in response.content
    assert b'href="/accounts/logout/"' in response.content
    assert b"a bug in a context processor" not in response.content


def test_500_has_a_fixed_page_when_no_template_renders(as_admin, monkeypatch):
    def no_templates(*args, **kwargs):
        raise RuntimeError("template engine broken")

    monkeypatch.setattr("portal.views.errors.render", no_templates)
    monkeypatch.setattr("portal.views.errors.loader.render_to_string", no_templates)
    response = as_admin.get("/__boom__/")
    assert response.status_code == HTTPStatus.INTERNAL_SERVER_ERROR
    assert b"Something went wrong on our side" in response.content
    assert b"/accounts/logout/" in response.content
