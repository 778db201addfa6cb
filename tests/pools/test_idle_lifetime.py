"""A workspace's lifetime (issue 16): warned before it expires, extended by its owner up to
the group's maximum lifetime counted from now; with time travel."""

# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811
from datetime import timedelta
from http import HTTPStatus

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from pools import lifetime, tasks
from pools.lifecycle import State
from pools.models import Workspace
from portal.models import MAX_LIFETIME_HOURS, AuditEntry, Notification, NotificationKind, Team
from tests.workspace_fixtures import starter, workspace_factory  # noqa: F401

MAX_HOURS = 8


@pytest.fixture
def group(member):
    team = member.teams.get()
    team.max_lifetime_hours = MAX_HOURS
    team.save()
    return team


@pytest.fixture
def t0():
    return timezone.now()


@pytest.fixture
def workspace(member, starter, workspace_factory, group, t0):
    return workspace_factory(
        member,
        starter,
        state=State.READY,
        team=group,
        name="long-run",
        created=t0,
        expires_at=t0 + timedelta(hours=MAX_HOURS),
    )


def test_the_owner_is_warned_once_before_expiry(workspace, t0, django_capture_on_commit_callbacks):
    # An 8-hour lifetime: warned in its last quarter (2 hours), once.
    with django_capture_on_commit_callbacks(execute=True):
        assert lifetime.warn_expiring(t0 + timedelta(hours=5, minutes=59)) == 0
        assert lifetime.warn_expiring(t0 + timedelta(hours=6)) == 1
        assert lifetime.warn_expiring(t0 + timedelta(hours=7)) == 0
    (email,) = mail.outbox
    assert "“long-run” expires at" in email.subject
    assert "Extend it on its page" in email.body
    notification = Notification.objects.get()
    assert notification.kind == NotificationKind.EXPIRY_WARNING


def test_an_extension_is_a_new_expiry_with_its_own_warning(workspace, t0, member):
    lifetime.warn_expiring(t0 + timedelta(hours=6))
    lifetime.extend(workspace, 4, member, now=t0 + timedelta(hours=6))
    workspace.refresh_from_db()
    assert workspace.expires_at == t0 + timedelta(hours=12)
    assert lifetime.warn_expiring(t0 + timedelta(hours=7)) == 0  # 5 hours left: not yet
    assert lifetime.warn_expiring(t0 + timedelta(hours=9)) == 1  # within 3 h (12 / 4)
    assert Notification.objects.count() == 2


def test_extension_is_bounded_by_the_groups_maximum_from_now(workspace, t0, member):
    # At t0 + 6 h, the maximum is t0 + 14 h: 6 hours more than the current expiry.
    now = t0 + timedelta(hours=6)
    assert lifetime.longest_extension(workspace, now) == timedelta(hours=6)
    with pytest.raises(lifetime.ExtensionRefused, match="At most 6 h"):
        lifetime.extend(workspace, 7, member, now=now)
    lifetime.extend(workspace, 6, member, now=now)
    workspace.refresh_from_db()
    assert workspace.expires_at == t0 + timedelta(hours=14)
    with pytest.raises(lifetime.ExtensionRefused, match="already expires at your group's maximum"):
        lifetime.extend(workspace, 1, member, now=now)
    entry = AuditEntry.objects.get(message__startswith="lifetime extended by 6 h")
    assert entry.before == {"expires_at": (t0 + timedelta(hours=8)).isoformat()}
    assert workspace.events.filter(message__startswith="lifetime extended by 6 h").exists()


def test_the_extend_page_says_the_limit_next_to_the_field(workspace, t0, member, client):
    client.force_login(member)
    url = reverse("workspaces:extend", args=[workspace.pk])
    # Right after the request: the expiry is already the maximum from now (to the minute).
    page = client.post(url, {"hours": "3"}).content.decode()
    assert 'class="error"' in page and "maximum lifetime" in page
    for hostile in ("", "-1", "0", "1e9", "two", "99999999999999999999"):
        response = client.post(url, {"hours": hostile})
        assert response.status_code == 200, hostile
        assert 'class="error"' in response.content.decode(), hostile
    workspace.refresh_from_db()
    assert workspace.expires_at == t0 + timedelta(hours=MAX_HOURS)


def test_the_owner_extends_from_the_page(workspace, t0, group, member, client):
    # An hour later, an hour fits under the maximum.
    workspace.expires_at = t0 - timedelta(hours=1) + timedelta(hours=MAX_HOURS)
    workspace.save()
    client.force_login(member)
    page = client.get(workspace.get_absolute_url()).content.decode()
    assert "Extend its lifetime" in page
    response = client.post(reverse("workspaces:extend", args=[workspace.pk]), {"hours": "1"})
    assert response.status_code == 302
    workspace.refresh_from_db()
    assert workspace.expires_at == t0 + timedelta(hours=MAX_HOURS)


def test_a_workspace_without_expiry_cannot_be_extended(workspace, member):
    workspace.expires_at = None
    workspace.save()
    with pytest.raises(lifetime.ExtensionRefused, match="does not expire"):
        lifetime.extend(workspace, 1, member)


def test_a_group_that_dropped_its_maximum_sets_no_bound(workspace, group, member):
    group.max_lifetime_hours = None
    group.save()
    workspace.refresh_from_db()
    assert lifetime.longest_extension(workspace) is None
    lifetime.extend(workspace, 100, member)


def test_a_maximum_stored_beyond_the_bound_counts_as_the_bound(workspace, group, t0, client):
    # Raised to 100 million hours after the request (saved before the group form bounded
    # it): the maximum from now would end after year 9999.
    Team.objects.filter(pk=group.pk).update(max_lifetime_hours=100_000_000)
    workspace.refresh_from_db()
    assert lifetime.longest_extension(workspace, t0) == timedelta(
        hours=MAX_LIFETIME_HOURS - MAX_HOURS
    )
    client.force_login(workspace.owner)
    response = client.get(reverse("workspaces:extend", args=[workspace.pk]))
    assert response.status_code == HTTPStatus.OK


def test_without_a_group_maximum_the_expiry_stays_within_ten_years(
    workspace, group, t0, member, client
):
    # Extended by a year per request, again and again, it would pass year 9999.
    group.max_lifetime_hours = None
    group.save()
    longest = t0 + lifetime.LONGEST_LIFETIME
    workspace.expires_at = longest - timedelta(hours=100)
    workspace.save()
    with pytest.raises(lifetime.ExtensionRefused, match="At most 100 h"):
        lifetime.extend(workspace, 101, member, now=t0)
    client.force_login(member)
    response = client.post(reverse("workspaces:extend", args=[workspace.pk]), {"hours": "8760"})
    assert response.status_code == HTTPStatus.OK
    assert "at most ten years from now" in response.content.decode()
    workspace.refresh_from_db()
    assert workspace.expires_at == longest - timedelta(hours=100)


@pytest.mark.parametrize("state", [State.READY, State.DEGRADED, State.STOPPED])
def test_every_workspace_the_sweep_deletes_at_expiry_is_warned_first(workspace, t0, member, state):
    Workspace.objects.filter(pk=workspace.pk).update(state=state)
    assert lifetime.warn_expiring(t0 + timedelta(hours=7)) == 1
    assert tasks.expire(t0 + timedelta(hours=MAX_HOURS, minutes=1)) == 1
    assert Notification.objects.get().kind == NotificationKind.EXPIRY_WARNING


def test_a_degraded_workspace_can_be_extended(workspace, t0, member):
    Workspace.objects.filter(pk=workspace.pk).update(state=State.DEGRADED)
    lifetime.extend(workspace, 2, member, now=t0 + timedelta(hours=2))
    workspace.refresh_from_db()
    assert workspace.expires_at == t0 + timedelta(hours=MAX_HOURS + 2)
