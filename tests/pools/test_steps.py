"""The step helpers every lifecycle task uses (pools.steps), on a plain workspace row."""

# ruff: noqa: F811
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule

from pools import steps
from pools.drivers.base import PermanentError, TransientError
from pools.lifecycle import State, transition
from pools.models import Workspace
from tests.workspace_fixtures import starter, workspace_factory  # noqa: F401

FUNC = "pools.tasks.stop_workspace"


@pytest.fixture
def stopping(member, starter, workspace_factory):
    return workspace_factory(member, starter, state=State.STOPPING)


def test_the_backoff_doubles_from_its_base_up_to_its_cap():
    assert [steps.backoff(n) for n in range(1, 8)] == [30, 60, 120, 240, 480, 900, 900]
    assert [steps.backoff(n, base=60, cap=3600) for n in (0, 1, 2, 7)] == [60, 60, 120, 3600]


def test_a_transient_error_counts_an_attempt_and_schedules_the_task_again(stopping):
    before = timezone.now()
    outcome = steps.retry_or_fail(stopping, FUNC, TransientError("throttled", "429"))
    assert outcome == "retrying: throttled"
    stopping.refresh_from_db()
    assert (stopping.state, stopping.attempts) == (State.STOPPING, 1)
    retry = Schedule.objects.get(name=f"retry stop_workspace {stopping.pk}")
    assert (retry.func, retry.args, retry.schedule_type) == (FUNC, f"({stopping.pk},)", "O")
    assert round((retry.next_run - before).total_seconds()) == steps.backoff(1)
    # The heartbeat says when the next attempt is due, so the sweep leaves it alone.
    assert stopping.heartbeat >= before + timedelta(seconds=steps.backoff(1) - 1)
    assert "attempt 1 failed (throttled); retrying in 30 s" in [
        e.message for e in stopping.events.all()
    ]


def test_the_last_attempt_fails_with_the_reason_and_the_detail(stopping):
    Workspace.objects.filter(pk=stopping.pk).update(attempts=steps.MAX_ATTEMPTS - 1)
    stopping.refresh_from_db()
    outcome = steps.retry_or_fail(stopping, FUNC, TransientError("throttled", "429"))
    assert outcome == f"gave up after {steps.MAX_ATTEMPTS} attempts: throttled"
    stopping.refresh_from_db()
    assert stopping.state == State.FAILED
    assert stopping.failure_reason == f"throttled (gave up after {steps.MAX_ATTEMPTS} attempts)"
    assert stopping.failure_detail == "429"
    assert not Schedule.objects.filter(name__startswith="retry").exists()


def test_giving_up_releases_what_the_attempts_made_once(stopping):
    releases = []
    Workspace.objects.filter(pk=stopping.pk).update(attempts=steps.MAX_ATTEMPTS - 1)
    stopping.refresh_from_db()
    stale = Workspace.objects.get(pk=stopping.pk)  # a second delivery of the same task
    for obj in (stopping, stale):
        steps.retry_or_fail(
            obj, FUNC, TransientError("throttled"), on_give_up=lambda: releases.append(1)
        )
    stopping.refresh_from_db()
    assert (stopping.state, releases) == (State.FAILED, [1])


def test_a_new_state_counts_its_attempts_from_zero(stopping):
    steps.retry_or_fail(stopping, FUNC, TransientError("throttled"))
    assert stopping.attempts == 1
    assert transition(stopping, State.STOPPED, message="stopped")
    stopping.refresh_from_db()
    assert stopping.attempts == 0


def test_a_failure_of_an_object_another_worker_moved_is_not_recorded(stopping):
    Workspace.objects.filter(pk=stopping.pk).update(state=State.STOPPED)  # the other worker
    outcome = steps.retry_or_fail(stopping, FUNC, TransientError("throttled"))
    assert outcome == "moved by another worker (stopped)"
    stopping.refresh_from_db()
    assert (stopping.state, stopping.attempts) == (State.STOPPED, 0)
    assert not stopping.events.exists()
    assert not Schedule.objects.filter(name__startswith="retry").exists()


def test_a_step_that_fails_permanently_fails_the_object(stopping):
    def step():
        raise PermanentError("the host is gone", "ssh: no route")

    assert steps.run_step(stopping, FUNC, "stopping", step) == "failed: the host is gone"
    stopping.refresh_from_db()
    assert stopping.state == State.FAILED
    assert stopping.failure_reason == "Stopping failed: the host is gone"
    assert stopping.failure_detail == "ssh: no route"


def test_a_step_that_hits_a_bug_retries_with_the_traceback_for_admins(stopping):
    def step():
        raise KeyError("surprise")

    assert steps.run_step(stopping, FUNC, "stopping", step) == "retrying: Unexpected KeyError"
    Workspace.objects.filter(pk=stopping.pk).update(attempts=steps.MAX_ATTEMPTS)
    stopping.refresh_from_db()
    steps.run_step(stopping, FUNC, "stopping", step)
    stopping.refresh_from_db()
    assert stopping.state == State.FAILED
    assert stopping.failure_reason.startswith("Unexpected KeyError (gave up after")
    assert "KeyError: 'surprise'" in stopping.failure_detail


def test_a_bugs_text_never_reaches_what_the_owner_sees(stopping):
    """Its text may quote anything, a credential included: the owner sees only its class."""

    def step():
        raise ValueError("Invalid header value b'Bearer TOPSECRET'")

    steps.run_step(stopping, FUNC, "stopping", step)
    Workspace.objects.filter(pk=stopping.pk).update(attempts=steps.MAX_ATTEMPTS)
    stopping.refresh_from_db()
    steps.run_step(stopping, FUNC, "stopping", step)
    stopping.refresh_from_db()
    assert stopping.state == State.FAILED
    seen = [stopping.failure_reason, *(e.message for e in stopping.events.all())]
    assert all("TOPSECRET" not in text for text in seen), seen
    assert "Unexpected ValueError" in stopping.failure_reason


def test_a_step_that_succeeds_returns_nothing_to_report(stopping):
    assert steps.run_step(stopping, FUNC, "stopping", lambda: None) == ""
    stopping.refresh_from_db()
    assert (stopping.state, stopping.attempts) == (State.STOPPING, 0)


def test_the_reporter_records_each_step_once_across_attempts(stopping):
    steps.reporter(stopping)("directory created")
    report = steps.reporter(stopping)  # a later attempt
    report("directory created")
    report("process started")
    report("process started")
    assert [e.message for e in stopping.events.all()] == ["directory created", "process started"]


def test_resume_stuck_routes_each_state_to_its_task_once(
    member, starter, workspace_factory, django_capture_on_commit_callbacks
):
    old = timezone.now() - steps.stuck_after() - timedelta(seconds=1)
    deleting = workspace_factory(member, starter, state=State.DELETING, heartbeat=old)
    requested = workspace_factory(member, starter, state=State.REQUESTED, heartbeat=old)
    workspace_factory(member, starter, state=State.REQUESTED)  # its worker is alive
    workspace_factory(member, starter, state=State.FAILED, heartbeat=old)  # not in flight
    calls = []
    routes = {
        State.REQUESTED: lambda pk: calls.append(("provision", pk)),
        State.DELETING: lambda pk: calls.append(("delete", pk)),
    }
    with django_capture_on_commit_callbacks(execute=True):
        assert steps.resume_stuck(Workspace, routes) == 2
        assert steps.resume_stuck(Workspace, routes) == 0  # claimed once
    assert sorted(calls) == [("delete", deleting.pk), ("provision", requested.pk)]


def test_a_step_begins_only_on_an_object_in_its_state(stopping):
    before = stopping.heartbeat
    assert steps.begin(None, State.STOPPING) == "gone"
    assert steps.begin(stopping, State.STARTING) == "nothing to do (stopping)"
    assert Workspace.objects.get(pk=stopping.pk).heartbeat == before
    assert steps.begin(stopping, State.STOPPING) == ""
    assert Workspace.objects.get(pk=stopping.pk).heartbeat > before
