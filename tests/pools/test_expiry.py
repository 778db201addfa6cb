"""The sweep deletes a workspace at the end of its lifetime only once its owner was warned
of that expiry, and audits the deletion with the system as actor."""

# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811
from datetime import timedelta

import pytest
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from pools import lifetime, tasks
from pools.lifecycle import State
from pools.models import Workspace
from portal.models import AuditAction, AuditEntry, Notification, NotificationKind
from tests.workspace_fixtures import starter, workspace_factory  # noqa: F401

pytestmark = pytest.mark.django_db

HOURS = 8


@pytest.fixture(autouse=True)
def no_queue(monkeypatch):
    monkeypatch.setattr("pools.tasks.enqueue_deprovision", lambda pk: None)


@pytest.fixture
def t0():
    return timezone.now() - timedelta(hours=HOURS)


@pytest.fixture
def expiring(member, starter, workspace_factory, t0):
    """Requested 8 hours ago in a group whose workspaces live 8 hours; a minute to go."""
    team = member.teams.get()
    team.max_lifetime_hours = HOURS
    team.save()
    return workspace_factory(
        member,
        starter,
        state=State.PROVISIONING,
        team=team,
        created=t0,
        expires_at=t0 + timedelta(hours=HOURS, minutes=1),
    )


def entries_on(workspace):
    kind = ContentType.objects.get_for_model(Workspace)
    return AuditEntry.objects.filter(content_type=kind, object_id=str(workspace.pk))


def test_a_workspace_ready_only_after_its_warning_window_is_warned_and_kept_a_while(
    expiring, member, t0
):
    # It provisioned all through the last quarter of its lifetime, when the warning is
    # sent, and is ready a minute before it expires: the sweep (every minute) runs before
    # the next idle pass (every 5 minutes) could warn.
    for minutes in range(6 * 60, 8 * 60, 5):
        assert lifetime.warn_expiring(t0 + timedelta(minutes=minutes)) == 0
    Workspace.objects.filter(pk=expiring.pk).update(state=State.READY)
    now = t0 + timedelta(hours=HOURS, minutes=2)

    assert tasks.expire(now) == 0

    expiring.refresh_from_db()
    assert expiring.state == State.READY
    assert expiring.expires_at == now + tasks.LATE_WARNING_NOTICE
    warning = Notification.objects.get(user=member)
    assert warning.kind == NotificationKind.EXPIRY_WARNING
    assert warning.key == lifetime.expiry_message(expiring).key  # of the new expiry
    entry = entries_on(expiring).get()
    assert (entry.actor, entry.action) == (None, AuditAction.UPDATED)
    assert entry.after == {"expires_at": expiring.expires_at.isoformat()}
    assert "had not been warned" in expiring.events.last().message

    # Warned once: the idle pass does not warn again, and the next sweep past it deletes.
    assert lifetime.warn_expiring(now + timedelta(minutes=5)) == 0
    assert tasks.expire(now + timedelta(minutes=30)) == 0
    assert tasks.expire(expiring.expires_at + timedelta(minutes=1)) == 1


def test_deleting_a_workspace_past_its_lifetime_is_audited_with_the_system_as_actor(expiring, t0):
    Workspace.objects.filter(pk=expiring.pk).update(state=State.READY)
    assert lifetime.warn_expiring(t0 + timedelta(hours=7)) == 1

    assert tasks.expire(t0 + timedelta(hours=HOURS, minutes=2)) == 1

    expiring.refresh_from_db()
    assert expiring.state == State.DELETING
    entry = entries_on(expiring).get()
    assert entry.actor is None and entry.actor_name == "system"
    assert (entry.before, entry.after) == ({"state": State.READY}, {"state": State.DELETING})
    assert "lifetime reached" in entry.message
