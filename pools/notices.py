"""What the engine tells people (issue 16), as `portal.notifications` messages.

Workspace owners hear of their workspaces' transitions from the event table itself
(`notify_workspace_events`, a schedule every `schedules.NOTICES_MINUTES`): ready after
on-demand provisioning, failed, degraded. The event rows are the outbox: they are written
with the change, in its transaction, so a worker killed between the change and the message
loses nothing; the next pass sends it, keyed by the event, once.

Administrators hear when a warm pool halts after repeated failures (`pool_halted`, called
by `warmpool.record_failure` in the transaction that halts it) and when an infrastructure
entry becomes unreachable (`infrastructure_unreachable`, called by `health.record` in the
transaction that records it).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from pools.lifecycle import State
from pools.models import Pool, WorkspaceEvent
from portal import notifications
from portal.models import NotificationKind
from portal.roles import CHANGE, Area

# Events older than this are not told any more (a portal that was down for a day does not
# flood its users with old news).
EVENT_WINDOW = timedelta(hours=24)

TOLD_TRANSITIONS = (
    Q(from_state=State.PROVISIONING, to_state=State.READY)
    | (Q(to_state=State.FAILED) & ~Q(from_state=State.FAILED))
    | (Q(to_state=State.DEGRADED) & ~Q(from_state=State.DEGRADED))
)


def _event_key(event: WorkspaceEvent) -> str:
    return f"workspace-event:{event.pk}"


def notify_workspace_events(now: datetime | None = None) -> int:
    """Tell owners of their workspaces' recent transitions, once each; how many told."""
    now = now or timezone.now()
    events = list(
        WorkspaceEvent.objects.filter(TOLD_TRANSITIONS, timestamp__gte=now - EVENT_WINDOW)
        .select_related("workspace__owner")
        .order_by("timestamp", "id")
    )
    return notifications.notify_new(
        events, _event_key, lambda event: ([event.workspace.owner], event_message(event))
    )


def event_message(event: WorkspaceEvent) -> notifications.Message:
    workspace = event.workspace
    name = f"Workspace “{workspace}”"
    if event.to_state == State.READY:
        kind, subject = NotificationKind.WORKSPACE_READY, f"{name} is ready"
        body = f"{name} of {workspace.profile_label} is ready to use."
    elif event.to_state == State.FAILED:
        kind, subject = NotificationKind.WORKSPACE_FAILED, f"{name} failed"
        body = f"{name} failed: {workspace.failure_reason or event.message}"
    else:
        kind, subject = NotificationKind.WORKSPACE_DEGRADED, f"{name} is degraded"
        body = f"{name} is degraded and being repaired: {event.message}"
    return notifications.Message(
        kind=kind,
        key=_event_key(event),
        subject=subject,
        body=body,
        url=workspace.get_absolute_url(),
    )


def pool_halted(pool: Pool) -> None:
    """Tell the pools' administrators that `pool` halted (in the halting transaction)."""
    notifications.notify(
        notifications.admins(Area.POOLS, CHANGE),
        notifications.Message(
            kind=NotificationKind.POOL_HALTED,
            key=f"pool:{pool.pk}:halted:{timezone.now().isoformat()}",
            subject=f"{pool} halted after {pool.consecutive_failures} failures in a row",
            body=(
                f"{pool} stopped making instances after {pool.consecutive_failures} failed "
                f"in a row. The last failure: {pool.last_failure}. Resume it on its page "
                "once the cause is fixed."
            ),
            url=pool.get_absolute_url(),
        ),
    )


def infrastructure_unreachable(infrastructure, reason: str, checked_at: datetime) -> None:
    """Tell the infrastructure's administrators that a check found it unreachable."""
    notifications.notify(
        notifications.admins(Area.INFRASTRUCTURE, CHANGE),
        notifications.Message(
            kind=NotificationKind.INFRASTRUCTURE_UNREACHABLE,
            key=f"infrastructure:{infrastructure.pk}:unreachable:{checked_at.isoformat()}",
            subject=f"Infrastructure “{infrastructure}” is unreachable",
            body=f"The health check of “{infrastructure}” could not reach it: {reason}",
            url=infrastructure.get_absolute_url(),  # its page, with the health panel
        ),
    )
