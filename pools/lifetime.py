"""A workspace's lifetime (issue 16): warn before it expires, let its owner extend it.

A workspace charged to a group with a maximum lifetime gets `expires_at` = request time +
that maximum (`workspaces.actions.request_workspace`); one started again on another
group's quota expires no later than that group's maximum from the start
(`workspaces.actions.start_workspace`). The sweep deletes it once that is past
(`pools.tasks.expire`). Here:
- `warn_expiring(now)`: each workspace the sweep would delete (ready, degraded or
  stopped) that expires within `warning_lead()` is announced to its owner, once per expiry
  time (an extension makes a new expiry, which gets its own warning).
- `extend(workspace, hours, actor)`: move the expiry later, at most to the group's maximum
  lifetime counted from now (`longest_extension`): the owner who is still there keeps the
  workspace, an abandoned one still goes. Without a group maximum, at most LONGEST_LIFETIME
  from now, so the expiry stays a date however often it is extended.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from pools.lifecycle import State, log_step
from pools.models import Workspace
from portal import audit, notifications
from portal.models import MAX_LIFETIME_HOURS, AuditAction, NotificationKind

EXPIRY_WARNING = timedelta(hours=24)  # at most this long before expiry...
EXPIRY_WARNING_SHARE = 4  # ...and at most a quarter of the lifetime
# The states in which a workspace past its expiry is deleted (`pools.tasks.expire`): each is
# warned first, and its owner may extend it.
EXPIRING_STATES = (State.READY, State.DEGRADED, State.STOPPED)
LONGEST_LIFETIME = timedelta(hours=MAX_LIFETIME_HOURS)  # from now: a group's bound too


class ExtensionRefused(Exception):
    """The expiry cannot move that far; the message says why, for the page."""


def warning_lead(workspace: Workspace) -> timedelta:
    lifetime = workspace.expires_at - workspace.created
    return min(EXPIRY_WARNING, lifetime / EXPIRY_WARNING_SHARE)


def _expiry_key(workspace: Workspace) -> str:
    return f"workspace:{workspace.pk}:expiry:{workspace.expires_at.isoformat()}"


def warn_expiring(now: datetime | None = None) -> int:
    """Warn the owner of each workspace about to expire, once per expiry; how many."""
    now = now or timezone.now()
    soon = Workspace.objects.filter(
        state__in=EXPIRING_STATES,
        expires_at__gt=now,
        expires_at__lte=now + EXPIRY_WARNING,
    ).select_related("owner")
    due = [ws for ws in soon if now >= ws.expires_at - warning_lead(ws)]
    return notifications.notify_new(
        due, _expiry_key, lambda workspace: ([workspace.owner], expiry_message(workspace))
    )


def expiry_message(workspace: Workspace) -> notifications.Message:
    when = timezone.localtime(workspace.expires_at).strftime("%Y-%m-%d %H:%M %Z")
    return notifications.Message(
        kind=NotificationKind.EXPIRY_WARNING,
        key=_expiry_key(workspace),
        subject=f"Workspace “{workspace}” expires at {when}",
        body=(
            f"Your workspace “{workspace}” reaches its lifetime at {when} and will then be "
            "deleted with its files. Extend it on its page if you still need it."
        ),
        url=workspace.get_absolute_url(),
    )


def max_lifetime(team) -> timedelta | None:
    """The group's maximum lifetime; None: it has none (or there is no group).

    A stored value beyond the bound (saved before the group form had one) counts as the
    bound, so `now +` it is always a date."""
    hours = team.max_lifetime_hours if team else None
    if not hours:
        return None
    return timedelta(hours=min(hours, MAX_LIFETIME_HOURS))


def longest_extension(workspace: Workspace, now: datetime | None = None) -> timedelta | None:
    """How much later the expiry may move: up to the group's maximum lifetime from now.
    None: no limit (its group has no maximum lifetime any more)."""
    most = max_lifetime(workspace.team) if workspace.team_id else None
    if most is None or workspace.expires_at is None:
        return None
    now = now or timezone.now()
    return max(now + most - workspace.expires_at, timedelta(0))


def whole_hours(span: timedelta) -> int:
    return int(span.total_seconds() // 3600)


@transaction.atomic
def extend(workspace: Workspace, hours: int, actor, now: datetime | None = None) -> Workspace:
    """Move the expiry `hours` later, within `longest_extension`; audited."""
    now = now or timezone.now()
    locked = (
        Workspace.objects.select_for_update(of=("self",))
        .select_related("team")
        .get(pk=workspace.pk)
    )
    if locked.expires_at is None:
        raise ExtensionRefused("This workspace does not expire.")
    if locked.state not in EXPIRING_STATES:
        raise ExtensionRefused("Only a ready, degraded or stopped workspace can be extended.")
    limit = longest_extension(locked, now)
    if limit is not None and timedelta(hours=hours) > limit:
        raise ExtensionRefused(extension_limit_text(locked, limit))
    longest = max(now + LONGEST_LIFETIME - locked.expires_at, timedelta(0))
    if timedelta(hours=hours) > longest:
        raise ExtensionRefused(longest_lifetime_text(longest))
    before = locked.expires_at
    locked.expires_at = before + timedelta(hours=hours)
    locked.save(update_fields=["expires_at"])
    message = f"lifetime extended by {hours} h, to {locked.expires_at:%Y-%m-%d %H:%M} UTC"
    log_step(locked, message, actor=actor)
    audit.record(
        actor,
        AuditAction.UPDATED,
        locked,
        before={"expires_at": before.isoformat()},
        after={"expires_at": locked.expires_at.isoformat()},
        message=message,
    )
    return locked


def extension_limit_text(workspace: Workspace, limit: timedelta) -> str:
    most = whole_hours(limit)
    if most < 1:
        return (
            "It already expires at your group's maximum lifetime "
            f"({workspace.team.max_lifetime_hours} h from now)."
        )
    return (
        f"At most {most} h: your group's maximum lifetime is "
        f"{workspace.team.max_lifetime_hours} h from now."
    )


def longest_lifetime_text(longest: timedelta) -> str:
    most = whole_hours(longest)
    if most < 1:
        return "It already expires ten years from now, the longest a workspace may live."
    return f"At most {most} h: a workspace expires at most ten years from now."
