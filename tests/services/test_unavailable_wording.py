"""Unavailable components: a data scientist reads plain words and whom to ask; the install
command or the driver's reason is for those who administer profiles (issue 12)."""

from html import unescape
from http import HTTPStatus

import pytest
from django.urls import reverse

from profiles.models import ServiceComponent, ServicesProfile
from services import actions as services
from services import components as catalog
from tests.services.conftest import drive

pytestmark = pytest.mark.django_db

PLAIN = "MLflow isn't available on this machine yet; ask your platform team."
INSTALL = "pip install"


@pytest.fixture
def mlflow_missing(monkeypatch):
    """MLflow's package is not installed on this portal host."""
    mlflow = catalog.component("mlflow")
    monkeypatch.setattr(type(mlflow), "local_packages", ("no_such_package_for_this_test",))
    ok, why = mlflow.local_availability()
    assert not ok and INSTALL in why
    return why


@pytest.fixture
def tracking():
    """A services profile of MLflow alone, offered to everyone."""
    profile = ServicesProfile.objects.create(name="Tracking", slug="tracking", published=True)
    ServiceComponent.objects.create(
        profile=profile, capability=catalog.Capability.EXPERIMENT_TRACKING, component="mlflow"
    )
    return profile


def _panel(client, user, workspace) -> str:
    client.force_login(user)
    response = client.get(reverse("workspaces:services", args=[workspace.pk]))
    assert response.status_code == HTTPStatus.OK
    return unescape(response.content.decode())


def test_a_member_reads_plain_words_on_the_services_panel(
    client, scientist, ready_workspace, mlflow_missing, tracking
):
    panel = _panel(client, scientist, ready_workspace)
    assert PLAIN in panel
    assert "Inference server isn't available on this machine yet" in panel
    assert INSTALL not in panel
    assert "portal host" not in panel
    assert "not available on local infrastructure" not in panel
    assert "For administrators" not in panel


@pytest.mark.parametrize("role_fixture", ["operator", "org_admin"])
def test_an_administrator_also_reads_the_hint(
    request, client, role_fixture, ready_workspace, mlflow_missing, tracking
):
    admin = request.getfixturevalue(role_fixture)
    panel = _panel(client, admin, ready_workspace)
    assert PLAIN in panel
    assert mlflow_missing in panel
    assert "Inference server: not available on local infrastructure" in panel


def test_a_member_whose_deploy_finds_nothing_available_reads_plain_words(
    client, scientist, operator, ready_workspace, mlflow_missing, tracking
):
    client.force_login(scientist)
    response = client.post(
        reverse("workspaces:services_deploy", args=[ready_workspace.pk]),
        {"services_profile": tracking.pk},
    )
    assert response.status_code == HTTPStatus.FOUND
    deployment = services.live_deployment(ready_workspace)
    assert drive(deployment.pk) == "failed: nothing deployable"
    deployment.refresh_from_db()
    assert INSTALL in deployment.failure_reason  # what is stored is the whole reason

    panel = _panel(client, scientist, ready_workspace)
    assert PLAIN in panel
    assert INSTALL not in panel
    assert "portal host" not in panel

    panel = _panel(client, operator, ready_workspace)
    assert PLAIN in panel
    assert mlflow_missing in panel


def test_a_component_may_declare_its_own_plain_words(monkeypatch):
    mlflow = catalog.component("mlflow")
    assert mlflow.unavailable_message() == PLAIN
    monkeypatch.setattr(type(mlflow), "unavailable_plain", "Ask Ops for MLflow.")
    assert mlflow.unavailable_message() == "Ask Ops for MLflow."
