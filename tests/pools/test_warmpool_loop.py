"""The control loop, driven one step at a time (`reconcile_profile`) with an injected `now`."""

# ruff: noqa: F811
import threading
from contextlib import contextmanager
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pools import tasks, warmpool
from pools.drivers.base import PermanentError
from pools.lifecycle import State
from pools.locks import try_lock
from pools.models import LoopDecision, Pool, PoolInstance, PoolSchedule
from profiles.choices import AllocationStrategy, PartitioningMode
from profiles.models import PartitioningStrategy
from tests.pools.warm_fixtures import finish_provisioning, make_instances, states
from tests.workspace_fixtures import starter, workspaces_root  # noqa: F401
from workspaces import actions

Action = LoopDecision.Action
TZ = ZoneInfo("Europe/Berlin")
SATURDAY = datetime(2025, 6, 7, 10, 0, tzinfo=TZ)
MONDAY = datetime(2025, 6, 9, 10, 0, tzinfo=TZ)


@pytest.fixture(autouse=True)
def org_time_zone(settings):
    settings.TIME_ZONE = "Europe/Berlin"


def step(profile, now=None) -> LoopDecision:
    decision = warmpool.reconcile_profile(profile.pk, now or timezone.now())
    assert decision is not None, "the loop lock was busy"
    return decision


def test_an_empty_pool_is_filled_to_its_desired_capacity(warm_profile):
    decision = step(warm_profile)
    assert (decision.action, decision.count, decision.desired) == (Action.CREATE, 9, 9)
    assert decision.reason == "desired capacity 9; 0 ready, 0 on the way: creating 9"
    assert states(warm_profile) == {State.REQUESTED: 9}
    names = {i.resource_name for i in PoolInstance.objects.all()}
    assert names == {f"pool-{pk}" for pk in PoolInstance.objects.values_list("pk", flat=True)}
    instance = PoolInstance.objects.first()
    assert instance.profile_version == warm_profile.version
    assert [e.message for e in instance.events.all()] == ["requested by the warm-pool loop"]


def test_the_pool_is_replenished_after_two_claims(warm_profile, member):
    """The brief's picture: 9 ready, two users take one each, the loop makes two more."""
    step(warm_profile)
    finish_provisioning(warm_profile)
    assert step(warm_profile).action == Action.NONE

    first = actions.request_workspace(member, warm_profile, "one")
    second = actions.request_workspace(member, warm_profile, "two")
    for workspace in (first, second):
        assert workspace.state == State.READY
        instance = workspace.pool_instance
        assert instance.state == State.CLAIMED
        messages = [e.message for e in workspace.events.all()]
        assert f"claimed warm instance {instance.resource_name}" in messages
    assert first.pool_instance != second.pool_instance

    decision = step(warm_profile)
    assert (decision.action, decision.count, decision.ready) == (Action.CREATE, 2, 7)
    assert states(warm_profile) == {State.READY: 7, State.REQUESTED: 2, State.CLAIMED: 2}
    finish_provisioning(warm_profile)
    assert step(warm_profile).ready == 9


def test_slow_provisioning_never_causes_over_creation(warm_profile):
    warm_profile.desired_capacity = 3
    warm_profile.save()
    first = step(warm_profile)
    assert first.count == 3
    PoolInstance.objects.filter(pk=PoolInstance.objects.first().pk).update(state=State.PROVISIONING)
    for _ in range(5):  # provisioning takes many passes
        decision = step(warm_profile)
        assert (decision.action, decision.count, decision.provisioning) == (Action.NONE, 0, 3)
    assert PoolInstance.objects.count() == 3


def test_a_weekend_schedule_shrinks_the_pool_and_monday_restores_it(warm_profile):
    PoolSchedule.objects.create(
        profile=warm_profile,
        name="Weekend",
        weekdays=[5, 6],
        start_time=time(0, 0),
        end_time=time(0, 0),
        desired_capacity=2,
    )
    oldest = make_instances(warm_profile, 7)
    newest = make_instances(warm_profile, 2)

    saturday = step(warm_profile, SATURDAY)
    assert (saturday.desired, saturday.action, saturday.count) == (2, Action.DELETE, 7)
    assert saturday.reason.startswith("Sat–Sun 00:00–00:00 schedule “Weekend”: 2 instead of 9")
    # The oldest extras go first.
    deleting = set(PoolInstance.objects.filter(state=State.DELETING).values_list("pk", flat=True))
    assert deleting == {i.pk for i in oldest}
    assert all(
        i.state == State.READY for i in PoolInstance.objects.filter(pk__in=[n.pk for n in newest])
    )
    assert step(warm_profile, SATURDAY + timedelta(hours=30)).action == Action.NONE  # Sunday

    monday = step(warm_profile, MONDAY)
    assert (monday.desired, monday.action, monday.count) == (9, Action.CREATE, 7)
    assert monday.reason.startswith("desired capacity 9")


def test_a_capacity_stored_before_it_was_bounded_creates_at_most_a_pool_a_pass(warm_profile):
    # The form refuses it now; a row stored before must not have the loop build two billion
    # instances in one transaction.
    PoolSchedule.objects.create(profile=warm_profile, weekdays=[5], desired_capacity=2**31 - 1)
    saturday = step(warm_profile, SATURDAY)
    assert (saturday.action, saturday.count) == (Action.CREATE, 100)
    assert saturday.reason.endswith(f"creating 100 of {2**31 - 1} missing (at most 100 a pass)")
    assert PoolInstance.objects.filter(profile=warm_profile).count() == 100


def test_schedules_use_the_organisation_time_zone(warm_profile):
    PoolSchedule.objects.create(
        profile=warm_profile,
        weekdays=[0],
        start_time=time(8),
        end_time=time(18),
        desired_capacity=4,
    )
    # 07:30 UTC on a Monday is 09:30 in Berlin (summer time): inside the window.
    monday_utc = datetime(2025, 6, 9, 7, 30, tzinfo=ZoneInfo("UTC"))
    assert (
        warmpool.effective_desired(warm_profile, warm_profile.pool_schedules.all(), monday_utc)[0]
        == 4
    )
    evening = datetime(2025, 6, 9, 16, 30, tzinfo=ZoneInfo("UTC"))  # 18:30 in Berlin
    assert (
        warmpool.effective_desired(warm_profile, warm_profile.pool_schedules.all(), evening)[0] == 9
    )


def fail_provisioning(monkeypatch):
    def broken(self, spec, report=None):
        raise PermanentError("no capacity at the provider")

    monkeypatch.setattr("pools.drivers.local.LocalDriver.provision", broken)


def test_failures_back_off_with_a_growing_delay_and_stop_at_the_hard_limit(
    warm_profile, monkeypatch, workspaces_root
):
    fail_provisioning(monkeypatch)
    now = timezone.now()
    assert step(warm_profile, now).count == 9
    requested = list(PoolInstance.objects.filter(state=State.REQUESTED).order_by("pk"))

    assert tasks.provision_pool_instance(requested[0].pk).startswith("failed")
    pool = Pool.objects.get(profile=warm_profile)
    assert pool.consecutive_failures == 1
    assert pool.backoff_until == pytest.approx(
        now + timedelta(seconds=60), abs=timedelta(seconds=5)
    )
    # A redelivered task does not count the same failure twice.
    tasks.provision_pool_instance(requested[0].pk)
    assert Pool.objects.get(profile=warm_profile).consecutive_failures == 1

    decision = step(warm_profile, now)
    assert decision.action == Action.BACKOFF
    assert "backing off after 1 failed provisioning(s)" in decision.reason

    # Let the other 8 requested ones fail too: each failure doubles the delay.
    delays = []
    for instance in requested[1:]:
        before = timezone.now()
        tasks.provision_pool_instance(instance.pk)
        pool = Pool.objects.get(profile=warm_profile)
        delays.append(round((pool.backoff_until - before).total_seconds() / 60))
    assert delays[:4] == [2, 4, 8, 16]
    pool = Pool.objects.get(profile=warm_profile)
    assert pool.halted and pool.consecutive_failures == 9

    later = timezone.now() + timedelta(days=1)
    halted = step(warm_profile, later)
    assert (halted.action, halted.count) == (Action.HALTED, 0)
    assert "stopped after 9 failed provisionings in a row (no capacity at the provider)" in (
        halted.reason
    )

    warmpool.resume(None, warm_profile)
    probe = step(warm_profile, later)
    assert (probe.action, probe.count) == (Action.CREATE, 9)  # failures were forgotten


def test_after_a_failure_the_pool_creates_one_instance_at_a_time(warm_profile):
    warmpool.record_failure(warm_profile.pk, "boom", now=timezone.now() - timedelta(hours=1))
    decision = step(warm_profile)
    assert (decision.action, decision.count) == (Action.CREATE, 1)
    assert "one at a time after a failure" in decision.reason
    warmpool.record_success(warm_profile.pk)
    assert step(warm_profile).count == 8


def test_outdated_and_unhealthy_instances_are_replaced(warm_profile):
    warm_profile.desired_capacity = 3
    warm_profile.save()
    old = make_instances(warm_profile, 2)
    sick = make_instances(warm_profile, 1, unhealthy=True)
    type(warm_profile).objects.filter(pk=warm_profile.pk).update(version=2)
    warm_profile.refresh_from_db()

    decision = step(warm_profile)
    assert (decision.action, decision.count, decision.ready) == (Action.CREATE, 6, 0)
    assert "replacing 3 outdated or unhealthy" in decision.reason
    for instance in [*old, *sick]:
        instance.refresh_from_db()
        assert instance.state == State.DELETING
    assert PoolInstance.objects.filter(state=State.REQUESTED, profile_version=2).count() == 3


def test_outdated_instances_are_never_claimed(warm_profile, member):
    make_instances(warm_profile, 1)
    type(warm_profile).objects.filter(pk=warm_profile.pk).update(version=2)
    warm_profile.refresh_from_db()
    workspace = actions.request_workspace(member, warm_profile)
    assert workspace.state == State.REQUESTED


def test_a_paused_pool_is_left_alone(warm_profile, org_admin):
    warmpool.pause(org_admin, warm_profile)
    decision = step(warm_profile)
    assert (decision.action, decision.count) == (Action.PAUSED, 0)
    assert PoolInstance.objects.count() == 0
    warmpool.resume(org_admin, warm_profile)
    assert step(warm_profile).count == 9


def test_switching_to_on_demand_empties_the_pool(warm_profile):
    make_instances(warm_profile, 3)
    make_instances(warm_profile, 1, state=State.REQUESTED)
    warm_profile.allocation_strategy = "on_demand"
    warm_profile.save()
    decision = step(warm_profile)
    assert (decision.desired, decision.action, decision.count) == (0, Action.DELETE, 4)
    assert decision.reason.startswith("on demand: keeps no warm instances")


def test_user_requests_waiting_for_a_worker_go_first(warm_profile, member, starter):
    actions.request_workspace(member, starter)  # on demand, not picked up by a worker yet
    decision = step(warm_profile)
    assert (decision.action, decision.count) == (Action.YIELD, 0)
    assert "1 user request(s) wait for a worker" in decision.reason


def test_every_pass_records_a_decision_per_profile(
    warm_profile, profile_factory, local_infrastructure
):
    profile_factory(local_infrastructure, "Plain")  # on demand, no instances: not managed
    result = warmpool.run_loop()
    assert result["ran"] and result["decisions"] == 1
    assert LoopDecision.objects.count() == 1


def test_a_pass_makes_as_many_queries_for_many_mig_profiles_as_for_few(
    local_infrastructure, aws_infrastructure, profile_factory
):
    """What each profile asks for and what each infrastructure's partitioning offers are
    read for all of them at once, as the benchmark's pass over 1,000 profiles needs."""
    aws_infrastructure.credentials = {"role_arn": "arn:aws:iam::1:role/x", "external_id": "e"}
    aws_infrastructure.save()
    infrastructures = (local_infrastructure, aws_infrastructure)
    for infrastructure in infrastructures:
        PartitioningStrategy.objects.create(
            infrastructure=infrastructure,
            gpu_model="A100-40GB",
            mode=PartitioningMode.CUSTOM,
            custom_counts={"3g.20gb": 2},
        )
    made = 0

    def add_profiles(each: int) -> None:
        nonlocal made
        for infrastructure in infrastructures:
            for mig_profile in ("3g.20gb", "1g.5gb") * each:  # offered, gone
                made += 1
                profile = profile_factory(
                    infrastructure,
                    f"Slice {made}",
                    allocation_strategy=AllocationStrategy.WARM_POOL,
                    desired_capacity=1,
                )
                profile.resource_groups.update(
                    gpu_model="A100-40GB", gpu_count=1, mig_profile=mig_profile
                )

    def queries_of_a_pass() -> int:
        with CaptureQueriesContext(connection) as queries:
            rows = warmpool.reconcile(now=timezone.now())
        assert {r.action for r in rows if r.count} == {Action.CREATE}
        return len(queries)

    add_profiles(1)
    few = queries_of_a_pass()
    add_profiles(3)
    assert queries_of_a_pass() == few
    assert PoolInstance.objects.count() == made // 2  # none where the slices are gone


@contextmanager
def lock_held_elsewhere():
    """Hold the loop lock as another worker would: on PostgreSQL from another connection
    (advisory locks are re-entrant within one session), on SQLite the lock row suffices."""
    if connection.vendor != "postgresql":
        with try_lock(warmpool.LOCK_NAME) as held:
            assert held
            yield
        return
    taken, release = threading.Event(), threading.Event()

    def hold():
        with try_lock(warmpool.LOCK_NAME) as held:
            assert held
            taken.set()
            release.wait(30)
        connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(30)
    try:
        yield
    finally:
        release.set()
        thread.join(30)


def test_a_busy_lock_makes_a_second_loop_skip(warm_profile):
    with lock_held_elsewhere():
        assert warmpool.run_loop() == {"ran": False, "reason": "another loop holds the lock"}
        assert warmpool.reconcile_profile(warm_profile.pk) is None
    assert warmpool.run_loop()["ran"]


def test_an_expired_lock_row_is_taken_over(warm_profile):
    if connection.vendor == "postgresql":
        pytest.skip("advisory locks end with their session, not by expiry")
    with try_lock("test-lock", ttl=timedelta(seconds=-1)) as first:
        assert first
        with try_lock("test-lock") as second:  # the first holder's lease ran out
            assert second


def test_old_decisions_are_forgotten(warm_profile):
    step(warm_profile, timezone.now() - timedelta(days=9))
    step(warm_profile)
    assert warmpool.prune_decisions() == 1
