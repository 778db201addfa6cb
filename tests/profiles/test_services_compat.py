"""Services compatibility is per component: how many of a stack's components run where."""

import importlib.util

import pytest
from django.urls import reverse

from profiles.models import ServicesProfile
from services.compat import check_profile

pytestmark = pytest.mark.django_db


@pytest.fixture
def with_mlflow(monkeypatch):
    """This host has MLflow installed (and, for the test, nothing else optional)."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        "importlib.util.find_spec", lambda name, *a: real("json") if name == "mlflow" else None
    )


def test_mlops_on_this_machine_says_which_of_its_components_run(
    admin_client, local_infrastructure, profile_factory, with_mlflow
):
    starter = profile_factory(local_infrastructure, "Starter", published=True)
    mlops = ServicesProfile.objects.get(name="MLOps Platform")
    found = check_profile(mlops, starter)
    assert found.ok
    assert (found.runs, len(found.skipped)) == (["MLflow"], 4)
    assert found.summary == "1 of 5 components runs: MLflow"
    page = admin_client.get(reverse("profiles:servicesprofile_detail", args=[mlops.pk]))
    assert '<td data-testid="runs">1 of 5 components runs: MLflow</td>' in page.content.decode()


def test_every_component_runs_on_kubernetes(aws_infrastructure, profile_factory):
    big = profile_factory(aws_infrastructure, "Big", groups=[("A100-40GB", 8)])
    big.resource_groups.update(storage_gb=500)
    found = check_profile(ServicesProfile.objects.get(name="MLOps Platform"), big)
    assert found.ok, found.errors
    assert found.summary == "All 5 components run"
    assert not found.skipped
