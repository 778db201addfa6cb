"""Two requests at the same moment, on two real PostgreSQL connections."""

import threading
import time

import pytest
from django.db import connection

from pools.models import Workspace
from portal.models import Team
from portal.roles import Role
from tests.workspace_fixtures import in_thread
from workspaces import actions

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL; SQLite serialises writers by itself")


@pytest.fixture
def slow_first_request(monkeypatch):
    """Hold the first request's transaction open after it passed the quota check."""
    inside = threading.Event()
    original = actions.audit.record_created

    def record_slowly(actor, obj):
        inside.set()
        time.sleep(1.0)
        return original(actor, obj)

    monkeypatch.setattr(actions.audit, "record_created", record_slowly)
    monkeypatch.setattr("pools.tasks.enqueue_provision", lambda pk: None)
    return inside


def request_in_thread(user, profile, results):
    return in_thread(
        lambda: actions.request_workspace(user, profile), actions.RequestRefused, results
    )


def test_two_concurrent_requests_cannot_both_take_the_last_slot(
    member, user_factory, starter, slow_first_request
):
    Team.objects.filter(members=member).update(max_workspaces=1)
    colleague = user_factory("cole", Role.MEMBER)  # same group, its own connection
    results = []
    first = request_in_thread(member, starter, results)
    assert slow_first_request.wait(10)  # the first passed the check and has not committed
    second = request_in_thread(colleague, starter, results)
    first.join(20)
    second.join(20)
    # Either may say so first: the second is unblocked by the first's commit.
    ok, refused = sorted(results, key=lambda result: result != "ok")
    assert ok == "ok"
    assert refused.startswith("Quota reached: group “member group” allows 1")
    assert Workspace.objects.count() == 1


def test_without_a_quota_both_requests_pass(member, user_factory, starter, slow_first_request):
    colleague = user_factory("cole", Role.MEMBER)
    results = []
    first = request_in_thread(member, starter, results)
    assert slow_first_request.wait(10)
    second = request_in_thread(colleague, starter, results)
    first.join(20)
    second.join(20)
    assert results == ["ok", "ok"]


@pytest.fixture
def slow_first_start(monkeypatch):
    """Hold the first Start's transaction open after it moved the workspace to starting."""
    inside = threading.Event()
    original = actions.audit.record

    def record_slowly(*args, **kwargs):
        if not inside.is_set():
            inside.set()
            time.sleep(1.0)
        return original(*args, **kwargs)

    monkeypatch.setattr(actions.audit, "record", record_slowly)
    monkeypatch.setattr("pools.tasks.enqueue_start", lambda pk: None)
    return inside


def start_in_thread(user, workspace_pk, results):
    def start():
        actions.start_workspace(user, Workspace.objects.get(pk=workspace_pk))

    return in_thread(start, actions.RequestRefused, results)


def test_of_two_starts_at_once_the_second_says_the_workspace_is_starting(
    member, local_infrastructure, profile_factory, workspace_factory, slow_first_start
):
    """Two Starts of one stopped workspace (a double click) under a quota of one GPU: the
    second waits for the first and says it is starting, not that the quota is reached."""
    profile = profile_factory(
        local_infrastructure, "One A100", groups=[("A100-40GB", 1)], published=True
    )
    team = member.teams.get()
    Team.objects.filter(pk=team.pk).update(max_gpus=1)
    workspace = workspace_factory(member, profile, state="stopped", team=team, gpus=1)
    results = []
    first = start_in_thread(member, workspace.pk, results)
    assert slow_first_start.wait(10)  # the first moved it and has not committed
    second = start_in_thread(member, workspace.pk, results)
    first.join(20)
    second.join(20)
    assert sorted(results, key=lambda result: result != "ok") == [  # in either order
        "ok",
        "Only a stopped workspace can be started; this one is starting.",
    ]
