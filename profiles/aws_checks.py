"""Talking to AWS on behalf of an infrastructure entry: sessions, credential checks, facts.

Credentials are one of the two sets the catalog names for AWS: a role the portal assumes
(`role_arn` + `external_id`, through STS with the portal's own identity from its
environment) or an IAM user's key (`access_key_id` + `secret_access_key`).

Beside them the entry's `credentials` hold the EKS settings the driver provisions with
(`EKS_SETTINGS`: cluster name, cluster role, node role, subnets, security groups);
`check_eks_settings` asks IAM and EC2 whether they exist and fit EKS, for the form (field
errors) and for the engine's health check.

`AWS_ENDPOINT_URL` (a Django setting, from the environment) points every client at another
endpoint; the tests set it to a moto server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.utils.text import slugify

from profiles import catalog

SESSION_NAME = "gpu-paas-portal"
CLIENT_CONFIG = Config(
    retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30
)
# Error codes that mean "these credentials are no good", whatever the service.
REFUSED_CODES = {
    "AccessDenied",
    "AccessDeniedException",
    "AuthFailure",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
}


class AwsCredentialsError(Exception):
    """The credentials are missing or AWS refused them."""


def endpoint_url() -> str | None:
    return getattr(settings, "AWS_ENDPOINT_URL", None) or None


def session_for(
    provider_credentials: dict, region: str, endpoint_url: str | None = None
) -> boto3.Session:
    """A boto3 session acting with the infrastructure's credentials in its region."""
    credentials = provider_credentials or {}
    role_arn = (credentials.get("role_arn") or "").strip()
    if role_arn:
        sts = boto3.Session(region_name=region).client(
            "sts", endpoint_url=endpoint_url, config=CLIENT_CONFIG
        )
        params = {"RoleArn": role_arn, "RoleSessionName": SESSION_NAME}
        if credentials.get("external_id"):
            params["ExternalId"] = credentials["external_id"].strip()
        try:
            assumed = sts.assume_role(**params)["Credentials"]
        except ClientError as error:
            raise AwsCredentialsError(
                f"AWS refused to let the portal assume {role_arn}: "
                f"{error.response['Error'].get('Message', '')}"
            ) from error
        return boto3.Session(
            aws_access_key_id=assumed["AccessKeyId"],
            aws_secret_access_key=assumed["SecretAccessKey"],
            aws_session_token=assumed["SessionToken"],
            region_name=region,
        )
    key_id = (credentials.get("access_key_id") or "").strip()
    secret = (credentials.get("secret_access_key") or "").strip()
    if not (key_id and secret):
        raise AwsCredentialsError("No AWS credentials: give a role ARN or an access key.")
    return boto3.Session(aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=region)


def sign_in(
    provider_credentials: dict, region: str, endpoint_url: str | None = None
) -> tuple[boto3.Session, dict]:
    """A session with the credentials and who AWS says they are (`sts get-caller-identity`:
    Account, Arn). AwsCredentialsError when they are missing or refused, with a sentence;
    another ClientError or a BotoCoreError (AWS unreachable) propagates."""
    session = session_for(provider_credentials, region, endpoint_url)
    try:
        identity = session.client(
            "sts", endpoint_url=endpoint_url, config=CLIENT_CONFIG
        ).get_caller_identity()
    except ClientError as error:
        code = error.response["Error"].get("Code", "")
        if code in REFUSED_CODES:
            message = error.response["Error"].get("Message", "")
            raise AwsCredentialsError(f"AWS refused the credentials: {message or code}") from error
        raise
    return session, identity


def check_credentials(
    provider_credentials: dict, region: str, endpoint_url: str | None = None
) -> tuple[bool, str]:
    """Whether AWS accepts the credentials (`sts get-caller-identity`), and a sentence."""
    try:
        _session, identity = sign_in(provider_credentials, region, endpoint_url)
    except AwsCredentialsError as error:
        return False, str(error)
    except ClientError as error:
        code = error.response["Error"].get("Code", "")
        message = error.response["Error"].get("Message", "")
        return False, f"AWS answered {code}: {message}"
    except BotoCoreError as error:
        return False, f"Cannot reach AWS STS in {region}: {error}"
    return True, f"AWS accepted the credentials: {identity['Arn']} (account {identity['Account']})."


@dataclass(frozen=True)
class InstanceTypeFacts:
    """What EC2 says about an instance type, with the GPU in our catalog's terms."""

    name: str
    gpu_model: str  # a catalog code, "" for CPU-only or a GPU the catalog does not know
    gpu_count: int
    gpu_memory_gb: int  # per GPU
    vcpu: int
    ram_gb: int  # GiB, as EC2 reports it


def catalog_gpu_model(name: str, manufacturer: str, memory_mib: int) -> str:
    """EC2's GpuInfo ("A100", "NVIDIA", 40960) → our code ("A100-40GB"); "" if unknown.

    EC2 names the chip without its memory; the catalog splits some chips by memory
    (A100 40/80 GB, V100 16/32 GB, H100 80 GB/NVL), so pick the closest memory size.
    """
    if manufacturer.upper() != "NVIDIA":
        return ""
    wanted = name.upper().replace("NVIDIA", "").strip()
    candidates = [
        model for model in catalog.GPU_MODELS.values() if model.code.split("-")[0] == wanted
    ]
    if not candidates:
        return ""
    memory_gb = memory_mib / 1024
    return min(candidates, key=lambda model: abs(model.memory_gb - memory_gb)).code


def _facts(described: dict) -> InstanceTypeFacts:
    gpus = (described.get("GpuInfo") or {}).get("Gpus") or []
    gpu = gpus[0] if gpus else {}
    memory_mib = (gpu.get("MemoryInfo") or {}).get("SizeInMiB", 0)
    model = catalog_gpu_model(gpu.get("Name", ""), gpu.get("Manufacturer", ""), memory_mib)
    # Per-GPU memory from the catalog where we know the model, so the two agree.
    known = catalog.gpu_model(model)
    return InstanceTypeFacts(
        name=described["InstanceType"],
        gpu_model=model,
        gpu_count=sum(g.get("Count", 0) for g in gpus),
        gpu_memory_gb=known.memory_gb if known else round(memory_mib / 1024),
        vcpu=described["VCpuInfo"]["DefaultVCpus"],
        ram_gb=described["MemoryInfo"]["SizeInMiB"] // 1024,
    )


def describe_instance_type_facts(
    names: list[str],
    region: str,
    provider_credentials: dict | None = None,
    endpoint_url: str | None = None,
    session: boto3.Session | None = None,
) -> dict[str, InstanceTypeFacts]:
    """Facts of the named instance types in `region`; names EC2 does not offer are absent.

    Raises AwsCredentialsError when the credentials are refused, ClientError otherwise.
    """
    session = session or session_for(provider_credentials or {}, region, endpoint_url)
    ec2 = session.client("ec2", endpoint_url=endpoint_url, config=CLIENT_CONFIG)
    names = sorted(set(names))
    found: dict[str, InstanceTypeFacts] = {}
    try:
        batches = [names[i : i + 100] for i in range(0, len(names), 100)]
        for batch in batches:
            for described in ec2.describe_instance_types(InstanceTypes=batch)["InstanceTypes"]:
                found[described["InstanceType"]] = _facts(described)
    except ClientError as error:
        code = error.response["Error"].get("Code", "")
        if code in REFUSED_CODES:
            raise AwsCredentialsError(f"AWS refused the credentials: {code}") from error
        if code != "InvalidInstanceType":
            raise
        # One unknown name fails the whole call: ask one by one and skip the unknown.
        for name in names:
            try:
                described = ec2.describe_instance_types(InstanceTypes=[name])["InstanceTypes"]
            except ClientError as single:
                if single.response["Error"].get("Code") == "InvalidInstanceType":
                    continue
                raise
            found.update({d["InstanceType"]: _facts(d) for d in described})
    return found


# --- EKS settings ---------------------------------------------------------------------------

# The keys of an AWS entry's `credentials` that are EKS settings rather than a login, with
# their labels (`pools.drivers.aws.eks_settings_from` reads them).
EKS_SETTINGS = {
    "cluster_name": "EKS cluster name",
    "cluster_role_arn": "EKS cluster role ARN",
    "node_role_arn": "Node role ARN",
    "subnet_ids": "Subnets",
    "security_group_ids": "Security groups",
}
# What EKS lets its principals assume a role as (the role's trust policy must allow it).
EKS_SERVICE_PRINCIPAL = "eks.amazonaws.com"
NODE_SERVICE_PRINCIPAL = "ec2.amazonaws.com"
ROLE_ARN = re.compile(
    r"^arn:aws(?:-[a-z]+)*:iam::(?P<account>\d{12}):role/(?:[\w+=,.@-]+/)*(?P<name>[\w+=,.@-]{1,64})$"
)
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{1,17}$")
SECURITY_GROUP_ID = re.compile(r"^sg-[0-9a-f]{1,17}$")
# CreateCluster's name rule: 1-100 characters, a letter or digit first.
CLUSTER_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")


def split_ids(value) -> tuple[str, ...]:
    """ "subnet-1, subnet-2" (or a list, or one per line) → ("subnet-1", "subnet-2")."""
    if isinstance(value, str):
        value = re.split(r"[\s,]+", value)
    return tuple(dict.fromkeys(item.strip() for item in value or () if item and item.strip()))


def syntax_problems(settings: dict) -> dict[str, str]:
    """Setting key → what is wrong with how it is written (no AWS call)."""
    problems = {}
    name = settings.get("cluster_name") or ""
    if name and not CLUSTER_NAME.match(name):
        problems["cluster_name"] = (
            "1 to 100 letters, digits, hyphens and underscores, starting with a letter or digit."
        )
    for key in ("cluster_role_arn", "node_role_arn"):
        arn = settings.get(key) or ""
        if arn and not ROLE_ARN.match(arn):
            problems[key] = "Not an IAM role ARN, e.g. arn:aws:iam::123456789012:role/eks-nodes."
    for key, pattern, example in (
        ("subnet_ids", SUBNET_ID, "subnet-0abc1234"),
        ("security_group_ids", SECURITY_GROUP_ID, "sg-0abc1234"),
    ):
        bad = [item for item in split_ids(settings.get(key)) if not pattern.match(item)]
        if bad:
            problems[key] = f"Not an ID like {example}: {', '.join(bad)}."
    return problems


def check_eks_settings(
    session: boto3.Session, endpoint_url: str | None, settings: dict, account: str
) -> dict[str, str]:
    """Setting key → what AWS says is wrong; {} when every given setting exists and fits.

    `account` is the credentials' own account (`sts get-caller-identity`). Checks: each
    role exists in that account and its trust policy lets EKS (cluster role) or EC2 (node
    role) assume it; the subnets exist, lie in one VPC and, as CreateCluster requires, in
    at least two Availability Zones; the security groups exist in the subnets' VPC.
    Raises AwsCredentialsError when AWS refuses the credentials; other ClientErrors and
    BotoCoreError (AWS unreachable) propagate.
    """
    problems = syntax_problems(settings)
    for key, principal in (
        ("cluster_role_arn", EKS_SERVICE_PRINCIPAL),
        ("node_role_arn", NODE_SERVICE_PRINCIPAL),
    ):
        arn = settings.get(key) or ""
        if arn and key not in problems:
            problem = _role_problem(session, endpoint_url, arn, principal, account)
            if problem:
                problems[key] = problem
    subnets = split_ids(settings.get("subnet_ids"))
    groups = split_ids(settings.get("security_group_ids"))
    vpcs: set[str] = set()
    if subnets and "subnet_ids" not in problems:
        problem, vpcs = _subnet_problem(session, endpoint_url, subnets)
        if problem:
            problems["subnet_ids"] = problem
    if groups and "security_group_ids" not in problems:
        problem = _security_group_problem(session, endpoint_url, groups, vpcs)
        if problem:
            problems["security_group_ids"] = problem
    return problems


def _refused(error: ClientError) -> bool:
    return error.response["Error"].get("Code", "") in REFUSED_CODES


def _role_problem(session, endpoint_url, arn: str, principal: str, account: str) -> str:
    match = ROLE_ARN.match(arn)
    if match["account"] != account:
        return (
            f"This role is in account {match['account']}; the credentials are for account "
            f"{account}, where EKS needs it."
        )
    iam = session.client("iam", endpoint_url=endpoint_url, config=CLIENT_CONFIG)
    try:
        role = iam.get_role(RoleName=match["name"])["Role"]
    except ClientError as error:
        if _refused(error):
            raise AwsCredentialsError(
                f"AWS refused the credentials reading IAM role {match['name']} "
                "(they need iam:GetRole)."
            ) from error
        if error.response["Error"].get("Code") == "NoSuchEntity":
            return f"No IAM role {match['name']} in account {account}."
        raise
    if role.get("Arn") and role["Arn"] != arn:
        return f"The role {match['name']} in this account is {role['Arn']}."
    if principal not in _trusted_services(role.get("AssumeRolePolicyDocument")):
        return (
            f"The role's trust policy does not let {principal} assume it: add a statement "
            f'allowing sts:AssumeRole for the service "{principal}".'
        )
    return ""


def _trusted_services(document) -> set[str]:
    """The service principals an IAM trust policy allows sts:AssumeRole."""
    if isinstance(document, str):  # some endpoints answer the URL-decoded JSON as text
        try:
            document = json.loads(unquote(document))
        except ValueError:
            return set()
    services: set[str] = set()
    statements = (document or {}).get("Statement") or []
    if isinstance(statements, dict):
        statements = [statements]
    for statement in statements:
        actions = statement.get("Action") or []
        actions = [actions] if isinstance(actions, str) else actions
        if statement.get("Effect") != "Allow" or not any(
            a in ("sts:AssumeRole", "sts:*", "*") for a in actions
        ):
            continue
        found = (statement.get("Principal") or {}).get("Service") or []
        services.update([found] if isinstance(found, str) else found)
    return services


def _described(method, key: str, filter_name: str, ids: Iterable[str]) -> list[dict]:
    """Describe by an id filter: ids that do not exist are simply absent (no error)."""
    try:
        return method(Filters=[{"Name": filter_name, "Values": list(ids)}])[key]
    except ClientError as error:
        if _refused(error):
            raise AwsCredentialsError(
                f"AWS refused the credentials describing {key} (they need ec2:Describe{key})."
            ) from error
        raise


def _subnet_problem(session, endpoint_url, subnets: tuple[str, ...]) -> tuple[str, set[str]]:
    ec2 = session.client("ec2", endpoint_url=endpoint_url, config=CLIENT_CONFIG)
    found = {
        s["SubnetId"]: s for s in _described(ec2.describe_subnets, "Subnets", "subnet-id", subnets)
    }
    missing = [s for s in subnets if s not in found]
    region = session.region_name
    if missing:
        return f"Not found in {region}: {', '.join(missing)}.", set()
    vpcs = {s["VpcId"] for s in found.values()}
    if len(vpcs) > 1:
        return f"EKS needs subnets of one VPC; these are in {', '.join(sorted(vpcs))}.", vpcs
    zones = {s["AvailabilityZone"] for s in found.values()}
    if len(zones) < 2:
        return (
            f"EKS needs subnets in at least two Availability Zones; these are all in "
            f"{', '.join(sorted(zones))}."
        ), vpcs
    return "", vpcs


def _security_group_problem(session, endpoint_url, groups: tuple[str, ...], vpcs: set[str]) -> str:
    ec2 = session.client("ec2", endpoint_url=endpoint_url, config=CLIENT_CONFIG)
    found = {
        g["GroupId"]: g
        for g in _described(ec2.describe_security_groups, "SecurityGroups", "group-id", groups)
    }
    missing = [g for g in groups if g not in found]
    if missing:
        return f"Not found in {session.region_name}: {', '.join(missing)}."
    elsewhere = [g for g in groups if vpcs and found[g].get("VpcId") not in vpcs]
    if elsewhere:
        return f"Not in the subnets' VPC ({', '.join(sorted(vpcs))}): {', '.join(elsewhere)}."
    return ""


def eks_cluster_name(entry_name: str, given: str | None) -> str:
    """The EKS cluster of an AWS entry: the one its settings name, else one named after the
    entry (one rule for the driver, `pools.drivers.aws.eks_settings_from`, and the form,
    which refuses a cluster another entry of the region uses, and stores the name at the
    entry's first save so that renaming the entry keeps its cluster)."""
    return given or f"gpu-paas-{slugify(entry_name)}"[:100]
