"""The expiry sweep and an owner's extension at the same moment, on two real PostgreSQL
connections: an extension that commits keeps the workspace; one that comes too late is
refused, never reported done for a workspace being deleted."""

# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from pools import lifetime, tasks
from pools.lifecycle import State
from pools.models import Workspace
from portal.models import Team
from tests.workspace_fixtures import in_thread, starter, workspace_factory  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("needs two real connections")


@pytest.fixture
def expired(member, starter, workspace_factory, monkeypatch) -> Workspace:
    """A ready workspace of an 8-hour lifetime, its owner warned, expired 5 seconds ago."""
    monkeypatch.setattr(tasks, "enqueue_deprovision", lambda pk: None)
    team = member.teams.get()
    Team.objects.filter(pk=team.pk).update(max_lifetime_hours=8)
    now = timezone.now()
    workspace = workspace_factory(
        member,
        starter,
        state=State.READY,
        team=team,
        created=now - timedelta(hours=8),
        expires_at=now - timedelta(seconds=5),
    )
    assert lifetime.warn_expiring(now - timedelta(hours=1)) == 1
    return workspace


def extend_in_thread(workspace, owner, results) -> threading.Thread:
    def extend():
        lifetime.extend(Workspace.objects.get(pk=workspace.pk), 4, owner)

    return in_thread(extend, lifetime.ExtensionRefused, results)


def test_an_extension_committed_after_the_sweep_listed_the_workspace_keeps_it(
    expired, member, monkeypatch
):
    """The sweep lists the expired workspaces, then deletes each after locking and reading
    it again: the owner's extension, committed in between, keeps it."""
    results = []
    real_expire_one = tasks.expire_one

    def extension_commits_first(pk, now):
        extend_in_thread(expired, member, results).join(20)
        return real_expire_one(pk, now)

    monkeypatch.setattr(tasks, "expire_one", extension_commits_first)
    assert tasks.expire(timezone.now()) == 0
    assert results == ["ok"]
    expired.refresh_from_db()
    assert expired.expires_at > timezone.now()
    assert expired.state == State.READY


def test_an_extension_made_while_the_sweep_deletes_waits_and_is_refused(
    expired, member, monkeypatch
):
    """The sweep holds the workspace's row while it moves it to deleting: an extension
    made meanwhile waits for it, then is refused, and the expiry is left as it was."""
    results = []
    threads = []
    real_transition = tasks.transition

    def owner_extends_meanwhile(workspace, *args, **kwargs):
        threads.append(extend_in_thread(expired, member, results))
        time.sleep(0.5)  # the extension is waiting for the sweep's lock
        return real_transition(workspace, *args, **kwargs)

    monkeypatch.setattr(tasks, "transition", owner_extends_meanwhile)
    assert tasks.expire(timezone.now()) == 1
    threads[0].join(20)
    assert results == ["Only a ready, degraded or stopped workspace can be extended."]
    before = expired.expires_at
    expired.refresh_from_db()
    assert (expired.state, expired.expires_at) == (State.DELETING, before)
