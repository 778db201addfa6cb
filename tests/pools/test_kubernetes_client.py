"""The one Kubernetes client (pools.kube) against the API stand-in: kinds, apply, get, list,
delete, label patches, and its one error mapping."""

import base64
import os
import stat
import tempfile
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from django.test import Client

from pools import isolation, kube, tasks
from pools.drivers.base import GroupSpec, PermanentError, TransientError, WorkspaceSpec
from pools.drivers.kubernetes import KubernetesDriver
from pools.lifecycle import State
from pools.models import Workspace
from profiles.choices import HealthStatus, InfrastructureKind
from profiles.models import Infrastructure
from tests.pools.k8s_stand_in import StandInApiServer

NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ws-1"}}
SPEC = WorkspaceSpec(
    name="ws-7", owner="mia", profile="small", profile_version=1, groups=(GroupSpec(0),)
)


@pytest.fixture
def cluster():
    server = StandInApiServer(version="1.33").start()
    yield server
    server.stop()


@pytest.fixture
def client(cluster):
    return kube.client_for(SimpleNamespace(kubeconfig=cluster.kubeconfig(), in_cluster=False))


def config_map(name="settings", namespace="ws-1", labels=None) -> dict:
    meta = {"name": name, "namespace": namespace, "labels": labels or {"app": "x"}}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"a": "1"}}


def test_apply_creates_then_updates_under_the_field_manager(cluster, client):
    assert client.apply(NAMESPACE) is True
    assert client.apply(NAMESPACE) is False
    assert client.apply(config_map()) is True
    patches = [(m, p) for m, p in cluster.requests if m == "PATCH"]
    assert patches[-1] == ("PATCH", "/api/v1/namespaces/ws-1/configmaps/settings")
    assert cluster.objects[("configmaps", "ws-1", "settings")]["data"] == {"a": "1"}


def test_get_list_and_delete_answer_absence_without_raising(client):
    assert client.get("Namespace", "ws-1") is None
    assert client.list("ConfigMap", "ws-1") == []
    assert client.delete("Namespace", "ws-1") is False
    client.apply(NAMESPACE)
    client.apply(config_map("one", labels={"app": "x"}))
    client.apply(config_map("two", labels={"app": "y"}))
    assert client.get("Namespace", "ws-1")["metadata"]["name"] == "ws-1"
    assert [o["metadata"]["name"] for o in client.list("ConfigMap", "ws-1", "app=y")] == ["two"]
    assert len(client.list("ConfigMap")) == 2  # every namespace
    assert client.delete("ConfigMap", "one", "ws-1") is True
    assert client.get("ConfigMap", "one", "ws-1") is None


def test_names_that_no_object_can_have_never_reach_the_api(cluster, client):
    before = len(cluster.requests)
    assert client.get("Node", "../namespaces/kube-system") is None
    assert client.get("Node", "a\x00b") is None
    assert client.delete("Pod", "x?y", "ws-1") is False
    assert client.list("Pod", "ws 1") == []
    with pytest.raises(PermanentError, match="not a Kubernetes name"):
        client.apply(config_map(name="Bad_Name"))
    assert len(cluster.requests) == before


def test_a_labels_patch_names_only_the_labels():
    body = kube.labels_patch("Node", "gpu-1", {"nvidia.com/mig.config": "all-1g.5gb"})
    assert body == {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "gpu-1", "labels": {"nvidia.com/mig.config": "all-1g.5gb"}},
    }


def test_a_write_into_a_missing_namespace_is_transient(client):
    with pytest.raises(TransientError, match="did not find ConfigMap settings") as error:
        client.apply(config_map())
    assert 'namespaces "ws-1" not found' in error.value.detail


@pytest.mark.parametrize("code", [401, 403])
def test_refused_credentials_are_permanent_with_the_reason(cluster, client, code):
    cluster.refuse = code
    with pytest.raises(PermanentError, match="kubeconfig's credentials were refused") as error:
        client.get("Namespace", "ws-1")
    assert f"refused by the test ({code})" in str(error.value)
    assert error.value.detail.startswith(f"HTTP {code}")


@pytest.mark.parametrize("code", [409, 429, 500, 503])
def test_a_busy_api_is_transient(cluster, client, code):
    cluster.refuse = code
    with pytest.raises(TransientError, match=f"busy \\({code}\\)"):
        client.list("Pod")


def test_an_unreachable_api_is_transient(cluster, client):
    cluster.stop()
    with pytest.raises(TransientError, match="Cannot reach the Kubernetes API"):
        client.get("Namespace", "ws-1")


def test_a_rejected_object_is_permanent_with_the_apis_message(client):
    client.apply(NAMESPACE)
    bad = config_map()
    bad["data"] = {"a": 1}  # data values must be strings
    with pytest.raises(PermanentError, match="The cluster rejected ConfigMap settings") as error:
        client.apply(bad)
    assert "HTTP 422" in error.value.detail


def test_a_huge_message_of_the_api_is_shortened(client):
    """The message is the server's to fill (a webhook's, a proxy's) and goes to the log."""
    client.apply(NAMESPACE)
    bad = config_map(labels={"note": "x" * 5000})  # quoted whole in the API's message
    with pytest.raises(PermanentError) as error:
        client.apply(bad)
    assert len(str(error.value)) < 600
    assert len(error.value.detail) < 600


def test_an_error_before_the_request_is_sent_never_quotes_the_request(client):
    """http.client refuses a header with a line break, quoting it, a token with it."""
    client.api.set_default_header("Impersonate-User", "TOPSECRET\nX-Extra: 1")
    with pytest.raises(
        PermanentError, match="could not send the request for Namespace ws-1"
    ) as error:
        client.get("Namespace", "ws-1")
    assert "ValueError" in str(error.value)
    assert "TOPSECRET" not in f"{error.value} {error.value.detail}"
    assert error.value.__suppress_context__  # a logged traceback does not show it either


def test_kinds_come_from_one_registry_extended_through_a_function():
    assert (
        kube.object_path("StatefulSet", "a", "ns") == "/apis/apps/v1/namespaces/ns/statefulsets/a"
    )
    assert kube.object_path("Pod") == "/api/v1/pods"
    assert kube.object_path("Node", "gpu-1") == "/api/v1/nodes/gpu-1"
    with pytest.raises(ValueError, match="unknown kind"):
        kube.kind("CronJob")
    job = kube.register_kind("CronJob", "batch/v1", "cronjobs", namespaced=True, words="cron job")
    same = kube.register_kind("CronJob", "batch/v1", "cronjobs", namespaced=True, words="cron job")
    assert same == job
    assert kube.object_path("CronJob", "c", "ns") == "/apis/batch/v1/namespaces/ns/cronjobs/c"
    with pytest.raises(ValueError, match="already registered"):
        kube.register_kind("CronJob", "batch/v2", "cronjobs", namespaced=True, words="cron job")


def test_the_stand_in_refuses_other_patch_types_and_apply_without_a_field_manager(client):
    path = kube.object_path("Namespace", "ws-1")
    with pytest.raises(PermanentError) as error:
        client.request("PATCH", path, body=NAMESPACE, content_type="application/merge-patch+json")
    assert "HTTP 415" in error.value.detail
    with pytest.raises(PermanentError) as error:
        client.request("PATCH", path, body=NAMESPACE, content_type="application/apply-patch+yaml")
    assert "fieldManager: Required value" in error.value.detail


# --- loading: kubeconfig over TLS, in-cluster -------------------------------------------


@pytest.fixture
def tls_cluster():
    server = StandInApiServer(version="1.33", token="pod-token", tls=True).start()
    yield server
    server.stop()


@pytest.fixture
def pod(tmp_path, monkeypatch, tls_cluster):
    """The portal's pod: its service account mounted, the API's address in its environment."""
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "token").write_text("pod-token")
    (directory / "ca.crt").write_bytes(tls_cluster.ca_pem)
    monkeypatch.setattr("profiles.kubeconfig.SERVICE_ACCOUNT_DIR", directory)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(tls_cluster.port))
    return directory


def in_cluster_infrastructure() -> Infrastructure:
    return Infrastructure(
        name="Home cluster",
        kind=InfrastructureKind.KUBERNETES,
        in_cluster=True,
        kubernetes_version="1.33",
    )


def test_a_kubeconfig_with_inline_ca_data_talks_tls(tls_cluster):
    client = kube.client_for(SimpleNamespace(kubeconfig=tls_cluster.kubeconfig(), in_cluster=False))
    assert client.host.startswith("https://127.0.0.1:")
    assert client.apply(NAMESPACE) is True


def test_in_cluster_mode_uses_the_pods_service_account(pod, tls_cluster):
    client = kube.client_for(in_cluster_infrastructure())
    assert client.host == f"https://127.0.0.1:{tls_cluster.port}"
    client.apply(NAMESPACE)
    assert client.get("Namespace", "ws-1") is not None
    # The driver provisions through it like through a kubeconfig.
    driver = KubernetesDriver(in_cluster_infrastructure())
    driver.provision(SPEC)
    assert tls_cluster.names("statefulsets") == ["ws-7/ws-7-g0"]


def test_in_cluster_mode_with_a_refused_token_is_permanent(pod, tls_cluster):
    (pod / "token").write_text("revoked")
    with pytest.raises(PermanentError, match="portal's service account's credentials were refused"):
        kube.client_for(in_cluster_infrastructure()).get("Namespace", "ws-1")


def test_in_cluster_mode_outside_a_pod_is_permanent_with_the_reason(pod, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    with pytest.raises(PermanentError, match="not running in a Kubernetes pod"):
        kube.client_for(in_cluster_infrastructure())
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    (pod / "token").unlink()
    with pytest.raises(PermanentError, match="no service account token"):
        kube.client_for(in_cluster_infrastructure())


def test_a_server_certificate_the_ca_does_not_sign_is_refused(pod, tls_cluster):
    other = StandInApiServer(tls=True)
    (pod / "ca.crt").write_bytes(other.ca_pem)
    other.httpd.server_close()
    with pytest.raises(TransientError, match="Cannot reach the Kubernetes API"):
        kube.client_for(in_cluster_infrastructure()).get("Namespace", "ws-1")
    assert tls_cluster.requests == []


# --- where the kubeconfig's secrets go --------------------------------------------------


def files_holding(directory: Path, needle: bytes) -> set[Path]:
    found = set()
    for entry in os.scandir(directory):
        if entry.is_file(follow_symlinks=False):
            try:
                with open(entry.path, "rb") as handle:
                    if needle in handle.read(1 << 20):
                        found.add(Path(entry.path))
            except OSError:
                continue
    return found


def test_a_kubeconfigs_client_key_is_written_only_where_no_workspace_looks(settings, tmp_path):
    """The official client writes the decoded key to a file; the host's /tmp is shared with
    local workspaces, the data directory is hidden from them."""
    settings.DATA_DIR = tmp_path / "data"
    marker = f"CLIENT-KEY-{uuid.uuid4()}".encode()  # the client reuses a file per content
    user = {
        "client-certificate-data": base64.b64encode(b"CERTIFICATE").decode(),
        "client-key-data": base64.b64encode(b"KEY " + marker).decode(),
    }
    kubeconfig = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "c",
            "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443"}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        }
    )
    shared = Path(tempfile.gettempdir())
    before = files_holding(shared, marker)
    client = kube.client_for(SimpleNamespace(kubeconfig=kubeconfig, in_cluster=False))
    assert files_holding(shared, marker) == before
    private = settings.DATA_DIR / kube.KEY_FILES_DIR
    (written,) = files_holding(private, marker)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert client.api.configuration.key_file == str(written)
    assert settings.DATA_DIR in isolation.hidden_paths()


def test_a_stored_token_that_is_not_one_word_never_reaches_its_workspaces_page(
    cluster, member, profile_factory
):
    infrastructure = Infrastructure.objects.create(
        name="Cluster",
        kind=InfrastructureKind.KUBERNETES,
        kubeconfig=cluster.kubeconfig("TOPSECRET\nX-Extra: 1"),
        kubernetes_version="1.33",
        health_status=HealthStatus.READY,
    )
    profile = profile_factory(infrastructure, "Small", published=True)
    workspace = Workspace.objects.create(
        owner=member, profile=profile, infrastructure=infrastructure
    )
    tasks.provision_workspace(workspace.pk)
    workspace.refresh_from_db()
    assert workspace.state == State.FAILED
    assert "token contains a space, a line break" in workspace.failure_reason
    page = Client()
    page.force_login(member)
    assert "TOPSECRET" not in page.get(workspace.get_absolute_url()).content.decode()
