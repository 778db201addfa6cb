"""Kubeconfigs (issue 11, findings 1 and 6): inline credentials only, every malformed shape a
field error, checked again when a stored kubeconfig is loaded; and in-cluster mode."""

import base64
import copy
import datetime
from http import HTTPStatus

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.urls import reverse

from profiles.choices import InfrastructureKind
from profiles.forms import InfrastructureForm
from profiles.kubeconfig import MAX_CHARS, KubeconfigError, parse_kubeconfig
from profiles.models import Infrastructure

pytestmark = pytest.mark.django_db


def certificate_and_key(name: str) -> tuple[str, str]:
    """A self-signed certificate and its key, as a kubeconfig holds them (base64 of PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return (
        base64.b64encode(certificate.public_bytes(serialization.Encoding.PEM)).decode(),
        base64.b64encode(pem_key).decode(),
    )


CA, _ = certificate_and_key("cluster-ca")
CLIENT_CERTIFICATE, CLIENT_KEY = certificate_and_key("portal")
GOOD = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [
        {
            "name": "prod",
            "cluster": {"server": "https://10.0.0.1:6443", "certificate-authority-data": CA},
        }
    ],
    "users": [{"name": "admin", "user": {"token": "secret-token"}}],
    "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "admin"}}],
    "current-context": "prod",
}


def with_changes(change) -> str:
    config = copy.deepcopy(GOOD)
    change(config)
    return yaml.safe_dump(config)


def exec_user(marker) -> dict:
    """A user whose credential plugin would write `marker` on the portal's host."""
    credential = (
        '{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential", '
        '"status": {"token": "t"}}'
    )
    return {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "/bin/sh",
            "args": ["-c", f"id > {marker}; echo '{credential}'"],
        }
    }


def form_errors(kubeconfig: str, instance=None, **extra) -> dict:
    data = {
        "name": "Cluster",
        "kind": InfrastructureKind.KUBERNETES,
        "kubernetes_version": "1.31",
        "kubeconfig": kubeconfig,
        "gpus_per_node": "0",
        **extra,
    }
    form = InfrastructureForm(data, instance=instance or Infrastructure())
    form.is_valid()
    return form.errors


def test_an_inline_kubeconfig_is_accepted():
    assert form_errors(yaml.safe_dump(GOOD)) == {}
    cert = {"client-certificate-data": CLIENT_CERTIFICATE, "client-key-data": CLIENT_KEY}
    assert form_errors(with_changes(lambda c: c["users"][0].update(user=cert))) == {}


@pytest.mark.parametrize(
    "server",
    [
        "https://ABC123.gr7.us-east-1.eks.amazonaws.com",  # EKS and GKE give no port: 443
        "https://[fd00::1]:6443",
        "https://rancher.example.com/k8s/clusters/c-m-abc12",  # a proxy's path prefix
    ],
)
def test_an_https_server_with_or_without_a_port_or_path_is_accepted(server):
    text = with_changes(lambda c: c["clusters"][0]["cluster"].update(server=server))
    assert form_errors(text) == {}


def test_a_server_over_http_is_refused():
    """The token, and every answer, would travel unencrypted."""
    text = with_changes(lambda c: c["clusters"][0]["cluster"].update(server="http://k:6443"))
    assert form_errors(text)["kubeconfig"] == [
        "Cluster “prod”'s server must be an https:// URL: over http its credentials and "
        "every answer would travel unencrypted."
    ]


@pytest.mark.parametrize(
    "server", ["https://admin:pw@k:6443", "https://k:6443/?x=1", "https://k:6443#top", "https://k?"]
)
def test_a_server_with_a_user_a_query_or_a_fragment_is_refused(server):
    text = with_changes(lambda c: c["clusters"][0]["cluster"].update(server=server))
    (message,) = form_errors(text)["kubeconfig"]
    assert message == (
        "Cluster “prod”'s server must be https://host or https://host:port (a path is fine), "
        "without a user name, query or fragment."
    )
    assert "pw" not in message


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (  # base64 of "CA", of "CERT", of "KEY": base64, but no certificate or key
            {"cluster": {"certificate-authority-data": "Q0E="}},
            "Cluster “prod”'s certificate-authority-data is not a PEM certificate",
        ),
        (
            {"user": {"client-certificate-data": "Q0VSVA==", "client-key-data": CLIENT_KEY}},
            "User “admin”'s client-certificate-data is not a PEM certificate",
        ),
        (
            {"user": {"client-certificate-data": CLIENT_CERTIFICATE, "client-key-data": "S0VZ"}},
            "User “admin”'s client-key-data is not an unencrypted PEM private key",
        ),
        (  # the CA's certificate where the client's belongs: not the key's certificate
            {"user": {"client-certificate-data": CA, "client-key-data": CLIENT_KEY}},
            "User “admin”'s client-key-data is not the key of its client-certificate-data.",
        ),
    ],
)
def test_certificates_and_keys_that_do_not_load_are_refused_when_saved(where, message):
    """Refused later, they made every call fail as "cannot reach the cluster"."""

    def change(config):
        if "cluster" in where:
            config["clusters"][0]["cluster"].update(where["cluster"])
        else:
            config["users"][0]["user"] = where["user"]

    (error,) = form_errors(with_changes(change))["kubeconfig"]
    assert error.startswith(message)
    assert CLIENT_KEY[:20] not in error and "S0VZ" not in error


@pytest.mark.parametrize(
    ("where", "key", "value", "paste"),
    [
        ("users", "auth-provider", {"name": "oidc", "config": {}}, "token:"),
        ("users", "tokenFile", "/var/run/secrets/token", "Paste the token itself as `token:`"),
        ("users", "client-certificate", "/etc/portal/cert.pem", "client-certificate-data:"),
        ("users", "client-key", "/etc/portal/key.pem", "client-key-data:"),
        ("clusters", "certificate-authority", "/etc/ssl/ca.pem", "certificate-authority-data:"),
        ("users", "username", "admin", "Only inline credentials"),
    ],
)
def test_credentials_outside_the_kubeconfig_are_refused_with_what_to_paste(
    where, key, value, paste
):
    item = "user" if where == "users" else "cluster"
    text = with_changes(lambda c: c[where][0][item].update({key: value}))
    (message,) = form_errors(text)["kubeconfig"]
    assert f"`{key}`" in message and paste in message


def test_an_exec_user_is_refused_at_save_and_its_command_never_runs(tmp_path):
    marker = tmp_path / "x"
    text = with_changes(lambda c: c["users"][0].update(user=exec_user(marker)))
    (message,) = form_errors(text)["kubeconfig"]
    assert "`exec`" in message and "runs a command on the portal's host" in message
    assert "Paste a service account token" in message
    assert not marker.exists()
    assert not Infrastructure.objects.exists()


@pytest.mark.parametrize(
    "shape",
    [
        "contexts: 7",
        "contexts: [{name: [1]}]",
        "current-context: [1]",
        "clusters: {a: b}",
        "clusters: [7]",
        "clusters: [{name: prod, cluster: 7}]",
        "clusters: [{name: prod, cluster: {server: [1]}}]",
        "clusters: [{name: prod, cluster: {server: 'file:///etc/passwd'}}]",
        "clusters: [{name: prod, cluster: {server: 'https://[::1'}}]",
        "clusters: [{name: prod, cluster: {server: 'https://k:abc'}}]",
        "clusters: [{name: prod, cluster: {server: 'https://k:99999'}}]",
        'clusters: [{name: prod, cluster: {server: "https://k\\n:6443"}}]',
        "users: [{name: admin, user: [token]}]",
        "users: [{name: admin, user: {token: [1]}}]",
        "users: [{name: admin, user: {token: ''}}]",
        'users: [{name: admin, user: {token: "secret\\nX-Extra: 1"}}]',
        "users: [{name: admin, user: {client-certificate-data: '!!', client-key-data: S0VZ}}]",
        "users: [{name: admin, user: {client-key-data: S0VZ}}]",
        "contexts: [{name: prod, context: {cluster: nowhere, user: admin}}]",
        "contexts: [{name: prod, context: {cluster: prod, user: [1]}}]",
        "contexts: [{name: prod, context: {cluster: prod, user: admin}}, "
        "{name: prod, context: {cluster: prod, user: admin}}]",
        "kind: [Config]",
        "insecure: true\nclusters: [{name: prod, cluster: "
        "{server: 'https://a', insecure-skip-tls-verify: 'yes'}}]",
    ],
)
def test_every_malformed_shape_is_a_field_error_not_a_500(shape):
    config = copy.deepcopy(GOOD)
    config.update(yaml.safe_load(shape))
    errors = form_errors(yaml.safe_dump(config))
    assert list(errors) == ["kubeconfig"], errors
    with pytest.raises(KubeconfigError):
        parse_kubeconfig(yaml.safe_dump(config))


@pytest.mark.parametrize(
    "text",
    [
        "7",
        "[1, 2]",
        "'just text'",
        "{not: [yaml",
        "\x00",
        "a: b",
        "[" * 5000 + "]" * 5000,  # PyYAML recurses once per level
        "a: 1" + "0" * 5000,  # more digits than int() reads
        "a: !!timestamp x",
        "a: " + "x" * MAX_CHARS,
    ],
)
def test_things_that_are_not_kubeconfigs_are_field_errors(text):
    assert "kubeconfig" in form_errors(text)


@pytest.mark.parametrize("token", ["secret-token\n", "secret-token\nX-Extra: 1", "secret token"])
def test_a_token_that_is_not_one_word_is_refused_without_quoting_it(token):
    """http.client refuses such a header, quoting it: the token reached health reasons."""
    text = with_changes(lambda c: c["users"][0]["user"].update(token=token))
    (message,) = form_errors(text)["kubeconfig"]
    assert "token contains a space, a line break or a control character" in message
    assert "secret" not in message


def test_a_yaml_error_says_where_without_quoting_the_pasted_text():
    text = yaml.safe_dump(GOOD).replace("token: secret-token", 'token: "secret-token')
    (message,) = form_errors(text)["kubeconfig"]
    assert message.startswith("This is not valid YAML: ") and "(line " in message
    assert "secret" not in message


def test_a_stored_kubeconfig_from_before_the_rule_must_be_replaced_on_edit(tmp_path):
    marker = tmp_path / "x"
    text = with_changes(lambda c: c["users"][0].update(user=exec_user(marker)))
    stored = Infrastructure.objects.create(
        name="Cluster",
        kind=InfrastructureKind.KUBERNETES,
        kubeconfig=text,
        kubernetes_version="1.31",
    )
    errors = form_errors("", instance=stored)  # left blank: keeps the stored one
    assert "`exec`" in errors["kubeconfig"][0]
    assert form_errors(yaml.safe_dump(GOOD), instance=stored) == {}
    assert not marker.exists()


# --- in-cluster mode ---------------------------------------------------------------------


@pytest.fixture
def service_account(tmp_path, monkeypatch):
    """A pod's service account as Kubernetes mounts it, and the environment it sets."""
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "token").write_text("pod-token")
    (directory / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setattr("profiles.kubeconfig.SERVICE_ACCOUNT_DIR", directory)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")
    return directory


def test_in_cluster_mode_needs_no_kubeconfig_when_the_portal_runs_in_a_pod(service_account):
    form = InfrastructureForm(
        {
            "name": "Home cluster",
            "kind": InfrastructureKind.KUBERNETES,
            "kubernetes_version": "1.31",
            "in_cluster": "on",
            "gpus_per_node": "0",
        },
        instance=Infrastructure(),
    )
    assert form.is_valid(), form.errors
    infrastructure = form.save()
    assert infrastructure.in_cluster and infrastructure.kubeconfig == ""
    assert infrastructure.usability() == (True, "")
    assert infrastructure.location == "in-cluster"


def test_in_cluster_mode_is_refused_outside_a_pod(tmp_path, monkeypatch):
    monkeypatch.setattr("profiles.kubeconfig.SERVICE_ACCOUNT_DIR", tmp_path)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    errors = form_errors("", in_cluster="on")
    assert "not running in a Kubernetes pod" in errors["in_cluster"][0]
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    errors = form_errors("", in_cluster="on")
    assert "no service account token" in errors["in_cluster"][0]


def test_in_cluster_mode_and_a_pasted_kubeconfig_exclude_each_other(service_account):
    errors = form_errors(yaml.safe_dump(GOOD), in_cluster="on")
    assert "Leave this empty" in errors["kubeconfig"][0]


def test_switching_to_in_cluster_mode_removes_the_stored_kubeconfig(service_account):
    stored = Infrastructure.objects.create(
        name="Cluster",
        kind=InfrastructureKind.KUBERNETES,
        kubeconfig=yaml.safe_dump(GOOD),
        kubernetes_version="1.31",
    )
    data = {
        "name": "Cluster",
        "kind": InfrastructureKind.KUBERNETES,
        "kubernetes_version": "1.31",
        "in_cluster": "on",
        "gpus_per_node": "0",
    }
    form = InfrastructureForm(data, instance=stored)
    assert form.is_valid(), form.errors
    form.save()
    stored.refresh_from_db()
    assert stored.in_cluster and stored.kubeconfig == ""


@pytest.mark.parametrize(
    "shape", ["contexts: 7", "contexts: [{name: [1]}]", "current-context: [1]"]
)
def test_the_reported_shapes_redisplay_the_form_instead_of_a_500(admin_client, shape):
    """Issue 11, finding 6: these three gave a 500 on the create page."""
    config = copy.deepcopy(GOOD)
    config.update(yaml.safe_load(shape))
    data = {
        "name": "Cluster",
        "kind": InfrastructureKind.KUBERNETES,
        "kubernetes_version": "1.31",
        "kubeconfig": yaml.safe_dump(config),
        "gpus_per_node": "0",
    }
    response = admin_client.post(reverse("profiles:infrastructure_add"), data)
    assert response.status_code == HTTPStatus.OK
    assert "kubeconfig" in response.context["form"].errors
    assert not Infrastructure.objects.exists()


@pytest.mark.parametrize(
    "text",
    [
        "[" * 5000 + "]" * 5000,
        with_changes(lambda c: c["clusters"][0]["cluster"].update(server="https://[::1")),
        yaml.safe_dump(GOOD).replace("token: secret-token", 'token: "secret-token'),
    ],
)
def test_hostile_kubeconfigs_redisplay_the_form_without_the_secret(admin_client, text):
    data = {
        "name": "Cluster",
        "kind": InfrastructureKind.KUBERNETES,
        "kubernetes_version": "1.31",
        "kubeconfig": text,
        "gpus_per_node": "0",
    }
    response = admin_client.post(reverse("profiles:infrastructure_add"), data)
    assert response.status_code == HTTPStatus.OK
    assert "kubeconfig" in response.context["form"].errors
    assert "secret-token" not in response.content.decode()
    assert not Infrastructure.objects.exists()


def test_an_exec_kubeconfig_posted_to_the_create_page_is_refused(admin_client, tmp_path):
    marker = tmp_path / "x"
    data = {
        "name": "Cluster",
        "kind": InfrastructureKind.KUBERNETES,
        "kubernetes_version": "1.31",
        "kubeconfig": with_changes(lambda c: c["users"][0].update(user=exec_user(marker))),
        "gpus_per_node": "0",
    }
    response = admin_client.post(reverse("profiles:infrastructure_add"), data)
    assert response.status_code == HTTPStatus.OK
    assert "runs a command on the portal&#x27;s host" in response.content.decode()
    assert not Infrastructure.objects.exists() and not marker.exists()
