from http import HTTPStatus

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from django.urls import reverse

from portal.models import AuditEntry
from profiles.choices import InfrastructureKind
from profiles.forms import InfrastructureForm
from profiles.models import Infrastructure
from tests.portal.test_crypto import KUBECONFIG

# AWS entries are checked against AWS on save: here a real moto server stands in for it.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("aws")]


def ssh_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()


def aws_data(**overrides) -> dict:
    data = {
        "name": "AWS prod",
        "kind": InfrastructureKind.PUBLIC_CLOUD,
        "provider": "aws",
        "region": "us-east-1",
        "kubernetes_version": "1.33",
        "instance_types": ["p4d.24xlarge", "g5.xlarge"],
        "cred_aws_role_arn": "arn:aws:iam::123456789012:role/gpu-paas",
        "cred_aws_external_id": "ext-123",
        "gpus_per_node": "0",
    }
    data.update(overrides)
    return data


def bare_metal_data(**overrides) -> dict:
    data = {
        "name": "Lab rack",
        "kind": InfrastructureKind.DATA_CENTER,
        "platform": "baremetal",
        "hosts": "gpu-01.lab.example\n10.0.0.12",
        "operating_system": "ubuntu-22.04",
        "gpu_model": "H100-80GB",
        "gpus_per_node": "8",
        "username": "ubuntu",
        "ssh_private_key": ssh_key(),
    }
    data.update(overrides)
    return data


def form_errors(data: dict, instance=None) -> dict:
    form = InfrastructureForm(data, instance=instance or Infrastructure())
    form.is_valid()
    return form.errors


def test_a_valid_aws_entry_saves_with_instance_type_facts_from_the_catalog():
    form = InfrastructureForm(aws_data(), instance=Infrastructure())
    assert form.is_valid(), form.errors
    infrastructure = form.save()
    p4d = infrastructure.instance_types.get(name="p4d.24xlarge")
    assert (p4d.gpu_model, p4d.gpu_count, p4d.gpu_memory_gb) == ("A100-40GB", 8, 40)
    assert infrastructure.credentials["role_arn"].endswith("role/gpu-paas")
    assert infrastructure.gpu_offer() == {"A100-40GB": 8, "A10G": 1}


def test_new_aws_credentials_are_checked_with_sts(admin_client):
    response = admin_client.post(reverse("profiles:infrastructure_add"), aws_data(), follow=True)
    assert "AWS accepted the credentials" in response.content.decode()
    assert Infrastructure.objects.get().instance_types.count() == 2


def test_credentials_aws_cannot_confirm_are_an_error_next_to_the_field(settings):
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:9"
    errors = form_errors(aws_data())
    assert "Cannot reach AWS STS in us-east-1" in errors["cred_aws_role_arn"][0]


def test_region_is_validated_per_provider():
    assert "region" not in form_errors(aws_data(region="us-east-1"))
    errors = form_errors(aws_data(provider="azure", region="us-east-1", instance_types=[]))
    assert "us-east-1 is not a Microsoft Azure region." in errors["region"][0]


def test_instance_types_are_validated_per_provider():
    errors = form_errors(aws_data(instance_types=["Standard_ND96asr_v4"]))
    assert "instance_types" in errors


def test_kubernetes_version_outside_the_providers_window_is_rejected():
    errors = form_errors(aws_data(kubernetes_version="1.20"))
    assert "kubernetes_version" in errors


def test_half_a_login_is_pointed_at():
    errors = form_errors(
        aws_data(cred_aws_role_arn="", cred_aws_external_id="", cred_aws_access_key_id="AKIA1")
    )
    assert errors["cred_aws_secret_access_key"] == ["Needed to log in."]


def test_aws_without_credentials_is_saved_but_not_usable():
    form = InfrastructureForm(
        aws_data(cred_aws_role_arn="", cred_aws_external_id=""), instance=Infrastructure()
    )
    assert form.is_valid(), form.errors
    usable, reason = form.save().usability()
    assert not usable
    assert "No credentials" in reason


def test_a_bare_metal_entry_needs_valid_hosts_and_a_real_ssh_key():
    assert not form_errors(bare_metal_data())
    errors = form_errors(bare_metal_data(hosts="good.example\nbad host!"))
    assert "“bad host!” is not a host name" in errors["hosts"][0]
    errors = form_errors(bare_metal_data(ssh_private_key="-----BEGIN NOTHING-----"))
    assert "not an unencrypted SSH private key" in errors["ssh_private_key"][0]


def test_vsphere_needs_its_vcenter_endpoint():
    errors = form_errors(bare_metal_data(platform="vsphere", hosts=""))
    assert "endpoint" in errors


def test_gpu_nodes_need_a_model_and_a_count():
    errors = form_errors(bare_metal_data(gpus_per_node="0"))
    assert "gpus_per_node" in errors
    errors = form_errors(bare_metal_data(gpu_model="", gpus_per_node="4"))
    assert "gpu_model" in errors


def test_a_kubeconfig_must_be_a_real_kubeconfig():
    data = {
        "name": "Cluster",
        "kind": InfrastructureKind.KUBERNETES,
        "kubernetes_version": "1.31",
        "kubeconfig": "clusters: []",
        "gpus_per_node": "0",
    }
    assert "kubeconfig" in form_errors(data)
    data["kubeconfig"] = "{not: [yaml"
    assert "not valid YAML" in form_errors(data)["kubeconfig"][0]
    data["kubeconfig"] = KUBECONFIG
    assert not form_errors(data)


def test_switching_kind_clears_the_other_kinds_secrets():
    form = InfrastructureForm(bare_metal_data(), instance=Infrastructure())
    infrastructure = form.save() if form.is_valid() else None
    assert infrastructure.ssh_private_key
    form = InfrastructureForm(aws_data(name="Lab rack"), instance=infrastructure)
    assert form.is_valid(), form.errors
    infrastructure = form.save()
    infrastructure.refresh_from_db()
    assert infrastructure.ssh_private_key == ""
    assert infrastructure.hosts == ""


def test_leaving_a_secret_blank_keeps_the_stored_value():
    form = InfrastructureForm(bare_metal_data(), instance=Infrastructure())
    assert form.is_valid()
    infrastructure = form.save()
    key = infrastructure.ssh_private_key
    form = InfrastructureForm(bare_metal_data(ssh_private_key=""), instance=infrastructure)
    assert form.is_valid(), form.errors
    form.save()
    infrastructure.refresh_from_db()
    assert infrastructure.ssh_private_key == key


def test_only_one_local_entry_may_exist(local_infrastructure):
    errors = form_errors({"name": "Another", "kind": InfrastructureKind.LOCAL, "gpus_per_node": 0})
    assert "There is already a local infrastructure entry." in str(errors)


# Pages


def test_list_shows_entries_and_usability(admin_client, aws_infrastructure, local_infrastructure):
    response = admin_client.get(reverse("profiles:infrastructure_list"))
    assert response.status_code == HTTPStatus.OK
    assert b"AWS test" in response.content
    assert b"Not usable" in response.content


def test_list_filters_by_kind(admin_client, aws_infrastructure, local_infrastructure):
    response = admin_client.get(reverse("profiles:infrastructure_list"), {"kind": "local"})
    assert b"This machine" in response.content
    assert b"AWS test" not in response.content


def test_list_sorts_by_a_column(admin_client, aws_infrastructure, local_infrastructure):
    response = admin_client.get(reverse("profiles:infrastructure_list"), {"sort": "-name"})
    page = response.content.decode()
    assert page.index("This machine") < page.index("AWS test")


def test_empty_list_says_what_to_do_next(admin_client):
    response = admin_client.get(reverse("profiles:infrastructure_list"))
    assert b"No infrastructure yet" in response.content


def test_create_page_saves_and_audits(admin_client):
    response = admin_client.post(reverse("profiles:infrastructure_add"), aws_data())
    infrastructure = Infrastructure.objects.get(name="AWS prod")
    assert response.status_code == HTTPStatus.FOUND
    assert response.url == infrastructure.get_absolute_url()
    entry = AuditEntry.objects.get(object_id=str(infrastructure.pk))
    assert entry.action == "created"
    assert entry.after["credentials"] == "(set)"
    assert "gpu-paas" not in str(entry.after)


def test_bad_input_redisplays_the_form_with_field_errors(admin_client):
    response = admin_client.post(
        reverse("profiles:infrastructure_add"), aws_data(region="westeurope")
    )
    assert response.status_code == HTTPStatus.OK
    assert "westeurope is not a Amazon Web Services region." in response.content.decode()
    assert not Infrastructure.objects.exists()


def test_detail_and_edit_pages_render(admin_client, aws_infrastructure):
    for name in ("profiles:infrastructure_detail", "profiles:infrastructure_edit"):
        response = admin_client.get(reverse(name, args=[aws_infrastructure.pk]))
        assert response.status_code == HTTPStatus.OK
        assert b"p4d.24xlarge" in response.content


def test_edit_records_before_and_after(admin_client, aws_infrastructure):
    data = aws_data(name="AWS renamed", instance_types=["p4d.24xlarge"])
    response = admin_client.post(
        reverse("profiles:infrastructure_edit", args=[aws_infrastructure.pk]), data
    )
    assert response.status_code == HTTPStatus.FOUND
    entry = AuditEntry.objects.get(action="updated")
    assert entry.before["name"] == "AWS test"
    assert entry.after["name"] == "AWS renamed"
    assert entry.after["credentials"] == "(changed)"


def test_an_edit_of_only_the_instance_types_is_audited_with_their_names(admin_client):
    admin_client.post(reverse("profiles:infrastructure_add"), aws_data())
    infrastructure = Infrastructure.objects.get()
    url = reverse("profiles:infrastructure_edit", args=[infrastructure.pk])

    response = admin_client.post(url, aws_data(instance_types=["p4d.24xlarge"]))

    assert response.status_code == HTTPStatus.FOUND
    entry = AuditEntry.objects.get(action="updated")
    assert entry.before["instance_types"] == ["g5.xlarge", "p4d.24xlarge"]
    assert entry.after["instance_types"] == ["p4d.24xlarge"]


def test_delete_refuses_while_compute_profiles_depend_on_it(
    admin_client, aws_infrastructure, profile_factory
):
    profile_factory(aws_infrastructure, name="Medium", groups=[("A100-40GB", 8)])
    url = reverse("profiles:infrastructure_delete", args=[aws_infrastructure.pk])
    response = admin_client.get(url)
    assert b"cannot be deleted while these depend on it" in response.content
    assert b"Compute profile: Medium" in response.content
    response = admin_client.post(url)
    assert response.status_code == HTTPStatus.OK
    assert Infrastructure.objects.filter(pk=aws_infrastructure.pk).exists()


def test_delete_confirm_lists_what_goes_with_it_then_deletes(admin_client, aws_infrastructure):
    url = reverse("profiles:infrastructure_delete", args=[aws_infrastructure.pk])
    response = admin_client.get(url)
    assert b"p4d.24xlarge" in response.content
    response = admin_client.post(url)
    assert response.status_code == HTTPStatus.FOUND
    assert not Infrastructure.objects.exists()
    assert AuditEntry.objects.get(action="deleted").before["name"] == "AWS test"
