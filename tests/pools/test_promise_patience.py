"""A workspace waits for its promised warm instance only so long (`pools.promises.Patience`):
a late instance is given back to the pool and the workspace provisioned on demand. With the
real local driver, step by step; one race on real PostgreSQL connections."""

# ruff: noqa: F811
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from django_q.models import Schedule

from pools import promises, tasks
from pools.lifecycle import State
from pools.models import PoolInstance
from profiles.choices import InfrastructureKind
from tests.pools.test_warmpool_promises import measured_300_s, on_its_way
from tests.workspace_fixtures import fake_gpus, workspaces_root  # noqa: F401
from workspaces import actions

# With a provisioning p90 of 300 s measured here, a workspace waits until its instance
# has provisioned for 600 s.
PATIENCE = 600


def waiting_for(profile, member, seconds_ago: float):
    """A workspace promised an instance that has provisioned for `seconds_ago` since and
    is stuck there (no worker finishes it); both. (A late instance is never promised.)"""
    instance = on_its_way(profile)
    workspace = actions.request_workspace(member, profile)
    assert PoolInstance.objects.get(workspace=workspace) == instance
    created = timezone.now() - timedelta(seconds=seconds_ago)
    PoolInstance.objects.filter(pk=instance.pk).update(created=created)
    instance.refresh_from_db()
    return workspace, instance


def messages(obj) -> list[str]:
    return [event.message for event in obj.events.all()]


@pytest.mark.parametrize(
    ("typical", "measured", "seconds", "basis"),
    [
        (300, True, 600, "p90 here 5 min"),
        (20, True, promises.OVERDUE_FLOOR, "p90 here 20 s"),  # jitter is no reason
        (3600, True, promises.OVERDUE_CEILING, "p90 here 60 min"),  # on demand keeps its hour
        (0, False, promises.OVERDUE_FLOOR, "nothing measured here yet: 2 min at most"),
    ],
)
def test_patience_is_twice_the_provisioning_p90_within_bounds(typical, measured, seconds, basis):
    assert promises.Patience.of(typical, measured) == promises.Patience(seconds, basis)


def test_before_anything_is_measured_the_kind_of_infrastructure_sets_it(warm_profile):
    instance = on_its_way(warm_profile)
    assert tasks.patience(instance).seconds == promises.OVERDUE_FLOOR  # local: 0 s assumed
    infrastructure = instance.infrastructure
    infrastructure.kind = InfrastructureKind.PUBLIC_CLOUD  # 15 min assumed
    assert tasks.patience(instance) == promises.Patience(
        promises.OVERDUE_CEILING, "nothing measured here yet: 20 min at most"
    )
    measured_300_s(warm_profile)
    assert tasks.patience(instance) == promises.Patience(PATIENCE, "p90 here 5 min")


def test_before_its_instance_is_late_the_workspace_waits_and_looks_again_soon(
    warm_profile, member, workspaces_root
):
    measured_300_s(warm_profile)
    workspace, instance = waiting_for(warm_profile, member, seconds_ago=PATIENCE - 60)
    before = timezone.now()
    assert tasks.provision_workspace(workspace.pk) == promises.WAITING
    # Its own task looks again in POLL_INTERVAL, so it stops waiting within that of the
    # instance being late; the sweep leaves it alone meanwhile.
    retry = Schedule.objects.get(name=f"retry provision_workspace {workspace.pk}")
    assert (retry.func, retry.args) == ("pools.tasks.provision_workspace", repr((workspace.pk,)))
    due = (retry.next_run - before).total_seconds()
    assert tasks.POLL_INTERVAL <= due < tasks.POLL_INTERVAL + 5
    assert tasks.resume_stuck() == 0
    instance.refresh_from_db()
    assert (instance.state, instance.workspace_id) == (State.PROVISIONING, workspace.pk)
    workspace.refresh_from_db()
    assert workspace.state == State.PROVISIONING
    assert not (workspaces_root / f"ws-{workspace.pk}").exists()


def test_once_its_instance_is_late_the_workspace_is_provisioned_on_demand(
    warm_profile, member, workspaces_root, fake_gpus
):
    measured_300_s(warm_profile)
    workspace, instance = waiting_for(warm_profile, member, seconds_ago=PATIENCE - 60)
    assert tasks.provision_workspace(workspace.pk) == promises.WAITING
    # Its next look comes after the instance became late (12 min, p90 5 min): it is
    # provisioned on demand, with its own resources.
    PoolInstance.objects.filter(pk=instance.pk).update(
        created=timezone.now() - timedelta(minutes=12)
    )
    assert Schedule.objects.filter(name=f"retry provision_workspace {workspace.pk}").exists()
    assert tasks.provision_workspace(workspace.pk) == "ready"
    workspace.refresh_from_db()
    assert workspace.state == State.READY
    assert workspace.resources_spec().name == f"ws-{workspace.pk}"
    name = instance.resource_name
    assert (
        f"its warm instance {name} was not ready after 12 min (p90 here 5 min): "
        "provisioning on demand"
    ) in messages(workspace)
    # The instance is the pool's again, still provisioning, not deleted: its worker may
    # finish it yet, for a later request.
    instance.refresh_from_db()
    assert (instance.state, instance.workspace_id, instance.claimed_at) == (
        State.PROVISIONING,
        None,
        None,
    )
    assert messages(instance)[-1] == (
        f"{promises.GIVEN_BACK}: workspace {workspace.pk} stopped waiting for it: "
        "not ready after 12 min (p90 here 5 min)"
    )
    assert tasks.provision_pool_instance(instance.pk) == "ready"
    instance.refresh_from_db()
    assert (instance.state, instance.workspace_id) == (State.READY, None)
    later = actions.request_workspace(member, warm_profile)
    assert later.state == State.READY and later.resources_spec().name == name  # a warm hit


def test_before_anything_is_measured_a_stuck_instance_is_waited_for_two_minutes(
    warm_profile, member, workspaces_root, fake_gpus
):
    workspace, instance = waiting_for(warm_profile, member, seconds_ago=100)
    assert tasks.provision_workspace(workspace.pk) == promises.WAITING
    PoolInstance.objects.filter(pk=instance.pk).update(
        created=timezone.now() - timedelta(seconds=promises.OVERDUE_FLOOR + 20)
    )
    assert tasks.provision_workspace(workspace.pk) == "ready"
    assert (
        f"its warm instance {instance.resource_name} was not ready after 2 min "
        "(nothing measured here yet: 2 min at most): provisioning on demand"
    ) in messages(workspace)


def test_an_instance_ready_when_it_would_be_late_is_handed_over_once(
    warm_profile, member, workspaces_root
):
    measured_300_s(warm_profile)
    workspace, instance = waiting_for(warm_profile, member, seconds_ago=PATIENCE + 60)
    # Its worker made it ready (and died before handing it over) just as it would be late.
    PoolInstance.objects.filter(pk=instance.pk).update(state=State.READY, ready_at=timezone.now())
    assert tasks.provision_workspace(workspace.pk) == promises.READY_NOW
    assert tasks.provision_workspace(workspace.pk) == "nothing to do (ready)"  # a retry
    workspace.refresh_from_db()
    assert workspace.state == State.READY
    assert workspace.resources_spec().name == instance.resource_name
    assert not (workspaces_root / f"ws-{workspace.pk}").exists()
    assert PoolInstance.objects.get(pk=instance.pk).state == State.CLAIMED
    assert messages(workspace).count(promises.READY_NOW) == 1
    assert not any("not ready after" in message for message in messages(workspace))


def test_a_second_delivery_of_the_late_check_does_nothing_twice(
    warm_profile, member, workspaces_root, fake_gpus
):
    measured_300_s(warm_profile)
    workspace, instance = waiting_for(warm_profile, member, seconds_ago=PATIENCE + 60)
    # Two deliveries of its task, both deciding before either provisions on demand.
    assert promises.settle(workspace, tasks.patience) == promises.ON_DEMAND
    assert promises.settle(workspace, tasks.patience) == promises.ON_DEMAND
    assert tasks.provision_workspace(workspace.pk) == "ready"
    assert tasks.provision_workspace(workspace.pk) == "nothing to do (ready)"
    late = [message for message in messages(workspace) if "not ready after" in message]
    given_back = [m for m in messages(instance) if m.startswith(promises.GIVEN_BACK)]
    assert (len(late), len(given_back)) == (1, 1)
    workspace.refresh_from_db()
    assert workspace.state == State.READY
    assert PoolInstance.objects.get(pk=instance.pk).workspace_id is None


@pytest.mark.django_db(transaction=True)
def test_an_instance_ready_while_the_workspace_gives_it_back_stays_the_pools(
    warm_profile, member, workspaces_root, fake_gpus
):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent connections need PostgreSQL; SQLite serialises writers")
    measured_300_s(warm_profile)
    workspace, instance = waiting_for(warm_profile, member, seconds_ago=PATIENCE + 60)
    deciding, decide = threading.Event(), threading.Event()

    def patience_held_open(late):
        # settle() holds the workspace's row lock here, between reading the instance
        # (still provisioning) and giving it back.
        answer = tasks.patience(late)
        deciding.set()
        assert decide.wait(30)
        return answer

    settled = {}

    def the_workspace_task():
        try:
            settled["outcome"] = promises.settle(workspace, patience_held_open)
        finally:
            connection.close()

    def the_instance_worker():
        try:
            settled["instance"] = tasks.provision_pool_instance(instance.pk)
        finally:
            connection.close()

    workspace_task = threading.Thread(target=the_workspace_task)
    workspace_task.start()
    assert deciding.wait(30)
    instance_worker = threading.Thread(target=the_instance_worker)
    instance_worker.start()
    # The instance is ready; its hand-over waits for the workspace's row lock.
    _wait_until_one_waits_for_a_lock()
    assert PoolInstance.objects.get(pk=instance.pk).state == State.READY
    decide.set()
    workspace_task.join(60)
    instance_worker.join(60)

    assert settled == {"outcome": promises.ON_DEMAND, "instance": "ready"}
    instance.refresh_from_db()
    assert (instance.state, instance.workspace_id) == (State.READY, None)  # the pool's
    assert tasks.provision_workspace(workspace.pk) == "ready"
    workspace.refresh_from_db()
    assert workspace.resources_spec().name == f"ws-{workspace.pk}"  # one instance: its own
    assert PoolInstance.objects.get(pk=instance.pk).state == State.READY


def _wait_until_one_waits_for_a_lock() -> None:
    waiting = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(waiting)
            if cursor.fetchone()[0] == 1:
                return
        time.sleep(0.05)
    raise AssertionError("the hand-over never waited for the workspace's lock")
