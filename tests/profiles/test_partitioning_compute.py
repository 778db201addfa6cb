"""Compute profiles may only ask for MIG slices that the infrastructure's partitioning
provides, and no more than a node group offers."""

from http import HTTPStatus

import pytest
from django.urls import reverse

from profiles.forms.compute import ComputeProfileForm, ResourceGroupForm
from profiles.models import ComputeProfile
from tests.profiles.test_compute_profiles import group, post, profile_data

pytestmark = pytest.mark.django_db


def page_of(response) -> str:
    assert response.status_code == HTTPStatus.OK
    return response.content.decode()


def test_an_unpartitioned_gpu_offers_no_slices(admin_client, aws_infrastructure):
    data = profile_data(aws_infrastructure, [group(mig_profile="3g.20gb", count=2)])
    page = page_of(post(admin_client, data))
    assert (
        "The partitioning of AWS test offers no 3g.20gb slices of A100-40GB; partition it first."
        in page
    )
    assert not ComputeProfile.objects.exists()


def test_a_partitioning_without_that_profile_offers_no_slices(
    admin_client, aws_infrastructure, partitioning_factory
):
    partitioning_factory(aws_infrastructure, layout_name="all-1g.5gb")
    data = profile_data(aws_infrastructure, [group(mig_profile="3g.20gb", count=2)])
    assert "offers no 3g.20gb slices of A100-40GB" in page_of(post(admin_client, data))


def test_whole_gpu_partitioning_offers_no_slices(
    admin_client, aws_infrastructure, partitioning_factory
):
    partitioning_factory(aws_infrastructure, mode="whole")
    data = profile_data(aws_infrastructure, [group(mig_profile="1g.5gb", count=1)])
    assert "offers no 1g.5gb slices of A100-40GB" in page_of(post(admin_client, data))


def test_a_custom_mix_offers_its_profiles(admin_client, aws_infrastructure, partitioning_factory):
    partitioning_factory(
        aws_infrastructure, mode="custom", custom_counts={"4g.20gb": 1, "3g.20gb": 1}
    )
    data = profile_data(aws_infrastructure, [group(mig_profile="4g.20gb", count=8)])
    assert post(admin_client, data).status_code == HTTPStatus.FOUND
    assert ComputeProfile.objects.get().resource_groups.get().mig_profile == "4g.20gb"


def test_a_group_cannot_ask_for_more_slices_than_its_nodes_offer(
    admin_client, aws_infrastructure, partitioning_factory
):
    partitioning_factory(aws_infrastructure, layout_name="all-3g.20gb")  # 2 per GPU, 16 per node
    data = profile_data(aws_infrastructure, [group(mig_profile="3g.20gb", count=17)])
    page = page_of(post(admin_client, data))
    assert "One node offers 16× 3g.20gb (2 on each of its 8 A100-40GB GPUs)" in page
    assert "the count is per node" in page
    # 32 slices: 16 on each of 2 nodes.
    data = profile_data(aws_infrastructure, [group(mig_profile="3g.20gb", count=16, node_count=2)])
    assert post(admin_client, data).status_code == HTTPStatus.FOUND


def test_the_partitioning_of_another_infrastructure_does_not_count(
    admin_client, aws_infrastructure, datacenter_infrastructure, partitioning_factory
):
    partitioning_factory(datacenter_infrastructure, layout_name="all-3g.20gb")
    data = profile_data(aws_infrastructure, [group(mig_profile="3g.20gb", count=1)])
    assert "The partitioning of AWS test offers no 3g.20gb" in page_of(post(admin_client, data))


def test_the_choices_are_what_the_partitioning_provides(aws_infrastructure, partitioning_factory):
    partitioning_factory(aws_infrastructure, layout_name="all-balanced")
    form = ResourceGroupForm(infrastructure=aws_infrastructure)
    values = {
        value for _, options in form.fields["mig_profile"].choices[1:] for value, _ in options
    }
    assert values == {"1g.5gb", "2g.10gb", "3g.20gb"}


def test_the_edit_page_offers_the_profiles_infrastructure_slices(
    admin_client, aws_infrastructure, datacenter_infrastructure, partitioning_factory
):
    partitioning_factory(aws_infrastructure, layout_name="all-3g.20gb")
    partitioning_factory(datacenter_infrastructure, layout_name="all-1g.5gb")
    data = profile_data(aws_infrastructure, [group(mig_profile="3g.20gb", count=2)])
    post(admin_client, data)
    profile = ComputeProfile.objects.get()
    page = admin_client.get(reverse("profiles:computeprofile_edit", args=[profile.pk]))
    html = page.content.decode()
    assert "3g.20gb (2 per A100-40GB GPU)" in html
    assert "1g.5gb (7 per A100-40GB GPU)" not in html  # the data center's, not this one's


def test_a_new_profile_page_offers_every_partitionings_slices(
    admin_client, aws_infrastructure, datacenter_infrastructure, partitioning_factory
):
    partitioning_factory(aws_infrastructure, layout_name="all-3g.20gb")
    partitioning_factory(datacenter_infrastructure, layout_name="all-1g.5gb")
    form = ComputeProfileForm()
    groups = [label for label, _ in form.inline.empty_form.fields["mig_profile"].choices[1:]]
    assert groups == ["A100-40GB on AWS test", "A100-40GB on DC"]


def test_a_stored_slice_stays_selectable_after_the_partitioning_changes(
    admin_client, aws_infrastructure, partitioning_factory
):
    strategy = partitioning_factory(aws_infrastructure, layout_name="all-3g.20gb")
    post(admin_client, profile_data(aws_infrastructure, [group(mig_profile="3g.20gb", count=2)]))
    strategy.layout_name = "all-1g.5gb"
    strategy.save()
    profile = ComputeProfile.objects.get()
    html = admin_client.get(reverse("profiles:computeprofile_edit", args=[profile.pk]))
    assert "3g.20gb (not offered by a partitioning)" in html.content.decode()
