"""A checkbox of the API takes a JSON boolean: true, false or null. Any other value (0, "0",
"no", "off", "false") is a 400 naming the field, never read as ticked."""

from http import HTTPStatus

import pytest

from pools import partitions
from profiles.choices import InfrastructureKind
from profiles.models import Infrastructure, PartitioningStrategy

pytestmark = pytest.mark.django_db

NOT_BOOLEANS = [0, 1, "0", "no", "off", "false", "true", [], {}]


@pytest.fixture
def starter(local_infrastructure, profile_factory):
    return profile_factory(local_infrastructure, "Starter", published=True)


def patch_infrastructure(api, infrastructure, body):
    url = f"/api/v1/infrastructure/{infrastructure.pk}/"
    return api.patch(url, body, **{"If-Match": api.get(url)["ETag"]})


@pytest.mark.parametrize("value", NOT_BOOLEANS)
def test_a_checkbox_given_anything_but_a_json_boolean_is_a_400_and_changes_nothing(
    org_admin, api_for, local_infrastructure, value
):
    """Django's checkbox reads every string but "false" and "" as ticked: `0`, "no" or
    "off" would switch the single-user host on, offering unisolated workspaces to all."""
    response = patch_infrastructure(
        api_for(org_admin), local_infrastructure, {"single_user_host": value}
    )

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["errors"]["single_user_host"] == ["Give true or false."]
    local_infrastructure.refresh_from_db()
    assert not local_infrastructure.single_user_host


@pytest.mark.parametrize(("value", "stored"), [(True, True), (False, False), (None, False)])
def test_a_checkbox_takes_true_false_and_null(
    org_admin, api_for, local_infrastructure, value, stored
):
    local_infrastructure.single_user_host = not stored
    local_infrastructure.save()
    response = patch_infrastructure(
        api_for(org_admin), local_infrastructure, {"single_user_host": value}
    )

    assert response.status_code == HTTPStatus.OK, response.content
    local_infrastructure.refresh_from_db()
    assert local_infrastructure.single_user_host is stored


def test_publishing_a_compute_profile_takes_only_a_json_boolean(operator, api_for, starter):
    api = api_for(operator)
    url = f"/api/v1/compute-profiles/{starter.pk}/"
    response = api.patch(url, {"published": "no"}, **{"If-Match": api.get(url)["ETag"]})

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["errors"]["published"] == ["Give true or false."]


@pytest.mark.parametrize("value", ["false", "no", 0, "0"])
def test_draining_a_node_takes_only_a_json_boolean(org_admin, api_for, value):
    """Python reads "false" and "no" as true: such a body drained the node."""
    infrastructure = Infrastructure.objects.create(name="GPUs", kind=InfrastructureKind.KUBERNETES)
    strategy = PartitioningStrategy.objects.create(
        infrastructure=infrastructure, gpu_model="A100-40GB", nodes="gpu-1"
    )
    url = f"/api/v1/partitioning/{strategy.pk}/drain/"
    response = api_for(org_admin).post(url, {"node": "gpu-1", "draining": value})

    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert response.json()["errors"]["draining"] == ["Give true or false."]
    assert partitions.node_accepts_workspaces(infrastructure, "gpu-1")


def test_draining_a_node_with_true_drains_it(org_admin, api_for):
    infrastructure = Infrastructure.objects.create(name="GPUs", kind=InfrastructureKind.KUBERNETES)
    strategy = PartitioningStrategy.objects.create(
        infrastructure=infrastructure, gpu_model="A100-40GB", nodes="gpu-1"
    )
    url = f"/api/v1/partitioning/{strategy.pk}/drain/"
    response = api_for(org_admin).post(url, {"node": "gpu-1", "draining": True})

    assert response.status_code == HTTPStatus.OK, response.content
    assert not partitions.node_accepts_workspaces(infrastructure, "gpu-1")
