from http import HTTPStatus

import pytest
from django.urls import reverse

from portal.models import AuditEntry
from profiles.models import ServicesProfile
from tests.conftest import formset_data

pytestmark = pytest.mark.django_db

TURNKEY = ["Jupyter Notebook", "Training", "Inference", "MLOps Platform", "Ray", "Jobs"]


def services_data(components, **fields) -> dict:
    data = {"name": "Custom stack", "description": "", "published": "on"}
    data.update(fields)
    data.update(formset_data("components", components))
    return data


def component(capability, code, version="", parameters="") -> dict:
    return {
        "capability": capability,
        "component": code,
        "version": version,
        "parameters": parameters,
    }


def test_the_six_turnkey_profiles_ship_with_the_product():
    turnkey = ServicesProfile.objects.filter(turnkey=True)
    assert sorted(turnkey.values_list("name", flat=True)) == sorted(TURNKEY)
    mlops = turnkey.get(name="MLOps Platform")
    assert list(mlops.components.values_list("capability", "component")) == [
        ("object_store", "minio"),
        ("model_registry", "mlflow"),
        ("pipelines", "kubeflow-pipelines"),
        ("feature_store", "feast"),
        ("authentication", "oauth2-proxy"),
    ]


def test_turnkey_profiles_are_read_only(admin_client):
    jupyter = ServicesProfile.objects.get(name="Jupyter Notebook")
    response = admin_client.get(reverse("profiles:servicesprofile_edit", args=[jupyter.pk]))
    assert response.status_code == HTTPStatus.FOUND
    response = admin_client.post(reverse("profiles:servicesprofile_delete", args=[jupyter.pk]))
    assert response.status_code == HTTPStatus.OK
    assert b"clone it to customise" in response.content
    assert ServicesProfile.objects.filter(pk=jupyter.pk).exists()


def test_cloning_a_turnkey_profile_copies_its_components(admin_client):
    mlops = ServicesProfile.objects.get(name="MLOps Platform")
    response = admin_client.post(reverse("profiles:servicesprofile_clone", args=[mlops.pk]))
    clone = ServicesProfile.objects.get(name="MLOps Platform (copy)")
    assert response.url == clone.get_absolute_url()
    assert not clone.turnkey
    assert not clone.published
    assert clone.components.count() == 5
    assert AuditEntry.objects.get(object_id=str(clone.pk)).action == "created"
    admin_client.post(reverse("profiles:servicesprofile_clone", args=[mlops.pk]))
    assert ServicesProfile.objects.filter(name="MLOps Platform (copy) 2").exists()


def test_creates_a_profile_with_parameters(admin_client):
    data = services_data(
        [
            component("model_registry", "mlflow", "", "artifact_root=s3://models\nworkers=2"),
            component("notebook", "jupyterlab", "4.4"),
        ]
    )
    response = admin_client.post(reverse("profiles:servicesprofile_add"), data)
    assert response.status_code == HTTPStatus.FOUND
    profile = ServicesProfile.objects.get(name="Custom stack")
    mlflow = profile.components.get(component="mlflow")
    assert mlflow.parameters == {"artifact_root": "s3://models", "workers": "2"}
    assert mlflow.version == "3.1"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([component("notebook", "mlflow")], "MLflow provides Model registry, Experiment tracking"),
        ([component("notebook", "jupyterlab", "", "no equals sign")], "is not key=value"),
        ([component("notebook", "jupyterlab", "", "a=1\na=2")], "is given twice"),
        (
            [component("notebook", "jupyterlab"), component("notebook", "jupyterlab")],
            "Each capability may appear once.",
        ),
        ([], "needs at least one component"),
    ],
)
def test_rejects_bad_components(admin_client, rows, message):
    response = admin_client.post(reverse("profiles:servicesprofile_add"), services_data(rows))
    assert response.status_code == HTTPStatus.OK
    assert message in response.content.decode()


def row_errors(admin_client, row: dict) -> dict:
    """The field errors of a one-row profile's row, which must not be saved."""
    response = admin_client.post(reverse("profiles:servicesprofile_add"), services_data([row]))
    assert response.status_code == HTTPStatus.OK
    assert not ServicesProfile.objects.filter(name="Custom stack").exists()
    return response.context["form"].inline.forms[0].errors


@pytest.mark.parametrize(
    ("capability", "code", "parameters", "message"),
    [
        # Beyond what a resource group may ask for (MAX_CPU, MAX_RAM_GB, MAX_STORAGE_GB).
        ("notebook", "jupyterlab", "cpu=1025", "cpu must be at most 1024."),
        ("notebook", "jupyterlab", "cpu=" + "9" * 22, "cpu must be at most 1024."),
        ("notebook", "jupyterlab", "memory_gb=65537", "memory_gb must be at most 65536."),
        ("object_store", "minio", "storage_gb=1000001", "storage_gb must be at most 1000000."),
        # 2**31 workers are no Deployment at all; a resource group has at most 1,000 nodes.
        ("distributed_compute", "ray", "workers=1001", "workers must be at most 1000."),
        ("distributed_compute", "ray", "workers=2147483648", "workers must be at most 1000."),
    ],
)
def test_a_size_no_cluster_can_give_a_component_is_refused_next_to_its_parameters(
    admin_client, capability, code, parameters, message
):
    errors = row_errors(admin_client, component(capability, code, "", parameters))
    assert errors["parameters"] == [message]


def test_the_largest_sizes_a_component_may_ask_for_are_saved(admin_client):
    rows = [
        component("notebook", "jupyterlab", "", "cpu=1024\nmemory_gb=65536"),
        component("distributed_compute", "ray", "", "workers=1000"),
    ]
    response = admin_client.post(reverse("profiles:servicesprofile_add"), services_data(rows))
    assert response.status_code == HTTPStatus.FOUND
    saved = ServicesProfile.objects.get(name="Custom stack").components
    assert saved.get(component="ray").parameters == {"workers": "1000"}


@pytest.mark.parametrize(
    ("parameters", "line"),
    [("default_url=/lab\x00/tree", 1), ("port=0\ndefault_url=\x00", 2), ("port\x1b=0", 1)],
)
def test_a_control_character_in_the_parameters_is_refused_next_to_them_with_its_line(
    admin_client, parameters, line
):
    """The database refuses a NUL byte in the JSON parameters are stored in: it was a 500."""
    errors = row_errors(admin_client, component("notebook", "jupyterlab", "", parameters))
    assert errors["parameters"] == [
        f"Line {line} holds a control character (a NUL byte, say): parameters are plain text."
    ]


@pytest.mark.parametrize(
    "version",
    ["4.4 && id", "../../evil/image", "4.4\u202e", "-4.4", ".4", "4.4:latest", "4.4@sha256"],
)
def test_a_version_that_is_no_image_tag_is_refused_next_to_it(admin_client, version):
    """The version becomes the image tag (`lab-4.4` of JupyterLab's image): anything Docker's
    tag grammar refuses would make every deployment of the profile fail to pull."""
    errors = row_errors(admin_client, component("notebook", "jupyterlab", version))
    assert errors["version"] == [
        "A version is what the image tag is made of: letters, digits, dots, dashes and "
        "underscores, starting with a letter, digit or underscore (e.g. 4.4)."
    ]


@pytest.mark.parametrize("version", ["4.3", "4.4.1_rc-2", "2025-04-22"])
def test_a_version_that_makes_an_image_tag_is_saved(admin_client, version):
    row = component("notebook", "jupyterlab", version)
    response = admin_client.post(reverse("profiles:servicesprofile_add"), services_data([row]))
    assert response.status_code == HTTPStatus.FOUND
    assert ServicesProfile.objects.get(name="Custom stack").components.get().version == version


def test_list_filters_turnkey(admin_client):
    response = admin_client.get(reverse("profiles:servicesprofile_list"), {"turnkey": "false"})
    assert b"Jupyter Notebook" not in response.content
    assert b"No services profiles match these filters" in response.content


@pytest.mark.parametrize(("first", "second"), [("GPU stack", "gpu-stack"), ("Team A", "team a")])
def test_a_name_whose_slug_another_profile_has_is_refused_next_to_the_field(
    admin_client, first, second
):
    url = reverse("profiles:servicesprofile_add")
    rows = [component("notebook", "jupyterlab")]
    assert admin_client.post(url, services_data(rows, name=first)).status_code == HTTPStatus.FOUND
    response = admin_client.post(url, services_data(rows, name=second))
    assert response.status_code == HTTPStatus.OK
    (message,) = response.context["form"].errors["name"]
    assert f"This name is too close to “{first}”" in message
    assert not ServicesProfile.objects.filter(name=second).exists()


@pytest.mark.parametrize("name", ["日本語", "中文", "!!!"])
def test_a_name_without_a_letter_or_digit_a_to_z_is_refused_next_to_the_field(admin_client, name):
    data = services_data([component("notebook", "jupyterlab")], name=name)
    response = admin_client.post(reverse("profiles:servicesprofile_add"), data)
    assert response.status_code == HTTPStatus.OK
    (message,) = response.context["form"].errors["name"]
    assert "at least one letter or digit" in message
    assert not ServicesProfile.objects.filter(name=name).exists()


@pytest.mark.parametrize("name", ["N" * 100, "ﬁ" * 100])  # "ﬁ" slugs to "fi": a cut slug
def test_cloning_a_profile_with_the_longest_name_cuts_the_copys_name_to_fit(admin_client, name):
    data = services_data([component("notebook", "jupyterlab")], name=name)
    response = admin_client.post(reverse("profiles:servicesprofile_add"), data)
    assert response.status_code == HTTPStatus.FOUND
    original = ServicesProfile.objects.get(name=name)
    url = reverse("profiles:servicesprofile_clone", args=[original.pk])
    assert admin_client.post(url).status_code == HTTPStatus.FOUND
    assert admin_client.post(url).status_code == HTTPStatus.FOUND
    first, second = ServicesProfile.objects.filter(pk__gt=original.pk).order_by("pk")
    assert first.name.endswith(" (copy)") and second.name.endswith(" (copy) 2")
    assert len({original.slug, first.slug, second.slug}) == 3
    assert all(len(p.name) <= 100 for p in (first, second))
