"""Integrity checks for profiles.catalog: the tables must agree with each other and with
the facts administrators rely on. Plain pytest, no database."""

import re

import pytest

from profiles import catalog

SHARED_GPU_CODES = {
    "T4",
    "L4",
    "L40S",
    "A10",
    "A10G",
    "V100-16GB",
    "V100-32GB",
    "A30",
    "A100-40GB",
    "A800-40GB",
    "A100-80GB",
    "A800-80GB",
    "PG506-96GB",
    "H100-80GB",
    "H800-80GB",
    "H100-NVL",
    "H800-NVL",
    "H100-96GB",
    "H20",
    "H200",
    "GH200-96GB",
    "GH200-144GB",
    "B200",
    "GB200",
    "RTX-PRO-6000",
}
MIG_CODES = {
    "A30",
    "A100-40GB",
    "A800-40GB",
    "A100-80GB",
    "A800-80GB",
    "PG506-96GB",
    "H100-80GB",
    "H800-80GB",
    "H100-NVL",
    "H800-NVL",
    "H100-96GB",
    "H20",
    "H200",
    "GH200-96GB",
    "GH200-144GB",
    "B200",
    "GB200",
    "RTX-PRO-6000",
}

REGION_PATTERNS = {
    "aws": r"[a-z]{2}-[a-z]+-\d",
    "azure": r"[a-z]+\d?",
    "gcp": r"[a-z]+-[a-z]+\d+",
    "oci": r"[a-z]{2}-[a-z]+-\d",
}


# --- GPU models -------------------------------------------------------------------------


def test_gpu_codes_are_exactly_the_shared_codes():
    assert set(catalog.GPU_MODELS) == SHARED_GPU_CODES


def test_gpu_models_are_keyed_by_their_own_code():
    for code, model in catalog.GPU_MODELS.items():
        assert model.code == code


def test_only_mig_capable_gpus_say_so():
    assert {m.code for m in catalog.GPU_MODELS.values() if m.mig_capable} == MIG_CODES


def test_gpu_architectures_are_known():
    for model in catalog.GPU_MODELS.values():
        assert model.architecture in catalog.ARCHITECTURES, model.code


# NVIDIA publishes no device name for these, so no node label can identify them.
UNLABELLED_GPU_CODES = {"H100-96GB"}


def test_gpu_product_labels_are_label_safe_and_unique():
    seen: dict[str, str] = {}
    for model in catalog.GPU_MODELS.values():
        assert bool(model.product_labels) != (model.code in UNLABELLED_GPU_CODES), model.code
        assert model.memory_gb > 0
        for label in model.product_labels:
            # Kubernetes label values: no spaces, at most 63 characters.
            assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", label), label
            assert label.lower() not in seen, f"{label} used by {seen.get(label.lower())}"
            seen[label.lower()] = model.code


@pytest.mark.parametrize(
    ("label", "code"),
    [
        ("Tesla-T4", "T4"),
        ("NVIDIA-A100-SXM4-40GB", "A100-40GB"),
        ("NVIDIA-A100-PCIE-40GB", "A100-40GB"),
        ("NVIDIA-A100-80GB-PCIe", "A100-80GB"),
        ("NVIDIA-H100-80GB-HBM3", "H100-80GB"),
        ("NVIDIA-A10G", "A10G"),
        ("NVIDIA-A10", "A10"),
        ("nvidia-h200", "H200"),  # case-insensitive
        ("  NVIDIA-L4 ", "L4"),  # pasted with spaces
        ("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", "A100-40GB"),  # single MIG strategy
        ("NVIDIA-A10G-SHARED", "A10G"),  # time-slicing rename
        ("NVIDIA-H100-80GB-HBM3-MIG-3g.40gb-SHARED", "H100-80GB"),
        ("NVIDIA-GH200-480GB", "GH200-96GB"),
    ],
)
def test_gpu_model_for_product_label(label, code):
    model = catalog.gpu_model_for_product_label(label)
    assert model is not None
    assert model.code == code


@pytest.mark.parametrize("label", ["", "NVIDIA-RTX-4090", "NVIDIA-A10GX", "AMD-MI300X"])
def test_unknown_product_label_gives_none(label):
    assert catalog.gpu_model_for_product_label(label) is None


def test_gpu_model_lookup():
    assert catalog.gpu_model("A100-40GB").name == "NVIDIA A100 40GB"
    assert catalog.gpu_model("A100") is None


# --- Instance types ---------------------------------------------------------------------


def test_instance_types_refer_to_known_gpus_and_providers():
    for it in catalog.INSTANCE_TYPES:
        assert it.provider in catalog.PROVIDERS, it.name
        if it.gpu_model is None:
            assert (it.gpu_count, it.gpu_memory_gb) == (0, 0), it.name
        else:
            assert it.gpu_model in catalog.GPU_MODELS, it.name
            assert it.gpu_count >= 1, it.name
            assert it.gpu_memory_gb == catalog.GPU_MODELS[it.gpu_model].memory_gb, it.name
        assert it.vcpu > 0 and it.ram_gb > 0, it.name


def test_no_duplicate_instance_type_names():
    names = [(it.provider, it.name) for it in catalog.INSTANCE_TYPES]
    assert len(names) == len(set(names))
    # Names are also globally unique, so a name alone never points at two providers.
    assert len({name for _, name in names}) == len(names)


@pytest.mark.parametrize("code", ["aws", "azure", "gcp", "oci"])
def test_every_provider_has_gpu_and_cpu_only_types(code):
    types = catalog.instance_types_for(code)
    assert any(it.has_gpu for it in types)
    assert any(not it.has_gpu for it in types)
    assert all(it.provider == code for it in types)


def test_p4d_24xlarge_is_eight_a100_40gb():
    p4d = catalog.instance_type("aws", "p4d.24xlarge")
    assert p4d is not None
    assert p4d.gpu_model == "A100-40GB"
    assert p4d.gpu_count == 8
    assert p4d.gpu_memory_gb == 40
    assert p4d.total_gpu_memory_gb == 320
    assert p4d.vcpu == 96
    assert p4d.ram_gb == 1152


@pytest.mark.parametrize(
    ("provider", "name", "gpu", "count"),
    [
        ("aws", "g4dn.xlarge", "T4", 1),
        ("aws", "g5.48xlarge", "A10G", 8),
        ("aws", "g6.xlarge", "L4", 1),
        ("aws", "g6e.12xlarge", "L40S", 4),
        ("aws", "p3dn.24xlarge", "V100-32GB", 8),
        ("aws", "p4de.24xlarge", "A100-80GB", 8),
        ("aws", "p5.48xlarge", "H100-80GB", 8),
        ("aws", "p5e.48xlarge", "H200", 8),
        ("aws", "p5en.48xlarge", "H200", 8),
        ("aws", "p6-b200.48xlarge", "B200", 8),
        ("azure", "Standard_NC4as_T4_v3", "T4", 1),
        ("azure", "Standard_NC24ads_A100_v4", "A100-80GB", 1),
        ("azure", "Standard_ND96asr_v4", "A100-40GB", 8),
        ("azure", "Standard_ND96isr_H100_v5", "H100-80GB", 8),
        ("azure", "Standard_NC40ads_H100_v5", "H100-NVL", 1),
        ("azure", "Standard_NV36ads_A10_v5", "A10", 1),
        ("gcp", "a2-highgpu-8g", "A100-40GB", 8),
        ("gcp", "a2-ultragpu-1g", "A100-80GB", 1),
        ("gcp", "a2-megagpu-16g", "A100-40GB", 16),
        ("gcp", "a3-highgpu-8g", "H100-80GB", 8),
        ("gcp", "a3-megagpu-8g", "H100-80GB", 8),
        ("gcp", "a3-ultragpu-8g", "H200", 8),
        ("gcp", "g2-standard-4", "L4", 1),
        ("oci", "VM.GPU.A10.1", "A10", 1),
        ("oci", "VM.GPU.A10.2", "A10", 2),
        ("oci", "BM.GPU.A10.4", "A10", 4),
        ("oci", "BM.GPU4.8", "A100-40GB", 8),
        ("oci", "BM.GPU.A100-v2.8", "A100-80GB", 8),
        ("oci", "BM.GPU.H100.8", "H100-80GB", 8),
        ("oci", "BM.GPU.H200.8", "H200", 8),
        ("oci", "BM.GPU.L40S.4", "L40S", 4),
    ],
)
def test_main_gpu_types_are_listed(provider, name, gpu, count):
    it = catalog.instance_type(provider, name)
    assert it is not None, name
    assert (it.gpu_model, it.gpu_count) == (gpu, count)


def test_instance_type_is_scoped_to_its_provider():
    assert catalog.instance_type("azure", "p4d.24xlarge") is None
    assert catalog.instance_type("aws", "no-such-type") is None
    assert catalog.instance_types_for("nope") == []


def test_retired_p3_is_not_offered():
    # AWS no longer sells p3.2xlarge/8xlarge/16xlarge; p3dn.24xlarge remains.
    assert catalog.instance_type("aws", "p3.2xlarge") is None


# --- Providers, regions, Kubernetes -----------------------------------------------------


def test_providers():
    assert set(catalog.PROVIDERS) == {"aws", "azure", "gcp", "oci"}
    managed = {p.code: p.managed_kubernetes for p in catalog.PROVIDERS.values()}
    assert managed == {"aws": "EKS", "azure": "AKS", "gcp": "GKE", "oci": "OKE"}
    assert catalog.provider("aws").name == "Amazon Web Services"
    assert catalog.provider("ibm") is None


@pytest.mark.parametrize("code", ["aws", "azure", "gcp", "oci"])
def test_provider_regions_are_well_formed_and_unique(code):
    regions = catalog.regions_for(code)
    assert len(regions) >= 20
    assert len(regions) == len(set(regions))
    for region in regions:
        assert re.fullmatch(REGION_PATTERNS[code], region), region


def test_region_codes_do_not_collide_across_providers():
    all_regions = [r for p in catalog.PROVIDERS.values() for r in p.regions]
    assert len(all_regions) == len(set(all_regions))


@pytest.mark.parametrize(
    ("provider", "region", "valid"),
    [
        ("aws", "us-east-1", True),
        ("azure", "us-east-1", False),
        ("azure", "eastus", True),
        ("azure", "westeurope", True),
        ("aws", "eastus", False),
        ("gcp", "us-central1", True),
        ("gcp", "europe-west4", True),
        ("gcp", "us-east-1", False),
        ("oci", "us-ashburn-1", True),
        ("oci", "eu-frankfurt-1", True),
        ("aws", "us-gov-west-1", False),  # separate partition
        ("aws", "cn-north-1", False),
        ("nope", "us-east-1", False),
        ("aws", "", False),
    ],
)
def test_is_valid_region(provider, region, valid):
    assert catalog.is_valid_region(provider, region) is valid


def test_every_provider_has_kubernetes_versions_within_the_known_set():
    known = set(catalog.KUBERNETES_VERSIONS)
    for p in catalog.PROVIDERS.values():
        assert p.kubernetes_versions, p.code
        assert set(p.kubernetes_versions) <= known, p.code
        assert list(p.kubernetes_versions) == sorted(
            p.kubernetes_versions, key=lambda v: tuple(map(int, v.split(".")))
        )


def test_kubernetes_versions_cover_what_kubernetes_validate_knows():
    assert catalog.KUBERNETES_VERSIONS[0] == "1.29"
    assert catalog.KUBERNETES_VERSIONS[-1] == "1.37"
    for version in catalog.KUBERNETES_VERSIONS:
        assert re.fullmatch(r"1\.\d+", version)


@pytest.mark.parametrize(
    ("raw", "minor"),
    [
        ("1.29", "1.29"),
        ("v1.29.3", "1.29"),
        ("v1.30.2-eks-1552ad0", "1.30"),
        ("v1.31.4+k3s1", "1.31"),
        ("1.34.1-gke.1000", "1.34"),
        ("latest", None),
        ("", None),
    ],
)
def test_kubernetes_minor(raw, minor):
    assert catalog.kubernetes_minor(raw) == minor


def test_is_valid_kubernetes_version():
    assert catalog.is_valid_kubernetes_version("v1.29.8")  # existing cluster
    assert not catalog.is_valid_kubernetes_version("1.28")
    assert not catalog.is_valid_kubernetes_version("1.38")
    assert catalog.is_valid_kubernetes_version("1.34", "aws")
    assert not catalog.is_valid_kubernetes_version("1.29", "aws")  # past EKS support
    assert not catalog.is_valid_kubernetes_version("1.34", "nope")


# --- Credentials ------------------------------------------------------------------------


def test_credential_fields_are_unique_and_cover_the_credential_sets():
    for p in catalog.PROVIDERS.values():
        keys = [f.key for f in p.credential_fields]
        assert len(keys) == len(set(keys)), p.code
        for key, label, help_text in p.credential_fields:  # unpacks as a 3-tuple
            assert key and label and help_text
        assert p.credential_sets
        for keys_needed in p.credential_sets:
            assert set(keys_needed) <= set(keys), p.code


def test_expected_credential_keys():
    keys = {p.code: {f.key for f in p.credential_fields} for p in catalog.PROVIDERS.values()}
    assert {"role_arn", "external_id", "access_key_id", "secret_access_key"} == keys["aws"]
    assert {"tenant_id", "client_id", "client_secret", "subscription_id"} == keys["azure"]
    assert {"service_account_json"} == keys["gcp"]
    assert {"tenancy_ocid", "user_ocid", "fingerprint", "private_key", "region"} == keys["oci"]


def test_missing_credentials():
    assert catalog.missing_credentials("aws", {"role_arn": "arn", "external_id": "x"}) == []
    assert (
        catalog.missing_credentials("aws", {"access_key_id": "AKIA", "secret_access_key": "s"})
        == []
    )
    assert catalog.missing_credentials("aws", {"access_key_id": "AKIA"}) == ["secret_access_key"]
    assert catalog.missing_credentials("aws", {"role_arn": "  "}) == ["role_arn", "external_id"]
    assert catalog.missing_credentials("gcp", {}) == ["service_account_json"]
    with pytest.raises(ValueError):
        catalog.missing_credentials("nope", {})


def test_secret_keys_include_every_private_key_and_password():
    for key in ("secret_access_key", "client_secret", "private_key", "ssh_private_key"):
        assert key in catalog.SECRET_CREDENTIAL_KEYS


# --- Data centers and operating systems -------------------------------------------------


def test_data_center_platforms():
    platforms = catalog.DATA_CENTER_PLATFORMS
    assert {code: p.name for code, p in platforms.items()} == {
        "vsphere": "VMware vSphere",
        "nutanix": "Nutanix AHV",
        "baremetal": "Bare metal",
    }
    assert platforms["vsphere"].needs_endpoint and not platforms["vsphere"].needs_host_list
    assert platforms["nutanix"].needs_endpoint and not platforms["nutanix"].needs_host_list
    assert platforms["baremetal"].needs_host_list and not platforms["baremetal"].needs_endpoint
    assert platforms["baremetal"].needs_hosts
    assert catalog.choices_platforms() == catalog.choices_data_center_platforms()
    for p in platforms.values():
        keys = [f.key for f in p.credential_fields]
        assert len(keys) == len(set(keys))
        assert "ssh_private_key" in keys  # the portal always logs in to the nodes
    assert {"username", "password"} <= {f.key for f in platforms["vsphere"].credential_fields}


def test_operating_systems():
    assert catalog.OPERATING_SYSTEMS == {
        "ubuntu-22.04": "Ubuntu 22.04 LTS",
        "ubuntu-24.04": "Ubuntu 24.04 LTS",
        "rhel-8": "Red Hat Enterprise Linux 8",
        "rhel-9": "Red Hat Enterprise Linux 9",
        "rocky-9": "Rocky Linux 9",
    }
    assert catalog.GPU_OPERATOR_OPERATING_SYSTEMS.issubset(catalog.OPERATING_SYSTEMS)
    assert "ubuntu-22.04" in catalog.GPU_OPERATOR_OPERATING_SYSTEMS


def test_rhel8_stops_at_kubernetes_1_31():
    assert catalog.os_supports_kubernetes("rhel-8", "1.31")
    assert not catalog.os_supports_kubernetes("rhel-8", "v1.32.0")
    assert catalog.os_supports_kubernetes("ubuntu-24.04", "1.37")
    assert not catalog.os_supports_kubernetes("windows", "1.31")


# --- Choices ----------------------------------------------------------------------------


def _is_flat_choices(choices):
    return all(
        isinstance(value, str) and isinstance(label, str) and value and label
        for value, label in choices
    )


def test_flat_choices():
    assert catalog.choices_providers()[0] == ("aws", "Amazon Web Services")
    assert [v for v, _ in catalog.choices_gpu_models()] == list(catalog.GPU_MODELS)
    for choices in (
        catalog.choices_providers(),
        catalog.choices_gpu_models(),
        catalog.choices_data_center_platforms(),
        catalog.choices_operating_systems(),
        catalog.choices_kubernetes_versions(),
        catalog.choices_kubernetes_versions("azure"),
        catalog.choices_regions_for("gcp"),
        catalog.choices_instance_types("aws"),
    ):
        assert choices and _is_flat_choices(choices)
    assert catalog.choices_kubernetes_versions("nope") == []
    assert len(catalog.choices_operating_systems(gpu_operator_only=True)) == len(
        catalog.GPU_OPERATOR_OPERATING_SYSTEMS
    )


def test_region_choices_are_grouped_by_provider():
    groups = catalog.choices_regions()
    assert [name for name, _ in groups] == [p.name for p in catalog.PROVIDERS.values()]
    for (_name, choices), p in zip(groups, catalog.PROVIDERS.values(), strict=True):
        assert [value for value, _ in choices] == list(p.regions)
        assert _is_flat_choices(choices)


def test_instance_type_choice_labels_describe_the_hardware():
    labels = dict(catalog.choices_instance_types("aws"))
    assert "8x NVIDIA A100 40GB" in labels["p4d.24xlarge"]
    assert "CPU only" in labels["m6i.xlarge"]
