"""Notifications (issue 16): one row per user and occurrence, shown in the portal and emailed.

The engine decides *that* something happened (a workspace is ready, idle, about to expire;
a pool halted) and calls `notify()` with a `key` naming the occurrence, e.g.
"workspace:42:expiry:2026-12-01T10:00:00+00:00". Tasks are delivered at least once, so
`notify()` may be called twice for the same occurrence: the unique (user, key) lets only
the first call insert, and only an insert sends the email (on commit, so a rolled-back
decision sends nothing).

Each user chooses per kind whether it comes by email and whether it is listed in the
portal (`NotificationPreference`; without a row: both). A deactivated user gets no email:
the row is still made, the record that the occurrence was handled, and is listed should
the account come back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import models, transaction
from django.utils import timezone

from portal import audit
from portal.models import AuditAction, Notification, NotificationKind, NotificationPreference
from portal.roles import ROLE_PERMISSIONS
from portal.text import one_line

logger = logging.getLogger(__name__)

# Kinds only administrators get; the preferences page offers them to those only.
ADMIN_KINDS = (NotificationKind.POOL_HALTED, NotificationKind.INFRASTRUCTURE_UNREACHABLE)


@dataclass(frozen=True)
class Message:
    kind: str
    key: str
    subject: str
    body: str = ""
    url: str = ""  # a path in the portal


def notify_new(items: Iterable, key_of: Callable, compose: Callable) -> int:
    """Tell each of `items` whose occurrence key (`key_of(item)`) was not told yet, each in a
    transaction of its own; how many were told. `compose(item)` gives (users, message); it
    runs only for new ones, so a pass where all were told costs one query."""
    items = list(items)
    told = set(
        Notification.objects.filter(key__in=[key_of(item)[:200] for item in items])
        .values_list("key", flat=True)
        .distinct()
    )
    sent = 0
    for item in items:
        key = key_of(item)[:200]
        if key in told:
            continue
        try:
            with transaction.atomic():
                sent += bool(notify(*compose(item)))
        except Exception:  # one occurrence, whatever is wrong with it, spares the rest
            logger.exception("notifying %s failed; the next pass tries again", key)
    return sent


def notify(users: Iterable, message: Message) -> list[Notification]:
    """Record `message` for each of `users` once per occurrence; email it on commit.

    Returns the notifications made by this call (none when they existed already).
    """
    users = list(users)
    if not users:
        return []
    wanted = channels(users, message.kind)
    subject = one_line(message.subject)[:200]  # an email header: no line breaks
    made = []
    for user in users:
        email, in_portal = wanted.get(user.pk, (True, True))
        notification, created = Notification.objects.get_or_create(
            user=user,
            key=message.key[:200],
            defaults={
                "kind": message.kind,
                "subject": subject,
                "body": message.body,
                "url": message.url[:300],
                "in_portal": in_portal,
                # Not to someone who left: deactivating ends the account, and the address
                # may be someone else's by now.
                "email_wanted": email and bool(user.email) and user.is_active,
            },
        )
        if created:
            made.append(notification)
            if notification.email_wanted:
                # Robust: the decision is committed already; an email that fails is logged.
                transaction.on_commit(lambda pk=notification.pk: send_email(pk), robust=True)
    return made


def channels(users: list, kind: str) -> dict[int, tuple[bool, bool]]:
    """{user id: (email, in portal)} for the users who chose otherwise than both."""
    rows = NotificationPreference.objects.filter(user__in=users, kind=kind)
    return {row.user_id: (row.email, row.in_portal) for row in rows}


def send_email(notification_id: int) -> bool:
    """Email one notification, once: the row is marked before sending (a crash in between
    loses that email, never sends it twice; the portal still lists it), and unmarked if
    the send fails, so `emailed_at` means sent."""
    notification = (
        Notification.objects.select_related("user")
        .filter(pk=notification_id, email_wanted=True, emailed_at=None)
        .first()
    )
    if notification is None:
        return False
    marked = Notification.objects.filter(pk=notification.pk, emailed_at=None).update(
        emailed_at=timezone.now()
    )
    if marked != 1:
        return False
    link = settings.SITE_URL.rstrip("/") + notification.url if notification.url else ""
    try:
        send_mail(
            subject=f"[{settings.SITE_NAME}] {notification.subject}",
            message="\n\n".join(part for part in (notification.body, link) if part),
            from_email=None,
            recipient_list=[notification.user.email],
        )
    # OSError: the mail server is down or does not answer within EMAIL_TIMEOUT (SMTP errors
    # and socket timeouts are OSErrors). ValueError: the mail library refused the message
    # (BadHeaderError, an address it cannot encode). Either way the portal list still has it.
    except (OSError, ValueError):
        logger.exception("emailing notification %s failed", notification.pk)
        Notification.objects.filter(pk=notification.pk).update(emailed_at=None)
        return False
    return True


def admins(area: str, action: str) -> models.QuerySet:
    """Active users whose role grants (`area`, `action`), and superusers."""
    roles = [role for role, granted in ROLE_PERMISSIONS.items() if (area, action) in granted]
    people = get_user_model().objects.filter(is_active=True)
    return people.filter(models.Q(is_superuser=True) | models.Q(teams__role__in=roles)).distinct()


def unread_count(user) -> int:
    return Notification.objects.filter(user=user, in_portal=True, read_at=None).count()


def mark_read(user, notification_id: int | None = None) -> int:
    """Mark one of the user's notifications read, or all of them; how many changed."""
    unread = Notification.objects.filter(user=user, read_at=None)
    if notification_id is not None:
        unread = unread.filter(pk=notification_id)
    return unread.update(read_at=timezone.now())


def kinds_for(is_admin: bool) -> list[tuple[str, str]]:
    """The kinds a user may choose about: administrators' kinds only for administrators."""
    return [
        (kind, label)
        for kind, label in NotificationKind.choices
        if is_admin or kind not in ADMIN_KINDS
    ]


@transaction.atomic
def save_preferences(user, choices: dict[str, tuple[bool, bool]]) -> None:
    """Store {kind: (email, in portal)}, audited; a kind left at both loses its row (the
    default)."""
    before = stored_preferences(user)
    for kind, (email, in_portal) in choices.items():
        if email and in_portal:
            NotificationPreference.objects.filter(user=user, kind=kind).delete()
        else:
            NotificationPreference.objects.update_or_create(
                user=user, kind=kind, defaults={"email": email, "in_portal": in_portal}
            )
    after = stored_preferences(user)
    if after != before:
        audit.record(
            user,
            AuditAction.UPDATED,
            user,
            before={"notifications": before},
            after={"notifications": after},
            message="changed their notification choices",
        )


def stored_preferences(user) -> dict[str, dict[str, bool]]:
    rows = NotificationPreference.objects.filter(user=user).order_by("kind")
    return {row.kind: {"email": row.email, "in_portal": row.in_portal} for row in rows}
