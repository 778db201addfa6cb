"""Invitations: create, send, resend, revoke and accept — each one audit-logged function.

The link carries the invitation's id and a random token; only the token's SHA-256 is stored.
Resending stores a new hash, so the older link is dead at once. Accepting stamps
`accepted_at` with a conditional UPDATE, so a link can be used once even by two racing requests.

The email goes out on commit, inside the administrator's request. `sent_at` is stamped only
once the mail server took it: a mail server that is down leaves the invitation made but
unsent, logged (never its link, a bearer secret), listed as "not sent", and the
administrator is told to resend it.

An invitation grants its groups on its inviter's authority: the link works only while the
inviter is an active user who may still manage users. Deactivating a user revokes the
invitations they sent; resending makes the administrator who resends the inviter.
"""

import hashlib
import logging
import secrets
from datetime import timedelta
from enum import Enum

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import BooleanField, Exists, ExpressionWrapper, OuterRef, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from portal import audit
from portal.models import AuditAction, Invitation, Team
from portal.roles import CHANGE, ROLE_PERMISSIONS, Area, has_perm

logger = logging.getLogger(__name__)

INVITATION_DAYS = getattr(settings, "PORTAL_INVITATION_DAYS", 7)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def accept_url(invitation: Invitation, token: str) -> str:
    path = reverse("portal:invitation_accept", args=[invitation.pk, token])
    return settings.SITE_URL.rstrip("/") + path


def _send(invitation: Invitation, token: str) -> None:
    """Email the link and stamp `sent_at`; a failure leaves it empty (the admin resends)."""
    context = {
        "invitation": invitation,
        "url": accept_url(invitation, token),
        "site_name": settings.SITE_NAME,
        "inviter": invitation.invited_by.get_username() if invitation.invited_by else "",
    }
    try:
        send_mail(
            subject=f"You are invited to {settings.SITE_NAME}",
            message=render_to_string("portal/email/invitation.txt", context),
            from_email=None,
            recipient_list=[invitation.email],
        )
    # The errors `notifications.send_email` expects of a mail server that is down or slow
    # (OSError) or of a message the mail library refuses (ValueError). Their text is the
    # server's answer or the library's, never the message, so the link stays out of the log.
    except (OSError, ValueError):
        logger.exception("emailing invitation %s failed; it waits to be resent", invitation.pk)
        return
    invitation.sent_at = timezone.now()
    # Only for the link just sent: a resend meanwhile made another one.
    Invitation.objects.filter(pk=invitation.pk, token_hash=invitation.token_hash).update(
        sent_at=invitation.sent_at
    )


def _send_on_commit(invitation: Invitation, token: str) -> None:
    # Robust: the invitation is committed already; whatever goes wrong sending it leaves it
    # unsent, for the administrator to resend, and is no 500.
    transaction.on_commit(lambda: _send(invitation, token), robust=True)


def _new_token(invitation: Invitation) -> str:
    """A new link, valid for INVITATION_DAYS, not sent yet."""
    token = secrets.token_urlsafe(32)
    invitation.token_hash = _hash(token)
    invitation.sent_at = None
    invitation.expires_at = timezone.now() + timedelta(days=INVITATION_DAYS)
    return token


@transaction.atomic
def invite(actor, email: str, groups) -> Invitation:
    """Make an invitation and email its link on commit. Called outside a transaction (as
    views do), the returned invitation's `sent_at` says whether the email went out."""
    invitation = Invitation(email=email.strip().lower(), invited_by=actor)
    token = _new_token(invitation)
    invitation.save()
    invitation.groups.set(groups)
    audit.record_created(actor, invitation)
    _send_on_commit(invitation, token)
    return invitation


@transaction.atomic
def resend(actor, invitation: Invitation) -> None:
    """A new link (and a fresh expiry) sent on `actor`'s authority; the previous link stops
    working. `sent_at` says whether it went out, as for `invite`."""
    token = _new_token(invitation)
    invitation.invited_by = actor
    invitation.save(update_fields=["token_hash", "sent_at", "expires_at", "invited_by"])
    audit.record(actor, AuditAction.ACTION, invitation, message="Invitation resent")
    _send_on_commit(invitation, token)


@transaction.atomic
def revoke(actor, invitation: Invitation, message: str = "Invitation revoked") -> None:
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit.record(actor, AuditAction.ACTION, invitation, message=message)


def revoke_sent_by(actor, inviter) -> int:
    """Revoke every invitation `inviter` sent that nobody accepted (an expired one could
    still be resent); returns how many."""
    unused = Invitation.objects.filter(
        invited_by=inviter, accepted_at__isnull=True, revoked_at__isnull=True
    )
    message = f"Invitation revoked: {inviter.get_username()}, who sent it, was deactivated"
    for invitation in unused:
        revoke(actor, invitation, message)
    return len(unused)


class LinkProblem(Enum):
    """Why a link cannot be used; the value is (HTTP status, message)."""

    INVALID = (
        400,
        "This invitation link is not valid. It may have been mistyped, or replaced "
        "by a newer invitation email.",
    )
    USED = (410, "This invitation has already been used. Log in with the account you created.")
    REVOKED = (410, "This invitation was withdrawn by an administrator.")
    EXPIRED = (410, "This invitation has expired. Ask your administrator to send a new one.")
    INVITER_GONE = (
        410,
        "This invitation is no longer valid: whoever sent it may no longer add users. "
        "Ask your administrator to send a new one.",
    )


def check_link(pk: int, token: str) -> tuple[Invitation | None, LinkProblem | None]:
    invitation = Invitation.objects.filter(pk=pk).select_related("invited_by").first()
    if invitation is None or not secrets.compare_digest(invitation.token_hash, _hash(token)):
        return None, LinkProblem.INVALID
    return invitation, problem(invitation)


def problem(invitation: Invitation) -> LinkProblem | None:
    """Why the invitation's link does not work now, or None when it does: the one rule that
    both the acceptance page and the invitation lists (`status`) go by."""
    if invitation.accepted_at:
        return LinkProblem.USED
    if invitation.revoked_at:
        return LinkProblem.REVOKED
    if invitation.expires_at <= timezone.now():
        return LinkProblem.EXPIRED
    if not _inviter_may_invite(invitation):
        return LinkProblem.INVITER_GONE
    return None


STATUS_WORDS = {
    LinkProblem.USED: "accepted",
    LinkProblem.REVOKED: "revoked",
    LinkProblem.EXPIRED: "expired",
}


def status(invitation: Invitation) -> str:
    """The invitation's state as the lists show it; a link that would be refused, or that
    was never emailed, never reads "pending"."""
    match problem(invitation):
        case None if invitation.sent_at is None:
            return "not sent: the email could not be sent (resend it)"
        case None:
            return "pending"
        case LinkProblem.INVITER_GONE if invitation.invited_by is None:
            return "void: the account that sent it is gone (resend it to vouch for it)"
        case LinkProblem.INVITER_GONE:
            who = invitation.invited_by.get_username()
            return f"void: {who}, who sent it, may no longer add users (resend it to vouch for it)"
        case found:
            return STATUS_WORDS[found]


def _inviter_may_invite(invitation: Invitation) -> bool:
    """Whether the inviter still vouches for the invitation: an active user who may manage
    users. No inviter (their account was deleted, which the portal itself never does)
    counts as one who may not: nobody vouches for the groups any more. A list annotated
    `with_inviter_standing` answers from the annotation, without a query per row."""
    if hasattr(invitation, "inviter_may_invite"):
        return invitation.inviter_may_invite
    inviter = invitation.invited_by
    return inviter is not None and has_perm(inviter, Area.USERS, CHANGE)


def with_inviter_standing(invitations):
    """The invitations annotated with `inviter_may_invite`: the rule `has_perm` applies
    (active, and a superuser or in a group whose role may manage users), in SQL."""
    roles = [role for role, allowed in ROLE_PERMISSIONS.items() if (Area.USERS, CHANGE) in allowed]
    vouching = Team.objects.filter(members=OuterRef("invited_by"), role__in=roles)
    may = Q(invited_by__is_active=True) & (Q(invited_by__is_superuser=True) | Exists(vouching))
    return invitations.annotate(
        inviter_may_invite=ExpressionWrapper(may, output_field=BooleanField())
    )


@transaction.atomic
def accept(invitation: Invitation, user) -> bool:
    """Join the invited groups; False when the invitation was used or revoked meanwhile."""
    claimed = Invitation.objects.filter(
        pk=invitation.pk,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expires_at__gt=timezone.now(),
    ).update(accepted_at=timezone.now(), accepted_by=user)
    if claimed != 1:
        return False
    groups = list(invitation.groups.all())
    for team in groups:
        team.members.add(user)
    audit.record(
        user,
        AuditAction.ACTION,
        invitation,
        message=f"Invitation accepted by {user.get_username()}; joined "
        f"{', '.join(t.name for t in groups) or 'no groups'}",
    )
    return True
