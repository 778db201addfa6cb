"""The admission policy that confines the portal's account, and the portal's NetworkPolicies.

There is no API server here, so the ValidatingAdmissionPolicy's CEL is evaluated with
cel-python (a dev extra) against admission requests shaped as the API server sends them
(admission.k8s.io/v1 AdmissionRequest: operation, resource, namespace, userInfo), with the
namespaces the Kubernetes driver itself renders (`k8s_manifests.namespace_manifest`), so a
change of the driver's labels that the policy would refuse fails here. `evaluate_policy`
follows the API server's order: match conditions, then variables (an error is kept as the
variable's value, as lazily evaluated CEL would meet it), then every validation; an error
in a validation denies (failurePolicy Fail). What cel-python cannot show: the API server's
own type checking of the expressions against the schemas.
"""

from __future__ import annotations

from dataclasses import replace

import celpy
import kubernetes_validate
import pytest
from celpy import celtypes
from celpy.evaluation import CELEvalError

from pools.drivers import k8s_manifests
from tests.deploy.test_manifests import (
    KUBERNETES_VERSION,
    WORKSPACE_SPEC,
    by_kind,
    named,
    render,
)

POLICY = "gpu-paas-portal-confinement"
PORTAL = "system:serviceaccount:gpu-paas:gpu-paas-portal"
NAMESPACE_MODE = k8s_manifests.ManifestOptions()
SHARED_MODE = k8s_manifests.ManifestOptions(namespace_mode=k8s_manifests.SHARED_MODE)
CEL = celpy.Environment()


@pytest.fixture(scope="module", params=["dev", "production"])
def objects(request) -> list[dict]:
    return render(request.param)


@pytest.fixture(scope="module")
def policy() -> dict:
    return named(render("production"), "ValidatingAdmissionPolicy", POLICY)


# -- a small evaluator of a ValidatingAdmissionPolicy ---------------------------------------


def cel(expression: str, activation: dict):
    return CEL.program(CEL.compile(expression)).evaluate(activation)


def evaluate_policy(
    policy: dict, request: dict, *, obj=None, old=None, namespace_object=None
) -> list[str]:
    """The messages of the validations that deny `request`; [] when it is admitted."""
    spec = policy["spec"]
    rules = spec["matchConstraints"]["resourceRules"]
    if not any(request["operation"] in rule["operations"] for rule in rules):
        return []
    activation = {
        "request": celpy.json_to_cel(request),
        "object": celpy.json_to_cel(obj),
        "oldObject": celpy.json_to_cel(old),
        "namespaceObject": celpy.json_to_cel(namespace_object),
    }
    if not all(cel(c["expression"], activation) for c in spec["matchConditions"]):
        return []
    variables = celtypes.MapType()
    activation["variables"] = variables
    for variable in spec["variables"]:
        try:
            value = cel(variable["expression"], activation)
        except CELEvalError as error:
            value = error
        variables[celtypes.StringType(variable["name"])] = value
    denials = []
    for validation in spec["validations"]:
        try:
            admitted = cel(validation["expression"], activation)
        except CELEvalError as error:
            denials.append(f"evaluation error: {error}")
            continue
        if not admitted:
            message = validation.get("message") or cel(validation["messageExpression"], activation)
            denials.append(str(message))
    return denials


def admission_request(
    operation: str,
    group: str,
    resource: str,
    name: str,
    namespace: str = "",
    *,
    user: str = PORTAL,
    subresource: str = "",
) -> dict:
    request = {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "operation": operation,
        "resource": {"group": group, "version": "v1", "resource": resource},
        "name": name,
        "namespace": namespace,
        "userInfo": {"username": user, "groups": ["system:serviceaccounts"]},
    }
    if subresource:
        request["subResource"] = subresource
    return request


def cluster_namespace(name: str, **labels: str) -> dict:
    """A namespace as the cluster has it (every namespace carries its name as a label)."""
    labels = {"kubernetes.io/metadata.name": name, **labels}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def driver_namespace(options: k8s_manifests.ManifestOptions) -> dict:
    """The namespace the Kubernetes driver applies for WORKSPACE_SPEC, as stored."""
    rendered = k8s_manifests.namespace_manifest(WORKSPACE_SPEC, options)
    return cluster_namespace(rendered["metadata"]["name"], **rendered["metadata"]["labels"])


def namespace_request(operation: str, name: str, user: str = PORTAL) -> dict:
    # The API server gives a Namespace's own name as request.namespace.
    return admission_request(operation, "", "namespaces", name, name, user=user)


KUBE_SYSTEM = cluster_namespace("kube-system")
DEFAULT = cluster_namespace("default")


# -- schema and wiring --------------------------------------------------------------------


def test_each_overlay_has_the_policy_its_binding_and_the_network_policies(objects):
    policy = named(objects, "ValidatingAdmissionPolicy", POLICY)
    binding = named(objects, "ValidatingAdmissionPolicyBinding", POLICY)
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert binding["spec"] == {"policyName": POLICY, "validationActions": ["Deny"]}
    network_policies = {o["metadata"]["name"] for o in by_kind(objects, "NetworkPolicy")}
    assert {"gpu-paas-portal-web", "gpu-paas-portal-workers"} <= network_policies
    for obj in [policy, binding, *by_kind(objects, "NetworkPolicy")]:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_policy_needs_kubernetes_1_30(policy):
    """admissionregistration.k8s.io/v1 policies are GA from 1.30; the portal also supports
    importing 1.29 clusters, where this API does not exist."""
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(policy, "1.29.0", strict=True)


def test_the_policy_matches_every_write_to_every_resource(policy):
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["apiGroups"] == ["*"] and rule["apiVersions"] == ["*"]
    assert set(rule["resources"]) == {"*", "*/*"}  # subresources too (statefulsets/scale)
    assert {"CREATE", "UPDATE", "DELETE"} <= set(rule["operations"])


# -- the policy admits what the driver does --------------------------------------------------


@pytest.mark.parametrize("options", [NAMESPACE_MODE, SHARED_MODE], ids=["namespace", "shared"])
def test_the_portal_may_write_in_its_workspace_namespaces(policy, options):
    namespace = driver_namespace(options)
    name = namespace["metadata"]["name"]
    for group, resource, subresource in [
        ("apps", "statefulsets", ""),
        ("apps", "statefulsets", "scale"),
        ("", "secrets", ""),
        ("", "resourcequotas", ""),
        ("networking.k8s.io", "networkpolicies", ""),
    ]:
        for operation in ("CREATE", "UPDATE", "DELETE"):
            request = admission_request(
                operation, group, resource, "ws-1-g0", name, subresource=subresource
            )
            assert evaluate_policy(policy, request, namespace_object=namespace) == [], request


@pytest.mark.parametrize("options", [NAMESPACE_MODE, SHARED_MODE], ids=["namespace", "shared"])
def test_the_portal_may_make_change_and_delete_its_namespaces(policy, options):
    namespace = driver_namespace(options)
    name = namespace["metadata"]["name"]
    assert evaluate_policy(policy, namespace_request("CREATE", name), obj=namespace) == []
    update = namespace_request("UPDATE", name)
    assert evaluate_policy(policy, update, obj=namespace, old=namespace) == []
    assert evaluate_policy(policy, namespace_request("DELETE", name), old=namespace) == []


def test_the_portal_may_still_label_nodes(policy):
    """MIG configuration: a cluster-scoped write the policy leaves to RBAC."""
    request = admission_request("UPDATE", "", "nodes", "gpu-1")
    assert evaluate_policy(policy, request) == []


def test_other_accounts_are_not_bound_by_the_policy(policy):
    for user in ("kubernetes-admin", "system:serviceaccount:kube-system:replicaset-controller"):
        request = admission_request("CREATE", "apps", "deployments", "x", "kube-system", user=user)
        assert evaluate_policy(policy, request, namespace_object=KUBE_SYSTEM) == []


# -- ... and nothing outside them ----------------------------------------------------------------


@pytest.mark.parametrize(
    "operation, group, resource, namespace",
    [
        ("CREATE", "apps", "deployments", KUBE_SYSTEM),
        ("CREATE", "apps", "statefulsets", DEFAULT),
        ("UPDATE", "", "secrets", KUBE_SYSTEM),
        ("DELETE", "", "pods", KUBE_SYSTEM),
        ("CREATE", "networking.k8s.io", "networkpolicies", DEFAULT),
        # The portal's own namespace: its Deployments, its Secret.
        ("UPDATE", "apps", "deployments", cluster_namespace("gpu-paas")),
    ],
)
def test_the_portal_may_not_write_outside_its_namespaces(
    policy, operation, group, resource, namespace
):
    name = namespace["metadata"]["name"]
    request = admission_request(operation, group, resource, "x", name)
    denials = evaluate_policy(policy, request, namespace_object=namespace)
    assert denials == [
        "the GPU PaaS portal may write only in the namespaces it made (labelled "
        f"app.kubernetes.io/managed-by=gpu-paas-portal); {name} is not one"
    ]


def test_the_portal_may_not_label_an_existing_namespace_as_its_own(policy):
    """The escape: label kube-system managed-by=gpu-paas-portal, then write in it."""
    labelled = cluster_namespace(
        "kube-system",
        **{k8s_manifests.MANAGED_BY_LABEL: k8s_manifests.MANAGED_BY},
        **k8s_manifests.POD_SECURITY,
    )
    request = namespace_request("UPDATE", "kube-system")
    denials = evaluate_policy(policy, request, obj=labelled, old=KUBE_SYSTEM)
    assert denials == [
        "the GPU PaaS portal may change or delete only the namespaces it made; "
        "kube-system is not one"
    ]


@pytest.mark.parametrize("name", ["kube-system", "default"])
def test_the_portal_may_not_delete_a_namespace_it_did_not_make(policy, name):
    namespace = cluster_namespace(name)
    assert evaluate_policy(policy, namespace_request("DELETE", name), old=namespace) != []


@pytest.mark.parametrize(
    "labels",
    [
        {},  # not labelled as the portal's: it could not use it, and should not make it
        {"app.kubernetes.io/managed-by": "gpu-paas-portal"},  # no Pod Security level
        {
            "app.kubernetes.io/managed-by": "gpu-paas-portal",
            "pod-security.kubernetes.io/enforce": "privileged",  # host paths, privileged pods
        },
    ],
)
def test_a_namespace_the_portal_makes_is_its_own_and_baseline(policy, labels):
    namespace = cluster_namespace("ws-666", **labels)
    denials = evaluate_policy(policy, namespace_request("CREATE", "ws-666"), obj=namespace)
    assert len(denials) == 1 and "enforce Pod Security baseline" in denials[0]


def test_the_portal_may_not_loosen_its_own_namespace(policy):
    namespace = driver_namespace(NAMESPACE_MODE)
    loosened = cluster_namespace(
        namespace["metadata"]["name"],
        **{**namespace["metadata"]["labels"], "pod-security.kubernetes.io/enforce": "privileged"},
    )
    request = namespace_request("UPDATE", namespace["metadata"]["name"])
    assert evaluate_policy(policy, request, obj=loosened, old=namespace) != []


def test_a_shared_namespace_made_without_the_label_is_not_taken_over(policy):
    """An administrator's pre-made shared namespace: the portal may not label it itself."""
    options = replace(SHARED_MODE, shared_namespace="team-gpus")
    request = namespace_request("UPDATE", "team-gpus")
    old = cluster_namespace("team-gpus")
    assert evaluate_policy(policy, request, obj=driver_namespace(options), old=old) != []


# -- NetworkPolicies ------------------------------------------------------------------------


def selects(selector: dict, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, In / NotIn / Exists) selects `labels`."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for requirement in selector.get("matchExpressions", []):
        key, operator = requirement["key"], requirement["operator"]
        values = requirement.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
    return True


def admits(policy: dict, pod: dict, namespace: dict, port: str) -> bool:
    """Whether an ingress rule of `policy` lets `pod` (its labels) of `namespace` connect on
    `port`. A peer without a namespaceSelector means the policy's own namespace."""
    for rule in policy["spec"].get("ingress", []):
        if all(p.get("port") != port for p in rule.get("ports", [{"port": port}])):
            continue
        for peer in rule.get("from", []):
            if "namespaceSelector" in peer:
                namespace_matches = selects(peer["namespaceSelector"], namespace_labels(namespace))
            else:
                namespace_matches = namespace["metadata"]["name"] == policy["metadata"]["namespace"]
            if namespace_matches and selects(peer.get("podSelector", {}), pod):
                return True
    return False


def namespace_labels(namespace: dict) -> dict:
    return namespace["metadata"]["labels"]


def pod_labels(objects, deployment: str) -> dict:
    return named(objects, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]


def workspace_pod_labels() -> dict:
    (statefulset,) = [
        o for o in k8s_manifests.render(WORKSPACE_SPEC, SHARED_MODE) if o["kind"] == "StatefulSet"
    ]
    return statefulset["spec"]["template"]["metadata"]["labels"]


def test_the_web_pods_take_their_http_port_from_the_ingress_controller_only(objects):
    web_policy = named(objects, "NetworkPolicy", "gpu-paas-portal-web")
    web = pod_labels(objects, "gpu-paas-portal-web")
    assert selects(web_policy["spec"]["podSelector"], web)
    assert web_policy["spec"]["policyTypes"] == ["Ingress"]
    controller = {"app.kubernetes.io/name": "ingress-nginx"}
    ingress_nginx = cluster_namespace("ingress-nginx")
    assert admits(web_policy, controller, ingress_nginx, "http")
    assert not admits(web_policy, controller, ingress_nginx, "metrics")


def test_no_workspace_reaches_the_portal_pods_even_in_shared_mode(objects):
    web_policy = named(objects, "NetworkPolicy", "gpu-paas-portal-web")
    own_namespace = cluster_namespace(web_policy["metadata"]["namespace"])
    for namespace in (
        driver_namespace(SHARED_MODE),
        driver_namespace(NAMESPACE_MODE),
        cluster_namespace("team-gpus"),  # an administrator's, without the portal's label
        own_namespace,  # KUBERNETES_SHARED_NAMESPACE set to the portal's own
    ):
        assert not admits(web_policy, workspace_pod_labels(), namespace, "http"), namespace


def test_nothing_connects_to_the_workers(objects):
    workers_policy = named(objects, "NetworkPolicy", "gpu-paas-portal-workers")
    assert workers_policy["spec"]["policyTypes"] == ["Ingress"]
    assert workers_policy["spec"].get("ingress", []) == []
    selector = workers_policy["spec"]["podSelector"]
    for deployment in ("gpu-paas-portal-worker", "gpu-paas-portal-pools-worker"):
        assert selects(selector, pod_labels(objects, deployment))
    assert not selects(selector, pod_labels(objects, "gpu-paas-portal-web"))


def test_the_dev_database_takes_connections_from_the_portal_only():
    objects = render("dev")
    database_policy = named(objects, "NetworkPolicy", "postgres")
    postgres = named(objects, "StatefulSet", "postgres")["spec"]["template"]["metadata"]["labels"]
    assert selects(database_policy["spec"]["podSelector"], postgres)
    gpu_paas_dev = cluster_namespace("gpu-paas-dev")
    for deployment in ("gpu-paas-portal-web", "gpu-paas-portal-worker"):
        assert admits(database_policy, pod_labels(objects, deployment), gpu_paas_dev, "postgres")
    assert not admits(database_policy, workspace_pod_labels(), gpu_paas_dev, "postgres")
    assert not admits(database_policy, {}, cluster_namespace("other-app"), "postgres")
