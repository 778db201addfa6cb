"""Infrastructure health from real checks (pools.health): against the Kubernetes API
stand-in, the moto server and this machine; how results are recorded, scheduled and
asked for; and what a status means for offering and warm pools."""

import json
import sys
from datetime import timedelta

import boto3
import pynvml
import pytest
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from pools import health, warmpool
from pools.drivers import DRIVERS
from pools.models import LoopDecision, PoolInstance
from pools.schedules import INFRASTRUCTURE_HEALTH_NAME
from portal.models import AuditEntry
from profiles import catalog
from profiles.choices import AllocationStrategy, HealthStatus, InfrastructureKind
from profiles.models import ComputeProfile, Infrastructure
from tests import workspace_fixtures
from tests.mig.fake_nvml import FakeNvml
from tests.pools.k8s_stand_in import StandInApiServer
from workspaces.demo import load_demo

pytestmark = pytest.mark.django_db

# Shared fixtures: this machine's workspaces directory under tmp, two (fake) A100s.
workspaces_root = workspace_fixtures.workspaces_root
fake_gpus = workspace_fixtures.fake_gpus

READY, DEGRADED = HealthStatus.READY, HealthStatus.DEGRADED
UNREACHABLE, CONFIG_ONLY = HealthStatus.UNREACHABLE, HealthStatus.CONFIGURATION_ONLY
A100 = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB", "nvidia.com/gpu.count": "8"}
OPERATOR = {"nvidia.com/gpu.deploy.device-plugin": "true", "nvidia.com/gpu.present": "true"}


# --- existing Kubernetes -----------------------------------------------------------------------


@pytest.fixture
def cluster():
    server = StandInApiServer(version="1.33").start()
    yield server
    server.stop()


def kube_entry(cluster, token=None, **fields) -> Infrastructure:
    fields = {"kubernetes_version": "1.33", "gpu_model": "A100-40GB", "gpus_per_node": 8} | fields
    return Infrastructure.objects.create(
        name="Lab cluster",
        kind=InfrastructureKind.KUBERNETES,
        kubeconfig=cluster.kubeconfig(token),
        **fields,
    )


def test_a_cluster_with_gpu_nodes_and_the_gpu_operator_is_ready(cluster):
    cluster.add_node("gpu-1", A100 | OPERATOR, {"nvidia.com/gpu": "8", "cpu": "96"})
    cluster.add_node("cpu-1", {}, {"cpu": "16"})
    found = health.check(kube_entry(cluster))
    assert found.status == READY, found.reason
    assert "Kubernetes v1.33.2" in found.reason
    assert "2 nodes, 1 with GPUs (8× nvidia.com/gpu)" in found.reason
    assert "the GPU Operator manages 1" in found.reason


def test_a_node_whose_gpu_numbers_cannot_be_believed_is_named_as_left_out(cluster):
    cluster.add_node("gpu-1", A100 | OPERATOR, {"nvidia.com/gpu": "8", "cpu": "96"})
    cluster.add_node("gpu-2", A100 | OPERATOR, {"nvidia.com/gpu": "200000", "cpu": "96"})
    found = health.check(kube_entry(cluster))
    assert "1 with GPUs (8× nvidia.com/gpu)" in found.reason
    assert "Node gpu-2 offers 200000 nvidia.com/gpu" in found.reason
    assert found.reason.endswith("its GPUs are left out.")


def test_mig_slices_count_as_gpus(cluster):
    labels = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"} | OPERATOR
    cluster.add_node("gpu-1", labels, {"nvidia.com/mig-1g.5gb": "7"})
    found = health.check(kube_entry(cluster))
    assert found.status == READY, found.reason
    assert "7× nvidia.com/mig-1g.5gb" in found.reason


def test_an_api_server_that_does_not_answer_is_unreachable(cluster):
    entry = kube_entry(cluster)
    cluster.stop()
    found = health.check(entry)
    assert found.status == UNREACHABLE
    assert "Cannot reach the Kubernetes API at http://127.0.0.1" in found.reason


def test_refused_credentials_are_unreachable_with_the_apis_reason(cluster):
    found = health.check(kube_entry(cluster, token="revoked"))
    assert found.status == UNREACHABLE
    assert "credentials were refused" in found.reason


def test_a_stored_token_never_reaches_the_reason_the_audit_log_or_the_page(cluster, client, viewer):
    """A token with a line break made http.client's error, which quotes it, the reason."""
    entry = kube_entry(cluster, token="TOPSECRET-kube-token\nX-Extra: 1")
    health.check_infrastructure(entry.pk)
    entry.refresh_from_db()
    assert entry.health_status == UNREACHABLE
    assert "token contains a space, a line break" in entry.health_reason
    client.force_login(viewer)
    page = client.get(reverse("profiles:infrastructure_detail", args=[entry.pk]))
    audit = " ".join(f"{e.message} {e.after}" for e in AuditEntry.objects.all())
    for where in (entry.health_reason, audit, page.content.decode()):
        assert "TOPSECRET" not in where


def test_a_version_other_than_the_entry_says_is_degraded(cluster):
    found = health.check(kube_entry(cluster, kubernetes_version="1.31"))
    assert found.status == DEGRADED
    assert "this entry says 1.31" in found.reason and "Edit the entry to 1.33" in found.reason


def test_a_version_the_portal_does_not_support_is_degraded():
    old = StandInApiServer(version="1.27").start()
    try:
        found = health.check(kube_entry(old, kubernetes_version=""))
    finally:
        old.stop()
    assert found.status == DEGRADED
    assert "the portal supports Kubernetes 1.29–1.37" in found.reason


def test_declared_gpu_nodes_that_offer_no_gpu_are_degraded(cluster):
    cluster.add_node("gpu-1", A100 | OPERATOR, {"cpu": "96"})  # device plugin not running
    found = health.check(kube_entry(cluster))
    assert found.status == DEGRADED
    assert "none offering nvidia.com/gpu" in found.reason


def test_gpu_nodes_of_another_model_are_degraded(cluster):
    h100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"} | OPERATOR
    cluster.add_node("gpu-1", h100, {"nvidia.com/gpu": "8"})
    found = health.check(kube_entry(cluster))
    assert found.status == DEGRADED
    assert "none of them has a A100-40GB (their models: H100-80GB)" in found.reason


def test_gpu_nodes_without_the_gpu_operator_are_degraded(cluster):
    cluster.add_node("gpu-1", A100, {"nvidia.com/gpu": "8"})
    found = health.check(kube_entry(cluster))
    assert found.status == DEGRADED
    assert "the NVIDIA GPU Operator manages none of them" in found.reason


def test_a_cpu_only_cluster_without_declared_gpus_is_ready(cluster):
    cluster.add_node("cpu-1", {}, {"cpu": "16"})
    found = health.check(kube_entry(cluster, gpu_model="", gpus_per_node=0))
    assert found.status == READY
    assert "none with GPUs: CPU-only workspaces" in found.reason


def test_a_cluster_without_nodes_is_degraded(cluster):
    assert health.check(kube_entry(cluster)).status == DEGRADED


def not_ready(cluster, name: str) -> None:
    """The kubelet stopped posting: the node controller marks the node Unknown, while its
    last allocatable stays on the object."""
    node = cluster.objects[("nodes", "", name)]
    node["status"]["conditions"] = [
        {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}
    ]


def cordoned(cluster, name: str) -> None:
    cluster.objects[("nodes", "", name)]["spec"] = {"unschedulable": True}


@pytest.mark.parametrize(
    ("take_out", "said"),
    [(not_ready, "gpu-1 not Ready (NodeStatusUnknown)"), (cordoned, "gpu-1 cordoned")],
    ids=["not-ready", "cordoned"],
)
def test_a_cluster_whose_only_gpu_node_takes_no_workspaces_is_degraded(cluster, take_out, said):
    cluster.add_node("gpu-1", A100 | OPERATOR, {"nvidia.com/gpu": "8", "cpu": "96"})
    cluster.add_node("cpu-1", {}, {"cpu": "16"})
    take_out(cluster, "gpu-1")
    found = health.check(kube_entry(cluster))
    assert found.status == DEGRADED, found.reason
    assert said in found.reason
    assert "none of its GPU nodes can take a workspace" in found.reason


def test_a_cluster_none_of_whose_nodes_takes_workspaces_is_degraded(cluster):
    cluster.add_node("cpu-1", {}, {"cpu": "16"})
    cordoned(cluster, "cpu-1")
    found = health.check(kube_entry(cluster, gpu_model="", gpus_per_node=0))
    assert found.status == DEGRADED
    assert "no node can take a workspace" in found.reason


def test_gpu_nodes_taking_no_workspaces_are_named_and_not_counted(cluster):
    cluster.add_node("gpu-1", A100 | OPERATOR, {"nvidia.com/gpu": "8", "cpu": "96"})
    cluster.add_node("gpu-2", A100 | OPERATOR, {"nvidia.com/gpu": "8", "cpu": "96"})
    not_ready(cluster, "gpu-2")
    found = health.check(kube_entry(cluster))
    assert found.status == READY, found.reason
    assert "2 nodes (1 taking no new workspaces: gpu-2 not Ready" in found.reason
    assert "1 with GPUs (8× nvidia.com/gpu)" in found.reason


# --- AWS (moto server) ----------------------------------------------------------------------

KEYS = {"access_key_id": "AKIAEXAMPLEKEY", "secret_access_key": "example-secret"}
ACCOUNT = "123456789012"  # moto's


def trust(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
            ],
        }
    )


@pytest.fixture
def eks_account(aws):
    """The roles and subnets an administrator prepares for EKS, in moto."""
    iam = boto3.client("iam", endpoint_url=aws, region_name="us-east-1")
    iam.create_role(RoleName="eks-cluster", AssumeRolePolicyDocument=trust("eks.amazonaws.com"))
    iam.create_role(RoleName="eks-nodes", AssumeRolePolicyDocument=trust("ec2.amazonaws.com"))
    ec2 = boto3.client("ec2", endpoint_url=aws, region_name="us-east-1")
    subnets = ec2.describe_subnets()["Subnets"]
    by_zone = {s["AvailabilityZone"]: s for s in subnets if s.get("DefaultForAz")}
    first, second = sorted(by_zone)[:2]
    vpc = by_zone[first]["VpcId"]
    group = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"][0]["GroupId"]
    return {
        "cluster_role_arn": f"arn:aws:iam::{ACCOUNT}:role/eks-cluster",
        "node_role_arn": f"arn:aws:iam::{ACCOUNT}:role/eks-nodes",
        "subnet_ids": [by_zone[first]["SubnetId"], by_zone[second]["SubnetId"]],
        "security_group_ids": [group],
        "same_zone": [by_zone[first]["SubnetId"]],
        "vpc": vpc,
    }


def aws_entry(aws_infrastructure, **settings) -> Infrastructure:
    aws_infrastructure.credentials = KEYS | settings
    aws_infrastructure.save()
    return aws_infrastructure


def eks(eks_account, **overrides) -> dict:
    keys = ("cluster_role_arn", "node_role_arn", "subnet_ids", "security_group_ids")
    return {key: eks_account[key] for key in keys} | overrides


def test_an_aws_account_with_its_roles_and_subnets_is_ready(aws_infrastructure, eks_account):
    found = health.check(aws_entry(aws_infrastructure, **eks(eks_account)))
    assert found.status == READY, found.reason
    assert f"AWS account {ACCOUNT}" in found.reason
    assert "EKS cluster gpu-paas-aws-test is created with the first workspace" in found.reason
    assert "node role and 2 subnets found, 1 security groups" in found.reason


def test_without_a_node_role_and_subnets_no_node_group_can_be_made(aws_infrastructure, aws):
    found = health.check(aws_entry(aws_infrastructure))
    assert found.status == DEGRADED
    assert "Node role ARN and Subnets not set" in found.reason


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ({"node_role_arn": f"arn:aws:iam::{ACCOUNT}:role/nobody"}, "No IAM role nobody"),
        (
            {"node_role_arn": f"arn:aws:iam::{ACCOUNT}:role/eks-cluster"},
            "does not let ec2.amazonaws.com assume it",
        ),
        (
            {"cluster_role_arn": "arn:aws:iam::999999999999:role/eks-cluster"},
            "This role is in account 999999999999",
        ),
        ({"subnet_ids": ["subnet-0deadbeef", "subnet-0feedface"]}, "Not found in us-east-1"),
        ({"security_group_ids": ["sg-0deadbeef"]}, "Not found in us-east-1: sg-0deadbeef"),
    ],
)
def test_eks_settings_aws_does_not_know_are_degraded(
    aws_infrastructure, eks_account, override, words
):
    found = health.check(aws_entry(aws_infrastructure, **eks(eks_account, **override)))
    assert found.status == DEGRADED
    assert words in found.reason


def test_subnets_in_one_zone_are_degraded(aws_infrastructure, eks_account):
    settings = eks(eks_account, subnet_ids=eks_account["same_zone"])
    found = health.check(aws_entry(aws_infrastructure, **settings))
    assert found.status == DEGRADED
    assert "at least two Availability Zones" in found.reason


def test_a_missing_cluster_without_a_cluster_role_is_degraded(aws_infrastructure, eks_account):
    settings = eks(eks_account, cluster_role_arn="")
    found = health.check(aws_entry(aws_infrastructure, **settings))
    assert found.status == DEGRADED
    assert "does not exist and no cluster role ARN is set" in found.reason


def test_super_sized_profiles_need_the_cluster_role_even_with_a_cluster(
    aws, aws_infrastructure, eks_account, profile_factory
):
    boto3.client("eks", endpoint_url=aws, region_name="us-east-1").create_cluster(
        name="gpu-paas-aws-test",
        roleArn=eks_account["cluster_role_arn"],
        resourcesVpcConfig={"subnetIds": eks_account["subnet_ids"]},
    )
    entry = aws_entry(aws_infrastructure, **eks(eks_account, cluster_role_arn=""))
    assert health.check(entry).status == READY
    profile_factory(entry, "Huge", groups=[("H100-80GB", 8)], super_sized=True)
    found = health.check(entry)
    assert found.status == DEGRADED
    assert "super-sized profiles (Huge) get a dedicated cluster" in found.reason


def test_aws_that_does_not_answer_is_unreachable(aws_infrastructure, eks_account, settings):
    entry = aws_entry(aws_infrastructure, **eks(eks_account))
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:9"
    found = health.check(entry)
    assert found.status == UNREACHABLE
    assert "Cannot reach AWS" in found.reason


def test_an_aws_entry_without_credentials_is_unreachable(aws_infrastructure):
    found = health.check(aws_infrastructure)
    assert found.status == UNREACHABLE
    assert "No credentials" in found.reason


# --- this machine -----------------------------------------------------------------------------


def test_this_machine_is_ready_when_its_workspaces_directory_is_writable(
    local_infrastructure, workspaces_root, fake_gpus
):
    found = health.check(local_infrastructure)
    assert found.status == READY
    assert f"The workspaces directory {workspaces_root} is writable" in found.reason
    assert "NVML finds 2 GPUs: 2× A100-40GB" in found.reason
    assert "isolat" in found.reason  # what the host's isolation status says


def test_this_machine_says_whether_cuda_can_use_its_gpus(
    local_infrastructure, workspaces_root, fake_gpus, settings
):
    settings.LOCAL_GPU_CHECK = "cuda"
    found = health.check(local_infrastructure)
    # Ready all the same: CPU-only workspaces work. This host has no libcuda.so.1 (where
    # one is, CUDA initialises and names what it sees).
    assert found.status == READY
    assert "NVML finds 2 GPUs: 2× A100-40GB. CUDA " in found.reason
    assert (
        "CUDA cannot use them here (libcuda.so.1 cannot be loaded" in found.reason
        or "CUDA initialises here and sees" in found.reason
    )


def test_this_machine_without_gpus_says_so(local_infrastructure, workspaces_root, monkeypatch):
    monkeypatch.setattr("pools.drivers.local.gpu_inventory", lambda: [])
    found = health.check(local_infrastructure)
    assert found.status == READY
    assert "No GPU:" in found.reason


def test_this_machine_names_a_gpu_nvml_cannot_read(
    local_infrastructure, workspaces_root, monkeypatch
):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(unreadable=pynvml.NVMLError_GpuIsLost()))
    found = health.check(local_infrastructure)
    assert found.status == READY  # workspaces go on to the GPU it can read
    assert "NVML finds 1 GPU: 1× A100-40GB. NVML cannot read GPU 1: GPU is lost." in found.reason


def test_a_workspaces_directory_that_cannot_be_written_is_degraded(
    local_infrastructure, workspaces_root, fake_gpus
):
    workspaces_root.parent.mkdir(parents=True, exist_ok=True)
    workspaces_root.write_text("a file where the directory should be")
    found = health.check(local_infrastructure)
    assert found.status == DEGRADED
    assert f"the directory {workspaces_root} is not writable" in found.reason


# --- kinds no driver provisions on ------------------------------------------------------------

NO_DRIVER = [
    {"kind": "public_cloud", "provider": "azure", "region": "eastus", "credentials": {"x": "y"}},
    {"kind": "public_cloud", "provider": "gcp", "region": "us-central1", "credentials": {"x": "y"}},
    {
        "kind": "public_cloud",
        "provider": "oci",
        "region": "us-ashburn-1",
        "credentials": {"x": "y"},
    },
    {"kind": "data_center", "platform": "vsphere", "endpoint": "https://vc", "password": "p"},
    {"kind": "data_center", "platform": "nutanix", "endpoint": "https://pc", "password": "p"},
    {"kind": "data_center", "platform": "baremetal", "hosts": "gpu-a", "password": "p"},
]


@pytest.mark.parametrize("fields", NO_DRIVER, ids=lambda f: f.get("provider") or f["platform"])
def test_an_entry_no_driver_provisions_on_is_never_offered_nor_fed_by_a_warm_pool(
    fields, member, client, profile_factory
):
    entry = Infrastructure.objects.create(name="Elsewhere", **fields)
    found = health.check(entry)
    assert found.status == CONFIG_ONLY
    assert "cannot provision on" in found.reason
    # Even a status claiming Ready (set by hand, or left over) does not make it offered.
    Infrastructure.objects.filter(pk=entry.pk).update(health_status=READY)
    entry.refresh_from_db()
    profile = profile_factory(
        entry,
        "Elsewhere GPU",
        groups=(("A100-40GB", 1),),
        published=True,
        allocation_strategy=AllocationStrategy.WARM_POOL,
        desired_capacity=3,
    )
    assert not ComputeProfile.objects.usable_by(member).filter(pk=profile.pk).exists()
    available, why = entry.availability()
    assert not available and why.startswith("Configuration only: the portal cannot provision")
    client.force_login(member)
    page = client.get(reverse("workspaces:self_service")).content.decode()
    assert "Elsewhere GPU" not in page
    response = client.post(reverse("workspaces:request", args=[profile.pk]))
    assert response.status_code == 404
    decision = warmpool.reconcile_profile(profile.pk)
    assert decision.action == LoopDecision.Action.UNUSABLE
    assert not PoolInstance.objects.filter(profile=profile).exists()


def test_the_catalog_driver_table_and_checks_name_the_same_kinds():
    assert set(DRIVERS) == set(catalog.PROVISIONABLE) == set(health.CHECKS)


# --- a status that is not Ready ---------------------------------------------------------------


def test_infrastructure_not_ready_is_shown_but_not_offered_and_feeds_no_pool(
    local_infrastructure, member, client, profile_factory
):
    profile = profile_factory(
        local_infrastructure,
        "Starter",
        published=True,
        allocation_strategy=AllocationStrategy.WARM_POOL,
        desired_capacity=2,
    )
    Infrastructure.objects.filter(pk=local_infrastructure.pk).update(
        health_status=DEGRADED, health_reason="The directory /x is not writable."
    )
    client.force_login(member)
    page = client.get(reverse("workspaces:self_service")).content.decode()
    # A data scientist is told it is unavailable and whom to ask, never the admin's reason.
    assert "Unavailable right now" in page
    assert "/x is not writable" not in page
    assert reverse("workspaces:request", args=[profile.pk]) not in page
    client.post(reverse("workspaces:request", args=[profile.pk]))
    assert not profile.workspaces.exists()
    decision = warmpool.reconcile_profile(profile.pk)
    assert decision.action == LoopDecision.Action.UNUSABLE
    assert "Degraded" in decision.reason
    assert not PoolInstance.objects.filter(profile=profile).exists()


# --- recording, scheduling, asking --------------------------------------------------------------


def test_the_task_records_the_status_its_reason_and_time_and_audits_the_change(
    local_infrastructure, workspaces_root, fake_gpus
):
    Infrastructure.objects.filter(pk=local_infrastructure.pk).update(health_status="")
    before = timezone.now()
    assert health.check_infrastructure(local_infrastructure.pk) == READY
    local_infrastructure.refresh_from_db()
    assert local_infrastructure.health_status == READY
    assert "writable" in local_infrastructure.health_reason
    assert local_infrastructure.health_checked_at >= before
    entry = AuditEntry.objects.get(object_id=str(local_infrastructure.pk))
    assert entry.actor_name == "system"
    assert entry.message.startswith("Health: Not checked yet → Ready.")
    # The same answer again changes no status: no new audit entry.
    health.check_infrastructure(local_infrastructure.pk)
    assert AuditEntry.objects.filter(object_id=str(local_infrastructure.pk)).count() == 1


def test_a_slow_check_never_overwrites_a_later_one(local_infrastructure):
    now = timezone.now()
    assert health.record(local_infrastructure, health.degraded("later"), now)
    local_infrastructure.refresh_from_db()
    stale = health.ready("earlier")
    assert not health.record(local_infrastructure, stale, now - timedelta(seconds=5))
    local_infrastructure.refresh_from_db()
    assert local_infrastructure.health_reason == "later"


def test_a_check_of_settings_edited_since_is_not_recorded(local_infrastructure):
    read = Infrastructure.objects.get(pk=local_infrastructure.pk)
    local_infrastructure.description = "edited while the check ran"
    local_infrastructure.save()
    assert not health.record(read, health.ready("old settings"), timezone.now())


def test_a_check_that_crashes_leaves_no_old_ready_standing(local_infrastructure, monkeypatch):
    def broken(infrastructure):
        raise ValueError("a bug quoting Bearer TOPSECRET")

    monkeypatch.setitem(health.CHECKS, ("local", ""), broken)
    assert health.check_infrastructure(local_infrastructure.pk) == DEGRADED
    local_infrastructure.refresh_from_db()
    assert "The health check itself failed (ValueError)" in local_infrastructure.health_reason
    # Viewers read the reason; the error's text may quote anything.
    assert "TOPSECRET" not in local_infrastructure.health_reason


def test_every_entry_is_checked_every_few_minutes(
    local_infrastructure, aws_infrastructure, monkeypatch
):
    schedule = Schedule.objects.get(name=INFRASTRUCTURE_HEALTH_NAME)  # made by a migration
    assert (schedule.func, schedule.minutes) == ("pools.health.check_all", health.HEALTH_MINUTES)
    enqueued = []
    monkeypatch.setattr("pools.health.async_task", lambda *args, **kw: enqueued.append(args))
    assert health.check_all() == 2
    assert sorted(enqueued) == sorted(
        [(health.TASK, local_infrastructure.pk), (health.TASK, aws_infrastructure.pk)]
    )


def test_saving_an_entry_asks_for_a_check_and_the_page_follows_it(
    admin_client,
    local_infrastructure,
    workspaces_root,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    enqueued = []
    monkeypatch.setattr("pools.health.async_task", lambda *args, **kw: enqueued.append(args))
    data = {"name": "This machine", "kind": "local", "description": "", "gpus_per_node": "0"}
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("profiles:infrastructure_edit", args=[local_infrastructure.pk]), data
        )
    assert response.status_code == 302
    assert enqueued == [(health.TASK, local_infrastructure.pk)]
    # Asking for a check is no edit: a save that changed nothing leaves no audit entry.
    assert not AuditEntry.objects.filter(object_id=str(local_infrastructure.pk)).exists()
    local_infrastructure.refresh_from_db()
    assert local_infrastructure.health_pending
    assert local_infrastructure.health_status == READY  # only the description was saved
    detail = admin_client.get(
        reverse("profiles:infrastructure_detail", args=[local_infrastructure.pk])
    )
    panel_url = reverse("profiles:infrastructure_health", args=[local_infrastructure.pk])
    assert f'hx-get="{panel_url}" hx-trigger="every 2s"' in detail.content.decode()
    assert "Checking…" in detail.content.decode()
    # The worker runs the check; the panel then shows the result and stops asking.
    monkeypatch.setattr("pools.drivers.local.gpu_inventory", lambda: [])
    health.check_infrastructure(local_infrastructure.pk)
    panel = admin_client.get(panel_url).content.decode()
    assert 'data-pending="no"' in panel and "hx-trigger" not in panel
    assert "is writable" in panel and "Last checked" in panel


def test_changing_what_was_checked_resets_the_status_until_the_new_check(
    admin_client, aws_infrastructure, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr("pools.health.async_task", lambda *args, **kw: None)
    data = {
        "name": "AWS test",
        "kind": "public_cloud",
        "provider": "aws",
        "region": "us-west-2",
        "kubernetes_version": "1.33",
        "instance_types": ["p4d.24xlarge", "p5.48xlarge"],
        "gpus_per_node": "0",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("profiles:infrastructure_edit", args=[aws_infrastructure.pk]), data
        )
    assert response.status_code == 302, response.content.decode()[-3000:]
    aws_infrastructure.refresh_from_db()
    assert aws_infrastructure.health_status == HealthStatus.UNCHECKED
    assert aws_infrastructure.availability()[1].startswith("No credentials")


def test_check_now_asks_for_a_check(
    admin_client, local_infrastructure, monkeypatch, django_capture_on_commit_callbacks
):
    enqueued = []
    monkeypatch.setattr("pools.health.async_task", lambda *args, **kw: enqueued.append(args))
    url = reverse("profiles:infrastructure_check", args=[local_infrastructure.pk])
    with django_capture_on_commit_callbacks(execute=True):
        panel = admin_client.post(url, HTTP_HX_REQUEST="true")
    assert 'data-pending="yes"' in panel.content.decode()
    assert enqueued == [(health.TASK, local_infrastructure.pk)]


def test_the_demo_is_usable_at_once(workspaces_root):
    load_demo()
    local = Infrastructure.objects.get(kind="local")
    assert local.health_status == READY and local.availability() == (True, "")
    aws = Infrastructure.objects.get(name="AWS us-east-1")
    assert aws.health_status == UNREACHABLE  # it has no credentials
    assert "No credentials" in aws.health_reason
