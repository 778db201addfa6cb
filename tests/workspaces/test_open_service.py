"""The Open button: a web service of one's own workspace, opened logged in through the
portal, at the address it has at click time (a restart moves it to another port). The
button POSTs, so another site cannot make the owner's browser open it (and audit it)."""

import html
from http import HTTPStatus

import pytest
from django.test import Client
from django.urls import reverse

from pools.lifecycle import State
from portal.models import AuditEntry
from portal.roles import Role
from profiles.models import ServicesProfile
from services import tasks
from services.models import ServiceDeployment

TOKEN = "s3cret+token"


@pytest.fixture
def jupyter(member, starter, workspace_factory):
    """A ready workspace of `member` whose JupyterLab runs on port 4321."""
    workspace = workspace_factory(member, starter, state=State.READY)
    deployment = tasks.create_deployment(
        workspace, ServicesProfile.objects.get(name="Jupyter Notebook"), workspace=workspace
    )
    ServiceDeployment.objects.filter(pk=deployment.pk).update(state=State.READY)
    runs_on(deployment, 4321)
    return workspace


def runs_on(deployment, port: int) -> None:
    url = f"http://127.0.0.1:{port}/lab"
    deployment.components.update(
        status="ready",
        secret=TOKEN,
        endpoints=[{"name": "JupyterLab", "url": url, "token": "query"}],
    )


def open_url(workspace) -> str:
    return reverse("workspaces:open", args=[workspace.pk, "jupyterlab"])


def opened(workspace) -> int:
    entries = AuditEntry.objects.filter(object_id=str(workspace.pk), message="opened JupyterLab")
    return entries.count()


def test_the_owner_is_sent_to_jupyterlab_logged_in_and_the_open_is_audited(client, member, jupyter):
    client.force_login(member)
    response = client.post(open_url(jupyter))
    assert response.status_code == HTTPStatus.FOUND
    assert response["Location"] == "http://127.0.0.1:4321/lab?token=s3cret%2Btoken"
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "no-referrer"
    entry = AuditEntry.objects.get(object_id=str(jupyter.pk), message="opened JupyterLab")
    assert entry.actor == member


def test_a_get_from_another_site_records_and_reveals_nothing_and_shows_the_button(
    client, member, jupyter
):
    """A link or an <img> on another site makes the owner's browser GET the address with
    the owner's cookies: that adds nothing to the audit log, and the token stays here."""
    client.force_login(member)
    response = client.get(
        open_url(jupyter),
        headers={"Referer": "https://evil.example/", "Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == HTTPStatus.OK
    assert opened(jupyter) == 0
    page = response.content.decode()
    assert "s3cret" not in page and "4321" not in page
    assert f'<form method="post" action="{open_url(jupyter)}"' in page
    assert "Open JupyterLab</button>" in page


def test_another_site_cannot_post_the_open_either(member, jupyter):
    forged = Client(enforce_csrf_checks=True)
    forged.force_login(member)
    response = forged.post(open_url(jupyter), headers={"Origin": "https://evil.example"})
    assert response.status_code == HTTPStatus.FORBIDDEN
    assert opened(jupyter) == 0


def test_the_button_of_the_page_a_get_shows_opens_the_service(member, jupyter):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(member)
    page = browser.get(open_url(jupyter))
    token = page.context["csrf_token"]
    response = browser.post(open_url(jupyter), {"csrfmiddlewaretoken": str(token)})
    assert response["Location"] == "http://127.0.0.1:4321/lab?token=s3cret%2Btoken"
    assert opened(jupyter) == 1


def test_after_a_restart_the_same_button_opens_the_new_port(client, member, jupyter):
    client.force_login(member)
    assert client.post(open_url(jupyter))["Location"].startswith("http://127.0.0.1:4321/")
    runs_on(jupyter.service_deployments.get(), 5555)  # started again, on another port
    assert client.post(open_url(jupyter))["Location"].startswith("http://127.0.0.1:5555/lab?")


@pytest.mark.parametrize("role", [Role.MEMBER, Role.ORG_ADMIN, Role.VIEWER])
def test_nobody_else_can_open_it_not_even_an_admin(client, user_factory, jupyter, role):
    client.force_login(user_factory("someone", role))
    assert client.post(open_url(jupyter)).status_code == HTTPStatus.NOT_FOUND
    assert client.get(open_url(jupyter)).status_code == HTTPStatus.NOT_FOUND
    assert not AuditEntry.objects.filter(message="opened JupyterLab").exists()


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_service_that_is_not_running_sends_the_owner_back_with_a_message(
    client, member, jupyter, method
):
    jupyter.service_deployments.get().components.update(status="deploying", endpoints=[])
    client.force_login(member)
    response = getattr(client, method)(open_url(jupyter), follow=True)
    assert response.redirect_chain[-1][0] == jupyter.get_absolute_url()
    message = "JupyterLab isn't running in this workspace right now."
    assert message in html.unescape(response.content.decode())
    unknown = reverse("workspaces:open", args=[jupyter.pk, "no-such-thing"])
    sent_back = getattr(client, method)(unknown, follow=True)
    assert sent_back.redirect_chain[-1][0] == jupyter.get_absolute_url()
    assert not AuditEntry.objects.filter(message__startswith="opened").exists()


def test_the_owner_sees_one_open_button_per_web_service(client, member, jupyter):
    """A form that POSTs, in a tab of its own; no link to the address, no token."""
    client.force_login(member)
    button = f'<form method="post" action="{open_url(jupyter)}" class="inline open-service"'
    self_service = client.get(reverse("workspaces:self_service")).content.decode()
    assert self_service.count(button) == 1
    panel = client.get(reverse("workspaces:services", args=[jupyter.pk])).content.decode()
    assert panel.count(button) == 1
    for page in (self_service, panel):
        assert f'href="{open_url(jupyter)}"' not in page
        assert f'{button} target="_blank" rel="noopener">' in page
        assert TOKEN not in page
