from http import HTTPStatus

import pytest
from django.db import connection
from django.urls import reverse

from portal.crypto import decrypt, encrypt
from profiles.choices import InfrastructureKind
from profiles.models import Infrastructure

pytestmark = pytest.mark.django_db

KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster: {server: "https://10.0.0.1:6443"}
users:
- name: admin
  user: {token: very-secret-kube-token}
contexts:
- name: prod
  context: {cluster: prod, user: admin}
current-context: prod
"""


def raw_row(infrastructure) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT credentials, kubeconfig FROM profiles_infrastructure WHERE id = %s",
            [infrastructure.pk],
        )
        return " ".join(str(value) for value in cursor.fetchone())


def test_encrypt_round_trips_and_hides_the_plaintext():
    stored = encrypt("s3cret")
    assert "s3cret" not in stored
    assert decrypt(stored) == "s3cret"


def test_decrypt_refuses_values_that_are_not_encrypted():
    with pytest.raises(ValueError, match="not Fernet-encrypted"):
        decrypt("plain")


def test_secrets_are_encrypted_in_the_database_row():
    infrastructure = Infrastructure.objects.create(
        name="cluster",
        kind=InfrastructureKind.KUBERNETES,
        kubeconfig=KUBECONFIG,
        credentials={"secret_access_key": "aws-very-secret"},
    )
    row = raw_row(infrastructure)
    assert "very-secret-kube-token" not in row
    assert "aws-very-secret" not in row
    assert row.count("fernet:") == 2
    infrastructure.refresh_from_db()
    assert infrastructure.kubeconfig == KUBECONFIG
    assert infrastructure.credentials == {"secret_access_key": "aws-very-secret"}


def test_secrets_are_never_rendered_back(admin_client):
    infrastructure = Infrastructure.objects.create(
        name="cluster",
        kind=InfrastructureKind.KUBERNETES,
        kubernetes_version="1.31",
        kubeconfig=KUBECONFIG,
    )
    for name in ("profiles:infrastructure_detail", "profiles:infrastructure_edit"):
        response = admin_client.get(reverse(name, args=[infrastructure.pk]))
        assert response.status_code == HTTPStatus.OK
        page = response.content.decode()
        assert "very-secret-kube-token" not in page
        assert "Set" in page
