from http import HTTPStatus

import pytest
from django.urls import reverse

from portal.models import AuditEntry
from profiles.models import ComputeProfile
from tests.conftest import formset_data

pytestmark = pytest.mark.django_db


def group(model="A100-40GB", count=8, **fields) -> dict:
    row = {
        "gpu_model": model,
        "gpu_count": str(count),
        "mig_profile": "",
        "cpu": "16",
        "ram_gb": "64",
        "storage_gb": "100",
        "node_count": "1",
        "instance_type": "",
    }
    row.update({k: str(v) for k, v in fields.items()})
    return row


def profile_data(infrastructure, groups, **fields) -> dict:
    data = {
        "name": "Medium",
        "description": "",
        "infrastructure": str(infrastructure.pk),
        "published": "on",
        "allocation_strategy": "on_demand",
        "desired_capacity": "0",
    }
    data.update(fields)
    data.update(formset_data("groups", groups))
    return data


def post(client, data, profile=None):
    if profile is None:
        return client.post(reverse("profiles:computeprofile_add"), data)
    return client.post(reverse("profiles:computeprofile_edit", args=[profile.pk]), data)


def field_error(response) -> str:
    assert response.status_code == HTTPStatus.OK
    return response.content.decode()


def test_creates_the_briefs_heterogeneous_profile(admin_client, aws_infrastructure):
    data = profile_data(
        aws_infrastructure,
        # 64 H100 on 8 nodes: the count is per node, as the drivers give it to each node.
        [group("A100-40GB", 8, cpu=208, storage_gb=800), group("H100-80GB", 8, node_count=8)],
    )
    response = post(admin_client, data)
    assert response.status_code == HTTPStatus.FOUND, response.content.decode()[:3000]
    profile = ComputeProfile.objects.get(name="Medium")
    assert profile.is_heterogeneous
    assert [g.gpu_model for g in profile.resource_groups.all()] == ["A100-40GB", "H100-80GB"]
    assert profile.totals()["gpus"] == 72
    entry = AuditEntry.objects.get(object_id=str(profile.pk))
    assert len(entry.after["resource_groups"]) == 2


def test_rejects_a_gpu_model_the_infrastructure_does_not_offer(admin_client, aws_infrastructure):
    response = post(admin_client, profile_data(aws_infrastructure, [group("L4", 1)]))
    assert "AWS test offers no L4 GPUs" in field_error(response)
    assert not ComputeProfile.objects.exists()


def test_rejects_more_gpus_than_the_nodes_offer(admin_client, aws_infrastructure):
    """The count is per node: 64 on one node (or on each of 8: 512) is more than a node has."""
    for nodes in (1, 8):
        data = profile_data(aws_infrastructure, [group("H100-80GB", 64, node_count=nodes)])
        error = field_error(post(admin_client, data))
        assert "One node offers at most 8× H100-80GB; the GPU count is per node" in error
    assert not ComputeProfile.objects.exists()


def test_rejects_negative_counts(admin_client, aws_infrastructure):
    response = post(admin_client, profile_data(aws_infrastructure, [group(count=-1, cpu=-4)]))
    page = field_error(response)
    assert "Ensure this value is greater than or equal to 0." in page


def test_gpus_need_a_model_and_a_model_needs_gpus(admin_client, aws_infrastructure):
    page = field_error(post(admin_client, profile_data(aws_infrastructure, [group("", 2)])))
    assert "Choose the GPU model these GPUs are." in page
    page = field_error(post(admin_client, profile_data(aws_infrastructure, [group(count=0)])))
    assert "Ask for at least one GPU" in page


def test_a_mig_profile_must_exist_on_that_gpu(
    admin_client, aws_infrastructure, partitioning_factory
):
    partitioning_factory(aws_infrastructure, "A100-40GB", layout_name="all-3g.20gb")
    page = field_error(
        post(
            admin_client,
            profile_data(
                aws_infrastructure, [group(mig_profile="1g.5gb", count=2, model="H100-80GB")]
            ),
        )
    )
    assert "H100-80GB has no MIG profile 1g.5gb" in page
    response = post(
        admin_client, profile_data(aws_infrastructure, [group(mig_profile="3g.20gb", count=2)])
    )
    assert response.status_code == HTTPStatus.FOUND
    assert ComputeProfile.objects.get().totals()["mig_slices"] == 2


def test_a_profile_needs_at_least_one_resource_group(admin_client, aws_infrastructure):
    page = field_error(post(admin_client, profile_data(aws_infrastructure, [])))
    assert "needs at least one resource group" in page


def test_a_warm_pool_needs_capacity_and_on_demand_keeps_none(admin_client, aws_infrastructure):
    data = profile_data(aws_infrastructure, [group()], allocation_strategy="warm_pool")
    assert "at least 1" in field_error(post(admin_client, data))
    data = profile_data(aws_infrastructure, [group()], desired_capacity="3")
    assert "On-demand profiles keep no warm instances" in field_error(post(admin_client, data))
    data = profile_data(
        aws_infrastructure, [group()], allocation_strategy="warm_pool", desired_capacity="2"
    )
    assert post(admin_client, data).status_code == HTTPStatus.FOUND
    assert ComputeProfile.objects.get().desired_capacity == 2


def test_a_warm_pool_keeps_at_most_a_hundred_instances(admin_client, aws_infrastructure):
    data = profile_data(
        aws_infrastructure, [group()], allocation_strategy="warm_pool", desired_capacity="101"
    )
    response = post(admin_client, data)
    assert response.status_code == HTTPStatus.OK
    assert response.context["form"].errors["desired_capacity"] == [
        "Give at most 100 instances: a bigger warm pool is not supported."
    ]
    assert not ComputeProfile.objects.exists()


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"storage_gb": 2_000_000_000}, "storage_gb", "Give at most 1,000,000 GB of storage."),
        ({"node_count": 1001}, "node_count", "Give at most 1,000 nodes in one group."),
        (
            {"gpu_count": 513},  # per node: no node has that many (and the model allows 512)
            "gpu_count",
            "One node offers at most 8× A100-40GB; the GPU count is per node (each of the "
            "group's 2 nodes gets it): for more, raise the node count.",
        ),
        ({"cpu": 1025}, "cpu", "Give at most 1,024 vCPUs."),
        ({"ram_gb": 65_537}, "ram_gb", "Give at most 65,536 GB of RAM."),
    ],
)
def test_resource_groups_are_bounded_so_the_usage_ledger_cannot_overflow(
    admin_client, aws_infrastructure, fields, field, message
):
    # 2,000,000,000 GB on 2 nodes overflowed the ledger's 32-bit storage for everyone.
    row = group("A100-40GB", 8, node_count=2) | {k: str(v) for k, v in fields.items()}
    response = post(admin_client, profile_data(aws_infrastructure, [row]))
    assert response.status_code == HTTPStatus.OK
    assert message in response.context["form"].inline.forms[0].errors[field]
    assert not ComputeProfile.objects.exists()


def test_instance_type_must_carry_the_groups_gpu(admin_client, aws_infrastructure):
    data = profile_data(aws_infrastructure, [group("A100-40GB", 8, instance_type="p5.48xlarge")])
    assert "p5.48xlarge has no A100-40GB GPUs" in field_error(post(admin_client, data))


def test_editing_resources_bumps_the_version_and_audits(
    admin_client, aws_infrastructure, profile_factory
):
    profile = profile_factory(aws_infrastructure, name="Medium", groups=[("A100-40GB", 8)])
    existing = profile.resource_groups.get()
    row = group("A100-40GB", 4) | {"id": str(existing.pk), "profile": str(profile.pk)}
    data = profile_data(aws_infrastructure, [row])
    data["groups-INITIAL_FORMS"] = "1"
    response = post(admin_client, data, profile)
    assert response.status_code == HTTPStatus.FOUND, response.content.decode()[:2000]
    profile.refresh_from_db()
    assert profile.version == 2
    assert profile.resource_groups.get().gpu_count == 4
    entry = AuditEntry.objects.get(action="updated")
    assert entry.before["resource_groups"][0]["gpu_count"] == 8
    assert entry.after["resource_groups"][0]["gpu_count"] == 4


def test_toggling_super_sized_bumps_the_version(admin_client, aws_infrastructure, profile_factory):
    profile = profile_factory(aws_infrastructure, name="Medium", groups=[("A100-40GB", 8)])
    existing = profile.resource_groups.get()
    row = group("A100-40GB", 8) | {"id": str(existing.pk), "profile": str(profile.pk)}
    data = profile_data(aws_infrastructure, [row], super_sized="on")
    data["groups-INITIAL_FORMS"] = "1"
    assert post(admin_client, data, profile).status_code == HTTPStatus.FOUND
    profile.refresh_from_db()
    assert (profile.super_sized, profile.version) == (True, 2)
    del data["super_sized"]
    assert post(admin_client, data, profile).status_code == HTTPStatus.FOUND
    profile.refresh_from_db()
    assert (profile.super_sized, profile.version) == (False, 3)
    assert post(admin_client, data, profile).status_code == HTTPStatus.FOUND  # no change
    profile.refresh_from_db()
    assert profile.version == 3


def test_deleting_a_group_through_the_formset(admin_client, aws_infrastructure, profile_factory):
    profile = profile_factory(
        aws_infrastructure, name="Medium", groups=[("A100-40GB", 8), ("H100-80GB", 8)]
    )
    rows = [
        group("A100-40GB", 8) | {"id": str(g.pk), "profile": str(profile.pk)}
        for g in profile.resource_groups.all()
    ]
    rows[1]["DELETE"] = "on"
    data = profile_data(aws_infrastructure, rows)
    data["groups-INITIAL_FORMS"] = "2"
    assert post(admin_client, data, profile).status_code == HTTPStatus.FOUND
    assert profile.resource_groups.count() == 1


def test_list_detail_and_filters(admin_client, aws_infrastructure, profile_factory):
    profile_factory(aws_infrastructure, name="Medium", groups=[("A100-40GB", 8)])
    profile_factory(aws_infrastructure, name="Large", groups=[("H100-80GB", 8)])
    url = reverse("profiles:computeprofile_list")
    response = admin_client.get(url, {"gpu_model": "H100-80GB"})
    assert b"Large" in response.content
    assert b"Medium" not in response.content
    profile = ComputeProfile.objects.get(name="Large")
    response = admin_client.get(reverse("profiles:computeprofile_detail", args=[profile.pk]))
    assert b"<td>H100-80GB</td><td>8</td>" in response.content
    assert b"Its infrastructure is not usable yet" in response.content


def test_delete_lists_its_resource_groups(admin_client, aws_infrastructure, profile_factory):
    profile = profile_factory(aws_infrastructure, name="Medium", groups=[("A100-40GB", 8)])
    url = reverse("profiles:computeprofile_delete", args=[profile.pk])
    assert b"Resource group" in admin_client.get(url).content
    assert admin_client.post(url).status_code == HTTPStatus.FOUND
    assert not ComputeProfile.objects.exists()


def test_a_name_whose_slug_another_profile_has_is_refused_next_to_the_field(
    admin_client, aws_infrastructure
):
    first = profile_data(aws_infrastructure, [group()], name="Medium GPU")
    assert post(admin_client, first).status_code == HTTPStatus.FOUND
    response = post(admin_client, profile_data(aws_infrastructure, [group()], name="medium-gpu"))
    assert response.status_code == HTTPStatus.OK
    (message,) = response.context["form"].errors["name"]
    assert "This name is too close to “Medium GPU”" in message
    response = post(admin_client, profile_data(aws_infrastructure, [group()], name="中型"))
    assert "at least one letter or digit" in response.context["form"].errors["name"][0]
    assert list(ComputeProfile.objects.values_list("name", flat=True)) == ["Medium GPU"]


def test_renaming_a_profile_keeps_its_slug(admin_client, aws_infrastructure, profile_factory):
    profile = profile_factory(aws_infrastructure, name="Medium", groups=[("A100-40GB", 8)])
    profile_factory(aws_infrastructure, name="Large", groups=[("A100-40GB", 8)])
    existing = profile.resource_groups.get()
    row = group("A100-40GB", 8) | {"id": str(existing.pk), "profile": str(profile.pk)}
    data = profile_data(aws_infrastructure, [row], name="large")  # Large's slug: not taken
    data["groups-INITIAL_FORMS"] = "1"
    assert post(admin_client, data, profile).status_code == HTTPStatus.FOUND
    profile.refresh_from_db()
    assert (profile.name, profile.slug) == ("large", "medium")
