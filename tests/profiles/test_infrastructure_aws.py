"""AWS from the UI: the EKS settings (cluster and node roles, subnets, security groups) are
fields of the infrastructure form, checked against AWS (a real moto server) with field
errors, kept by every save, and shown on the entry's page."""

import importlib
import json
from http import HTTPStatus

import boto3
import pytest
from django.apps import apps as django_apps
from django.urls import reverse

from api import tokens
from api.models import Scope
from pools.drivers.aws import AwsDriver
from pools.drivers.base import GroupSpec, WorkspaceSpec
from pools.lifecycle import State
from pools.models import Workspace
from profiles.forms import InfrastructureForm
from profiles.models import Infrastructure
from tests.api.conftest import ApiClient
from tests.profiles.test_infrastructure import aws_data

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("aws")]
ACCOUNT = "123456789012"  # moto's
KEYS = {"access_key_id": "AKIAEXAMPLEKEY", "secret_access_key": "example-secret"}
EKS = {  # what the driver needs to create the cluster (moto checks none of it)
    "cluster_role_arn": f"arn:aws:iam::{ACCOUNT}:role/eks-cluster",
    "node_role_arn": f"arn:aws:iam::{ACCOUNT}:role/eks-node",
    "subnet_ids": ["subnet-0a", "subnet-0b"],
}
SPEC = WorkspaceSpec(
    name="ws-42",
    owner="mia",
    profile="big",
    profile_version=1,
    groups=(GroupSpec(0, "A100-40GB", 8, cpu=32, ram_gb=256),),
)


def trust(service: str) -> str:
    statement = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@pytest.fixture
def prepared(aws):
    """Roles, subnets in two zones and a security group, as an administrator makes them."""
    iam = boto3.client("iam", endpoint_url=aws, region_name="us-east-1")
    iam.create_role(RoleName="eks-cluster", AssumeRolePolicyDocument=trust("eks.amazonaws.com"))
    iam.create_role(RoleName="eks-nodes", AssumeRolePolicyDocument=trust("ec2.amazonaws.com"))
    ec2 = boto3.client("ec2", endpoint_url=aws, region_name="us-east-1")
    by_zone = {
        s["AvailabilityZone"]: s for s in ec2.describe_subnets()["Subnets"] if s["DefaultForAz"]
    }
    first, second = (by_zone[zone] for zone in sorted(by_zone)[:2])
    group = ec2.create_security_group(
        GroupName="gpu-nodes", Description="GPU nodes", VpcId=first["VpcId"]
    )["GroupId"]
    other_vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    elsewhere = ec2.create_security_group(
        GroupName="elsewhere", Description="another VPC", VpcId=other_vpc
    )["GroupId"]
    return {
        "eks_cluster_role_arn": f"arn:aws:iam::{ACCOUNT}:role/eks-cluster",
        "eks_node_role_arn": f"arn:aws:iam::{ACCOUNT}:role/eks-nodes",
        "eks_subnet_ids": f"{first['SubnetId']}\n{second['SubnetId']}",
        "eks_security_group_ids": group,
        "one_zone": first["SubnetId"],
        "elsewhere": elsewhere,
    }


def eks_fields(prepared, **overrides) -> dict:
    fields = {k: v for k, v in prepared.items() if k.startswith("eks_")}
    return fields | overrides


def form_errors(data: dict, instance=None) -> dict:
    form = InfrastructureForm(data, instance=instance or Infrastructure())
    form.is_valid()
    return form.errors


def test_valid_eks_settings_are_saved_where_the_driver_reads_them(prepared):
    form = InfrastructureForm(aws_data(**eks_fields(prepared)), instance=Infrastructure())
    assert form.is_valid(), form.errors
    credentials = form.save().credentials
    assert credentials["node_role_arn"] == prepared["eks_node_role_arn"]
    assert credentials["cluster_role_arn"] == prepared["eks_cluster_role_arn"]
    assert credentials["subnet_ids"] == prepared["eks_subnet_ids"].split("\n")
    assert credentials["security_group_ids"] == [prepared["eks_security_group_ids"]]
    assert credentials["role_arn"].endswith("role/gpu-paas")  # the login is kept beside them


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("eks_node_role_arn", "eks-nodes", "Not an IAM role ARN"),
        ("eks_node_role_arn", f"arn:aws:iam::{ACCOUNT}:role/missing", "No IAM role missing"),
        (
            "eks_cluster_role_arn",
            f"arn:aws:iam::{ACCOUNT}:role/eks-nodes",
            "does not let eks.amazonaws.com assume it",
        ),
        (
            "eks_node_role_arn",
            "arn:aws:iam::210987654321:role/eks-nodes",
            "This role is in account 210987654321",
        ),
        ("eks_subnet_ids", "subnet-0deadbeef, subnet-0feedface", "Not found in us-east-1"),
        ("eks_subnet_ids", "subnet-0a;drop", "Not an ID like subnet-0abc1234"),
        ("eks_security_group_ids", "sg-0deadbeef", "Not found in us-east-1: sg-0deadbeef"),
        ("eks_cluster_name", "-bad name", "starting with a letter or digit"),
    ],
)
def test_eks_settings_aws_refutes_are_field_errors(prepared, field, value, message):
    errors = form_errors(aws_data(**eks_fields(prepared, **{field: value})))
    assert message in " ".join(errors.get(field, [])), errors


def test_subnets_in_one_zone_and_groups_of_another_vpc_are_refused(prepared):
    data = aws_data(
        **eks_fields(
            prepared,
            eks_subnet_ids=prepared["one_zone"],
            eks_security_group_ids=prepared["elsewhere"],
        )
    )
    errors = form_errors(data)
    assert "at least two Availability Zones" in errors["eks_subnet_ids"][0]
    assert "Not in the subnets' VPC" in errors["eks_security_group_ids"][0]


def test_a_cluster_another_entry_uses_in_the_region_is_refused(prepared, aws_infrastructure):
    """Each entry finds its workspaces' node groups by name on its cluster: two entries on
    one cluster would each list (and count) the other's."""
    aws_infrastructure.credentials = {**aws_infrastructure.credentials, "cluster_name": "shared"}
    aws_infrastructure.save()
    errors = form_errors(aws_data(**eks_fields(prepared, eks_cluster_name="shared")))
    assert errors["eks_cluster_name"] == [
        "AWS test already uses EKS cluster shared in us-east-1. "
        "Give this entry a cluster of its own."
    ]
    elsewhere = aws_data(region="eu-west-1", **eks_fields(prepared, eks_cluster_name="shared"))
    assert "eks_cluster_name" not in form_errors(elsewhere)


def test_a_default_cluster_name_another_entry_uses_is_refused(prepared, aws_infrastructure):
    """ "AWS test" and "AWS-test" both default to gpu-paas-aws-test."""
    errors = form_errors(aws_data(name="AWS-test", **eks_fields(prepared)))
    assert errors["eks_cluster_name"] == [
        "Left empty, this is gpu-paas-aws-test (from this entry's name), which AWS test "
        "already uses in us-east-1. Give this entry a cluster of its own."
    ]
    named = aws_data(name="AWS-test", **eks_fields(prepared, eks_cluster_name="gpu-paas-b"))
    assert "eks_cluster_name" not in form_errors(named)


def test_a_new_entry_stores_the_cluster_name_it_derives_from_its_name(prepared):
    form = InfrastructureForm(aws_data(**eks_fields(prepared)), instance=Infrastructure())
    assert form.is_valid(), form.errors
    assert form.save().credentials["cluster_name"] == "gpu-paas-aws-prod"


def test_renaming_an_entry_keeps_its_eks_cluster_and_its_node_groups_deletable(
    aws, aws_infrastructure, org_admin
):
    """The cluster name was derived from the entry's current name on every call: after a
    rename the driver looked at a cluster that does not exist, deprovisioning found no node
    group and said done, and the GPU node groups ran on, billed and seen by nothing."""
    aws_infrastructure.credentials = {**KEYS, **EKS}
    aws_infrastructure.save()
    driver = AwsDriver(aws_infrastructure)
    assert driver.settings.cluster_name == "gpu-paas-aws-test"
    assert driver.provision(SPEC).ready

    api = ApiClient(tokens.create_token(org_admin, "rename", Scope.READ_WRITE, 30)[1])
    url = f"/api/v1/infrastructure/{aws_infrastructure.pk}/"
    renamed = api.patch(url, {"name": "AWS production"}, **{"If-Match": api.get(url)["ETag"]})
    assert renamed.status_code == HTTPStatus.OK, renamed.content

    aws_infrastructure.refresh_from_db()
    assert aws_infrastructure.credentials["cluster_name"] == "gpu-paas-aws-test"
    AwsDriver(aws_infrastructure).deprovision(SPEC)
    eks = boto3.client("eks", endpoint_url=aws, region_name="us-east-1")
    assert eks.list_nodegroups(clusterName="gpu-paas-aws-test")["nodegroups"] == []


def test_a_renamed_entrys_cluster_is_still_refused_to_a_new_entry(prepared, aws_infrastructure):
    aws_infrastructure.name = "Renamed"
    aws_infrastructure.credentials = {"cluster_name": "gpu-paas-aws-test"}
    aws_infrastructure.save()
    errors = form_errors(aws_data(name="AWS-test", **eks_fields(prepared)))
    assert errors["eks_cluster_name"] == [
        "Left empty, this is gpu-paas-aws-test (from this entry's name), which Renamed "
        "already uses in us-east-1. Give this entry a cluster of its own."
    ]


def test_existing_aws_entries_get_the_cluster_name_they_use_stored(aws_infrastructure):
    """The migration stores the name the driver derived, and keeps a name already given."""
    named = Infrastructure.objects.create(
        name="AWS named",
        kind=aws_infrastructure.kind,
        provider="aws",
        region="us-east-1",
        credentials={**KEYS, "cluster_name": "shared-gpu"},
    )
    migration = importlib.import_module("profiles.migrations.0009_pin_eks_cluster_names")
    migration.pin_cluster_names(django_apps, None)

    aws_infrastructure.refresh_from_db()
    named.refresh_from_db()
    assert aws_infrastructure.credentials == {"cluster_name": "gpu-paas-aws-test"}
    assert named.credentials == {**KEYS, "cluster_name": "shared-gpu"}


def as_the_browser_submits_it(instance: Infrastructure) -> dict:
    """The edit page's values, submitted unchanged (secrets blank: "leave blank to keep")."""
    form = InfrastructureForm(instance=instance)
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if value is None or value is False or getattr(field, "secret_is_set", False):
            continue
        data[name] = value
    return data


def test_settings_set_another_way_survive_a_save_from_the_ui(
    admin_client, prepared, aws_infrastructure
):
    aws_infrastructure.credentials = {
        "access_key_id": "AKIAEXAMPLEKEY",
        "secret_access_key": "example-secret",
        "cluster_name": "shared-gpu",
        "cluster_role_arn": prepared["eks_cluster_role_arn"],
        "node_role_arn": prepared["eks_node_role_arn"],
        "subnet_ids": prepared["eks_subnet_ids"].replace("\n", ", "),  # as a script wrote it
    }
    aws_infrastructure.save()
    data = as_the_browser_submits_it(aws_infrastructure) | {"description": "edited"}
    url = reverse("profiles:infrastructure_edit", args=[aws_infrastructure.pk])
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[-2000:]
    aws_infrastructure.refresh_from_db()
    credentials = aws_infrastructure.credentials
    assert credentials["cluster_name"] == "shared-gpu"
    assert credentials["node_role_arn"] == prepared["eks_node_role_arn"]
    assert credentials["subnet_ids"] == prepared["eks_subnet_ids"].split("\n")
    assert credentials["secret_access_key"] == "example-secret"
    page = admin_client.get(aws_infrastructure.get_absolute_url()).content.decode()
    assert "<th>Node role ARN</th><td>arn:aws:iam::123456789012:role/eks-nodes</td>" in page
    assert "🔒 Set (access_key_id, secret_access_key)" in page


def test_renaming_an_entry_saved_without_a_cluster_name_keeps_the_cluster_it_used(
    admin_client, aws_infrastructure
):
    """An entry stored before cluster names were stored (or by other means) gets the name
    its workspaces run on stored at its next save, not one from its new name."""
    aws_infrastructure.credentials = dict(KEYS)
    aws_infrastructure.save()
    data = as_the_browser_submits_it(aws_infrastructure) | {"name": "AWS production"}
    url = reverse("profiles:infrastructure_edit", args=[aws_infrastructure.pk])
    response = admin_client.post(url, data)
    assert response.status_code == HTTPStatus.FOUND, response.content.decode()[-2000:]
    aws_infrastructure.refresh_from_db()
    assert aws_infrastructure.name == "AWS production"
    assert aws_infrastructure.credentials["cluster_name"] == "gpu-paas-aws-test"
    assert AwsDriver(aws_infrastructure).settings.cluster_name == "gpu-paas-aws-test"


def test_an_unrelated_edit_does_not_ask_aws(prepared, settings):
    form = InfrastructureForm(aws_data(**eks_fields(prepared)), instance=Infrastructure())
    assert form.is_valid(), form.errors
    saved = form.save()
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:9"  # AWS does not answer now
    data = as_the_browser_submits_it(saved) | {"description": "new words"}
    form = InfrastructureForm(data, instance=saved)
    assert form.is_valid(), form.errors
    assert form.health_unaffected(), form.changed_data


def test_the_form_shows_the_eks_fields_for_aws(admin_client):
    page = admin_client.get(reverse("profiles:infrastructure_add")).content.decode()
    assert "Amazon EKS" in page
    for name in (
        "eks_cluster_role_arn",
        "eks_node_role_arn",
        "eks_subnet_ids",
        "eks_security_group_ids",
    ):
        assert f'name="{name}"' in page


@pytest.fixture
def running_workspace(aws_infrastructure, profile_factory, member):
    aws_infrastructure.credentials = dict(KEYS)
    aws_infrastructure.save()
    profile = profile_factory(aws_infrastructure, "Big", groups=(("A100-40GB", 8),))
    return Workspace.objects.create(
        owner=member, profile=profile, infrastructure=aws_infrastructure, state=State.STOPPED
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"region": "eu-west-1"}, "region"),
        ({"eks_cluster_name": "another-cluster"}, "eks_cluster_name"),
    ],
)
def test_an_entry_with_workspaces_cannot_move_to_another_cluster_or_region(
    running_workspace, change, field
):
    """The driver finds the node groups on the entry's cluster in its region: moved, the
    stopped workspace's node group would be left running where nothing looks."""
    entry = running_workspace.infrastructure
    errors = form_errors(as_the_browser_submits_it(entry) | change, instance=entry)
    assert errors[field] == [
        "Workspaces, warm-pool instances or services still run on EKS cluster "
        "gpu-paas-aws-test in us-east-1; moving this entry would leave their node groups "
        "running, unmanaged. Delete them (and empty its warm pools) first."
    ]


def test_an_entry_whose_workspaces_are_deleted_may_move(running_workspace):
    Workspace.objects.filter(pk=running_workspace.pk).update(state=State.DELETED)
    entry = running_workspace.infrastructure
    data = as_the_browser_submits_it(entry) | {"eks_cluster_name": "another-cluster"}
    assert "eks_cluster_name" not in form_errors(data, instance=entry)


@pytest.mark.parametrize(
    ("change", "field"),
    [({"kind": "kubernetes"}, "kind"), ({"provider": "gcp"}, "provider")],
)
def test_an_entry_with_workspaces_keeps_its_kind_and_provider(running_workspace, change, field):
    """The kind and provider choose the driver that deletes what runs there."""
    entry = running_workspace.infrastructure
    errors = form_errors(as_the_browser_submits_it(entry) | change, instance=entry)
    assert errors[field][0].startswith("Workspaces, warm-pool instances or services still run")
