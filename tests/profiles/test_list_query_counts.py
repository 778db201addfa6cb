"""List pages must not run a query per row: pinned at 1,000 rows."""

from http import HTTPStatus

import pytest
from django.urls import reverse

from portal.models import AuditEntry, Team
from profiles.choices import InfrastructureKind
from profiles.models import ComputeProfile, Infrastructure, ResourceGroup, ServicesProfile

pytestmark = pytest.mark.django_db
ROWS = 1000


@pytest.fixture
def many_infrastructure(db):
    Infrastructure.objects.bulk_create(
        Infrastructure(
            name=f"dc-{n:04}",
            kind=InfrastructureKind.DATA_CENTER,
            platform="baremetal",
            hosts=f"gpu-{n}.example",
            gpu_model="H100-80GB",
            gpus_per_node=8,
        )
        for n in range(ROWS)
    )
    return Infrastructure.objects.first()


@pytest.fixture
def many_profiles(many_infrastructure):
    profiles = ComputeProfile.objects.bulk_create(
        ComputeProfile(name=f"p-{n:04}", slug=f"p-{n:04}", infrastructure=many_infrastructure)
        for n in range(ROWS)
    )
    ResourceGroup.objects.bulk_create(
        ResourceGroup(profile=p, gpu_model="H100-80GB", gpu_count=1) for p in profiles
    )


@pytest.mark.parametrize(
    ("url_name", "fixture", "max_queries"),
    [
        ("profiles:infrastructure_list", "many_infrastructure", 12),
        ("profiles:computeprofile_list", "many_profiles", 14),
        ("profiles:servicesprofile_list", "many_services", 12),
        ("portal:auditentry_list", "many_audit_entries", 12),
        ("portal:team_list", "many_teams", 12),
    ],
)
def test_list_page_query_count_does_not_grow_with_rows(
    request, admin_client, django_assert_max_num_queries, url_name, fixture, max_queries
):
    request.getfixturevalue(fixture)
    with django_assert_max_num_queries(max_queries):
        response = admin_client.get(
            reverse(url_name), {"sort": "name"} if "audit" not in url_name else {}
        )
    assert response.status_code == HTTPStatus.OK


@pytest.fixture
def many_services(db):
    profiles = ServicesProfile.objects.bulk_create(
        ServicesProfile(name=f"s-{n:04}", slug=f"s-{n:04}") for n in range(ROWS)
    )
    for profile in profiles[:50]:
        profile.components.create(capability="notebook", component="jupyterlab", version="4.4")


@pytest.fixture
def many_audit_entries(org_admin):
    from django.contrib.contenttypes.models import ContentType

    content_type = ContentType.objects.get_for_model(Infrastructure)
    AuditEntry.objects.bulk_create(
        AuditEntry(
            actor=org_admin,
            actor_name=org_admin.username,
            action="created",
            content_type=content_type,
            object_id=str(n),
            object_repr=f"dc-{n}",
            after={"name": f"dc-{n}"},
        )
        for n in range(ROWS)
    )


@pytest.fixture
def many_teams(db):
    Team.objects.bulk_create(Team(name=f"team-{n:04}") for n in range(ROWS))
