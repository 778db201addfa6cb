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
