"""An API PATCH is audited as the edit page audits it: "after" is what was saved, child
rows (resource groups, components) included."""

from http import HTTPStatus

import pytest

from portal.models import AuditAction, AuditEntry
from profiles.models import ServicesProfile

PROFILES = "/api/v1/compute-profiles/"
SERVICES = "/api/v1/services-profiles/"


@pytest.fixture
def operator_api(operator, api_for):
    return api_for(operator)


def _patch(api, url: str, body: dict):
    return api.patch(url, body, **{"If-Match": api.get(url)["ETag"]})


def _updated(obj) -> AuditEntry:
    return AuditEntry.objects.get(action=AuditAction.UPDATED, object_id=str(obj.pk))


def test_a_patch_of_resource_groups_records_the_new_groups_as_after(
    operator_api, local_infrastructure, profile_factory
):
    starter = profile_factory(local_infrastructure, "Starter", published=True)

    response = _patch(
        operator_api, f"{PROFILES}{starter.pk}/", {"resource_groups": [{"cpu": 16, "ram_gb": 64}]}
    )

    assert response.status_code == HTTPStatus.OK, response.content
    entry = _updated(starter)
    assert entry.before["resource_groups"][0]["cpu"] != 16
    assert entry.after["resource_groups"][0]["cpu"] == 16


def test_a_patch_adding_a_component_records_the_new_components_as_after(operator_api):
    profile = ServicesProfile.objects.create(name="Notebooks")
    profile.components.create(position=0, capability="notebook", component="jupyterlab")
    components = [
        {"capability": "notebook", "component": "jupyterlab"},
        {"capability": "experiment_tracking", "component": "mlflow"},
    ]

    response = _patch(operator_api, f"{SERVICES}{profile.pk}/", {"components": components})

    assert response.status_code == HTTPStatus.OK, response.content
    entry = _updated(profile)
    assert [c["component"] for c in entry.before["components"]] == ["jupyterlab"]
    assert [c["component"] for c in entry.after["components"]] == ["jupyterlab", "mlflow"]
