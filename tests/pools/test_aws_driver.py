"""The AWS driver and credential checks against a real moto server (tests/pools/moto_server.py)."""

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from pools import tasks
from pools.drivers.aws import AwsDriver, choose_instance_type, translate
from pools.drivers.base import GroupSpec, PermanentError, TransientError, WorkspaceSpec
from pools.lifecycle import State
from pools.models import Workspace
from profiles import catalog
from profiles.aws_checks import (
    catalog_gpu_model,
    check_credentials,
    describe_instance_type_facts,
)
from profiles.choices import HealthStatus, InfrastructureKind
from profiles.models import Infrastructure, InstanceType
from tests.pools import moto_server

pytestmark = pytest.mark.django_db

# The real moto server (a subprocess) and a clean state per test.
moto_endpoint = moto_server.moto_endpoint
aws = moto_server.aws

KEYS = {"access_key_id": "AKIAEXAMPLEKEY", "secret_access_key": "example-secret"}
EKS = {
    "cluster_role_arn": "arn:aws:iam::123456789012:role/eks-cluster",
    "node_role_arn": "arn:aws:iam::123456789012:role/eks-node",
    "subnet_ids": "subnet-0a, subnet-0b",
}
CLUSTER = "gpu-paas-aws-test"


def spec_of(*groups: GroupSpec, name="ws-42", **labels) -> WorkspaceSpec:
    return WorkspaceSpec(
        name=name, owner="mia", profile="big", profile_version=1, groups=groups, labels=labels
    )


A100 = spec_of(GroupSpec(0, "A100-40GB", 8, cpu=32, ram_gb=256))


@pytest.fixture
def infrastructure(aws_infrastructure):
    aws_infrastructure.credentials = {**KEYS, **EKS}
    aws_infrastructure.save()
    return aws_infrastructure


@pytest.fixture
def driver(aws, infrastructure):
    return AwsDriver(infrastructure)


@pytest.fixture
def eks(aws):
    return boto3.client("eks", endpoint_url=aws, region_name="us-east-1")


@pytest.fixture
def other_entry(infrastructure):
    """A second AWS entry on the same EKS cluster: "AWS-test" slugifies like "AWS test",
    and was saved before the form refused a cluster another entry uses."""
    other = Infrastructure.objects.create(
        name="AWS-test",
        kind=InfrastructureKind.PUBLIC_CLOUD,
        provider="aws",
        region="us-east-1",
        kubernetes_version="1.33",
        health_status=HealthStatus.READY,
        credentials=infrastructure.credentials,
    )
    InstanceType.objects.create(
        infrastructure=other, name="p4d.24xlarge", gpu_model="A100-40GB", gpu_count=8,
        gpu_memory_gb=40, vcpu=96, ram_gb=1152,
    )  # fmt: skip
    return other


def desired_sizes(eks, cluster=CLUSTER) -> dict[str, int]:
    return {
        name: eks.describe_nodegroup(clusterName=cluster, nodegroupName=name)["nodegroup"][
            "scalingConfig"
        ]["desiredSize"]
        for name in eks.list_nodegroups(clusterName=cluster)["nodegroups"]
    }


# --- credentials and instance type facts --------------------------------------------------


def test_check_credentials_accepts_keys_moto_accepts(aws):
    ok, message = check_credentials(KEYS, "us-east-1", endpoint_url=aws)
    assert ok
    assert "123456789012" in message


def test_check_credentials_assumes_the_role_first(aws):
    role = {"role_arn": "arn:aws:iam::123456789012:role/gpu-paas", "external_id": "ext-42"}
    ok, message = check_credentials(role, "us-east-1", endpoint_url=aws)
    assert ok
    assert "gpu-paas-portal" in message  # the assumed-role session name


def test_check_credentials_without_any_is_refused(aws):
    ok, message = check_credentials({}, "us-east-1", endpoint_url=aws)
    assert not ok
    assert "No AWS credentials" in message


def test_check_credentials_reports_an_unreachable_endpoint():
    ok, message = check_credentials(KEYS, "us-east-1", endpoint_url="http://127.0.0.1:9")
    assert not ok
    assert "Cannot reach AWS" in message


def test_instance_type_facts_of_a_p4d(aws):
    facts = describe_instance_type_facts(["p4d.24xlarge"], "us-east-1", KEYS, endpoint_url=aws)
    p4d = facts["p4d.24xlarge"]
    assert (p4d.gpu_model, p4d.gpu_count, p4d.gpu_memory_gb) == ("A100-40GB", 8, 40)
    assert (p4d.vcpu, p4d.ram_gb) == (96, 1152)


def test_instance_type_facts_agree_with_the_catalog_and_skip_unknown_names(aws):
    names = [it.name for it in catalog.instance_types_for("aws")]
    facts = describe_instance_type_facts(
        [*names, "zz9.nothing"], "us-east-1", KEYS, endpoint_url=aws
    )
    assert "zz9.nothing" not in facts
    for it in catalog.instance_types_for("aws"):
        found = facts[it.name]
        expected = (it.gpu_model or "", it.gpu_count, it.gpu_memory_gb, it.vcpu, it.ram_gb)
        got = (found.gpu_model, found.gpu_count, found.gpu_memory_gb, found.vcpu, found.ram_gb)
        assert got == expected, it.name


@pytest.mark.parametrize(
    ("name", "manufacturer", "mib", "code"),
    [
        ("A100", "NVIDIA", 81920, "A100-80GB"),
        ("V100", "NVIDIA", 16384, "V100-16GB"),
        ("H100", "NVIDIA", 81920, "H100-80GB"),
        ("A10G", "NVIDIA", 22888, "A10G"),
        ("Radeon Pro V520", "AMD", 8192, ""),
        ("Gaudi", "Habana", 32768, ""),
    ],
)
def test_ec2_gpu_names_map_to_catalog_codes(name, manufacturer, mib, code):
    assert catalog_gpu_model(name, manufacturer, mib) == code


# --- the driver -------------------------------------------------------------------------


def test_provision_creates_the_cluster_and_a_node_group_per_group(driver, eks):
    spec = spec_of(
        GroupSpec(0, "A100-40GB", 4, "3g.20gb", cpu=16, ram_gb=64),
        GroupSpec(1, "H100-80GB", 8, cpu=96, ram_gb=1024, node_count=2),
    )
    steps: list[str] = []
    result = driver.provision(spec, steps.append)
    assert result.ready  # moto makes clusters and node groups ACTIVE at once
    assert f"EKS cluster {CLUSTER} creation started" in steps
    assert "node group ws-42-g1 (2× p5.48xlarge) creation started" in steps
    cluster = eks.describe_cluster(name=CLUSTER)["cluster"]
    assert cluster["version"] == "1.33"
    assert cluster["resourcesVpcConfig"]["subnetIds"] == ["subnet-0a", "subnet-0b"]
    mig = eks.describe_nodegroup(clusterName=CLUSTER, nodegroupName="ws-42-g0")["nodegroup"]
    assert mig["instanceTypes"] == ["p4d.24xlarge"]  # 4 × 3g.20gb needs 2 A100s
    assert mig["amiType"] == "AL2023_x86_64_NVIDIA"
    assert mig["tags"]["gpupaas.io/workspace"] == "ws-42"
    assert mig["labels"] == {"gpupaas.io/workspace": "ws-42", "gpupaas.io/group": "0"}
    h100 = eks.describe_nodegroup(clusterName=CLUSTER, nodegroupName="ws-42-g1")["nodegroup"]
    assert h100["scalingConfig"] == {"minSize": 2, "maxSize": 2, "desiredSize": 2}
    assert result.detail["nodegroups"] == {"ws-42-g0": "ACTIVE", "ws-42-g1": "ACTIVE"}
    assert result.connection["kubeconfig"].startswith(f"aws eks update-kubeconfig --name {CLUSTER}")


def test_running_provision_twice_makes_one_set_of_node_groups(driver, eks):
    driver.provision(A100)
    steps: list[str] = []
    assert driver.provision(A100, steps.append).ready
    assert not [step for step in steps if "creation started" in step]
    assert eks.list_clusters()["clusters"] == [CLUSTER]
    assert eks.list_nodegroups(clusterName=CLUSTER)["nodegroups"] == ["ws-42-g0"]


def test_a_node_group_is_not_ready_while_creating(driver, eks, monkeypatch):
    driver.provision(A100)
    describe = driver.eks.describe_nodegroup

    def creating(**params):
        found = describe(**params)
        found["nodegroup"]["status"] = "CREATING"
        return found

    monkeypatch.setattr(driver.eks, "describe_nodegroup", creating)
    result = driver.status(A100)
    assert not result.ready
    assert result.detail["reason"] == "node group ws-42-g0 is creating"


def test_provision_scales_an_existing_node_group_to_the_groups_size(driver, eks):
    driver.provision(A100)
    bigger = spec_of(GroupSpec(0, "A100-40GB", 8, cpu=32, ram_gb=256, node_count=3))
    steps: list[str] = []
    driver.provision(bigger, steps.append)
    assert "node group ws-42-g0 scaled to 3 nodes" in steps
    found = eks.describe_nodegroup(clusterName=CLUSTER, nodegroupName="ws-42-g0")["nodegroup"]
    assert found["scalingConfig"]["desiredSize"] == 3


def test_deprovision_deletes_the_node_groups_and_can_run_twice(driver, eks):
    driver.provision(A100)
    steps: list[str] = []
    driver.deprovision(A100, steps.append)
    assert "node group ws-42-g0 deleted" in steps
    assert eks.list_nodegroups(clusterName=CLUSTER)["nodegroups"] == []
    assert eks.list_clusters()["clusters"] == [CLUSTER]  # the shared cluster stays
    driver.deprovision(A100)


def test_a_super_sized_workspace_gets_and_loses_a_dedicated_cluster(driver, eks):
    spec = spec_of(
        GroupSpec(0, "H100-80GB", 8, node_count=4),
        name="ws-9",
        **{"gpupaas.io/dedicated-cluster": "true"},
    )
    assert driver.provision(spec).ready
    dedicated = f"{CLUSTER}-ws-9"
    assert eks.list_clusters()["clusters"] == [dedicated]
    assert eks.describe_cluster(name=dedicated)["cluster"]["tags"]["gpupaas.io/workspace"] == "ws-9"
    assert driver.managed_names() == {"ws-9"}
    driver.deprovision(spec)
    assert eks.list_clusters()["clusters"] == []
    driver.deprovision(spec)


def test_managed_names_come_from_node_group_tags(driver):
    driver.provision(A100)
    driver.provision(spec_of(GroupSpec(0, "H100-80GB", 8), name="pool-3"))
    assert driver.managed_names() == {"ws-42", "pool-3"}
    driver.deprovision(A100)
    assert driver.managed_names() == {"pool-3"}


def test_an_entry_counts_only_its_own_node_groups_on_a_shared_cluster(driver, eks, other_entry):
    other = AwsDriver(other_entry)
    assert other.settings.cluster_name == driver.settings.cluster_name == CLUSTER
    driver.provision(A100)
    other.provision(spec_of(GroupSpec(0, "A100-40GB", 8), name="ws-43"))
    tags = eks.describe_nodegroup(clusterName=CLUSTER, nodegroupName="ws-43-g0")["nodegroup"]
    assert tags["tags"]["gpupaas.io/infrastructure"] == str(other_entry.pk)
    assert driver.managed_names() == {"ws-42"}
    assert other.managed_names() == {"ws-43"}
    assert [n.name for n in driver.inventory()] == [f"{CLUSTER}/ws-42-g0/0"]


def test_the_sweep_of_one_entry_does_not_reap_another_entrys_live_workspace(
    driver, eks, other_entry, org_admin, profile_factory
):
    profile = profile_factory(other_entry, "On B", groups=[("A100-40GB", 8)])
    workspace = Workspace.objects.create(
        owner=org_admin, profile=profile, infrastructure=other_entry, state=State.READY, name="b"
    )
    name = workspace.resource_name
    assert AwsDriver(other_entry).provision(spec_of(GroupSpec(0, "A100-40GB", 8), name=name)).ready

    assert tasks.reap_orphans() == []

    assert eks.list_nodegroups(clusterName=CLUSTER)["nodegroups"] == [f"{name}-g0"]


def test_each_node_group_gets_its_own_idempotency_token(driver, infrastructure):
    """A cluster name may have 100 characters; EKS reads 64 of a token, so a token that
    began with the cluster's name was the same for every node group on it."""
    infrastructure.credentials = {**infrastructure.credentials, "cluster_name": "c" * 64}
    infrastructure.save()
    driver = AwsDriver(infrastructure)
    tokens = []
    create = driver.eks.create_nodegroup

    def recording(**params):
        tokens.append(params["clientRequestToken"])
        return create(**params)

    driver.eks.create_nodegroup = recording
    driver.provision(
        spec_of(
            GroupSpec(0, "A100-40GB", 8, cpu=32, ram_gb=256),
            GroupSpec(1, "A100-40GB", 8, cpu=32, ram_gb=256),
        )
    )
    driver.provision(spec_of(GroupSpec(0, "A100-40GB", 8, cpu=32, ram_gb=256), name="ws-43"))
    assert len(tokens) == len(set(tokens)) == 3
    assert all(len(token) <= 64 for token in tokens)


def test_inventory_lists_a_node_per_node_group_node(driver):
    driver.provision(spec_of(GroupSpec(0, "A100-40GB", 8, node_count=2)))
    nodes = driver.inventory()
    assert [n.name for n in nodes] == [f"{CLUSTER}/ws-42-g0/0", f"{CLUSTER}/ws-42-g0/1"]
    assert len(nodes[0].gpus) == 8
    assert nodes[0].gpus[0].gpu_model == "A100-40GB"
    assert nodes[0].labels["node.kubernetes.io/instance-type"] == "p4d.24xlarge"


def test_status_without_a_cluster_is_not_ready(driver):
    result = driver.status(A100)
    assert not result.ready
    assert "is missing" in result.detail["reason"]


def test_a_group_no_instance_type_fits_fails_before_anything_is_made(driver, eks):
    spec = spec_of(GroupSpec(0, "A100-40GB", 8), GroupSpec(1, "L4", 1))
    with pytest.raises(PermanentError, match="No instance type enabled"):
        driver.provision(spec)
    assert eks.list_clusters()["clusters"] == []


def test_a_missing_cluster_needs_roles_and_subnets(aws, aws_infrastructure):
    aws_infrastructure.credentials = dict(KEYS)
    aws_infrastructure.save()
    with pytest.raises(PermanentError, match="cluster_role_arn and subnet_ids"):
        AwsDriver(aws_infrastructure).provision(A100)


def test_missing_credentials_are_permanent(aws, aws_infrastructure):
    with pytest.raises(PermanentError, match="No AWS credentials"):
        AwsDriver(aws_infrastructure).status(A100)


def test_an_unreachable_endpoint_is_transient(infrastructure, settings):
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:9"
    with pytest.raises(TransientError, match="Cannot reach AWS"):
        AwsDriver(infrastructure).status(A100)


# --- instance type choice and error mapping ----------------------------------------------


def test_the_smallest_fitting_enabled_instance_type_is_chosen(infrastructure):
    enabled = list(infrastructure.instance_types.all())
    assert choose_instance_type(GroupSpec(0, "H100-80GB", 1), enabled) == "p5.48xlarge"
    assert choose_instance_type(GroupSpec(0, "A100-40GB", 7, "1g.5gb"), enabled) == "p4d.24xlarge"
    assert choose_instance_type(GroupSpec(0, "A100-40GB", 9), enabled) == ""
    assert choose_instance_type(GroupSpec(0, "H100-80GB", 1, instance_type="p5.4xlarge"), []) == (
        "p5.4xlarge"
    )


def client_error(code: str, status: int = 400) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": f"{code} happened"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "CreateNodegroup")


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (client_error("ThrottlingException", 429), TransientError),
        (client_error("ResourceInUseException", 409), TransientError),
        (client_error("ServiceUnavailableException", 503), TransientError),
        (client_error("InternalFailure", 500), TransientError),
        (EndpointConnectionError(endpoint_url="https://eks"), TransientError),
        (client_error("AccessDeniedException", 403), PermanentError),
        (client_error("InvalidClientTokenId", 403), PermanentError),
        (client_error("InvalidParameterException"), PermanentError),
        (client_error("ResourceLimitExceededException"), PermanentError),
    ],
)
def test_aws_errors_map_to_transient_or_permanent(error, kind):
    translated = translate(error, "creating node group ws-42-g0")
    assert type(translated) is kind
    refused = any(word in str(error) for word in ("AccessDenied", "ClientTokenId"))
    assert ("refused the credentials" in str(translated)) == refused


# --- stop ---------------------------------------------------------------------------------


def test_stop_scales_down_a_node_group_the_profile_no_longer_lists(driver, eks):
    """A profile may lose a resource group while its workspace runs (only its version is
    bumped): stop finds the node groups by name, as deprovision does."""
    before = spec_of(
        GroupSpec(0, "A100-40GB", 8, cpu=32, ram_gb=256),
        GroupSpec(1, "A100-40GB", 8, cpu=32, ram_gb=256, node_count=2),
    )
    assert driver.provision(before).ready
    driver.stop(spec_of(GroupSpec(0, "A100-40GB", 8, cpu=32, ram_gb=256)))
    assert desired_sizes(eks) == {"ws-42-g0": 0, "ws-42-g1": 0}


def test_stop_after_the_profile_became_super_sized_stops_the_nodes(driver, eks):
    """The spec now names a dedicated cluster that does not exist; the nodes run on the
    shared one."""
    assert driver.provision(A100).ready
    now_super = spec_of(*A100.groups, **{"gpupaas.io/dedicated-cluster": "true"})
    driver.stop(now_super)
    assert desired_sizes(eks) == {"ws-42-g0": 0}


def test_stopping_a_workspace_whose_profile_lost_a_group_stops_all_its_nodes(
    driver, eks, infrastructure, org_admin, profile_factory
):
    profile = profile_factory(infrastructure, "Two", groups=[("A100-40GB", 8), ("A100-40GB", 8)])
    profile.resource_groups.update(cpu=32, ram_gb=256)
    workspace = Workspace.objects.create(
        owner=org_admin, profile=profile, infrastructure=infrastructure, state=State.READY,
        name="two",
    )  # fmt: skip
    assert driver.provision(workspace.spec()).ready
    profile.resource_groups.filter(position=1).delete()
    profile.version += 1
    profile.save()
    Workspace.objects.filter(pk=workspace.pk).update(state=State.STOPPING)

    assert tasks.stop_workspace(workspace.pk) == "stopped"

    name = workspace.resource_name
    assert desired_sizes(eks) == {f"{name}-g0": 0, f"{name}-g1": 0}
    # Start brings back what the profile asks now: its one group.
    assert driver.start(workspace.spec()).ready
    assert desired_sizes(eks) == {f"{name}-g0": 1, f"{name}-g1": 0}


def test_start_after_the_profile_became_super_sized_starts_where_the_nodes_are(driver, eks):
    """Its node groups are on the shared cluster; no dedicated cluster was ever made for
    it, so Start scales them back there (it said "cluster gone" and could never start)."""
    assert driver.provision(A100).ready
    now_super = spec_of(*A100.groups, **{"gpupaas.io/dedicated-cluster": "true"})
    driver.stop(now_super)

    assert driver.start(now_super).ready
    assert desired_sizes(eks) == {"ws-42-g0": 1}
    assert eks.list_clusters()["clusters"] == [CLUSTER]  # no dedicated cluster made
    assert driver.status(now_super).ready


def test_start_after_the_profile_stopped_being_super_sized_starts_on_its_own_cluster(driver, eks):
    dedicated = spec_of(*A100.groups, **{"gpupaas.io/dedicated-cluster": "true"})
    assert driver.provision(dedicated).ready
    driver.stop(A100)
    own = f"{CLUSTER}-ws-42"
    assert desired_sizes(eks, own) == {"ws-42-g0": 0}

    assert driver.start(A100).ready
    assert eks.list_clusters()["clusters"] == [own]  # the shared cluster is not made
    assert desired_sizes(eks, own) == {"ws-42-g0": 1}


# --- super-sized profiles -----------------------------------------------------------------


def test_a_super_sized_profile_gets_a_dedicated_cluster(
    driver, eks, infrastructure, profile_factory
):
    profile = profile_factory(infrastructure, "Huge", groups=[("H100-80GB", 8)], super_sized=True)
    profile.resource_groups.update(node_count=2, cpu=96, ram_gb=1024)
    spec = WorkspaceSpec.from_profile("ws-77", "mia", profile)
    assert spec.labels["gpupaas.io/dedicated-cluster"] == "true"
    assert driver.provision(spec).ready
    dedicated = f"{CLUSTER}-ws-77"
    assert eks.list_clusters()["clusters"] == [dedicated]  # the shared cluster is not made
    found = eks.describe_nodegroup(clusterName=dedicated, nodegroupName="ws-77-g0")["nodegroup"]
    assert found["scalingConfig"]["desiredSize"] == 2
    # An ordinary profile on the same entry shares the infrastructure's cluster.
    small = profile_factory(infrastructure, "Small", groups=[("A100-40GB", 8)])
    small.resource_groups.update(cpu=32, ram_gb=256)
    assert (
        "gpupaas.io/dedicated-cluster" not in WorkspaceSpec.from_profile("ws-78", "", small).labels
    )
    driver.provision(WorkspaceSpec.from_profile("ws-78", "", small))
    assert sorted(eks.list_clusters()["clusters"]) == [CLUSTER, dedicated]
    driver.deprovision(spec)
    assert eks.list_clusters()["clusters"] == [CLUSTER]


def test_the_sweeps_bare_spec_removes_node_groups_and_a_dedicated_cluster(driver, eks):
    driver.provision(spec_of(GroupSpec(0, "A100-40GB", 8), GroupSpec(1, "H100-80GB", 8)))
    dedicated = spec_of(
        GroupSpec(0, "H100-80GB", 8), name="ws-9", **{"gpupaas.io/dedicated-cluster": "true"}
    )
    driver.provision(dedicated)
    driver.provision(spec_of(GroupSpec(0, "A100-40GB", 8), name="ws-4"))  # a prefix of ws-42
    bare = WorkspaceSpec(name="ws-42", owner="", profile="", profile_version=0, groups=())
    steps: list[str] = []
    driver.deprovision(bare, steps.append)
    assert "node group ws-42-g1 deleted" in steps
    assert eks.list_nodegroups(clusterName=CLUSTER)["nodegroups"] == ["ws-4-g0"]
    driver.deprovision(
        WorkspaceSpec(name="ws-9", owner="", profile="", profile_version=0, groups=())
    )
    assert sorted(eks.list_clusters()["clusters"]) == [CLUSTER]


def test_a_cluster_not_tagged_with_the_workspace_is_left_alone(driver, eks):
    eks.create_cluster(
        name=f"{CLUSTER}-ws-5",
        roleArn=EKS["cluster_role_arn"],
        resourcesVpcConfig={"subnetIds": ["subnet-0a"]},
        tags={"team": "someone else's"},
    )
    steps: list[str] = []
    driver.deprovision(spec_of(name="ws-5"), steps.append)
    assert f"EKS cluster {CLUSTER}-ws-5 is not tagged as ws-5's; left alone" in steps
    assert f"{CLUSTER}-ws-5" in eks.list_clusters()["clusters"]
