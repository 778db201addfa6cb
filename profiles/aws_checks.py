"""Talking to AWS on behalf of an infrastructure entry: sessions, credential checks, facts.

Credentials are one of the two sets the catalog names for AWS: a role the portal assumes
(`role_arn` + `external_id`, through STS with the portal's own identity from its
environment) or an IAM user's key (`access_key_id` + `secret_access_key`).

`AWS_ENDPOINT_URL` (a Django setting, from the environment) points every client at another
endpoint; the tests set it to a moto server.
"""

from __future__ import annotations

from dataclasses import dataclass

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

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


def check_credentials(
    provider_credentials: dict, region: str, endpoint_url: str | None = None
) -> tuple[bool, str]:
    """Whether AWS accepts the credentials (`sts get-caller-identity`), and a sentence."""
    try:
        session = session_for(provider_credentials, region, endpoint_url)
        identity = session.client(
            "sts", endpoint_url=endpoint_url, config=CLIENT_CONFIG
        ).get_caller_identity()
    except AwsCredentialsError as error:
        return False, str(error)
    except ClientError as error:
        code = error.response["Error"].get("Code", "")
        message = error.response["Error"].get("Message", "")
        if code in REFUSED_CODES:
            return False, f"AWS refused the credentials: {message or code}"
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
