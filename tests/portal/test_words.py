"""Words and labels people read (issue 18): plurals, human type and field names, no
Python reprs, "Any" for a blank filter choice, names instead of codes."""

from datetime import timedelta
from http import HTTPStatus
from zoneinfo import ZoneInfo

import pytest
from django.template import Context, Template
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from portal import audit
from portal.text import plural
from profiles.choices import InfrastructureKind
from profiles.models import Infrastructure

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("count", "expected"),
    [(0, "0 GPUs"), (1, "1 GPU"), (2, "2 GPUs")],
)
def test_a_count_agrees_with_its_noun(count, expected):
    assert plural(count, "GPU") == expected


def test_an_irregular_plural_is_given():
    assert plural(1, "entry", "entries") == "1 entry"
    assert plural(3, "entry", "entries") == "3 entries"


def test_the_audit_log_names_types_and_shows_resource_groups_in_words(
    admin_client, org_admin, aws_infrastructure, profile_factory
):
    profile = profile_factory(aws_infrastructure, "Big", groups=(("A100-40GB", 1),))
    tracker = audit.ChangeTracker(profile)
    profile.resource_groups.update(gpu_count=2)
    profile.published = True
    profile.save()
    entry = tracker.record(org_admin)
    listing = admin_client.get(reverse("portal:auditentry_list")).content.decode()
    assert "<td>Compute profile</td>" in listing
    assert ">computeprofile<" not in listing
    page = admin_client.get(entry.get_absolute_url()).content.decode()
    assert "{&#x27;" not in page and "[{" not in page  # no Python reprs
    # One line per resource group, its keys in words (PostgreSQL's jsonb keeps no order).
    for words in ("<td>1. ", "GPU model: A100-40GB", "GPU count: 2", "RAM (GB): 4"):
        assert words in page
    assert "<td>Resource groups</td>" in page
    assert "<td>Published</td><td>no</td><td>yes</td>" in page


def test_the_audit_type_filter_lists_human_names(admin_client):
    page = admin_client.get(reverse("portal:auditentry_list")).content.decode()
    assert ">Compute profile</option>" in page
    assert "profiles | compute profile" not in page


def test_a_yes_no_filter_reads_any_when_blank(admin_client):
    page = admin_client.get(reverse("profiles:computeprofile_list")).content.decode()
    assert '<option value="unknown" selected>Any</option>' in page
    assert ">Unknown<" not in page


def test_the_support_matrix_names_each_gpu_once(admin_client):
    page = admin_client.get(reverse("profiles:support_matrix")).content.decode()
    assert "<td>NVIDIA T4</td>" in page
    assert "NVIDIA T4 <code>T4</code>" not in page
    assert "<td>NVIDIA A100 40GB</td>" in page  # p4d.24xlarge's GPU in the instance types


def test_the_infrastructure_page_shows_operating_system_and_gpu_names(admin_client):
    rack = Infrastructure.objects.create(
        name="Rack",
        kind=InfrastructureKind.DATA_CENTER,
        platform="baremetal",
        operating_system="ubuntu-22.04",
        gpu_model="H100-80GB",
        gpus_per_node=8,
    )
    response = admin_client.get(rack.get_absolute_url())
    assert response.status_code == HTTPStatus.OK
    page = response.content.decode()
    assert "<td>Ubuntu 22.04 LTS</td>" in page
    assert "8× NVIDIA H100 80GB" in page


@override_settings(TIME_ZONE="Europe/Berlin")
def test_times_show_in_the_organisations_time_zone_with_a_relative_hint():
    moment = timezone.now() - timedelta(minutes=3)
    html = Template("{% load portal_tags %}{{ moment|when }}").render(Context({"moment": moment}))
    local = timezone.localtime(moment, ZoneInfo("Europe/Berlin"))
    assert f'datetime="{local.isoformat()}"' in html
    assert local.strftime("%H:%M") in html and "CET" in html  # the zone's name in the title
    assert "(3\xa0minutes ago)" in html
