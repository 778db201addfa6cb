"""The schema and the docs are served by the portal itself (no CDN), and no secret ever
appears in an API response: cloud credentials, kubeconfigs, SSH keys and passwords, the SSO
client secret, workspace and component secrets (the owner reads theirs on the reveal call)."""

import re
from http import HTTPStatus

import pytest
from django.test import Client

from pools.lifecycle import State
from portal.models import SsoConfiguration
from profiles.choices import InfrastructureKind
from profiles.models import Infrastructure, ServicesProfile
from services.models import ComponentStatus
from services.tasks import create_deployment

SECRETS = {
    "aws-secret": "AKIA-and-the-secret-access-key-0123456789",
    "kubeconfig": "certificate-authority-data: c2VjcmV0LWNh",
    "ssh": "-----BEGIN OPENSSH PRIVATE KEY-----b3BlbnNzaC1rZXk",
    "password": "vsphere-password-hunter2",
    "sso": "okta-client-secret-7f3a9",
    "workspace": "jupyter-token-5e1d",
    "component": "mlflow-password-a8c2",
}


def test_the_docs_are_served_from_the_portals_own_static_files(client, member):
    client.force_login(member)

    page = client.get("/api/docs/")

    assert page.status_code == HTTPStatus.OK
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.content.decode())
    assert sources and all(s.startswith("/") for s in sources), sources
    assert any("drf_spectacular_sidecar/swagger-ui-dist" in s for s in sources)
    for script in (s for s in sources if s.endswith(".js") or "script" in s):
        assert client.get(script).status_code == HTTPStatus.OK, script


@pytest.mark.django_db
def test_the_schema_needs_a_login_or_a_token():
    assert Client().get("/api/schema/").status_code == HTTPStatus.UNAUTHORIZED


@pytest.fixture
def everything_secret(member, user_factory, profile_factory, workspace_factory):
    """One object holding each kind of secret, visible to the Org admin's API."""
    Infrastructure.objects.create(
        name="Cloud",
        kind=InfrastructureKind.PUBLIC_CLOUD,
        provider="aws",
        region="us-east-1",
        credentials={"access_key_id": "AKIA1", "secret_access_key": SECRETS["aws-secret"]},
    )
    Infrastructure.objects.create(
        name="Cluster", kind=InfrastructureKind.KUBERNETES, kubeconfig=SECRETS["kubeconfig"]
    )
    local = Infrastructure.objects.create(
        name="Rack",
        kind=InfrastructureKind.DATA_CENTER,
        ssh_private_key=SECRETS["ssh"],
        password=SECRETS["password"],
    )
    config = SsoConfiguration.load()
    config.client_secret = SECRETS["sso"]
    config.save()
    profile = profile_factory(local, published=True)
    workspace = workspace_factory(member, profile, state=State.READY, secret=SECRETS["workspace"])
    deployment = create_deployment(
        workspace, ServicesProfile.objects.get(slug="jobs"), workspace=workspace
    )
    deployment.components.update(status=ComponentStatus.READY, secret=SECRETS["component"])
    return workspace


def _every_response(api, schema_paths: list[str], ids: dict) -> str:
    seen = []
    for template in schema_paths:
        resource = template.split("/")[3]
        path = re.sub(r"\{[^}]+\}", str(ids.get(resource, 1)), template)
        seen.append(api.get(path).content.decode())
    return "\n".join(seen)


def test_no_secret_appears_in_any_api_response(
    org_admin, member, api_for, everything_secret, client
):
    client.force_login(org_admin)
    schema = client.get("/api/schema/?format=json").json()
    readable = [path for path, ops in schema["paths"].items() if "get" in ops]
    ids = {"workspaces": everything_secret.pk}
    admin, owner = api_for(org_admin), api_for(member)

    seen = _every_response(admin, readable, ids) + _every_response(owner, readable, ids)
    seen += admin.post(f"/api/v1/workspaces/{everything_secret.pk}/secret/").content.decode()

    leaked = [name for name, value in SECRETS.items() if value in seen]
    assert not leaked, f"secrets in API responses: {leaked}"
    assert '"secrets_set"' in seen and '"password":true' in seen.replace(" ", "")
    revealed = owner.post(f"/api/v1/workspaces/{everything_secret.pk}/secret/").json()
    assert revealed == {"secret": SECRETS["workspace"]}
