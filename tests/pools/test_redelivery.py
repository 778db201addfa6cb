"""The engine's tasks under at-least-once delivery and workers that die: each phase of a
workspace gets retries of its own, a provisioning that gives up releases what it made, and
a worker killed between "ready" and the services loses no stack."""

# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811
from datetime import timedelta

import pytest
from django.utils import timezone

from pools import steps, tasks
from pools.drivers.base import TransientError
from pools.drivers.kubernetes import KubernetesDriver
from pools.drivers.local import LocalDriver
from pools.lifecycle import State, transition
from profiles.choices import HealthStatus, InfrastructureKind
from profiles.models import Infrastructure, ServicesProfile
from services import tasks as service_tasks
from services.models import ServiceDeployment
from tests.pools.k8s_stand_in import StandInApiServer
from tests.pools.warm_fixtures import make_instances, warm_profile  # noqa: F401
from tests.workspace_fixtures import (  # noqa: F401
    fake_gpus,
    starter,
    workspace_factory,
    workspaces_root,
)
from workspaces import actions

pytestmark = pytest.mark.django_db


def later():
    """A time at which every heartbeat of now counts as stuck (the sweep resumes it)."""
    return timezone.now() + steps.stuck_after() + timedelta(minutes=1)


def throttled(self, *args, **kwargs):
    raise TransientError("API throttled")


def killed(workspace):
    raise SystemExit("the worker was killed")


# -- each phase counts its own attempts ------------------------------------------------


def test_a_deletion_gets_its_own_retries_after_a_provisioning_that_needed_many(
    member, starter, workspace_factory, workspaces_root, monkeypatch
):
    workspace = workspace_factory(member, starter)
    real_provision = LocalDriver.provision
    failures = iter(range(steps.MAX_ATTEMPTS - 1))

    def flaky_provision(self, spec, report=None):
        if next(failures, None) is not None:
            raise TransientError("API throttled")
        return real_provision(self, spec, report)

    monkeypatch.setattr(LocalDriver, "provision", flaky_provision)
    for _ in range(steps.MAX_ATTEMPTS - 1):
        assert tasks.provision_workspace(workspace.pk).startswith("retrying")
    assert tasks.provision_workspace(workspace.pk) == "ready"  # at its last attempt

    workspace.refresh_from_db()
    assert workspace.attempts == 0
    actions.delete_workspace(member, workspace)
    real_deprovision = LocalDriver.deprovision
    calls = []

    def flaky_deprovision(self, spec, report=None):
        calls.append(spec.name)
        if len(calls) == 1:
            raise TransientError("the host is busy")
        return real_deprovision(self, spec, report)

    monkeypatch.setattr(LocalDriver, "deprovision", flaky_deprovision)

    assert tasks.deprovision_workspace(workspace.pk).startswith("retrying")
    workspace.refresh_from_db()
    assert (workspace.state, workspace.attempts) == (State.DELETING, 1)
    assert tasks.deprovision_workspace(workspace.pk) == "deleted"


def test_deleting_a_workspace_whose_provisioning_gave_up_retries_a_transient_error(
    member, starter, workspace_factory, workspaces_root, monkeypatch
):
    workspace = workspace_factory(member, starter)
    monkeypatch.setattr(LocalDriver, "provision", throttled)
    for _ in range(steps.MAX_ATTEMPTS):
        tasks.provision_workspace(workspace.pk)
    workspace.refresh_from_db()
    assert workspace.state == State.FAILED

    actions.delete_workspace(member, workspace)
    monkeypatch.setattr(LocalDriver, "deprovision", throttled)

    assert tasks.deprovision_workspace(workspace.pk).startswith("retrying")
    workspace.refresh_from_db()
    assert workspace.state == State.DELETING


def test_a_warm_instance_deleted_after_a_provisioning_that_retried_gets_its_own_retries(
    warm_profile, workspaces_root, monkeypatch
):
    (instance,) = make_instances(warm_profile, 1, state=State.REQUESTED)
    real_provision = LocalDriver.provision
    failures = iter(range(instance.max_attempts - 1))

    def flaky_provision(self, spec, report=None):
        if next(failures, None) is not None:
            raise TransientError("API throttled")
        return real_provision(self, spec, report)

    monkeypatch.setattr(LocalDriver, "provision", flaky_provision)
    for _ in range(instance.max_attempts):
        tasks.provision_pool_instance(instance.pk)
    instance.refresh_from_db()
    assert (instance.state, instance.attempts) == (State.READY, 0)

    transition(instance, State.DELETING, message="the pool shrank")
    monkeypatch.setattr(LocalDriver, "deprovision", throttled)
    assert tasks.deprovision_pool_instance(instance.pk).startswith("retrying")


# -- giving up releases what the attempts made -------------------------------------------


@pytest.fixture
def cluster():
    server = StandInApiServer(version="1.33").start()
    yield server
    server.stop()


def test_a_provisioning_that_gives_up_after_transient_errors_releases_what_it_made(
    cluster, member, profile_factory, workspace_factory, monkeypatch
):
    """The namespace and GPU StatefulSets the first attempt applied do not outlive a
    workspace that failed (it counts against no GPU quota), as after a PermanentError."""
    infrastructure = Infrastructure.objects.create(
        name="Lab cluster",
        kind=InfrastructureKind.KUBERNETES,
        kubeconfig=cluster.kubeconfig(),
        kubernetes_version="1.33",
        health_status=HealthStatus.READY,
    )
    profile = profile_factory(infrastructure, "One A100", groups=[("A100-80GB", 1)])
    workspace = workspace_factory(member, profile)
    assert tasks.provision_workspace(workspace.pk) == "not ready yet"
    assert workspace.resource_name in cluster.names("namespaces")

    monkeypatch.setattr(KubernetesDriver, "_observe", throttled)
    for _ in range(steps.MAX_ATTEMPTS):
        tasks.provision_workspace(workspace.pk)
    workspace.refresh_from_db()
    assert workspace.state == State.FAILED

    assert workspace.resource_name not in cluster.names("namespaces")
    assert not [n for n in cluster.names("statefulsets") if n.startswith(workspace.resource_name)]


# -- a worker killed between "ready" and its services ----------------------------------


def test_a_worker_killed_right_after_ready_still_gets_the_default_stack_deployed(
    member,
    local_infrastructure,
    profile_factory,
    workspace_factory,
    workspaces_root,
    fake_gpus,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    profile = profile_factory(
        local_infrastructure, "One A100", groups=(("A100-40GB", 1),), published=True
    )
    profile.default_services_profile = ServicesProfile.objects.get(name="Jobs")
    profile.save()
    workspace = workspace_factory(member, profile)

    with monkeypatch.context() as patched:
        patched.setattr(tasks, "workspace_ready", killed)
        with pytest.raises(SystemExit):
            tasks.provision_workspace(workspace.pk)
    workspace.refresh_from_db()
    assert workspace.state == State.PROVISIONING  # never ready without its stack

    # The broker delivers the task again, and the sweep runs: either may finish the job.
    with django_capture_on_commit_callbacks():
        tasks.provision_workspace(workspace.pk)
        tasks.resume_stuck(later())
        service_tasks.sweep(later())

    workspace.refresh_from_db()
    assert workspace.state == State.READY
    assert ServiceDeployment.objects.filter(workspace=workspace).exists()


def test_a_worker_killed_right_after_a_start_is_ready_still_gets_its_stack_redeployed(
    member,
    starter,
    workspace_factory,
    workspaces_root,
    monkeypatch,
    django_capture_on_commit_callbacks,
):
    """A stack waiting for its stopped workspace has its heartbeat a day ahead
    (`services.tasks.WAIT_WHILE_STOPPED`); a start task killed before the stack is
    enqueued again must not leave it undeployed for a day."""
    workspace = workspace_factory(member, starter)
    assert tasks.provision_workspace(workspace.pk) == "ready"
    workspace.refresh_from_db()
    tasks.request_stop(workspace, actor=member)
    assert tasks.stop_workspace(workspace.pk) == "stopped"
    workspace.refresh_from_db()
    stack = service_tasks.create_deployment(
        workspace, ServicesProfile.objects.get(name="Jobs"), workspace=workspace
    )
    assert service_tasks.deploy_services(stack.pk) == "waiting for the workspace to start"
    actions.start_workspace(member, workspace)

    with monkeypatch.context() as patched:
        patched.setattr(tasks, "start_for_workspace", killed)
        with pytest.raises(SystemExit):
            tasks.start_workspace(workspace.pk)

    enqueued = []
    monkeypatch.setattr(service_tasks, "enqueue_deploy", enqueued.append)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.start_workspace(workspace.pk)  # delivered again
        tasks.resume_stuck(later())
        service_tasks.sweep(later())

    workspace.refresh_from_db()
    assert workspace.state == State.READY
    assert stack.pk in enqueued


def test_a_stack_a_start_enqueued_again_is_resumed_by_the_sweep_if_that_enqueue_is_lost(
    member, starter, workspace_factory, workspaces_root, django_capture_on_commit_callbacks
):
    """The worker dies right after the commit, before its on-commit enqueue ran."""
    workspace = workspace_factory(member, starter, state=State.READY)
    stack = service_tasks.create_deployment(
        workspace, ServicesProfile.objects.get(name="Jobs"), workspace=workspace
    )
    steps.touch(stack, service_tasks.WAIT_WHILE_STOPPED)

    with django_capture_on_commit_callbacks():  # never run: the enqueue is lost
        assert service_tasks.start_for_workspace(workspace) == 1

    with django_capture_on_commit_callbacks() as resumed:
        assert service_tasks.sweep(later()) == 1
    assert len(resumed) == 1
