"""The admission policy that confines the portal's account, and the portal's NetworkPolicies.

There is no API server here, so the ValidatingAdmissionPolicy's CEL is evaluated with
cel-python (a dev extra) against admission requests shaped as the API server sends them
(admission.k8s.io/v1 AdmissionRequest: operation, resource, namespace, userInfo), with the
namespaces the Kubernetes driver itself renders (`k8s_manifests.namespace_manifest`), so a
change of the driver's labels that the policy would refuse fails here. `evaluate_policy`
follows the API server's order: match conditions, then variables (an error is kept as the
variable's value, as lazily evaluated CEL would meet it), then every validation; an error
in a validation denies (failurePolicy Fail). `params` is the ConfigMap the binding names,
as the production overlay renders it. What cel-python cannot show: the API server's own
type checking of the expressions against the schemas.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import celpy
import kubernetes_validate
import pytest
from celpy import celtypes
from celpy.evaluation import CELEvalError
from django.conf import settings

from pools import mig_apply
from pools.drivers import k8s_manifests
from profiles.mig import migparted
from profiles.models import DEFAULT_MIG_CONFIG_MAP, DEFAULT_MIG_CONFIG_NAMESPACE
from tests.deploy.test_manifests import (
    KUBERNETES_VERSION,
    WORKSPACE_SPEC,
    by_kind,
    config,
    named,
    render,
)

POLICY = "gpu-paas-portal-confinement"
PORTAL = "system:serviceaccount:gpu-paas:gpu-paas-portal"
NAMESPACE_MODE = k8s_manifests.ManifestOptions()
# The shared namespace as the driver names it (options_from_settings), which the
# parameters of the production overlay admit.
SHARED_MODE = k8s_manifests.ManifestOptions(
    namespace_mode=k8s_manifests.SHARED_MODE,
    shared_namespace=settings.KUBERNETES_SHARED_NAMESPACE,
)
CEL = celpy.Environment()


@pytest.fixture(scope="module", params=["dev", "production"])
def objects(request) -> list[dict]:
    return render(request.param)


@dataclass(frozen=True)
class BoundPolicy:
    """The policy and the parameters its binding hands it."""

    spec: dict
    params: dict


def bound_policy(objects: list[dict]) -> BoundPolicy:
    binding = named(objects, "ValidatingAdmissionPolicyBinding", POLICY)
    params = named(objects, "ConfigMap", binding["spec"]["paramRef"]["name"])
    assert params["metadata"]["namespace"] == binding["spec"]["paramRef"]["namespace"]
    return BoundPolicy(named(objects, "ValidatingAdmissionPolicy", POLICY)["spec"], params)


@pytest.fixture(scope="module")
def policy() -> BoundPolicy:
    return bound_policy(render("production"))


# -- a small evaluator of a ValidatingAdmissionPolicy ---------------------------------------


def cel(expression: str, activation: dict):
    return CEL.program(CEL.compile(expression)).evaluate(activation)


def evaluate_policy(
    policy: BoundPolicy, request: dict, *, obj=None, old=None, namespace_object=None
) -> list[str]:
    """The messages of the validations that deny `request`; [] when it is admitted."""
    spec = policy.spec
    rules = spec["matchConstraints"]["resourceRules"]
    if not any(request["operation"] in rule["operations"] for rule in rules):
        return []
    activation = {
        "request": celpy.json_to_cel(request),
        "object": celpy.json_to_cel(obj),
        "oldObject": celpy.json_to_cel(old),
        "namespaceObject": celpy.json_to_cel(namespace_object),
        "params": celpy.json_to_cel(policy.params),
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
    # As the policy's CEL sees it: a typed request, whose unset strings are "".
    return {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "operation": operation,
        "resource": {"group": group, "version": "v1", "resource": resource},
        "subResource": subresource,
        "name": name,
        "namespace": namespace,
        "userInfo": {"username": user, "groups": ["system:serviceaccounts"]},
    }


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


def mig_config_map() -> dict:
    """The mig-parted ConfigMap of a partitioning with the default name and namespace."""
    return migparted.config_map(
        DEFAULT_MIG_CONFIG_MAP, DEFAULT_MIG_CONFIG_NAMESPACE, migparted.default_config()
    )


KUBE_SYSTEM = cluster_namespace("kube-system")
DEFAULT = cluster_namespace("default")
GPU_OPERATOR = cluster_namespace(
    DEFAULT_MIG_CONFIG_NAMESPACE, **{"pod-security.kubernetes.io/enforce": "privileged"}
)


# -- schema and wiring --------------------------------------------------------------------


def test_each_overlay_has_the_policy_its_binding_and_the_network_policies(objects):
    policy = named(objects, "ValidatingAdmissionPolicy", POLICY)
    binding = named(objects, "ValidatingAdmissionPolicyBinding", POLICY)
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert binding["spec"]["policyName"] == POLICY
    assert binding["spec"]["validationActions"] == ["Deny"]
    network_policies = {o["metadata"]["name"] for o in by_kind(objects, "NetworkPolicy")}
    assert {"gpu-paas-portal-web", "gpu-paas-portal-workers"} <= network_policies
    for obj in [policy, binding, *by_kind(objects, "NetworkPolicy")]:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_policy_needs_kubernetes_1_30():
    """admissionregistration.k8s.io/v1 policies are GA from 1.30; the portal also supports
    importing 1.29 clusters, where this API does not exist."""
    policy = named(render("production"), "ValidatingAdmissionPolicy", POLICY)
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(policy, "1.29.0", strict=True)


def test_the_binding_hands_the_policy_its_parameters_from_the_portals_namespace(objects):
    """Without them every write of the portal's account is refused, not admitted."""
    binding = named(objects, "ValidatingAdmissionPolicyBinding", POLICY)
    (account,) = by_kind(objects, "ServiceAccount")
    assert binding["spec"]["paramRef"] == {
        "name": "gpu-paas-portal-admission",
        "namespace": account["metadata"]["namespace"],
        "parameterNotFoundAction": "Deny",
    }
    policy = bound_policy(objects)
    assert policy.spec["paramKind"] == {"apiVersion": "v1", "kind": "ConfigMap"}
    kubernetes_validate.validate(policy.params, KUBERNETES_VERSION, strict=True)


def test_the_parameters_name_what_the_portal_writes_by_default(objects):
    """The partitioning's default ConfigMap, and the portal's shared namespace as the
    overlay configures it (KUBERNETES_SHARED_NAMESPACE, else the setting's default)."""
    params = bound_policy(objects).params["data"]
    assert (params["migConfigMapNamespace"], params["migConfigMapName"]) == (
        DEFAULT_MIG_CONFIG_NAMESPACE,
        DEFAULT_MIG_CONFIG_MAP,
    )
    shared = config(objects).get("KUBERNETES_SHARED_NAMESPACE", SHARED_MODE.shared_namespace)
    assert params["sharedNamespace"] == shared


def test_the_policy_matches_every_write_to_every_resource(policy):
    (rule,) = policy.spec["matchConstraints"]["resourceRules"]
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


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
def test_mig_apply_may_write_its_config_map_in_the_gpu_operator_namespace(policy, operation):
    """pools/mig_apply server-side applies the mig-parted ConfigMap into the GPU Operator's
    namespace, which the portal did not make (and must not own: the operator needs it
    privileged)."""
    config_map = mig_config_map()
    request = admission_request(
        operation, "", "configmaps", DEFAULT_MIG_CONFIG_MAP, DEFAULT_MIG_CONFIG_NAMESPACE
    )
    old = config_map if operation == "UPDATE" else None
    denials = evaluate_policy(
        policy, request, obj=config_map, old=old, namespace_object=GPU_OPERATOR
    )
    assert denials == []


@pytest.mark.parametrize(
    "operation, resource, name",
    [
        ("DELETE", "configmaps", DEFAULT_MIG_CONFIG_MAP),  # the portal never deletes it
        ("CREATE", "configmaps", "another-config"),
        ("UPDATE", "secrets", DEFAULT_MIG_CONFIG_MAP),
    ],
)
def test_nothing_else_in_the_gpu_operator_namespace(policy, operation, resource, name):
    request = admission_request(operation, "", resource, name, DEFAULT_MIG_CONFIG_NAMESPACE)
    obj = None if operation == "DELETE" else {"metadata": {"name": name}}
    old = None if operation == "CREATE" else {"metadata": {"name": name}}
    denials = evaluate_policy(policy, request, obj=obj, old=old, namespace_object=GPU_OPERATOR)
    assert denials != []


def test_the_mig_config_map_is_admitted_only_in_the_namespace_of_the_parameters(policy):
    request = admission_request("CREATE", "", "configmaps", DEFAULT_MIG_CONFIG_MAP, "default")
    denials = evaluate_policy(policy, request, obj=mig_config_map(), namespace_object=DEFAULT)
    assert denials != []


# -- nodes: the MIG labels, nothing else ----------------------------------------------------


def gpu_node() -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": "gpu-1",
            "labels": {
                "kubernetes.io/hostname": "gpu-1",
                k8s_manifests.PRODUCT_LABEL: "NVIDIA-H100-80GB-HBM3",
                "nvidia.com/mig.config": "all-disabled",
                "nvidia.com/mig.config.state": "success",
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"podCIDR": "10.244.1.0/24", "providerID": "aws:///eu-west-1a/i-0abc"},
    }


def node_update(policy, change, subresource: str = "") -> list[str]:
    old = gpu_node()
    new = copy.deepcopy(old)
    change(new)
    request = admission_request("UPDATE", "", "nodes", "gpu-1", subresource=subresource)
    return evaluate_policy(policy, request, obj=new, old=old)


def _labelled_for_mig(node):  # what pools/mig_apply applies
    node["metadata"]["labels"].update(mig_apply.node_labels("all-1g.10gb"))


def _mig_labels_removed(node):  # its field manager leaving them out of a later apply
    for key in mig_apply.node_labels(""):
        del node["metadata"]["labels"][key]


@pytest.mark.parametrize("change", [_labelled_for_mig, _mig_labels_removed])
def test_the_portal_may_set_the_mig_labels_of_a_node(policy, change):
    assert node_update(policy, change) == []


def test_the_mig_labels_of_a_node_that_had_none_may_be_set(policy):
    old = gpu_node()
    del old["metadata"]["labels"]
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = mig_apply.node_labels("all-1g.10gb")
    request = admission_request("UPDATE", "", "nodes", "gpu-1")
    assert evaluate_policy(policy, request, obj=new, old=old) == []


def _tainted(node):
    node["spec"]["taints"] = [{"key": "evict", "value": "all", "effect": "NoExecute"}]


def _cordoned(node):
    node["spec"]["unschedulable"] = True


def _relabelled_product(node):
    # Other nodes made to look like GPU nodes of a model, to draw workspaces (untrusted code)
    # or other applications' pods selected by this label onto them.
    node["metadata"]["labels"][k8s_manifests.PRODUCT_LABEL] = "NVIDIA-A100-SXM4-80GB"


def _control_plane_role(node):
    node["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = ""


def _hostname_label_removed(node):
    del node["metadata"]["labels"]["kubernetes.io/hostname"]


def _annotated(node):
    node["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/scale-down-disabled"] = "x"


def _owned_by_a_namespace(node):
    # Deleting the portal's namespace would then have the garbage collector delete the node.
    owner = {"apiVersion": "v1", "kind": "Namespace", "name": "ws-1", "uid": "0"}
    node["metadata"]["ownerReferences"] = [owner]


def _finalized(node):
    node["metadata"]["finalizers"] = ["gpupaas.io/never"]


@pytest.mark.parametrize(
    "change",
    [
        _tainted,
        _cordoned,
        _relabelled_product,
        _control_plane_role,
        _hostname_label_removed,
        _annotated,
        _owned_by_a_namespace,
        _finalized,
    ],
)
def test_the_portal_may_change_nothing_on_a_node_but_its_mig_labels(policy, change):
    """RBAC grants `patch` on whole nodes: taints NoExecute would evict every pod of the
    cluster that does not tolerate them, kube-system's included."""
    assert node_update(policy, change) == [
        "the GPU PaaS portal may change only the MIG labels of a node "
        "(nvidia.com/mig.config and nvidia.com/mig.config.state)"
    ]


def test_not_even_the_mig_labels_through_a_subresource(policy):
    assert node_update(policy, _labelled_for_mig, subresource="status") != []


@pytest.mark.parametrize("operation", ["CREATE", "DELETE"])
def test_the_portal_may_not_make_or_delete_nodes(policy, operation):
    request = admission_request(operation, "", "nodes", "gpu-1")
    obj, old = (gpu_node(), None) if operation == "CREATE" else (None, gpu_node())
    assert evaluate_policy(policy, request, obj=obj, old=old) != []


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


@pytest.mark.parametrize("name", ["gpu-operator", "kube-public", "ws-1-old", "pool-x", "ws-"])
def test_the_portal_may_make_only_namespaces_named_as_its_own(policy, name):
    """Squatting: a labelled namespace named gpu-operator (or another application's) made
    before that application is installed would hand the portal its namespace."""
    namespace = cluster_namespace(
        name,
        **{k8s_manifests.MANAGED_BY_LABEL: k8s_manifests.MANAGED_BY},
        **k8s_manifests.POD_SECURITY,
    )
    denials = evaluate_policy(policy, namespace_request("CREATE", name), obj=namespace)
    assert denials == [
        "the GPU PaaS portal may make only namespaces named ws-<n>, pool-<n> or its shared "
        "namespace (sharedNamespace of ConfigMap gpu-paas-portal-admission); "
        f"{name} is none of them"
    ]


def test_a_warm_instance_namespace_may_be_made(policy):
    spec = replace(WORKSPACE_SPEC, name="pool-17")
    rendered = k8s_manifests.namespace_manifest(spec, NAMESPACE_MODE)
    request = namespace_request("CREATE", "pool-17")
    assert evaluate_policy(policy, request, obj=rendered) == []


# -- namespaced writes in its namespaces that are felt cluster-wide ---------------------------


def write_in_workspace_namespace(policy, obj: dict, operation="CREATE", old=None) -> list[str]:
    namespace = driver_namespace(NAMESPACE_MODE)
    group = obj["apiVersion"].rpartition("/")[0]
    plural = obj["kind"].lower() + "s"  # true of every kind here
    name = namespace["metadata"]["name"]
    request = admission_request(operation, group, plural, obj["metadata"]["name"], name)
    return evaluate_policy(policy, request, obj=obj, old=old, namespace_object=namespace)


def service(**spec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "mitm"},
        "spec": {"selector": {"app": "mitm"}, "ports": [{"port": 5432}], **spec},
    }


@pytest.mark.parametrize(
    "spec",
    [
        # CVE-2020-8554: kube-proxy on every node sends every pod's traffic for 10.0.0.10
        # (the external database, say) to the Service's pods.
        {"type": "ClusterIP", "externalIPs": ["10.0.0.10"]},
        {"externalIPs": ["10.0.0.10"]},
        {"type": "NodePort"},
        {"type": "LoadBalancer"},
        {"type": "ExternalName", "externalName": "db.internal"},
    ],
)
def test_a_service_reaching_beyond_the_cluster_network_is_refused(policy, spec):
    assert write_in_workspace_namespace(policy, service(**spec)) == [
        "the GPU PaaS portal may make only ClusterIP (or headless) Services, without externalIPs"
    ]


def test_the_services_the_portal_makes_are_admitted(policy):
    """The workspace's headless Services and a services component's ClusterIP one."""
    (group,) = WORKSPACE_SPEC.groups
    headless = k8s_manifests.service_manifest(WORKSPACE_SPEC, group, NAMESPACE_MODE)
    assert write_in_workspace_namespace(policy, headless) == []
    assert write_in_workspace_namespace(policy, headless, "UPDATE", old=headless) == []
    assert write_in_workspace_namespace(policy, service(type="ClusterIP")) == []


def pod_spec(priority_class: str = "system-node-critical") -> dict:
    spec: dict = {"containers": [{"name": "hog", "image": "busybox"}]}
    if priority_class:
        spec["priorityClassName"] = priority_class
    return spec


def template(priority_class: str = "system-node-critical") -> dict:
    return {"metadata": {"labels": {"app": "hog"}}, "spec": pod_spec(priority_class)}


def workload(kind: str, spec: dict) -> dict:
    api_version = {"Pod": "v1", "CronJob": "batch/v1"}.get(kind, "apps/v1")
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": "hog"}, "spec": spec}


@pytest.mark.parametrize(
    "obj",
    [
        workload("Pod", pod_spec()),
        workload("StatefulSet", {"replicas": 50, "template": template()}),
        workload("Deployment", {"replicas": 50, "template": template()}),
        workload(
            "CronJob",
            {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template()}}},
        ),
    ],
    ids=lambda obj: obj["kind"],
)
def test_a_pod_or_pod_template_with_a_priority_class_is_refused(policy, obj):
    """Pod Security baseline does not look at priorityClassName, and system-node-critical
    may be used in any namespace: its pods preempt (evict) other tenants' pods on every
    node. The portal never sets one."""
    for operation in ("CREATE", "UPDATE"):
        denials = write_in_workspace_namespace(policy, obj, operation, old=obj)
        assert denials == ["the GPU PaaS portal may not give a pod a priority class"]


def claim(**spec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            **spec,
        },
    }


CLAIM_REFUSED = [
    "the GPU PaaS portal's volume claims may not name a volume (spec.volumeName) or the "
    "empty storage class: they bind only volumes provisioned for them"
]


@pytest.mark.parametrize(
    "spec",
    [
        # Another team's statically provisioned volume, or a hostPath one (Pod Security
        # baseline forbids hostPath volumes in pods, not behind a claim).
        {"volumeName": "other-team-data"},
        {"storageClassName": "", "volumeName": "other-team-data"},
        {"storageClassName": ""},  # binds pre-made volumes only
    ],
)
def test_a_claim_may_not_bind_an_existing_volume(policy, spec):
    assert write_in_workspace_namespace(policy, claim(**spec)) == CLAIM_REFUSED
    statefulset = workload(
        "StatefulSet", {"template": template(""), "volumeClaimTemplates": [claim(**spec)]}
    )
    assert write_in_workspace_namespace(policy, statefulset) == CLAIM_REFUSED


def test_a_claim_may_not_be_pointed_at_a_volume_later(policy):
    pending = claim(storageClassName="fast")
    pointed = claim(storageClassName="fast", volumeName="other-team-data")
    assert write_in_workspace_namespace(policy, pointed, "UPDATE", old=pending) == CLAIM_REFUSED


def test_the_claims_the_portal_makes_are_admitted_with_or_without_a_storage_class(policy):
    """KUBERNETES_STORAGE_CLASS names a class; unset, the cluster's default provisions."""
    (group,) = WORKSPACE_SPEC.groups
    for options in (NAMESPACE_MODE, replace(NAMESPACE_MODE, storage_class="fast-ssd")):
        (made,) = k8s_manifests.claim_manifests(WORKSPACE_SPEC, group, options)
        assert write_in_workspace_namespace(policy, made) == []
        statefulset = k8s_manifests.statefulset_manifest(WORKSPACE_SPEC, group, options)
        assert write_in_workspace_namespace(policy, statefulset) == []
        # Applied again once the volume controller bound it: its volumeName stays.
        bound = copy.deepcopy(made)
        bound["spec"]["volumeName"] = "pvc-0d8e5b1c"
        assert write_in_workspace_namespace(policy, bound, "UPDATE", old=bound) == []


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
