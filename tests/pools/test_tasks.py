# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule

from pools import steps, tasks
from pools.drivers import driver_for
from pools.drivers.base import PermanentError, TransientError
from pools.drivers.local import MARKER, LocalDriver
from pools.lifecycle import State
from pools.models import GpuAllocation, Workspace
from pools.schedules import SWEEP_NAME, ensure_schedules
from tests.workspace_fixtures import (  # noqa: F401
    fake_gpus,
    starter,
    sync_tasks,
    warn_of_expiry,
    workspace_factory,
    workspaces_root,
)


@pytest.fixture
def requested(member, starter, workspace_factory, workspaces_root):
    return workspace_factory(member, starter)


def long_ago():
    return timezone.now() - steps.stuck_after() - timedelta(seconds=1)


def test_provisioning_takes_a_workspace_to_ready_with_its_steps(requested, workspaces_root):
    assert tasks.provision_workspace(requested.pk) == "ready"
    requested.refresh_from_db()
    assert requested.state == State.READY
    assert requested.ready_at is not None
    assert requested.connection["shell"].startswith(f"cd {workspaces_root / 'ws-'}")
    messages = [e.message for e in requested.events.all()]
    assert messages[0] == "provisioning started"
    assert messages[-1] == "ready"
    assert "environment file written" in messages


def test_running_provision_twice_makes_one_set_of_resources(requested, workspaces_root):
    tasks.provision_workspace(requested.pk)
    events = requested.events.count()
    assert tasks.provision_workspace(requested.pk) == "nothing to do (ready)"
    assert requested.events.count() == events
    assert [p.name for p in workspaces_root.iterdir()] == [requested.resource_name]


def test_a_retried_attempt_does_not_repeat_its_steps(requested, workspaces_root):
    Workspace.objects.filter(pk=requested.pk).update(state=State.PROVISIONING)
    tasks.provision_workspace(requested.pk)
    Workspace.objects.filter(pk=requested.pk).update(state=State.PROVISIONING)
    tasks.provision_workspace(requested.pk)
    messages = [e.message for e in requested.events.all() if not e.is_transition]
    assert len(messages) == len(set(messages))


def test_a_transient_error_retries_with_growing_backoff_then_fails(requested, monkeypatch):
    def flaky(self, spec, report=None):
        raise TransientError("API throttled", "429 from the API")

    monkeypatch.setattr(LocalDriver, "provision", flaky)
    delays = []
    for _ in range(1, steps.MAX_ATTEMPTS):
        before = timezone.now()
        assert tasks.provision_workspace(requested.pk).startswith("retrying")
        retry = Schedule.objects.get(name=f"retry provision_workspace {requested.pk}")
        delays.append(round((retry.next_run - before).total_seconds()))
        assert retry.schedule_type == Schedule.ONCE
    assert delays == [steps.backoff(n) for n in range(1, steps.MAX_ATTEMPTS)]
    assert delays == sorted(delays)
    tasks.provision_workspace(requested.pk)
    requested.refresh_from_db()
    assert requested.state == State.FAILED
    assert requested.failure_reason.startswith("API throttled (gave up after")
    assert requested.failure_detail == "429 from the API"


def test_a_permanent_error_fails_with_its_reason_and_releases(
    requested, monkeypatch, workspaces_root
):
    def broken(self, spec, report=None):
        (workspaces_root / spec.name).mkdir(parents=True)
        (workspaces_root / spec.name / MARKER).write_text(spec.name)
        raise PermanentError("No such GPU model here.", "inventory: []")

    monkeypatch.setattr(LocalDriver, "provision", broken)
    assert tasks.provision_workspace(requested.pk).startswith("failed")
    requested.refresh_from_db()
    assert requested.state == State.FAILED
    assert requested.failure_reason == "No such GPU model here."
    assert requested.failure_detail == "inventory: []"
    assert not (workspaces_root / requested.resource_name).exists()


def test_deprovision_deletes_resources_and_marks_deleted(requested, workspaces_root):
    tasks.provision_workspace(requested.pk)
    Workspace.objects.filter(pk=requested.pk).update(state=State.DELETING)
    assert tasks.deprovision_workspace(requested.pk) == "deleted"
    assert tasks.deprovision_workspace(requested.pk) == "nothing to do (deleted)"
    requested.refresh_from_db()
    assert requested.state == State.DELETED
    assert requested.deleted_at is not None
    assert not (workspaces_root / requested.resource_name).exists()


def test_a_worker_killed_after_making_resources_is_resumed_by_the_sweep(
    member,
    profile_factory,
    local_infrastructure,
    workspace_factory,
    fake_gpus,
    workspaces_root,
    sync_tasks,
    django_capture_on_commit_callbacks,
):
    profile = profile_factory(local_infrastructure, "GPU", groups=[("A100-40GB", 1)])
    workspace = workspace_factory(member, profile, state=State.PROVISIONING)
    # The worker got as far as making the resources, then died before recording "ready".
    driver_for(local_infrastructure).provision(workspace.spec())
    Workspace.objects.filter(pk=workspace.pk).update(heartbeat=long_ago())

    with django_capture_on_commit_callbacks(execute=True):
        result = tasks.sweep()

    assert result["resumed"] == 1
    assert result["reaped"] == []  # it belongs to a live workspace
    workspace.refresh_from_db()
    assert workspace.state == State.READY
    assert GpuAllocation.objects.filter(holder=workspace.resource_name).count() == 1
    assert [p.name for p in workspaces_root.iterdir()] == [workspace.resource_name]


def test_a_worker_killed_while_deleting_is_resumed_by_the_sweep(
    requested,
    sync_tasks,
    django_capture_on_commit_callbacks,
    workspaces_root,
):
    tasks.provision_workspace(requested.pk)
    Workspace.objects.filter(pk=requested.pk).update(state=State.DELETING, heartbeat=long_ago())
    with django_capture_on_commit_callbacks(execute=True):
        tasks.sweep()
    requested.refresh_from_db()
    assert requested.state == State.DELETED
    assert list(workspaces_root.iterdir()) == []


def test_the_sweep_leaves_recent_work_alone(requested, django_capture_on_commit_callbacks):
    Workspace.objects.filter(pk=requested.pk).update(state=State.PROVISIONING)
    with django_capture_on_commit_callbacks() as callbacks:
        assert tasks.resume_stuck() == 0
    assert callbacks == []


def test_two_sweeps_resume_a_stuck_workspace_once(requested, django_capture_on_commit_callbacks):
    Workspace.objects.filter(pk=requested.pk).update(heartbeat=long_ago())
    with django_capture_on_commit_callbacks() as callbacks:
        assert tasks.resume_stuck() == 1
        assert tasks.resume_stuck() == 0
    assert len(callbacks) == 1


def test_the_sweep_reaps_resources_of_no_live_workspace(
    member,
    starter,
    workspace_factory,
    local_infrastructure,
    workspaces_root,
):
    driver = driver_for(local_infrastructure)
    live = workspace_factory(member, starter, state=State.PROVISIONING)
    gone = workspace_factory(member, starter, state=State.DELETED)
    for workspace in (live, gone):
        driver.provision(workspace.spec())
    (workspaces_root / "not-ours").mkdir()  # no marker: never touched
    GpuAllocation.objects.create(
        infrastructure=local_infrastructure, holder="ws-9999", device_uuid="GPU-z", gpu_index=0
    )

    assert sorted(tasks.reap_orphans()) == sorted([gone.resource_name, "ws-9999"])
    assert sorted(p.name for p in workspaces_root.iterdir()) == sorted(
        [live.resource_name, "not-ours"]
    )
    assert not GpuAllocation.objects.filter(holder="ws-9999").exists()


def test_the_sweep_deletes_workspaces_past_their_lifetime(
    requested,
    sync_tasks,
    django_capture_on_commit_callbacks,
):
    tasks.provision_workspace(requested.pk)
    Workspace.objects.filter(pk=requested.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    warn_of_expiry(requested)  # the sweep moves an expiry nobody was warned of
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep()["expired"] == 1
    requested.refresh_from_db()
    assert requested.state == State.DELETED
    assert requested.events.filter(message="lifetime reached").exists()


def test_the_sweep_schedule_exists_once(db):
    ensure_schedules()
    ensure_schedules()
    schedule = Schedule.objects.get(name=SWEEP_NAME)
    assert schedule.func == "pools.tasks.sweep"
    assert schedule.schedule_type == Schedule.MINUTES
