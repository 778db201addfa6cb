"""Services profiles: catalog rules, admin validation, deploy pages and task recovery.

These use no real service processes (see test_local_services.py for those): the deploy
task runs against the real local driver with a jobs queue, or is driven step by step.
"""

from datetime import timedelta
from http import HTTPStatus

import pytest
from django.urls import reverse
from django.utils import timezone

from pools.lifecycle import State, transition
from pools.models import Workspace
from portal.models import AuditEntry, Team
from portal.roles import Role
from profiles.models import ServicesProfile
from services import actions as services
from services import components as catalog
from services import tasks as service_tasks
from services.models import ComponentStatus, ServiceDeployment
from tests.conftest import formset_data
from tests.services.conftest import drive
from workspaces import actions as workspace_actions

pytestmark = pytest.mark.django_db


# -- the catalog -----------------------------------------------------------------------


def test_parameters_are_typed_and_validated():
    jupyter = catalog.component("jupyterlab")
    assert jupyter.resolve({"port": "8899"})["port"] == 8899
    assert jupyter.resolve({})["default_url"] == "/lab"
    with pytest.raises(ValueError, match="port must be at most 65535"):
        jupyter.resolve({"port": "70000"})
    with pytest.raises(ValueError, match="has no parameter “colour”"):
        jupyter.resolve({"colour": "blue"})


@pytest.mark.parametrize("value", ["/lab\x00/tree", "/lab\x1b[2J"])
def test_a_text_parameter_with_a_control_character_is_refused(value):
    """The database refuses a NUL byte in the JSON a parameter is stored in."""
    jupyter = catalog.component("jupyterlab")
    with pytest.raises(catalog.ParameterError, match="default_url must not hold control"):
        jupyter.resolve({"default_url": value})


def test_pipelines_need_an_object_store_and_come_after_mlflow():
    before = [("pipelines", "kubeflow-pipelines", {}), ("model_registry", "mlflow", {})]
    problems = catalog.check_stack(before)
    assert "Kubeflow Pipelines needs a component providing Object store." in problems
    assert any("must come after the component providing Model registry" in p for p in problems)
    good = [
        ("object_store", "minio", {}),
        ("model_registry", "mlflow", {}),
        ("pipelines", "kubeflow-pipelines", {}),
    ]
    assert catalog.check_stack(good) == []


def test_every_turnkey_profile_satisfies_the_catalog():
    for profile in ServicesProfile.objects.filter(turnkey=True):
        rows = [(c.capability, c.component, c.parameters) for c in profile.components.all()]
        assert catalog.check_stack(rows) == [], profile.name


def test_a_missing_package_is_named_with_the_install_command(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    ok, why = catalog.component("mlflow").local_availability()
    assert not ok
    assert why == (
        "MLflow is not installed on this portal host: pip install 'gpu-paas-portal[services]'"
    )
    ok, why = catalog.component("minio").local_availability()
    assert "not available on local infrastructure" in why


# -- admin: services profile form and compatibility ------------------------------------


def _services_data(rows, **fields) -> dict:
    data = {"name": "Custom stack", "description": "", "published": "on"}
    data.update(fields)
    data.update(formset_data("components", rows))
    return data


def _row(capability, code, parameters=""):
    return {"capability": capability, "component": code, "version": "", "parameters": parameters}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([_row("notebook", "jupyterlab", "port=abc")], "port must be a whole number"),
        ([_row("notebook", "jupyterlab", "colour=blue")], "has no parameter “colour”"),
        (
            [
                _row("object_store", "minio"),
                _row("pipelines", "kubeflow-pipelines"),
                _row("model_registry", "mlflow"),
            ],
            "must come after the component providing Model registry",
        ),
        ([_row("pipelines", "kubeflow-pipelines")], "needs a component providing Object store"),
    ],
)
def test_the_form_rejects_bad_parameters_and_order(admin_client, rows, message):
    response = admin_client.post(reverse("profiles:servicesprofile_add"), _services_data(rows))
    assert response.status_code == HTTPStatus.OK
    assert message in response.content.decode()


def test_the_form_sets_which_groups_may_use_the_profile(admin_client, scientist):
    team = Team.objects.create(name="Vision", role=Role.MEMBER)
    data = _services_data([_row("notebook", "jupyterlab", "port=0")], teams=[team.pk])
    response = admin_client.post(reverse("profiles:servicesprofile_add"), data)
    assert response.status_code == HTTPStatus.FOUND
    profile = ServicesProfile.objects.get(name="Custom stack")
    assert list(profile.teams.all()) == [team]
    assert profile not in ServicesProfile.objects.usable_by(scientist)
    team.members.add(scientist)
    assert profile in ServicesProfile.objects.usable_by(scientist)


def test_a_default_services_profile_must_fit_the_compute_profile(
    admin_client, local_infrastructure
):
    training = ServicesProfile.objects.get(name="Training")
    data = {
        "name": "CPU box",
        "description": "",
        "infrastructure": local_infrastructure.pk,
        "published": "on",
        "allocation_strategy": "on_demand",
        "desired_capacity": "0",
        "default_services_profile": training.pk,
        **formset_data(
            "groups",
            [
                {
                    "gpu_model": "",
                    "gpu_count": "0",
                    "mig_profile": "",
                    "cpu": "2",
                    "ram_gb": "4",
                    "storage_gb": "10",
                    "node_count": "1",
                    "instance_type": "",
                }
            ],
        ),
    }
    response = admin_client.post(reverse("profiles:computeprofile_add"), data)
    assert response.status_code == HTTPStatus.OK
    assert "“Training” needs 1 GPU(s); the compute profile has 0." in response.content.decode()
    data["default_services_profile"] = ServicesProfile.objects.get(name="Jobs").pk
    response = admin_client.post(reverse("profiles:computeprofile_add"), data)
    assert response.status_code == HTTPStatus.FOUND


def test_the_detail_page_shows_compatibility(admin_client, starter, gpu_profile):
    mlops = ServicesProfile.objects.get(name="MLOps Platform")
    page = admin_client.get(reverse("profiles:servicesprofile_detail", args=[mlops.pk]))
    text = page.content.decode()
    assert 'data-profile="starter" data-ok="yes"' in text
    assert "Kubeflow Pipelines: not available on local infrastructure" in text
    inference = ServicesProfile.objects.get(name="Inference")
    page = admin_client.get(reverse("profiles:servicesprofile_detail", args=[inference.pk]))
    assert 'data-profile="starter" data-ok="no"' in page.content.decode()


# -- deploy from the workspace page ----------------------------------------------------


def test_the_owner_deploys_from_the_workspace_page(client, scientist, ready_workspace):
    client.force_login(scientist)
    panel = client.get(reverse("workspaces:services", args=[ready_workspace.pk]))
    assert "Jupyter Notebook" in panel.content.decode()
    # A member reads plain words (issue 12); the driver's reason is for administrators.
    assert "Inference server isn&#x27;t available on this machine yet" in panel.content.decode()
    jobs = ServicesProfile.objects.get(name="Jobs")
    response = client.post(
        reverse("workspaces:services_deploy", args=[ready_workspace.pk]),
        {"services_profile": jobs.pk},
    )
    assert response.status_code == HTTPStatus.FOUND
    deployment = ServiceDeployment.objects.get(workspace=ready_workspace)
    assert deployment.state == State.REQUESTED
    assert deployment.requested_by == scientist
    assert list(deployment.components.values_list("component", flat=True)) == ["job-queue"]
    # A second stack is refused until the first is removed.
    again = client.post(
        reverse("workspaces:services_deploy", args=[ready_workspace.pk]),
        {"services_profile": jobs.pk},
        follow=True,
    )
    assert "already deployed here" in again.content.decode()


def test_profiles_limited_to_other_groups_are_not_offered(client, scientist, ready_workspace):
    jupyter = ServicesProfile.objects.get(name="Jupyter Notebook")
    Team.objects.create(name="Elsewhere").services_profiles.add(jupyter)
    with pytest.raises(services.ServicesRefused, match="not offered here"):
        services.deploy(scientist, ready_workspace, jupyter)


@pytest.mark.local_services
def test_only_the_owner_reveals_a_token_and_removal_stops_it(
    client, scientist, org_admin, ready_workspace, deploy
):
    deployment = deploy(ready_workspace, "Jobs")
    component = deployment.components.get()
    url = reverse("workspaces:services_secret", args=[ready_workspace.pk, component.pk])
    client.force_login(org_admin)
    assert component.secret not in client.post(url).content.decode()
    panel = client.get(reverse("workspaces:services", args=[ready_workspace.pk])).content.decode()
    assert component.secret not in panel
    client.force_login(scientist)
    assert component.secret in client.post(url).content.decode()

    redeploy = reverse("workspaces:services_redeploy", args=[ready_workspace.pk, deployment.pk])
    assert client.post(redeploy).status_code == HTTPStatus.FOUND
    deployment.refresh_from_db()
    assert deployment.state == State.REQUESTED
    assert drive(deployment.pk) == "ready"
    component.refresh_from_db()
    assert component.status == "ready"

    remove = reverse("workspaces:services_remove", args=[ready_workspace.pk, deployment.pk])
    assert client.post(remove).status_code == HTTPStatus.FOUND
    assert service_tasks.remove_services(deployment.pk) == "removed"
    deployment.refresh_from_db()
    assert deployment.state == State.DELETED


def test_revealing_a_token_is_audited_without_the_token(
    client, scientist, org_admin, ready_workspace
):
    jobs = ServicesProfile.objects.get(name="Jobs")
    component = services.deploy(scientist, ready_workspace, jobs).components.get()
    component.move(ComponentStatus.READY, secret="s3cret-token")
    url = reverse("workspaces:services_secret", args=[ready_workspace.pk, component.pk])
    client.force_login(org_admin)
    assert "s3cret-token" not in client.post(url).content.decode()
    assert not AuditEntry.objects.filter(message__startswith="revealed").exists()

    client.force_login(scientist)
    assert "s3cret-token" in client.post(url).content.decode()
    entry = AuditEntry.objects.get(message__startswith="revealed")
    assert entry.message == "revealed the Jobs queue token of services “Jobs”"
    assert (entry.actor, entry.object_id) == (scientist, str(ready_workspace.pk))
    assert (entry.before, entry.after) == (None, None)


@pytest.mark.parametrize("change", ["stop", "delete"])
def test_a_deploy_is_refused_when_the_workspace_left_ready_before_the_lock(
    scientist, ready_workspace, change
):
    """The page read the workspace ready; a Stop or a Delete committed before the deploy
    took the workspace's lock. Its state is read again under the lock: no stack is made,
    audited or charged for a workspace going away."""
    as_the_page_read_it = Workspace.objects.get(pk=ready_workspace.pk)
    other_request = Workspace.objects.get(pk=ready_workspace.pk)
    if change == "stop":
        workspace_actions.stop_workspace(scientist, other_request)
    else:
        workspace_actions.delete_workspace(scientist, other_request)

    jobs = ServicesProfile.objects.get(name="Jobs")
    with pytest.raises(services.ServicesRefused, match=r"The workspace is (stopping|deleting)\."):
        services.deploy(scientist, as_the_page_read_it, jobs)
    assert not ServiceDeployment.objects.filter(workspace=ready_workspace).exists()


@pytest.fixture
def failed_then_live(scientist, ready_workspace):
    """A stack that failed and stays in the workspace's history, and the one deployed
    after it."""
    jobs = ServicesProfile.objects.get(name="Jobs")
    old = services.deploy(scientist, ready_workspace, jobs)
    assert transition(old, State.FAILED, message="its component failed")
    jupyter = ServicesProfile.objects.get(name="Jupyter Notebook")
    return old, services.deploy(scientist, ready_workspace, jupyter)


def test_an_old_failed_stack_is_not_redeployed_beside_the_live_one(
    client, scientist, ready_workspace, failed_then_live
):
    """Its id from an earlier page or a second tab: one live stack per workspace, so a
    message, not a 500 from the unique constraint."""
    old, live = failed_then_live
    client.force_login(scientist)
    url = reverse("workspaces:services_redeploy", args=[ready_workspace.pk, old.pk])
    response = client.post(url, follow=True)
    assert response.status_code == HTTPStatus.OK
    assert "Another services profile is deployed here now" in response.content.decode()
    assert ServiceDeployment.objects.get(pk=old.pk).state == State.FAILED
    assert ServiceDeployment.objects.get(pk=live.pk).state == State.REQUESTED


def test_a_failed_stack_is_redeployed_once_the_live_one_is_removed(
    scientist, ready_workspace, failed_then_live
):
    old, live = failed_then_live
    assert services.remove(scientist, live)
    assert service_tasks.remove_services(live.pk) == "removed"
    assert services.redeploy(scientist, ServiceDeployment.objects.get(pk=old.pk))
    assert ServiceDeployment.objects.get(pk=old.pk).state == State.REQUESTED


def test_a_stack_is_not_redeployed_into_a_workspace_being_deleted(scientist, ready_workspace):
    deployment = services.deploy(
        scientist, ready_workspace, ServicesProfile.objects.get(name="Jobs")
    )
    assert transition(deployment, State.FAILED, message="its component failed")
    as_the_page_read_it = ServiceDeployment.objects.get(pk=deployment.pk)
    workspace_actions.delete_workspace(scientist, Workspace.objects.get(pk=ready_workspace.pk))

    with pytest.raises(services.ServicesRefused, match="The workspace is deleting"):
        services.redeploy(scientist, as_the_page_read_it)
    assert ServiceDeployment.objects.get(pk=deployment.pk).state == State.FAILED


def test_another_member_cannot_see_the_services(client, user_factory, ready_workspace):
    client.force_login(user_factory("eve", Role.MEMBER))
    response = client.get(reverse("workspaces:services", args=[ready_workspace.pk]))
    assert response.status_code == HTTPStatus.NOT_FOUND


# -- automatic deploys and recovery ----------------------------------------------------


def test_the_compute_profiles_default_stack_deploys_when_the_workspace_is_ready(
    scientist, gpu_profile, workspace_factory, workspaces_root, fake_gpus
):
    from pools import tasks

    gpu_profile.default_services_profile = ServicesProfile.objects.get(name="Jobs")
    gpu_profile.save()
    workspace = workspace_factory(scientist, gpu_profile)
    assert tasks.provision_workspace(workspace.pk) == "ready"
    deployment = ServiceDeployment.objects.get(workspace=workspace)
    assert deployment.profile_name == "Jobs"
    assert deployment.target_name == workspace.resource_name
    # Deploying again for the same target is a no-op.
    assert service_tasks.deploy_default_services(workspace) is None


def test_a_stack_requested_before_the_workspace_is_ready_waits_for_it(
    scientist, gpu_profile, workspace_factory, workspaces_root, fake_gpus
):
    workspace = workspace_factory(scientist, gpu_profile)
    deployment = services.deploy(scientist, workspace, ServicesProfile.objects.get(name="Jobs"))
    assert service_tasks.deploy_services(deployment.pk) == "waiting for the workspace"
    deployment.refresh_from_db()
    assert deployment.state == State.REQUESTED


def test_the_sweep_resumes_a_deployment_whose_worker_died(
    ready_workspace, scientist, monkeypatch, django_capture_on_commit_callbacks
):
    deployment = services.deploy(
        scientist, ready_workspace, ServicesProfile.objects.get(name="Jobs")
    )
    old = timezone.now() - timedelta(hours=1)
    ServiceDeployment.objects.filter(pk=deployment.pk).update(
        state=State.PROVISIONING, heartbeat=old
    )
    enqueued = []
    monkeypatch.setattr(service_tasks, "enqueue_deploy", enqueued.append)
    with django_capture_on_commit_callbacks(execute=True):
        assert service_tasks.sweep() == 1
        assert service_tasks.sweep() == 0  # its heartbeat was renewed: claimed once
    assert enqueued == [deployment.pk]


def test_a_deployment_on_an_infrastructure_without_services_reports_it(
    scientist, aws_infrastructure, profile_factory, workspace_factory
):
    profile = profile_factory(aws_infrastructure, "Cloud", published=True)
    workspace = workspace_factory(scientist, profile, state=State.READY)
    deployment = service_tasks.create_deployment(
        workspace, ServicesProfile.objects.get(name="Jobs"), workspace=workspace
    )
    assert service_tasks.deploy_services(deployment.pk) == "failed: nothing deployable"
    deployment.refresh_from_db()
    assert "not available on Public cloud yet" in deployment.failure_reason


def test_a_workspace_request_may_name_a_services_profile(
    client,
    scientist,
    gpu_profile,
    workspaces_root,
    fake_gpus,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    from pools import tasks

    monkeypatch.setattr(tasks, "enqueue_provision", lambda pk: None)
    enqueued = []
    monkeypatch.setattr(service_tasks, "enqueue_deploy", enqueued.append)
    client.force_login(scientist)
    page = client.get(reverse("workspaces:self_service")).content.decode()
    assert 'name="services_profile"' in page
    jobs = ServicesProfile.objects.get(name="Jobs")
    client.post(reverse("workspaces:request", args=[gpu_profile.pk]), {"services_profile": jobs.pk})
    deployment = ServiceDeployment.objects.get(workspace__owner=scientist)
    assert deployment.state == State.REQUESTED
    assert enqueued == []  # not before the workspace is ready
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.provision_workspace(deployment.workspace_id) == "ready"
    assert enqueued == [deployment.pk]


# -- hostile deploy forms (issue 11, findings 6 and 7) ---------------------------------


@pytest.mark.parametrize("value", ["²", "٣", "\x00", "-1", "1.0", "9" * 30, str(2**63), "", "jobs"])
def test_a_deploy_form_with_no_usable_profile_id_is_refused_not_a_500(
    client, scientist, ready_workspace, value
):
    client.force_login(scientist)
    url = reverse("workspaces:services_deploy", args=[ready_workspace.pk])
    response = client.post(url, {"services_profile": value}, follow=True)
    assert response.status_code == HTTPStatus.OK
    assert "Choose a services profile to deploy." in response.content.decode()
    assert not ServiceDeployment.objects.exists()


@pytest.mark.parametrize("hidden", ["unpublished", "another group's"])
def test_a_member_does_not_learn_the_name_of_a_profile_not_offered(
    client, scientist, ready_workspace, hidden
):
    secret = ServicesProfile.objects.create(
        name="Project Nightingale", slug="nightingale", published=hidden != "unpublished"
    )
    secret.components.create(capability="jobs", component="job-queue")
    if hidden == "another group's":
        Team.objects.create(name="Elsewhere").services_profiles.add(secret)
    client.force_login(scientist)
    url = reverse("workspaces:services_deploy", args=[ready_workspace.pk])
    response = client.post(url, {"services_profile": secret.pk}, follow=True)
    page = response.content.decode()
    assert "Nightingale" not in page
    assert "Choose a services profile to deploy." in page
    assert not ServiceDeployment.objects.exists()
    with pytest.raises(services.ServicesRefused) as refused:
        services.deploy(scientist, ready_workspace, secret)
    assert "Nightingale" not in str(refused.value)
