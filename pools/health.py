"""Infrastructure health from real checks: what `Infrastructure.health_status` says.

Each kind a driver provisions on has a check that talks to the infrastructure the way its
driver does, with the same client, credentials and timeouts:

- existing Kubernetes (`pools.kube`, the driver's inventory): the API answers `/version`
  with a version the portal supports and the entry names; the nodes can be listed; some
  node can take pods (its kubelet reports Ready and it is not cordoned: a node that is not
  offers nothing, whatever allocatable it last reported); where GPUs are expected, such
  nodes offer allocatable `nvidia.com/gpu` or `nvidia.com/mig-*` (of the entry's GPU model)
  and the NVIDIA GPU Operator manages them (its controller labels the GPU nodes it deploys
  to `nvidia.com/gpu.deploy.<operand>`; reading node labels needs no RBAC beyond what
  placement already has).
- AWS (`profiles.aws_checks`, the driver's EKS client): STS says who the credentials are;
  the node role, cluster role, subnets and security groups exist and fit EKS; the EKS
  cluster exists, or a cluster role is there to create it.
- this machine: the workspaces directory is writable; NVML lists the GPUs, or says why
  there are none; and how the host isolates workspaces (`pools.isolation`).
- any other kind: Configuration only, no driver can provision there.

Statuses: Ready (everything provisioning needs answered), Degraded (it answers, but
something provisioning needs is missing or wrong; the reason says what), Unreachable (it
does not answer, or refuses the credentials), Configuration only. Only Ready entries are
offered to users and fed by warm pools (`Infrastructure.availability`).

When: the "pools: infrastructure health" schedule runs `check_all()` every
`HEALTH_MINUTES`, which enqueues one `check_infrastructure(id)` task per entry; saving an
entry asks for one too (`Infrastructure.request_health_check` → `enqueue`, registered in
`PoolsConfig.ready`). A check never runs inside a web request: an API server that does not
answer would hold the request for as long as its timeouts.

Writing: one conditional UPDATE, which lands only when no later check has reported and the
entry was not edited since the check read it, so a slow check never overwrites a newer
answer nor describes settings that changed. A change of status is written to the audit
log in the same transaction.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from pools import fleet, gpucheck, isolation, notices
from pools.drivers import aws, local
from pools.drivers.base import DriverError
from pools.drivers.k8s_manifests import PRODUCT_LABEL
from pools.drivers.kubernetes import KubernetesDriver
from pools.models import GpuFault
from pools.schedules import INFRASTRUCTURE_HEALTH_MINUTES
from portal import audit
from portal.models import AuditAction
from profiles import aws_checks, catalog
from profiles.choices import HealthStatus, InfrastructureKind
from profiles.mig import nvml
from profiles.models import Infrastructure

logger = logging.getLogger(__name__)

HEALTH_MINUTES = INFRASTRUCTURE_HEALTH_MINUTES  # how often every entry is checked
TASK = "pools.health.check_infrastructure"
GPU_OPERATOR_LABEL = "nvidia.com/gpu.deploy."  # the prefix of the operator's node labels
MIG_RESOURCE = "nvidia.com/mig-"
DETAIL_CHARS = 300  # of an error's detail kept in the reason


@dataclass(frozen=True)
class Health:
    status: str  # a HealthStatus
    reason: str


def ready(reason: str) -> Health:
    return Health(HealthStatus.READY, reason)


def degraded(reason: str) -> Health:
    return Health(HealthStatus.DEGRADED, reason)


def unreachable(reason: str) -> Health:
    return Health(HealthStatus.UNREACHABLE, reason)


# --- the checks -----------------------------------------------------------------------------


def check(infrastructure: Infrastructure) -> Health:
    """What the infrastructure looks like now. Talks to it; writes nothing."""
    checker = CHECKS.get(_key(infrastructure))
    if checker is None or not infrastructure.provisionable:
        return Health(
            HealthStatus.CONFIGURATION_ONLY,
            f"Configuration only: the portal cannot provision on {infrastructure.kind_label} "
            "yet, so it is never offered to users.",
        )
    usable, why = infrastructure.usability()
    if not usable:  # no credentials: there is no way in
        return unreachable(why)
    try:
        return checker(infrastructure)
    except DriverError as error:
        return unreachable(_sentence(error))


def check_local(infrastructure: Infrastructure) -> Health:
    """The workspaces directory is writable; NVML's GPUs (or why there are none)."""
    root = isolation.workspaces_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".health-"):
            pass
    except OSError as error:
        return degraded(
            f"Workspaces cannot be created: the directory {root} is not writable "
            f"({error.strerror or error})."
        )
    gpus = local.gpu_inventory()
    if gpus:
        models = Counter(gpu.gpu_model or gpu.name for gpu in gpus)
        found = ", ".join(f"{n}× {model}" for model, n in sorted(models.items()))
        gpu_text = f"NVML finds {len(gpus)} GPU{'s' if len(gpus) > 1 else ''}: {found}."
        if settings.LOCAL_GPU_CHECK == "cuda":
            gpu_text += f" {_cuda_here(infrastructure, gpus)}"
        for fault in GpuFault.held_back(infrastructure):
            gpu_text += (
                f" GPU {fault.gpu_index} is held back from new workspaces until "
                f"{fault.until:%H:%M}: {fault.reason}"
            )
        # Left out of what workspaces are given (`nvml.inventory`): an administrator's job.
        gpu_text += "".join(f" NVML cannot read {gpu}." for gpu in nvml.inventory().unreadable)
    else:
        gpu_text = f"No GPU: {nvml.inventory().reason or 'NVML finds none'}"
    return ready(
        f"The workspaces directory {root} is writable. {gpu_text} {_isolation(infrastructure)}"
    )


def _cuda_here(infrastructure: Infrastructure, gpus: list) -> str:
    """Whether CUDA initialises on this host at all, with every GPU visible (the check each
    workspace with GPUs runs, `pools.gpucheck`), so an administrator learns it before a
    scientist's request fails it. A held-back GPU CUDA sees again is forgotten."""
    try:
        done = gpucheck.run_on_host()
    except subprocess.TimeoutExpired:
        return f"CUDA did not initialise within {gpucheck.TIMEOUT} s here."
    seen = gpucheck.seen_uuids(done)
    for fault in GpuFault.held_back(infrastructure):
        if gpucheck.uuid_hex(fault.device_uuid) in seen:
            fault.delete()
    return gpucheck.host_summary(done, gpus)


def _isolation(infrastructure: Infrastructure) -> str:
    return infrastructure.isolation_status.strip()


def check_kubernetes(infrastructure: Infrastructure) -> Health:
    """API version, nodes, GPU nodes and their models, the GPU Operator."""
    driver = KubernetesDriver(infrastructure)
    _status, body = driver.kube.request("GET", "/version", what="the API version")
    version = str((body or {}).get("gitVersion") or "")
    minor = catalog.kubernetes_minor(version)
    where = f"Kubernetes {version or 'of unknown version'} at {driver.kube.host}"
    if minor is None or minor not in catalog.KUBERNETES_VERSIONS:
        supported = f"{catalog.KUBERNETES_VERSIONS[0]}–{catalog.KUBERNETES_VERSIONS[-1]}"
        return degraded(f"{where}: the portal supports Kubernetes {supported}.")
    if infrastructure.kubernetes_version and infrastructure.kubernetes_version != minor:
        return degraded(
            f"{where}: this entry says {infrastructure.kubernetes_version}, so workspace "
            f"manifests are checked against the wrong version. Edit the entry to {minor}."
        )
    nodes = driver.inventory()
    if not nodes:
        return degraded(f"{where} answers, but it has no nodes.")
    health = _judge_nodes(infrastructure, where, nodes)
    # Left out of placement, each with its reason (`kubernetes.node_info`): for an admin.
    left_out = [node.problem for node in nodes if node.problem]
    if left_out:
        health = Health(health.status, " ".join([health.reason, *left_out]))
    return health


def _judge_nodes(infrastructure: Infrastructure, where: str, nodes: list) -> Health:
    """Whether the cluster's nodes that take pods offer what the entry declares, and the
    GPU Operator; the others (`out_of_service`: not Ready, cordoned) are named, with why."""
    facts = f"{where}; {len(nodes)} node{'s' if len(nodes) > 1 else ''}"
    out_of_service = sorted(
        (node.name, node.out_of_service) for node in nodes if node.out_of_service
    )
    if out_of_service:
        named = ", ".join(f"{name} {why}" for name, why in out_of_service)
        facts += f" ({len(out_of_service)} taking no new workspaces: {named})"
    in_service = [node for node in nodes if not node.out_of_service]
    if not in_service:
        return degraded(f"{facts}: no node can take a workspace.")
    gpu_nodes = [node for node in in_service if fleet.is_gpu_node(node)]
    offered: Counter = Counter()
    for node in gpu_nodes:
        offered.update({k: v for k, v in node.allocatable.items() if v > 0})
    managed = [n for n in in_service if any(k.startswith(GPU_OPERATOR_LABEL) for k in n.labels)]
    model = infrastructure.gpu_model
    if not gpu_nodes:
        if model and any(fleet.is_gpu_node(node) for node in nodes):
            return degraded(f"{facts}: none of its GPU nodes can take a workspace.")
        if model:
            return degraded(
                f"{facts}, none offering nvidia.com/gpu or {MIG_RESOURCE}* although this "
                f"entry declares {model} nodes: is the GPU Operator's device plugin running?"
            )
        return ready(f"{facts}, none with GPUs: CPU-only workspaces.")
    resources = ", ".join(f"{n}× {name}" for name, n in sorted(offered.items()))
    facts += f", {len(gpu_nodes)} with GPUs ({resources})"
    models = {_model_of(node) for node in gpu_nodes} - {""}
    if model and model not in models:
        found = ", ".join(sorted(models)) or "none the catalog knows"
        return degraded(
            f"{facts}; none of them has a {model} (their models: {found}), the GPU model "
            "this entry declares."
        )
    if not managed:
        return degraded(
            f"{facts}; the NVIDIA GPU Operator manages none of them (no {GPU_OPERATOR_LABEL}* "
            "node labels): the portal relies on its device plugin, GPU Feature Discovery "
            "labels and MIG manager."
        )
    return ready(f"{facts}; the GPU Operator manages {len(managed)}.")


def check_aws(infrastructure: Infrastructure) -> Health:
    """STS identity; the EKS settings in IAM and EC2; the EKS cluster."""
    region, endpoint = infrastructure.region, aws_checks.endpoint_url()
    try:
        session, identity = aws_checks.sign_in(infrastructure.credentials, region, endpoint)
    except aws_checks.AwsCredentialsError as error:
        return unreachable(str(error))
    except (ClientError, BotoCoreError) as error:
        return unreachable(_sentence(aws.translate(error, f"signing in to AWS in {region}")))
    who = f"AWS account {identity['Account']} as {identity['Arn']} in {region}"
    settings = aws.eks_settings_from(infrastructure)
    missing = [
        aws_checks.EKS_SETTINGS[key]
        for key, value in (
            ("node_role_arn", settings.node_role_arn),
            ("subnet_ids", settings.subnet_ids),
        )
        if not value
    ]
    if missing:
        return degraded(
            f"{who}: {' and '.join(missing)} not set, so no node group can be created. "
            "Add them on this entry."
        )
    try:
        problems = aws_checks.check_eks_settings(
            session, endpoint, _settings_dict(settings), identity["Account"]
        )
    except aws_checks.AwsCredentialsError as error:
        return unreachable(str(error))
    except (ClientError, BotoCoreError) as error:
        return unreachable(_sentence(aws.translate(error, "reading the EKS settings")))
    if problems:
        text = " ".join(f"{aws_checks.EKS_SETTINGS[k]}: {p}" for k, p in problems.items())
        return degraded(f"{who}. {text}")
    cluster = aws.AwsDriver(infrastructure, eks=settings, session=session).cluster()
    needs_cluster_role = not settings.cluster_role_arn
    if cluster is None:
        if needs_cluster_role:
            return degraded(
                f"{who}: EKS cluster {settings.cluster_name} does not exist and no cluster "
                "role ARN is set to create it."
            )
        state = f"EKS cluster {settings.cluster_name} is created with the first workspace"
    elif cluster["status"] in ("FAILED", "DELETING"):
        return degraded(
            f"{who}: EKS cluster {settings.cluster_name} is {cluster['status'].lower()}."
        )
    else:
        state = f"EKS cluster {settings.cluster_name} is {cluster['status'].lower()}"
    super_sized = infrastructure.compute_profiles.filter(super_sized=True)
    if needs_cluster_role and super_sized.exists():
        names = ", ".join(sorted(p.name for p in super_sized))
        return degraded(
            f"{who}; {state}, but super-sized profiles ({names}) get a dedicated cluster "
            "each and no cluster role ARN is set to create one."
        )
    groups = (
        f", {len(settings.security_group_ids)} security groups"
        if settings.security_group_ids
        else ""
    )
    return ready(f"{who}; {state}; node role and {len(settings.subnet_ids)} subnets found{groups}.")


def _settings_dict(settings: aws.EksSettings) -> dict:
    return {
        "cluster_role_arn": settings.cluster_role_arn,
        "node_role_arn": settings.node_role_arn,
        "subnet_ids": list(settings.subnet_ids),
        "security_group_ids": list(settings.security_group_ids),
    }


def _model_of(node) -> str:
    """The catalog code of a node's GPUs, from GPU Feature Discovery's product label."""
    found = catalog.gpu_model_for_product_label(node.labels.get(PRODUCT_LABEL, ""))
    return found.code if found else ""


CHECKS: dict[tuple[str, str], Callable[[Infrastructure], Health]] = {
    (InfrastructureKind.LOCAL, ""): check_local,
    (InfrastructureKind.KUBERNETES, ""): check_kubernetes,
    (InfrastructureKind.PUBLIC_CLOUD, "aws"): check_aws,
}


def _key(infrastructure: Infrastructure) -> tuple[str, str]:
    provider = (
        infrastructure.provider if infrastructure.kind == InfrastructureKind.PUBLIC_CLOUD else ""
    )
    return infrastructure.kind, provider


def _sentence(error: DriverError) -> str:
    detail = (error.detail or "").strip()
    if detail and detail not in str(error):
        return f"{error} ({detail[:DETAIL_CHARS]})"
    return str(error)


# --- running and recording ------------------------------------------------------------------


def check_infrastructure(infrastructure_id: int) -> str:
    """The task: check one entry and record what was found; returns the status."""
    infrastructure = Infrastructure.objects.filter(pk=infrastructure_id).first()
    if infrastructure is None:
        return "gone"
    started = timezone.now()
    try:
        health = check(infrastructure)
    except Exception as error:  # a bug must not leave an old "Ready" standing
        logger.exception("health check of %s failed", infrastructure)
        # Only the class: the reason is on pages Viewers read, and an unexpected error's
        # text may quote anything, a credential included.
        health = degraded(
            f"The health check itself failed ({type(error).__name__}); the portal's log has "
            "the details."
        )
    record(infrastructure, health, started)
    return health.status


@transaction.atomic
def record(infrastructure: Infrastructure, health: Health, started: datetime) -> bool:
    """Write `health` as found at `started`, unless a later check has reported or the entry
    was edited after the check read it. True when written."""
    written = (
        Infrastructure.objects.filter(pk=infrastructure.pk, updated=infrastructure.updated)
        .filter(Q(health_checked_at__isnull=True) | Q(health_checked_at__lt=started))
        .update(health_status=health.status, health_reason=health.reason, health_checked_at=started)
    )
    if not written:
        return False
    before = infrastructure.health_status
    if before != health.status:
        labels = dict(HealthStatus.choices)
        audit.record(
            None,
            AuditAction.ACTION,
            infrastructure,
            before={"health_status": before},
            after={"health_status": health.status, "health_reason": health.reason},
            message=f"Health: {labels[before]} → {labels[health.status]}. {health.reason}",
        )
        logger.info("infrastructure %s is now %s: %s", infrastructure, health.status, health.reason)
        if health.status == HealthStatus.UNREACHABLE:
            notices.infrastructure_unreachable(infrastructure, health.reason, started)
    return True


def enqueue(infrastructure_id: int) -> None:
    """Check one entry soon, on a worker (what `Infrastructure.request_health_check` runs)."""
    async_task(TASK, infrastructure_id, group="infrastructure-health")


def check_all() -> int:
    """The schedule: one check task per infrastructure entry; returns how many."""
    ids = list(Infrastructure.objects.values_list("pk", flat=True))
    for infrastructure_id in ids:
        enqueue(infrastructure_id)
    return len(ids)
