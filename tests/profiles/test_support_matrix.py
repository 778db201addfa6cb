from http import HTTPStatus

import pytest
from django.urls import reverse

from profiles import catalog

pytestmark = pytest.mark.django_db


def test_support_matrix_is_generated_from_the_catalog(admin_client):
    response = admin_client.get(reverse("profiles:support_matrix"))
    assert response.status_code == HTTPStatus.OK
    page = response.content.decode()
    for provider in catalog.PROVIDERS.values():
        assert provider.name in page
        for version in provider.kubernetes_versions:
            assert version in page
    for gpu in catalog.GPU_MODELS.values():
        assert gpu.name in page
    for os_name in catalog.OPERATING_SYSTEMS.values():
        assert os_name in page
    assert "p4d.24xlarge" in page


def test_the_matrix_separates_configuring_from_provisioning(admin_client):
    page = admin_client.get(reverse("profiles:support_matrix")).content.decode()
    provisioning = {(row.kind, row.code) for row in catalog.support_rows() if row.provisions}
    assert provisioning == {("public_cloud", "aws"), ("kubernetes", ""), ("local", "")}
    for row in catalog.support_rows():
        marker = f'data-kind="{row.kind}" data-code="{row.code}" data-provisions="'
        assert marker + ("yes" if row.provisions else "no") + '"' in page, row
    assert 'data-code="azure" data-provisions="no"><td>Microsoft Azure</td><td>Yes</td>' in page
    assert page.count("(configuration only)") == 6  # Azure, GCP, OCI, vSphere, Nutanix, bare metal
