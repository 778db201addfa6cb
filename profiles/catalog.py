"""What the portal supports: the single source of truth.

Forms validate against this module and the "support matrix" page is generated from it,
so every entry here is a promise to an administrator. Facts were checked against the
providers' published data (sources are named next to each table); when a fact could not
be confirmed the entry was left out rather than guessed.

Contents:
- GPU models (shared codes such as "A100-40GB") and the node labels that identify them.
- Public cloud providers: regions, managed Kubernetes versions, credentials, and the
  instance types (GPU and a few CPU-only ones) that compute profiles may use.
- Data-center platforms (vSphere, Nutanix, bare metal) and the operating systems we
  install on them.
- What can be provisioned on (`PROVISIONABLE`), as opposed to only configured: the
  support matrix's "can provision" column.
- Small lookup functions and Django-style choice lists built from the tables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

# ---------------------------------------------------------------------------------------
# GPU models
# ---------------------------------------------------------------------------------------

TURING = "Turing"
VOLTA = "Volta"
AMPERE = "Ampere"
ADA_LOVELACE = "Ada Lovelace"
HOPPER = "Hopper"
BLACKWELL = "Blackwell"

ARCHITECTURES: tuple[str, ...] = (VOLTA, TURING, AMPERE, ADA_LOVELACE, HOPPER, BLACKWELL)


@dataclass(frozen=True)
class GpuModel:
    code: str  # shared with other modules, e.g. "A100-40GB"
    name: str  # shown to people, e.g. "NVIDIA A100 40GB"
    memory_gb: int  # per GPU, as NVIDIA markets it
    mig_capable: bool  # can be split with Multi-Instance GPU
    # Values NVIDIA GPU Feature Discovery writes into the node label
    # `nvidia.com/gpu.product`: the driver's device name with spaces replaced by "-".
    # One model has several labels because SXM and PCIe boards report different names.
    product_labels: tuple[str, ...]
    architecture: str


GPU_MODELS: dict[str, GpuModel] = {
    model.code: model
    for model in (
        GpuModel("T4", "NVIDIA T4", 16, False, ("Tesla-T4",), TURING),
        GpuModel("L4", "NVIDIA L4", 24, False, ("NVIDIA-L4",), ADA_LOVELACE),
        GpuModel("L40S", "NVIDIA L40S", 48, False, ("NVIDIA-L40S",), ADA_LOVELACE),
        GpuModel("A10", "NVIDIA A10", 24, False, ("NVIDIA-A10",), AMPERE),
        # A10G is the AWS-only variant of the A10 in g5 instances.
        GpuModel("A10G", "NVIDIA A10G", 24, False, ("NVIDIA-A10G",), AMPERE),
        GpuModel(
            "V100-16GB",
            "NVIDIA V100 16GB",
            16,
            False,
            ("Tesla-V100-SXM2-16GB", "Tesla-V100-PCIE-16GB"),
            VOLTA,
        ),
        GpuModel(
            "V100-32GB",
            "NVIDIA V100 32GB",
            32,
            False,
            ("Tesla-V100-SXM2-32GB", "Tesla-V100-PCIE-32GB", "Tesla-V100S-PCIE-32GB"),
            VOLTA,
        ),
        GpuModel("A30", "NVIDIA A30", 24, True, ("NVIDIA-A30",), AMPERE),
        GpuModel(
            "A100-40GB",
            "NVIDIA A100 40GB",
            40,
            True,
            ("NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB"),
            AMPERE,
        ),
        # A800 and H800 are the A100 and H100 with slower NVLink, sold where those may not
        # be. Labels here and below are the driver's device names (its list of compatible
        # GPUs) with spaces as "-".
        GpuModel("A800-40GB", "NVIDIA A800 40GB", 40, True, ("NVIDIA-A800-40GB-Active",), AMPERE),
        GpuModel(
            "A100-80GB",
            "NVIDIA A100 80GB",
            80,
            True,
            ("NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe"),
            AMPERE,
        ),
        GpuModel(
            "A800-80GB",
            "NVIDIA A800 80GB",
            80,
            True,
            ("NVIDIA-A800-SXM4-80GB", "NVIDIA-A800-80GB-PCIe", "NVIDIA-A800-80GB-PCIe-LC"),
            AMPERE,
        ),
        # An A100 (GA100) board with 96 GB that NVIDIA's MIG configs name "PG506-96GB".
        GpuModel("PG506-96GB", "NVIDIA PG506-232", 96, True, ("NVIDIA-PG506-232",), AMPERE),
        GpuModel(
            "H100-80GB",
            "NVIDIA H100 80GB",
            80,
            True,
            ("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"),
            HOPPER,
        ),
        GpuModel(
            "H800-80GB", "NVIDIA H800 80GB", 80, True, ("NVIDIA-H800", "NVIDIA-H800-PCIe"), HOPPER
        ),
        GpuModel("H100-NVL", "NVIDIA H100 NVL", 94, True, ("NVIDIA-H100-NVL",), HOPPER),
        GpuModel("H800-NVL", "NVIDIA H800 NVL", 94, True, ("NVIDIA-H800-NVL",), HOPPER),
        # NVIDIA publishes no device name for this one (PCI id 0x233D), so no node label
        # identifies it; the MIG catalog knows it by its PCI id.
        GpuModel("H100-96GB", "NVIDIA H100 96GB", 96, True, (), HOPPER),
        GpuModel("H20", "NVIDIA H20", 96, True, ("NVIDIA-H20",), HOPPER),
        # The PCIe "H200 NVL" has the same 141 GB and MIG support, so it shares the code.
        GpuModel("H200", "NVIDIA H200", 141, True, ("NVIDIA-H200", "NVIDIA-H200-NVL"), HOPPER),
        # GH200 boards are named after their CPU-side LPDDR5X (120 or 480 GB); both carry
        # the 96 GB HBM3 GPU. The 144 GB HBM3e part is a separate device.
        GpuModel(
            "GH200-96GB",
            "NVIDIA GH200 96GB",
            96,
            True,
            ("NVIDIA-GH200-480GB", "NVIDIA-GH200-120GB"),
            HOPPER,
        ),
        GpuModel(
            "GH200-144GB",
            "NVIDIA GH200 144GB",
            144,
            True,
            ("NVIDIA-GH200-144G-HBM3e",),
            HOPPER,
        ),
        # 180 GB per GPU is what HGX B200 systems expose (1,440 GB across 8 GPUs).
        GpuModel("B200", "NVIDIA B200", 180, True, ("NVIDIA-B200",), BLACKWELL),
        # 186 GB per GPU, as the MIG User Guide lists it (7g.186gb).
        GpuModel("GB200", "NVIDIA GB200", 186, True, ("NVIDIA-GB200",), BLACKWELL),
        # Only the Server Edition (PCI id 0x2BB5) is in NVIDIA's MIG configs.
        GpuModel(
            "RTX-PRO-6000",
            "NVIDIA RTX PRO 6000 Blackwell Server Edition",
            96,
            True,
            ("NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition",),
            BLACKWELL,
        ),
    )
}

# Labels are matched case-insensitively: people paste them from `kubectl get nodes`.
_GPU_MODEL_BY_LABEL: dict[str, GpuModel] = {
    label.lower(): model for model in GPU_MODELS.values() for label in model.product_labels
}


# ---------------------------------------------------------------------------------------
# Instance types
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceType:
    provider: str  # "aws" | "azure" | "gcp" | "oci"
    name: str  # the provider's own name, e.g. "p4d.24xlarge"
    gpu_model: str | None  # a GPU_MODELS code, None for CPU-only types
    gpu_count: int
    gpu_memory_gb: int  # per GPU; 0 for CPU-only types
    vcpu: int
    ram_gb: int  # as the provider publishes it (GiB on AWS and Azure, GB on GCP and OCI)

    @property
    def has_gpu(self) -> bool:
        return self.gpu_model is not None

    @property
    def total_gpu_memory_gb(self) -> int:
        return self.gpu_count * self.gpu_memory_gb

    @property
    def gpu_name(self) -> str:
        """The GPU's name as people know it ("NVIDIA T4"), empty for a CPU-only type."""
        return GPU_MODELS[self.gpu_model].name if self.gpu_model else ""

    @property
    def label(self) -> str:
        """One line for drop-downs and the support matrix."""
        if self.gpu_model is None:
            return f"{self.name} (CPU only, {self.vcpu} vCPU, {self.ram_gb} GB RAM)"
        gpu = GPU_MODELS[self.gpu_model]
        return f"{self.name} ({self.gpu_count}x {gpu.name}, {self.vcpu} vCPU, {self.ram_gb} GB RAM)"


def _gpu(provider: str, name: str, gpu: str, count: int, vcpu: int, ram_gb: int) -> InstanceType:
    # Per-GPU memory always comes from the GPU model so the two tables cannot disagree.
    return InstanceType(provider, name, gpu, count, GPU_MODELS[gpu].memory_gb, vcpu, ram_gb)


def _cpu(provider: str, name: str, vcpu: int, ram_gb: int) -> InstanceType:
    return InstanceType(provider, name, None, 0, 0, vcpu, ram_gb)


# AWS: figures from the EC2 DescribeInstanceTypes data shipped with moto 5.2.5.
# P3 (p3.2xlarge/8xlarge/16xlarge) is left out on purpose: AWS no longer lists it as
# commercially available and DescribeInstanceTypes no longer returns it. p3dn.24xlarge
# is still offered (us-east-1, us-west-2, eu-west-1, ap-northeast-1).
_AWS: tuple[InstanceType, ...] = (
    _gpu("aws", "g4dn.xlarge", "T4", 1, 4, 16),
    _gpu("aws", "g4dn.2xlarge", "T4", 1, 8, 32),
    _gpu("aws", "g4dn.4xlarge", "T4", 1, 16, 64),
    _gpu("aws", "g4dn.8xlarge", "T4", 1, 32, 128),
    _gpu("aws", "g4dn.12xlarge", "T4", 4, 48, 192),
    _gpu("aws", "g4dn.16xlarge", "T4", 1, 64, 256),
    _gpu("aws", "g4dn.metal", "T4", 8, 96, 384),
    _gpu("aws", "g5.xlarge", "A10G", 1, 4, 16),
    _gpu("aws", "g5.2xlarge", "A10G", 1, 8, 32),
    _gpu("aws", "g5.4xlarge", "A10G", 1, 16, 64),
    _gpu("aws", "g5.8xlarge", "A10G", 1, 32, 128),
    _gpu("aws", "g5.12xlarge", "A10G", 4, 48, 192),
    _gpu("aws", "g5.16xlarge", "A10G", 1, 64, 256),
    _gpu("aws", "g5.24xlarge", "A10G", 4, 96, 384),
    _gpu("aws", "g5.48xlarge", "A10G", 8, 192, 768),
    _gpu("aws", "g6.xlarge", "L4", 1, 4, 16),
    _gpu("aws", "g6.2xlarge", "L4", 1, 8, 32),
    _gpu("aws", "g6.4xlarge", "L4", 1, 16, 64),
    _gpu("aws", "g6.8xlarge", "L4", 1, 32, 128),
    _gpu("aws", "g6.12xlarge", "L4", 4, 48, 192),
    _gpu("aws", "g6.16xlarge", "L4", 1, 64, 256),
    _gpu("aws", "g6.24xlarge", "L4", 4, 96, 384),
    _gpu("aws", "g6.48xlarge", "L4", 8, 192, 768),
    _gpu("aws", "g6e.xlarge", "L40S", 1, 4, 32),
    _gpu("aws", "g6e.2xlarge", "L40S", 1, 8, 64),
    _gpu("aws", "g6e.4xlarge", "L40S", 1, 16, 128),
    _gpu("aws", "g6e.8xlarge", "L40S", 1, 32, 256),
    _gpu("aws", "g6e.12xlarge", "L40S", 4, 48, 384),
    _gpu("aws", "g6e.16xlarge", "L40S", 1, 64, 512),
    _gpu("aws", "g6e.24xlarge", "L40S", 4, 96, 768),
    _gpu("aws", "g6e.48xlarge", "L40S", 8, 192, 1536),
    _gpu("aws", "p3dn.24xlarge", "V100-32GB", 8, 96, 768),
    _gpu("aws", "p4d.24xlarge", "A100-40GB", 8, 96, 1152),
    _gpu("aws", "p4de.24xlarge", "A100-80GB", 8, 96, 1152),
    _gpu("aws", "p5.4xlarge", "H100-80GB", 1, 16, 256),
    _gpu("aws", "p5.48xlarge", "H100-80GB", 8, 192, 2048),
    _gpu("aws", "p5e.48xlarge", "H200", 8, 192, 2048),
    _gpu("aws", "p5en.48xlarge", "H200", 8, 192, 2048),
    _gpu("aws", "p6-b200.48xlarge", "B200", 8, 192, 2048),
    _cpu("aws", "m6i.xlarge", 4, 16),
    _cpu("aws", "m6i.2xlarge", 8, 32),
)

# Azure: figures from the Azure VM size documentation (MicrosoftDocs/azure-docs).
# Only NVadsA10 v5 sizes with a whole GPU are listed; the smaller ones are GPU slices.
_AZURE: tuple[InstanceType, ...] = (
    _gpu("azure", "Standard_NC4as_T4_v3", "T4", 1, 4, 28),
    _gpu("azure", "Standard_NC8as_T4_v3", "T4", 1, 8, 56),
    _gpu("azure", "Standard_NC16as_T4_v3", "T4", 1, 16, 110),
    _gpu("azure", "Standard_NC64as_T4_v3", "T4", 4, 64, 440),
    _gpu("azure", "Standard_NV36ads_A10_v5", "A10", 1, 36, 440),
    _gpu("azure", "Standard_NV36adms_A10_v5", "A10", 1, 36, 880),
    _gpu("azure", "Standard_NV72ads_A10_v5", "A10", 2, 72, 880),
    _gpu("azure", "Standard_NC24ads_A100_v4", "A100-80GB", 1, 24, 220),
    _gpu("azure", "Standard_NC48ads_A100_v4", "A100-80GB", 2, 48, 440),
    _gpu("azure", "Standard_NC96ads_A100_v4", "A100-80GB", 4, 96, 880),
    _gpu("azure", "Standard_ND96asr_v4", "A100-40GB", 8, 96, 900),
    _gpu("azure", "Standard_ND96amsr_A100_v4", "A100-80GB", 8, 96, 1900),
    _gpu("azure", "Standard_NC40ads_H100_v5", "H100-NVL", 1, 40, 320),
    _gpu("azure", "Standard_NC80adis_H100_v5", "H100-NVL", 2, 80, 640),
    _gpu("azure", "Standard_ND96isr_H100_v5", "H100-80GB", 8, 96, 1900),
    _gpu("azure", "Standard_ND96isr_H200_v5", "H200", 8, 96, 1850),
    _cpu("azure", "Standard_D4s_v5", 4, 16),
    _cpu("azure", "Standard_D8s_v5", 8, 32),
)

# GCP: accelerator-optimized machine types, each with a fixed GPU count (Compute Engine
# machine type list). N1 + attached T4/V100 is left out: GPUs are attached separately there.
_GCP: tuple[InstanceType, ...] = (
    _gpu("gcp", "g2-standard-4", "L4", 1, 4, 16),
    _gpu("gcp", "g2-standard-8", "L4", 1, 8, 32),
    _gpu("gcp", "g2-standard-12", "L4", 1, 12, 48),
    _gpu("gcp", "g2-standard-16", "L4", 1, 16, 64),
    _gpu("gcp", "g2-standard-24", "L4", 2, 24, 96),
    _gpu("gcp", "g2-standard-32", "L4", 1, 32, 128),
    _gpu("gcp", "g2-standard-48", "L4", 4, 48, 192),
    _gpu("gcp", "g2-standard-96", "L4", 8, 96, 384),
    _gpu("gcp", "a2-highgpu-1g", "A100-40GB", 1, 12, 85),
    _gpu("gcp", "a2-highgpu-2g", "A100-40GB", 2, 24, 170),
    _gpu("gcp", "a2-highgpu-4g", "A100-40GB", 4, 48, 340),
    _gpu("gcp", "a2-highgpu-8g", "A100-40GB", 8, 96, 680),
    _gpu("gcp", "a2-megagpu-16g", "A100-40GB", 16, 96, 1360),
    _gpu("gcp", "a2-ultragpu-1g", "A100-80GB", 1, 12, 170),
    _gpu("gcp", "a2-ultragpu-2g", "A100-80GB", 2, 24, 340),
    _gpu("gcp", "a2-ultragpu-4g", "A100-80GB", 4, 48, 680),
    _gpu("gcp", "a2-ultragpu-8g", "A100-80GB", 8, 96, 1360),
    _gpu("gcp", "a3-highgpu-8g", "H100-80GB", 8, 208, 1872),
    _gpu("gcp", "a3-megagpu-8g", "H100-80GB", 8, 208, 1872),
    _gpu("gcp", "a3-ultragpu-8g", "H200", 8, 224, 2952),
    _cpu("gcp", "n2-standard-4", 4, 16),
    _cpu("gcp", "n2-standard-8", 8, 32),
)

# OCI: figures from the OCI Compute Shapes documentation. OCI sizes shapes in OCPUs; on
# x86 one OCPU is two vCPUs, which is what is stored here. BM.GPU.L40S.4 and
# BM.GPU.L40S-NC.4 are both names OCI uses for the 4x L40S bare-metal shape.
_OCI: tuple[InstanceType, ...] = (
    _gpu("oci", "VM.GPU3.1", "V100-16GB", 1, 12, 90),
    _gpu("oci", "VM.GPU3.2", "V100-16GB", 2, 24, 180),
    _gpu("oci", "VM.GPU3.4", "V100-16GB", 4, 48, 360),
    _gpu("oci", "BM.GPU3.8", "V100-16GB", 8, 104, 768),
    _gpu("oci", "VM.GPU.A10.1", "A10", 1, 30, 240),
    _gpu("oci", "VM.GPU.A10.2", "A10", 2, 60, 480),
    _gpu("oci", "BM.GPU.A10.4", "A10", 4, 128, 1024),
    _gpu("oci", "BM.GPU.L40S.4", "L40S", 4, 224, 1024),
    _gpu("oci", "BM.GPU.L40S-NC.4", "L40S", 4, 224, 1024),
    _gpu("oci", "BM.GPU4.8", "A100-40GB", 8, 128, 2048),
    _gpu("oci", "BM.GPU.A100-v2.8", "A100-80GB", 8, 256, 2048),
    _gpu("oci", "BM.GPU.H100.8", "H100-80GB", 8, 224, 2048),
    _gpu("oci", "BM.GPU.H200.8", "H200", 8, 224, 3072),
    _gpu("oci", "BM.GPU.B200.8", "B200", 8, 256, 4096),
    # Flex shapes have no fixed size: the portal launches them with
    # ocpus = vcpu / 2 and memory_in_gbs = ram_gb, the figures below.
    _cpu("oci", "VM.Standard.E5.Flex", 4, 16),
    _cpu("oci", "VM.Standard.E4.Flex", 8, 32),
)

INSTANCE_TYPES: tuple[InstanceType, ...] = _AWS + _AZURE + _GCP + _OCI

_INSTANCE_TYPE_INDEX: dict[tuple[str, str], InstanceType] = {
    (it.provider, it.name): it for it in INSTANCE_TYPES
}


# ---------------------------------------------------------------------------------------
# Credentials
# ---------------------------------------------------------------------------------------


class CredentialField(NamedTuple):
    """(field key, label, help). A tuple so callers may unpack it in a loop."""

    key: str
    label: str
    help_text: str


# Forms render these with a password/textarea widget and the vault stores them encrypted.
SECRET_CREDENTIAL_KEYS: frozenset[str] = frozenset(
    {
        "secret_access_key",
        "client_secret",
        "service_account_json",
        "private_key",
        "password",
        "ssh_private_key",
    }
)
MULTILINE_CREDENTIAL_KEYS: frozenset[str] = frozenset(
    {"service_account_json", "private_key", "ssh_private_key"}
)


# ---------------------------------------------------------------------------------------
# Kubernetes versions
# ---------------------------------------------------------------------------------------

# Windows for *new* managed clusters, projected for late 2026 from each provider's
# published calendar. Re-check them every quarter; providers drop a minor version
# roughly every four months.
#
# EKS: 1.32-1.36. Standard support is 14 months, then 12 months of extended support
# that EKS enables by default: 1.34-1.36 are in standard support, 1.32-1.33 in extended
# support (1.32 until 2027-03-23); 1.31's extended support ends 2026-11-26.
_EKS_VERSIONS = ("1.32", "1.33", "1.34", "1.35", "1.36")
# AKS: 1.34-1.36, the three GA minor versions AKS supports at a time. LTS-only versions
# are left out because they need the Premium tier.
_AKS_VERSIONS = ("1.34", "1.35", "1.36")
# GKE: 1.34-1.36, the versions in the Regular/Stable channels. Older ones live on only in
# the Extended channel, which a cluster has to be enrolled in.
_GKE_VERSIONS = ("1.34", "1.35", "1.36")
# OKE: 1.34-1.36. OKE supports the three most recent upstream minor versions.
_OKE_VERSIONS = ("1.34", "1.35", "1.36")

# Versions an *existing* (imported) cluster may run. The floor is 1.29 because current
# NVIDIA GPU Operator releases are validated from Kubernetes 1.29 up; the ceiling is 1.37
# because kubernetes-validate (which checks the manifests we apply) ships schemas up to
# 1.37. This is a superset of every provider window above.
KUBERNETES_VERSIONS: tuple[str, ...] = tuple(f"1.{minor}" for minor in range(29, 38))

_KUBERNETES_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+].*)?$")


# ---------------------------------------------------------------------------------------
# Providers and regions
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Provider:
    code: str
    name: str
    regions: tuple[str, ...]
    kubernetes_versions: tuple[str, ...]
    managed_kubernetes: str
    credential_fields: tuple[CredentialField, ...]
    # Each entry is a complete way to authenticate; any one of them is enough.
    credential_sets: tuple[tuple[str, ...], ...]


# Commercial regions from botocore 1.44.8 (endpoints.json, partition "aws"), all of which
# have EC2 and EKS endpoints. Left out: GovCloud, China, ISO and European Sovereign Cloud
# partitions (separate accounts and credentials), and me-west-1 / sa-west-1, which are
# announced but have no EC2 or EKS endpoints yet.
_AWS_REGIONS = (
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "ca-west-1",
    "mx-central-1",
    "sa-east-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
)

# Physical regions of the Azure public cloud (`az account list-locations`), including
# restricted-access ones such as germanynorth that a subscription can be enabled for.
# Left out: Azure Government and Azure China (separate clouds), EUAP canary regions and
# logical locations such as "europe".
_AZURE_REGIONS = (
    "eastus",
    "eastus2",
    "centralus",
    "northcentralus",
    "southcentralus",
    "westcentralus",
    "westus",
    "westus2",
    "westus3",
    "canadacentral",
    "canadaeast",
    "mexicocentral",
    "brazilsouth",
    "brazilsoutheast",
    "chilecentral",
    "northeurope",
    "westeurope",
    "uksouth",
    "ukwest",
    "francecentral",
    "francesouth",
    "germanywestcentral",
    "germanynorth",
    "switzerlandnorth",
    "switzerlandwest",
    "norwayeast",
    "norwaywest",
    "swedencentral",
    "polandcentral",
    "italynorth",
    "spaincentral",
    "austriaeast",
    "belgiumcentral",
    "denmarkeast",
    "israelcentral",
    "qatarcentral",
    "uaenorth",
    "uaecentral",
    "southafricanorth",
    "southafricawest",
    "centralindia",
    "southindia",
    "westindia",
    "jioindiacentral",
    "jioindiawest",
    "eastasia",
    "southeastasia",
    "japaneast",
    "japanwest",
    "koreacentral",
    "koreasouth",
    "indonesiacentral",
    "malaysiawest",
    "australiaeast",
    "australiasoutheast",
    "australiacentral",
    "australiacentral2",
    "newzealandnorth",
)

# Google Cloud regions (Compute Engine "regions and zones").
_GCP_REGIONS = (
    "us-central1",
    "us-east1",
    "us-east4",
    "us-east5",
    "us-south1",
    "us-west1",
    "us-west2",
    "us-west3",
    "us-west4",
    "northamerica-northeast1",
    "northamerica-northeast2",
    "northamerica-south1",
    "southamerica-east1",
    "southamerica-west1",
    "europe-central2",
    "europe-north1",
    "europe-north2",
    "europe-southwest1",
    "europe-west1",
    "europe-west2",
    "europe-west3",
    "europe-west4",
    "europe-west6",
    "europe-west8",
    "europe-west9",
    "europe-west10",
    "europe-west12",
    "me-central1",
    "me-central2",
    "me-west1",
    "africa-south1",
    "asia-east1",
    "asia-east2",
    "asia-northeast1",
    "asia-northeast2",
    "asia-northeast3",
    "asia-south1",
    "asia-south2",
    "asia-southeast1",
    "asia-southeast2",
    "asia-southeast3",
    "australia-southeast1",
    "australia-southeast2",
)

# Regions of OCI's commercial realm "oc1" (oci-python-sdk regions_definitions.py).
# Left out: government, sovereign (EU, Serbia) and dedicated (DCC) realms, which use
# separate tenancies.
_OCI_REGIONS = (
    "us-ashburn-1",
    "us-phoenix-1",
    "us-sanjose-1",
    "us-chicago-1",
    "us-saltlake-2",
    "ca-toronto-1",
    "ca-montreal-1",
    "mx-queretaro-1",
    "mx-monterrey-1",
    "sa-saopaulo-1",
    "sa-vinhedo-1",
    "sa-santiago-1",
    "sa-valparaiso-1",
    "sa-bogota-1",
    "uk-london-1",
    "uk-cardiff-1",
    "eu-frankfurt-1",
    "eu-amsterdam-1",
    "eu-zurich-1",
    "eu-paris-1",
    "eu-marseille-1",
    "eu-milan-1",
    "eu-turin-1",
    "eu-madrid-1",
    "eu-madrid-3",
    "eu-stockholm-1",
    "il-jerusalem-1",
    "me-jeddah-1",
    "me-riyadh-1",
    "me-dubai-1",
    "me-abudhabi-1",
    "af-johannesburg-1",
    "af-casablanca-1",
    "ap-mumbai-1",
    "ap-hyderabad-1",
    "ap-delhi-1",
    "ap-singapore-1",
    "ap-singapore-2",
    "ap-batam-1",
    "ap-kulai-2",
    "ap-tokyo-1",
    "ap-osaka-1",
    "ap-seoul-1",
    "ap-chuncheon-1",
    "ap-sydney-1",
    "ap-melbourne-1",
)

PROVIDERS: dict[str, Provider] = {
    p.code: p
    for p in (
        Provider(
            code="aws",
            name="Amazon Web Services",
            regions=_AWS_REGIONS,
            kubernetes_versions=_EKS_VERSIONS,
            managed_kubernetes="EKS",
            credential_fields=(
                CredentialField(
                    "role_arn",
                    "IAM role ARN",
                    "Role the portal assumes, e.g. arn:aws:iam::123456789012:role/gpu-paas. "
                    "Preferred: no long-lived key is stored.",
                ),
                CredentialField(
                    "external_id",
                    "External ID",
                    "The sts:ExternalId required by the role's trust policy.",
                ),
                CredentialField(
                    "access_key_id",
                    "Access key ID",
                    "Only without a role: the access key ID of an IAM user.",
                ),
                CredentialField(
                    "secret_access_key",
                    "Secret access key",
                    "Only without a role: the secret that goes with the access key ID.",
                ),
            ),
            credential_sets=(
                ("role_arn", "external_id"),
                ("access_key_id", "secret_access_key"),
            ),
        ),
        Provider(
            code="azure",
            name="Microsoft Azure",
            regions=_AZURE_REGIONS,
            kubernetes_versions=_AKS_VERSIONS,
            managed_kubernetes="AKS",
            credential_fields=(
                CredentialField(
                    "tenant_id", "Tenant ID", "Directory (tenant) ID of your Entra ID tenant."
                ),
                CredentialField(
                    "client_id",
                    "Client ID",
                    "Application (client) ID of the service principal the portal uses.",
                ),
                CredentialField(
                    "client_secret", "Client secret", "A client secret of that service principal."
                ),
                CredentialField(
                    "subscription_id",
                    "Subscription ID",
                    "Subscription in which clusters are created; the service principal "
                    "needs Contributor on it.",
                ),
            ),
            credential_sets=(("tenant_id", "client_id", "client_secret", "subscription_id"),),
        ),
        Provider(
            code="gcp",
            name="Google Cloud",
            regions=_GCP_REGIONS,
            kubernetes_versions=_GKE_VERSIONS,
            managed_kubernetes="GKE",
            credential_fields=(
                CredentialField(
                    "service_account_json",
                    "Service account key (JSON)",
                    "The JSON key of a service account allowed to manage GKE clusters and "
                    "Compute Engine resources in the project.",
                ),
            ),
            credential_sets=(("service_account_json",),),
        ),
        Provider(
            code="oci",
            name="Oracle Cloud Infrastructure",
            regions=_OCI_REGIONS,
            kubernetes_versions=_OKE_VERSIONS,
            managed_kubernetes="OKE",
            credential_fields=(
                CredentialField(
                    "tenancy_ocid", "Tenancy OCID", "ocid1.tenancy.oc1..., from Tenancy details."
                ),
                CredentialField(
                    "user_ocid", "User OCID", "ocid1.user.oc1... of the API user the portal uses."
                ),
                CredentialField(
                    "fingerprint",
                    "API key fingerprint",
                    "Fingerprint of the API signing key uploaded for that user.",
                ),
                CredentialField(
                    "private_key", "API private key (PEM)", "The private half of that API key."
                ),
                CredentialField(
                    "region",
                    "Home region",
                    "The tenancy's home region, e.g. us-ashburn-1; identity calls go there.",
                ),
            ),
            credential_sets=(
                ("tenancy_ocid", "user_ocid", "fingerprint", "private_key", "region"),
            ),
        ),
    )
}


# ---------------------------------------------------------------------------------------
# Data centers
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataCenterPlatform:
    code: str
    name: str
    # The management endpoint the portal talks to (None for bare metal, which has none).
    endpoint_label: str | None
    endpoint_help: str
    # Bare metal has no API to create machines, so the admin lists the hosts instead.
    needs_host_list: bool
    credential_fields: tuple[CredentialField, ...]  # all of them are required

    @property
    def needs_endpoint(self) -> bool:
        return self.endpoint_label is not None

    @property
    def needs_hosts(self) -> bool:  # the name the infrastructure form uses
        return self.needs_host_list


_SSH_KEY_FOR_NODES = CredentialField(
    "ssh_private_key",
    "SSH private key",
    "Key the portal uses to log in to the nodes to install Kubernetes and the GPU stack.",
)

DATA_CENTER_PLATFORMS: dict[str, DataCenterPlatform] = {
    p.code: p
    for p in (
        DataCenterPlatform(
            code="vsphere",
            name="VMware vSphere",
            endpoint_label="vCenter URL",
            endpoint_help="e.g. https://vcenter.example.com",
            needs_host_list=False,
            credential_fields=(
                CredentialField(
                    "username",
                    "vCenter username",
                    "e.g. gpu-paas@vsphere.local; needs rights to clone and power VMs.",
                ),
                CredentialField("password", "vCenter password", ""),
                _SSH_KEY_FOR_NODES,
            ),
        ),
        DataCenterPlatform(
            code="nutanix",
            name="Nutanix AHV",
            endpoint_label="Prism Central URL",
            endpoint_help="e.g. https://prism-central.example.com:9440",
            needs_host_list=False,
            credential_fields=(
                CredentialField(
                    "username",
                    "Prism Central username",
                    "A user allowed to create VMs in the target cluster.",
                ),
                CredentialField("password", "Prism Central password", ""),
                _SSH_KEY_FOR_NODES,
            ),
        ),
        DataCenterPlatform(
            code="baremetal",
            name="Bare metal",
            endpoint_label=None,
            endpoint_help="",
            needs_host_list=True,
            credential_fields=(
                CredentialField(
                    "ssh_username",
                    "SSH username",
                    "A user with passwordless sudo on every host.",
                ),
                _SSH_KEY_FOR_NODES,
            ),
        ),
    )
}

HOST_LIST_HELP = "One host name or IP address per line; each must be reachable over SSH."


# ---------------------------------------------------------------------------------------
# Operating systems (data-center nodes)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OperatingSystem:
    code: str
    name: str
    gpu_operator_supported: bool  # NVIDIA GPU Operator publishes driver images for it
    # Newest Kubernetes minor version this OS can run, when it is not the newest we offer.
    max_kubernetes_version: str | None = None
    note: str = ""


OPERATING_SYSTEM_DETAILS: dict[str, OperatingSystem] = {
    os_.code: os_
    for os_ in (
        OperatingSystem("ubuntu-22.04", "Ubuntu 22.04 LTS", True),
        OperatingSystem("ubuntu-24.04", "Ubuntu 24.04 LTS", True),
        OperatingSystem(
            "rhel-8",
            "Red Hat Enterprise Linux 8",
            True,
            # kubeadm 1.32+ rejects RHEL 8's 4.18 kernel (kubernetes/kubernetes#129462).
            max_kubernetes_version="1.31",
            note="GPU Operator is validated on 8.8 and 8.10. Kubernetes 1.32 and later "
            "do not support the RHEL 8 kernel.",
        ),
        OperatingSystem(
            "rhel-9",
            "Red Hat Enterprise Linux 9",
            True,
            note="GPU Operator is validated on the 9.x minor releases it lists (9.2, 9.4, 9.6).",
        ),
        OperatingSystem(
            "rocky-9",
            "Rocky Linux 9",
            True,
            note="GPU Operator driver images exist for Rocky 9, but GDRCopy and GPUDirect "
            "Storage images do not.",
        ),
    )
}

# code -> label, the simple view forms and templates want.
OPERATING_SYSTEMS: dict[str, str] = {
    code: os_.name for code, os_ in OPERATING_SYSTEM_DETAILS.items()
}

GPU_OPERATOR_OPERATING_SYSTEMS: frozenset[str] = frozenset(
    code for code, os_ in OPERATING_SYSTEM_DETAILS.items() if os_.gpu_operator_supported
)


# ---------------------------------------------------------------------------------------
# What the portal can provision on
# ---------------------------------------------------------------------------------------

# Every provider and platform above can be *configured*: saved, validated, listed. The
# portal *provisions* only where a driver exists, on these (kind, provider) pairs (the
# provider is "" outside public clouds). The engine's driver table (`pools.drivers.DRIVERS`)
# names exactly these; a test holds the two together.
PROVISIONABLE: frozenset[tuple[str, str]] = frozenset(
    {("local", ""), ("kubernetes", ""), ("public_cloud", "aws")}
)
PUBLIC_CLOUD_KIND = "public_cloud"  # `profiles.choices.InfrastructureKind.PUBLIC_CLOUD`


def can_provision(kind: str, provider: str = "") -> bool:
    """Whether a driver can provision on an entry of this kind (and provider)."""
    return (kind, provider if kind == PUBLIC_CLOUD_KIND else "") in PROVISIONABLE


@dataclass(frozen=True)
class SupportRow:
    """One line of the support matrix: what an administrator can do with an option."""

    kind: str  # "public_cloud", "data_center", "kubernetes", "local"
    code: str  # the provider or platform code, "" for the other kinds
    name: str
    provisions: bool
    how: str  # what the portal makes there, or what happens instead


_HOW = {
    ("public_cloud", "aws"): "EKS managed node groups per workspace; a dedicated EKS cluster "
    "for super-sized profiles",
    ("kubernetes", ""): "Namespaces and StatefulSets on the cluster's GPU nodes",
    ("local", ""): "Directories and processes on the portal's own machine, with its GPUs",
}
CONFIGURATION_ONLY_HOW = (
    "Saved and validated, never offered to users: no driver provisions here yet"
)


def support_rows() -> list[SupportRow]:
    """Each infrastructure option, configurable by definition, and whether it provisions."""

    def row(kind: str, code: str, name: str) -> SupportRow:
        provisions = can_provision(kind, code)
        how = _HOW.get((kind, code), "") if provisions else CONFIGURATION_ONLY_HOW
        return SupportRow(kind, code, name, provisions, how)

    rows = [row("public_cloud", p.code, p.name) for p in PROVIDERS.values()]
    rows += [row("data_center", p.code, p.name) for p in DATA_CENTER_PLATFORMS.values()]
    rows.append(row("kubernetes", "", "Existing Kubernetes cluster"))
    rows.append(row("local", "", "This machine"))
    return rows


# ---------------------------------------------------------------------------------------
# Lookups
# ---------------------------------------------------------------------------------------


def provider(code: str) -> Provider | None:
    return PROVIDERS.get(code)


def regions_for(provider_code: str) -> tuple[str, ...]:
    p = PROVIDERS.get(provider_code)
    return p.regions if p else ()


def is_valid_region(provider_code: str, region: str) -> bool:
    return region in regions_for(provider_code)


def instance_types_for(provider_code: str) -> list[InstanceType]:
    return [it for it in INSTANCE_TYPES if it.provider == provider_code]


def instance_type(provider_code: str, name: str) -> InstanceType | None:
    return _INSTANCE_TYPE_INDEX.get((provider_code, name))


def gpu_model(code: str) -> GpuModel | None:
    return GPU_MODELS.get(code)


def gpu_model_for_product_label(label: str) -> GpuModel | None:
    """The GPU model behind a `nvidia.com/gpu.product` node label value.

    GPU Feature Discovery decorates the plain name in two cases, which we undo:
    "-MIG-<profile>" under the "single" MIG strategy (e.g. "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb")
    and "-SHARED" when time-slicing renames the resource.
    """
    base = label.strip()
    if base.upper().endswith("-SHARED"):
        base = base[: -len("-SHARED")]
    mig_at = base.upper().find("-MIG-")
    if mig_at != -1:
        base = base[:mig_at]
    return _GPU_MODEL_BY_LABEL.get(base.lower())


def kubernetes_minor(version: str) -> str | None:
    """The minor version in `version`, e.g. "v1.29.3-eks-1a2b3c" -> "1.29".

    None when `version` is not a Kubernetes version at all.
    """
    match = _KUBERNETES_VERSION_RE.match(version.strip())
    if not match:
        return None
    return f"{int(match.group(1))}.{int(match.group(2))}"


def is_valid_kubernetes_version(version: str, provider_code: str | None = None) -> bool:
    """Whether a new cluster on `provider_code` (or, with no provider, an existing
    cluster) may run `version`. Patch numbers and vendor suffixes are ignored."""
    minor = kubernetes_minor(version)
    if minor is None:
        return False
    if provider_code is None:
        return minor in KUBERNETES_VERSIONS
    p = PROVIDERS.get(provider_code)
    return p is not None and minor in p.kubernetes_versions


def missing_credentials(provider_code: str, values: Mapping[str, str | None]) -> list[str]:
    """Keys still needed to authenticate to a provider; empty when `values` is enough.

    A provider may accept several credential sets (AWS: a role or an access key). When
    none is complete, the missing keys of the set closest to completion are returned, so
    a form can point at the fields the admin most likely meant to fill.
    """
    p = PROVIDERS.get(provider_code)
    if p is None:
        raise ValueError(f"unknown provider: {provider_code!r}")
    filled = {key for key, value in values.items() if value and str(value).strip()}
    best: list[str] | None = None
    for keys in p.credential_sets:
        missing = [key for key in keys if key not in filled]
        if not missing:
            return []
        if best is None or len(missing) < len(best):
            best = missing
    return best or []


def os_supports_kubernetes(os_code: str, version: str) -> bool:
    """Whether nodes running `os_code` can run Kubernetes `version`."""
    os_ = OPERATING_SYSTEM_DETAILS.get(os_code)
    minor = kubernetes_minor(version)
    if os_ is None or minor is None:
        return False
    if os_.max_kubernetes_version is None:
        return True
    return _minor_tuple(minor) <= _minor_tuple(os_.max_kubernetes_version)


def _minor_tuple(minor: str) -> tuple[int, int]:
    major, _, rest = minor.partition(".")
    return int(major), int(rest)


# ---------------------------------------------------------------------------------------
# Django-style choices
# ---------------------------------------------------------------------------------------

Choices = list[tuple[str, str]]


def choices_providers() -> Choices:
    return [(p.code, p.name) for p in PROVIDERS.values()]


def choices_regions() -> list[tuple[str, Choices]]:
    """All regions, grouped under each provider's name (Django optgroups)."""
    return [(p.name, choices_regions_for(p.code)) for p in PROVIDERS.values()]


def choices_regions_for(provider_code: str) -> Choices:
    return [(region, region) for region in regions_for(provider_code)]


def choices_kubernetes_versions(provider_code: str | None = None) -> Choices:
    """A provider's window for new clusters, or with no provider every version an
    existing cluster may run."""
    if provider_code is None:
        versions = KUBERNETES_VERSIONS
    else:
        p = PROVIDERS.get(provider_code)
        versions = p.kubernetes_versions if p else ()
    return [(v, v) for v in versions]


def choices_instance_types(provider_code: str) -> Choices:
    return [(it.name, it.label) for it in instance_types_for(provider_code)]


def choices_operating_systems(gpu_operator_only: bool = False) -> Choices:
    return [
        (os_.code, os_.name)
        for os_ in OPERATING_SYSTEM_DETAILS.values()
        if os_.gpu_operator_supported or not gpu_operator_only
    ]


def choices_gpu_models() -> Choices:
    return [(m.code, m.name) for m in GPU_MODELS.values()]


def choices_data_center_platforms() -> Choices:
    return [(p.code, p.name) for p in DATA_CENTER_PLATFORMS.values()]


choices_platforms = choices_data_center_platforms  # shorter name used by the forms
