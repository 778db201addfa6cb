"""The usage ledger, with time travel: hours and cost of a workspace's life, and a ledger
that ends right after its worker was killed in the middle of a pass."""

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_q.models import Schedule

from pools import lifecycle, locks, promises
from pools.lifecycle import State
from pools.models import PoolInstance, Workspace, WorkspaceEvent
from portal.models import Team
from usage import ledger, showback
from usage.models import LedgerCursor, Price, UsageInterval
from usage.prices import Line, PriceBook
from usage.schedules import LEDGER_NAME


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def a100_profile(local_infrastructure, profile_factory):
    profile = profile_factory(local_infrastructure, "One A100", groups=(("A100-40GB", 1),))
    profile.resource_groups.update(storage_gb=100)
    return profile


@pytest.fixture
def prices(db):
    Price.objects.create(kind=Price.Kind.GPU_MODEL, key="A100-40GB", amount=Decimal("2.00"))
    # 0.073 per GB-month is 0.0001 per GB-hour (a month is 730 hours).
    Price.objects.create(kind=Price.Kind.STORAGE, amount=Decimal("0.073"))


def move(clock, workspace, when, *states):
    clock.set(when)
    for state in states:
        assert lifecycle.transition(workspace, state)


def a_workspace_life(clock, member, profile, team) -> Workspace:
    """Requested, stopped, started and deleted over two days."""
    clock.set(at(2, 9, 0))
    workspace = lifecycle.create(
        Workspace, message="requested", owner=member, profile=profile,
        infrastructure=profile.infrastructure, team=team, gpus=1,
    )  # fmt: skip
    move(clock, workspace, at(2, 9, 10), State.PROVISIONING)
    clock.set(at(2, 9, 20))
    lifecycle.log_step(workspace, "directory created")  # a step: no new interval
    move(clock, workspace, at(2, 9, 30), State.READY)
    move(clock, workspace, at(2, 17, 30), State.STOPPING)
    move(clock, workspace, at(2, 17, 40), State.STOPPED)
    move(clock, workspace, at(3, 9, 0), State.STARTING)
    move(clock, workspace, at(3, 9, 10), State.READY)
    move(clock, workspace, at(3, 18, 0), State.DELETING)
    move(clock, workspace, at(3, 18, 10), State.DELETED)
    return workspace


def test_a_workspace_over_two_days_costs_what_a_hand_computation_says(
    clock, member, a100_profile, prices
):
    team = Team.objects.get(name="member group")
    a_workspace_life(clock, member, a100_profile, team)
    ledger.run(now=clock.set(at(3, 20, 0)))

    # By hand: it held its GPU from provisioning (day 1 09:10) until stopped (17:40), 8 h 30,
    # and from starting (day 2 09:00) until deleted (18:10), 9 h 10: 17 h 40 = 53/3 h.
    # Stopped from 17:40 to 09:00, 15 h 20, it kept only its 100 GB: 33 h of 100 GB in all.
    # Cost: 53/3 h x $2.00 + 3,300 GB-h x $0.0001 = $35.3333 + $0.33 = $35.6633.
    month = showback.month_start(at(2, 0).date())
    [totals] = showback.report(
        UsageInterval.objects.all(), month, showback.next_month(month), clock.current,
        PriceBook(), "group",
    )  # fmt: skip
    assert totals.label == "member group"
    assert totals.gpu_hours == pytest.approx(53 / 3)
    assert totals.gpu_equivalent_hours == pytest.approx(53 / 3)
    assert totals.workspace_hours == pytest.approx(53 / 3)
    assert totals.mig_slice_hours == 0
    assert totals.storage_gb_hours == pytest.approx(3300)
    assert round(totals.cost, 4) == Decimal("35.6633")
    assert totals.complete


def test_an_open_interval_counts_up_to_now(clock, member, a100_profile, prices):
    clock.set(at(2, 9, 0))
    workspace = lifecycle.create(
        Workspace, message="requested", owner=member, profile=a100_profile,
        infrastructure=a100_profile.infrastructure, gpus=1,
    )  # fmt: skip
    move(clock, workspace, at(2, 9, 0), State.PROVISIONING, State.READY)
    ledger.run(now=clock.set(at(2, 12, 0)))
    month = showback.month_start(at(2, 0).date())
    end = showback.next_month(month)
    early = showback.report(UsageInterval.objects.all(), month, end, at(2, 12), PriceBook(), "user")
    later = showback.report(UsageInterval.objects.all(), month, end, at(2, 15), PriceBook(), "user")
    # No event in between, no pass: the open interval just runs on.
    assert early[0].gpu_hours == pytest.approx(3)
    assert later[0].gpu_hours == pytest.approx(6)


def test_a_mig_slice_counts_as_its_share_of_the_gpu(clock, member, local_infrastructure, prices):
    profile = local_infrastructure.compute_profiles.create(name="Slice", slug="slice")
    profile.resource_groups.create(gpu_model="A100-40GB", gpu_count=2, mig_profile="3g.20gb")
    clock.set(at(2, 9, 0))
    workspace = lifecycle.create(
        Workspace, message="requested", owner=member, profile=profile,
        infrastructure=local_infrastructure, mig_slices=2,
    )  # fmt: skip
    move(clock, workspace, at(2, 9, 0), State.PROVISIONING)
    move(clock, workspace, at(2, 16, 0), State.READY, State.DELETING, State.DELETED)
    ledger.run(now=clock.set(at(2, 17, 0)))
    month = showback.month_start(at(2, 0).date())
    [totals] = showback.report(
        UsageInterval.objects.all(), month, showback.next_month(month), at(2, 17), PriceBook(),
        "profile",
    )  # fmt: skip
    # 3g.20gb is 3 of an A100's 7 compute slices: 2 slices x 7 h = 14 slice-hours = 6 GPU-hours.
    assert totals.mig_slice_hours == pytest.approx(14)
    assert totals.gpu_hours == 0
    assert totals.gpu_equivalent_hours == pytest.approx(6)
    assert totals.cost.quantize(Decimal("0.0001")) == Decimal("12.0070")  # 6 x 2 + 70 GB x 7 h


def provisioning_from(clock, profile, when) -> PoolInstance:
    """A warm-pool instance created and provisioning from `when`."""
    clock.set(when)
    instance = lifecycle.create(
        PoolInstance, message="warm", profile=profile, infrastructure=profile.infrastructure
    )
    move(clock, instance, when, State.PROVISIONING)
    return instance


def test_warm_idle_hours_are_charged_to_the_profile_until_the_claim(clock, a100_profile, prices):
    instance = provisioning_from(clock, a100_profile, at(2, 8, 0))
    move(clock, instance, at(2, 8, 30), State.READY)
    PoolInstance.objects.filter(pk=instance.pk).update(ready_at=at(2, 8, 30))
    move(clock, instance, at(2, 10, 30), State.CLAIMED)
    PoolInstance.objects.filter(pk=instance.pk).update(claimed_at=at(2, 10, 30))
    ledger.run(now=clock.set(at(2, 12, 0)))

    rows = UsageInterval.objects.filter(kind=UsageInterval.Kind.WARM_IDLE)
    assert {(r.state, r.start, r.end) for r in rows} == {
        (State.PROVISIONING, at(2, 8, 0), at(2, 8, 30)),
        (State.READY, at(2, 8, 30), at(2, 10, 30)),
    }
    assert all(r.team_id is None and r.owner_id is None for r in rows)
    month = showback.month_start(at(2, 0).date())
    saved = showback.hours_saved(month, showback.next_month(month))
    assert saved == {"One A100": pytest.approx(0.5)}


def _snapshot() -> set[tuple]:
    return set(
        UsageInterval.objects.values_list(
            "kind", "source_id", "position", "state", "start", "end", "gpu_share", "storage_gb"
        )
    )


def test_the_ledger_is_right_after_its_worker_was_killed_in_the_middle(
    clock, member, a100_profile, prices, monkeypatch
):
    workspaces = []
    for hour in (9, 10, 11):
        clock.set(at(2, hour))
        workspace = lifecycle.create(
            Workspace, message="requested", owner=member, profile=a100_profile,
            infrastructure=a100_profile.infrastructure, gpus=1,
        )  # fmt: skip
        move(clock, workspace, at(2, hour, 5), State.PROVISIONING, State.READY)
        workspaces.append(workspace)

    # The pass is killed after its first batch: what it wrote stays, the cursor does not move.
    monkeypatch.setattr(ledger, "BATCH", 1)
    real_rebuild, calls = ledger.rebuild, []

    def killed_after_one_batch(kind, ids):
        if calls:
            raise SystemExit("worker killed")
        calls.append(ids)
        return real_rebuild(kind, ids)

    monkeypatch.setattr(ledger, "rebuild", killed_after_one_batch)
    with pytest.raises(SystemExit):
        ledger.run(now=clock.set(at(2, 12)))
    assert LedgerCursor.objects.get().workspace_event_id == 0
    assert set(UsageInterval.objects.values_list("source_id", flat=True)) == {workspaces[0].pk}

    # While no worker runs, life goes on: one workspace is stopped.
    move(clock, workspaces[1], at(2, 13), State.STOPPING, State.STOPPED)
    monkeypatch.setattr(ledger, "rebuild", real_rebuild)
    ledger.run(now=clock.set(at(2, 14)))
    after_restart = _snapshot()

    # The same rows as a ledger built from nothing, and a second pass changes nothing.
    UsageInterval.objects.all().delete()
    LedgerCursor.objects.all().delete()
    ledger.run(now=clock.current)
    assert _snapshot() == after_restart
    ledger.run(now=clock.set(at(2, 15)))
    assert _snapshot() == after_restart
    stopped = UsageInterval.objects.filter(source_id=workspaces[1].pk, state=State.STOPPED).get()
    assert (stopped.start, stopped.end, stopped.gpu_share) == (at(2, 13), None, 0)


def test_an_event_committed_late_with_a_smaller_id_is_still_read(
    clock, member, a100_profile, prices
):
    clock.set(at(2, 9))
    workspace = lifecycle.create(
        Workspace, message="requested", owner=member, profile=a100_profile,
        infrastructure=a100_profile.infrastructure, gpus=1,
    )  # fmt: skip
    ledger.run(now=clock.set(at(2, 9, 1)))
    move(clock, workspace, at(2, 9, 2), State.PROVISIONING)
    # As if the pass had already seen a later id of another transaction that committed first.
    LedgerCursor.objects.update(workspace_event_id=10**9)
    ledger.run(now=clock.set(at(2, 9, 3)))
    assert UsageInterval.objects.filter(source_id=workspace.pk, state=State.PROVISIONING).exists()
    assert timedelta(minutes=1) < ledger.LATE_COMMIT_GRACE


def _workspaces_with_events(count, member, profile) -> None:
    """`count` workspaces, each requested, provisioning and ready (rows made in bulk)."""
    made = Workspace.objects.bulk_create(
        Workspace(owner=member, profile=profile, infrastructure=profile.infrastructure, gpus=1)
        for _ in range(count)
    )
    WorkspaceEvent.objects.bulk_create(
        WorkspaceEvent(workspace=w, from_state=a, to_state=b, timestamp=at(2, 9, minute))
        for w in made
        for minute, (a, b) in enumerate(
            [(State.REQUESTED, State.REQUESTED), (State.REQUESTED, State.PROVISIONING),
             (State.PROVISIONING, State.READY)]
        )
    )  # fmt: skip


def test_a_pass_costs_a_few_queries_per_batch_not_per_workspace(
    clock, member, a100_profile, monkeypatch
):
    monkeypatch.setattr(ledger, "BATCH", 50)
    counts = []
    for _ in range(3):
        _workspaces_with_events(50, member, a100_profile)
        LedgerCursor.objects.all().delete()  # rebuild everything, as after a lost cursor
        with CaptureQueriesContext(connection) as queries:
            ledger.run(now=clock.set(at(2, 12)))
        counts.append(len(queries))
    # 50, 100 and 150 workspaces: one more batch each time, and the same queries per batch.
    assert counts[2] - counts[1] == counts[1] - counts[0] <= 8
    print(f"\nledger pass queries at 50/100/150 workspaces (batches of 50): {counts}")
    assert UsageInterval.objects.filter(state=State.READY).count() == 150


def test_the_ledger_pass_is_scheduled_by_the_migrations(db):
    schedule = Schedule.objects.get(name=LEDGER_NAME)
    assert (schedule.func, schedule.minutes, schedule.repeats) == ("usage.ledger.run", 5, -1)


@contextmanager
def held_elsewhere(name: str):
    """The lock `name` held by another session (PostgreSQL's advisory locks are re-entrant
    within one session, so the test's own connection would get it again)."""
    if connection.vendor != "postgresql":
        with locks.try_lock(name) as held:
            yield held
        return
    settings = connection.settings_dict
    other = psycopg.connect(
        dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"],
        port=settings["PORT"] or 5432, password=settings["PASSWORD"], autocommit=True,
    )  # fmt: skip
    key = locks.advisory_key(name)
    with other:
        yield other.execute("SELECT pg_try_advisory_lock(%s)", [key])
        # Unlocked before closing: a closed session's locks go only once its server
        # process has ended, which the client does not wait for.
        other.execute("SELECT pg_advisory_unlock(%s)", [key])


def test_a_second_pass_while_one_runs_does_nothing(clock, member, a100_profile):
    with held_elsewhere(ledger.LOCK_NAME):
        assert ledger.run(now=clock.current) == {"skipped": 1}
    assert ledger.run(now=clock.current) == {"workspaces": 0, "instances": 0}


def test_a_profile_edited_later_does_not_change_what_a_workspace_held(
    clock, member, a100_profile, prices
):
    clock.set(at(2, 9))
    workspace = lifecycle.create(
        Workspace, message="requested", owner=member, profile=a100_profile,
        infrastructure=a100_profile.infrastructure, gpus=1,
    )  # fmt: skip
    move(clock, workspace, at(2, 9), State.PROVISIONING, State.READY)
    ledger.run(now=clock.set(at(2, 10)))
    a100_profile.resource_groups.update(gpu_count=4)  # an admin edits the profile
    move(clock, workspace, at(2, 12), State.STOPPING, State.STOPPED)
    ledger.run(now=clock.set(at(2, 13)))
    ready = UsageInterval.objects.get(source_id=workspace.pk, state=State.READY)
    assert (ready.gpus, ready.end) == (1, at(2, 12))


def promised_at_8_20(clock, member, profile) -> tuple[PoolInstance, Workspace]:
    """An instance provisioning from 8:00; at 8:20 a request finds nothing ready and
    waits for it (`pools.promises`)."""
    instance = provisioning_from(clock, profile, at(2, 8, 0))
    clock.set(at(2, 8, 20))
    workspace = lifecycle.create(
        Workspace, message="requested", owner=member, profile=profile,
        infrastructure=profile.infrastructure, gpus=1,
    )  # fmt: skip
    move(clock, workspace, at(2, 8, 20), State.PROVISIONING)
    PoolInstance.objects.filter(pk=instance.pk).update(workspace=workspace, claimed_at=at(2, 8, 20))
    lifecycle.log_step(instance, f"{promises.PROMISED} {workspace.pk}, which waits for it")
    instance.refresh_from_db()
    return instance, workspace


def test_an_instance_promised_while_it_provisions_is_charged_to_the_workspace_from_then(
    clock, member, a100_profile, prices
):
    instance, workspace = promised_at_8_20(clock, member, a100_profile)
    move(clock, instance, at(2, 8, 30), State.READY)
    move(clock, instance, at(2, 8, 30), State.CLAIMED)
    PoolInstance.objects.filter(pk=instance.pk).update(ready_at=at(2, 8, 30))
    move(clock, workspace, at(2, 8, 30), State.READY)
    ledger.run(now=clock.set(at(2, 12, 0)))

    idle = UsageInterval.objects.filter(kind=UsageInterval.Kind.WARM_IDLE)
    assert {(r.state, r.start, r.end) for r in idle} == {
        (State.PROVISIONING, at(2, 8, 0), at(2, 8, 20)),
    }
    charged = UsageInterval.objects.filter(kind=UsageInterval.Kind.WORKSPACE, gpus=1)
    assert {(r.state, r.start, r.end) for r in charged} == {
        (State.PROVISIONING, at(2, 8, 20), at(2, 8, 30)),
        (State.READY, at(2, 8, 30), None),
    }
    month = showback.month_start(at(2, 0).date())
    saved = showback.hours_saved(month, showback.next_month(month))
    assert saved == {"One A100": pytest.approx(20 / 60)}  # it waited the last 10 minutes


def test_a_promise_given_back_is_no_pool_idle_time_while_it_lasted(
    clock, member, a100_profile, prices
):
    """The workspace that waited is charged for those minutes; the pool is not, too."""
    instance, workspace = promised_at_8_20(clock, member, a100_profile)
    clock.set(at(2, 8, 25))  # the scientist deletes the workspace while it waits
    promises.release_instance(instance, "its workspace was deleted")
    move(clock, workspace, at(2, 8, 25), State.DELETING, State.DELETED)
    move(clock, instance, at(2, 8, 30), State.READY)
    ledger.run(now=clock.set(at(2, 9, 0)))

    idle = UsageInterval.objects.filter(kind=UsageInterval.Kind.WARM_IDLE)
    assert {(r.state, r.start, r.end) for r in idle} == {
        (State.PROVISIONING, at(2, 8, 0), at(2, 8, 20)),
        (State.PROVISIONING, at(2, 8, 25), at(2, 8, 30)),
        (State.READY, at(2, 8, 30), None),
    }
    charged = UsageInterval.objects.filter(kind=UsageInterval.Kind.WORKSPACE, gpus=1)
    assert {(r.state, r.start, r.end) for r in charged} == {
        (State.PROVISIONING, at(2, 8, 20), at(2, 8, 25)),
    }


def requested(clock, when, owner, profile) -> Workspace:
    clock.set(when)
    return lifecycle.create(
        Workspace, message="requested", owner=owner, profile=profile,
        infrastructure=profile.infrastructure, gpus=1,
    )  # fmt: skip


def march_report(by: str, now: datetime) -> list[showback.Totals]:
    month = showback.month_start(at(2, 0).date())
    return showback.report(
        UsageInterval.objects.all(), month, showback.next_month(month), now, PriceBook(), by
    )


def test_a_degraded_workspace_is_charged_for_the_gpus_and_storage_it_holds(
    clock, member, a100_profile, prices
):
    """Degraded, it is being repaired and still holds its A100 and its 100 GB (README)."""
    workspace = requested(clock, at(2, 9), member, a100_profile)
    move(clock, workspace, at(2, 9), State.PROVISIONING, State.READY)
    move(clock, workspace, at(2, 10), State.DEGRADED)
    ledger.run(now=clock.set(at(2, 12)))

    [totals] = march_report("user", now=at(2, 12))
    assert totals.gpu_hours == pytest.approx(3)  # ready 09:00-10:00, degraded 10:00-12:00
    assert totals.storage_gb_hours == pytest.approx(300)
    assert totals.workspace_hours == pytest.approx(3)


def test_a_profile_with_huge_storage_does_not_stop_the_ledger_for_everyone(
    clock, member, user_factory, local_infrastructure, profile_factory, a100_profile
):
    """2,000,000,000 GB on 2 nodes is more than a 32-bit column holds: the ledger records it,
    and the next workspace's stop is still folded in."""
    huge = profile_factory(local_infrastructure, "Huge disk")
    huge.resource_groups.update(storage_gb=2_000_000_000, node_count=2)
    bob = user_factory("bob", "member")
    honest = requested(clock, at(2, 9), bob, a100_profile)
    move(clock, honest, at(2, 9), State.PROVISIONING, State.READY)
    ledger.run(now=clock.set(at(2, 9, 30)))

    hostile = requested(clock, at(2, 10), member, huge)
    move(clock, hostile, at(2, 10), State.FAILED)  # no node has room for it
    move(clock, honest, at(2, 11), State.STOPPING, State.STOPPED)
    ledger.run(now=clock.set(at(2, 11, 5)))

    assert UsageInterval.objects.get(source_id=hostile.pk).storage_gb == 4_000_000_000
    [bob_totals] = [t for t in march_report("user", now=at(2, 20)) if t.label == "bob"]
    assert bob_totals.gpu_hours == pytest.approx(2)  # 09:00-11:00, not up to 20:00


def test_a_workspace_whose_rows_the_database_refuses_is_skipped_and_the_others_written(
    clock, member, user_factory, local_infrastructure, profile_factory, a100_profile, monkeypatch
):
    """Even a value no column holds (here more GB than 64 bits count) stops no one else:
    the other workspaces of its batch are written, and the cursor moves on."""
    huge = profile_factory(local_infrastructure, "Huge disk")
    real_lines_of = ledger.lines_of

    def beyond_any_column(profile):
        return [Line(storage_gb=2**63)] if profile == huge else real_lines_of(profile)

    monkeypatch.setattr(ledger, "lines_of", beyond_any_column)
    bob = user_factory("bob", "member")
    honest = requested(clock, at(2, 9), bob, a100_profile)
    move(clock, honest, at(2, 9), State.PROVISIONING, State.READY)
    hostile = requested(clock, at(2, 9), member, huge)
    move(clock, hostile, at(2, 9), State.FAILED)
    move(clock, honest, at(2, 11), State.STOPPING, State.STOPPED)
    ledger.run(now=clock.set(at(2, 11, 5)))

    assert not UsageInterval.objects.filter(source_id=hostile.pk).exists()
    assert LedgerCursor.objects.get().workspace_event_id == WorkspaceEvent.objects.latest("id").pk
    [bob_totals] = [t for t in march_report("user", now=at(2, 20)) if t.label == "bob"]
    assert bob_totals.gpu_hours == pytest.approx(2)


def test_warm_pool_idle_time_counts_no_workspace_hours(clock, a100_profile, prices):
    """Its GPU-hours and cost are real, and shown as the warm pools', not a group's."""
    instance = provisioning_from(clock, a100_profile, at(2, 9))
    move(clock, instance, at(2, 9), State.READY)
    ledger.run(now=clock.set(at(2, 11)))

    assert not UsageInterval.objects.filter(counts_workspace=True).exists()
    [by_group] = march_report("group", now=at(2, 11))
    [by_profile] = march_report("profile", now=at(2, 11))
    assert (by_group.label, by_profile.label) == ("Warm pools", "One A100")
    assert (by_group.workspace_hours, by_group.gpu_hours) == (0, pytest.approx(2))
    assert by_group.cost == by_profile.cost > 0


@pytest.mark.parametrize(("month", "hours"), [(3, 743), (10, 745)])
def test_a_month_with_a_clock_change_is_charged_the_hours_it_really_had(
    settings, clock, member, a100_profile, month, hours
):
    """In Europe/Berlin, March 2026 loses an hour (29 March) and October gains one (25
    October): a workspace running all month is charged 743 and 745 GPU-hours, not 744."""
    settings.TIME_ZONE = "Europe/Berlin"
    workspace = requested(clock, datetime(2026, 2, 20, 12, tzinfo=UTC), member, a100_profile)
    move(clock, workspace, clock.current, State.PROVISIONING, State.READY)
    ledger.run(now=clock.set(datetime(2026, 11, 20, 12, tzinfo=UTC)))

    start = showback.month_start(datetime(2026, month, 1).date())
    [totals] = showback.report(
        UsageInterval.objects.all(), start, showback.next_month(start), clock.current,
        PriceBook(), "user",
    )  # fmt: skip
    assert totals.gpu_hours == pytest.approx(hours)
