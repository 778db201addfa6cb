"""Claims and loop passes at the same moment, on real PostgreSQL connections."""

import threading
import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from pools import warmpool
from pools.lifecycle import State
from pools.models import PoolInstance, Workspace
from portal.models import Team
from portal.roles import Role
from tests.pools.warm_fixtures import make_instances
from workspaces import actions

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("concurrent connections need PostgreSQL; SQLite serialises writers")


@pytest.fixture
def no_enqueueing(monkeypatch):
    monkeypatch.setattr("pools.tasks.enqueue_provision", lambda pk: None)
    monkeypatch.setattr("pools.tasks.enqueue_pool_provision", lambda pk: None)
    monkeypatch.setattr("pools.warmpool.enqueue_loop", lambda: None)


def in_threads(count: int, work) -> list:
    """Run `work(i)` in `count` threads released at the same moment; return the results."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i):
        try:
            barrier.wait(30)
            results[i] = work(i)
        except Exception as error:
            results[i] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


def test_64_claimants_and_32_ready_instances_make_exactly_32_warm_hits(warm_profile, no_enqueueing):
    make_instances(warm_profile, 32)
    users = []
    for i in range(64):  # each in their own group, so nothing but the claim is contended
        user = get_user_model().objects.create(username=f"user{i}")
        Team.objects.create(name=f"team {i}", role=Role.MEMBER).members.add(user)
        users.append(user)

    results = in_threads(64, lambda i: actions.request_workspace(users[i], warm_profile).pk)

    assert all(isinstance(r, int) for r in results), [r for r in results if not isinstance(r, int)]
    workspaces = Workspace.objects.filter(pk__in=results)
    assert workspaces.filter(state=State.READY).count() == 32
    fallbacks = workspaces.filter(state=State.REQUESTED)
    assert fallbacks.count() == 32
    assert all(
        "no warm instance was ready: provisioning on demand"
        in [e.message for e in workspace.events.all()]
        for workspace in fallbacks
    )
    claimed = PoolInstance.objects.filter(state=State.CLAIMED)
    assert claimed.count() == 32
    owners = list(claimed.values_list("workspace_id", flat=True))
    assert len(set(owners)) == 32 and None not in owners  # no instance claimed twice
    assert set(owners) == set(workspaces.filter(state=State.READY).values_list("pk", flat=True))


def test_two_loop_runs_started_at_once_one_does_the_work(warm_profile, no_enqueueing, monkeypatch):
    original = warmpool.reconcile

    def slow_reconcile(*args, **kwargs):
        time.sleep(1.0)  # hold the lock long enough for the other run to try it
        return original(*args, **kwargs)

    monkeypatch.setattr(warmpool, "reconcile", slow_reconcile)
    results = in_threads(2, lambda i: warmpool.run_loop())

    assert sorted(r["ran"] for r in results) == [False, True], results
    assert PoolInstance.objects.count() == 9  # created once, not twice


def test_a_loop_waiting_with_patience_runs_after_the_first_and_adds_nothing(
    warm_profile, no_enqueueing, monkeypatch
):
    original = warmpool.reconcile

    def slow_reconcile(*args, **kwargs):
        time.sleep(0.5)
        return original(*args, **kwargs)

    monkeypatch.setattr(warmpool, "reconcile", slow_reconcile)
    results = in_threads(2, lambda i: warmpool.run_loop(patience=10))

    assert [r["ran"] for r in results] == [True, True]
    assert sorted(r["created"] for r in results) == [0, 9]
    assert PoolInstance.objects.count() == 9


def test_32_requests_and_8_instances_on_their_way_make_8_promises(warm_profile, no_enqueueing):
    make_instances(warm_profile, 8, state=State.PROVISIONING)
    users = []
    for i in range(32):
        user = get_user_model().objects.create(username=f"user{i}")
        Team.objects.create(name=f"team {i}", role=Role.MEMBER).members.add(user)
        users.append(user)

    results = in_threads(32, lambda i: actions.request_workspace(users[i], warm_profile).pk)

    assert all(isinstance(r, int) for r in results), [r for r in results if not isinstance(r, int)]
    promised = PoolInstance.objects.filter(state=State.PROVISIONING, workspace__isnull=False)
    owners = list(promised.values_list("workspace_id", flat=True))
    assert len(owners) == 8 and len(set(owners)) == 8  # none promised twice
    waiting = Workspace.objects.filter(pk__in=owners, state=State.PROVISIONING)
    assert waiting.count() == 8
    assert Workspace.objects.filter(pk__in=results, state=State.REQUESTED).count() == 24
