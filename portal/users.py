"""User administration: add, deactivate, reactivate — each one audit-logged function.

Users are never deleted from the portal: deactivating keeps their history (audit entries,
workspaces) and ends every session they have open.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from portal import audit, invitations
from portal.models import AuditAction, SsoMembership, Team
from portal.roles import Role


class LastOrgAdmin(ValidationError):
    """The change would leave the portal without an active Org admin; nothing was changed."""

    def __init__(self):
        super().__init__(
            "Refused: nobody would be left to manage users. Make someone else an Org admin "
            "first (add them to an Org-admin group)."
        )


class UsernameTaken(ValidationError):
    """Another account has this username, in any case: names must differ by more than case,
    since logins (the break-glass one among them) look usernames up case-insensitively."""

    def __init__(self):
        super().__init__("This username is taken; choose another.")


class EmailTaken(ValidationError):
    """Another account has this email address, in any case (portal 0010's index): an address
    that names two accounts would make SSO matching and the login by email ambiguous."""

    def __init__(self):
        super().__init__("A user with this email address already exists.")


def user_snapshot(user) -> dict:
    """What the audit log keeps about a user (never the password hash)."""
    return {
        "username": user.get_username(),
        "email": user.email,
        "is_active": user.is_active,
        "groups": sorted(user.teams.values_list("name", flat=True)) if user.pk else [],
    }


def record_verified_email(user) -> None:
    """The address an administrator or an invitation vouched for counts as verified.

    allauth's SSO email matching connects an Okta login to this account only through a
    verified address (an unverified match would wipe the local password).
    """
    from allauth.account.models import EmailAddress

    if user.email:
        EmailAddress.objects.update_or_create(
            user=user,
            email__iexact=user.email,
            defaults={"email": user.email, "verified": True, "primary": True},
        )


def create_user(username: str, email: str, password: str | None):
    """Create an active user; no password means an unusable one. `UsernameTaken` or
    `EmailTaken` when a request running at the same time took the name or the address after
    the form checked it."""
    try:
        with transaction.atomic():
            return get_user_model().objects.create_user(
                username=username, email=email, password=password or None
            )
    except IntegrityError:
        if taken := taken_by_another(username, email):
            raise taken from None
        raise


def taken_by_another(username: str, email: str) -> ValidationError | None:
    """Why the database refused a new account with this name and address: `UsernameTaken`,
    `EmailTaken`, or None when neither is held by another account. Compared as the unique
    indexes compare: UPPER, which `iexact` uses too.

    Asked after the refusal: an index that finds an uncommitted twin waits for it, so the
    account that won is committed, and visible, by then.
    """
    users = get_user_model().objects
    if users.filter(username__iexact=users.model.normalize_username(username)).exists():
        return UsernameTaken()
    if email and users.filter(email__iexact=email).exists():
        return EmailTaken()
    return None


@transaction.atomic
def add_user(actor, username: str, email: str, groups, password: str | None):
    """Create an active user in the given groups; no password means an unusable one."""
    user = create_user(username, email, password)
    for team in groups:
        team.members.add(user)
    record_verified_email(user)
    audit.record(actor, AuditAction.CREATED, user, after=user_snapshot(user))
    return user


def org_admins():
    """Active users who may manage users: members of an Org-admin group, and superusers."""
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(is_superuser=True) | Q(teams__role=Role.ORG_ADMIN))
        .distinct()
    )


@contextmanager
def keeping_an_org_admin() -> Iterator[None]:
    """Run a change that may take Org admins away; refuse it if it would take the last one.

    1. Lock the current Org admins' rows (in id order), so two admins removing each other
       at the same moment run one after the other and the second sees the first's change.
    2. Run the change (the body of the `with`).
    3. Count the Org admins again. Were there some before and none now, raise
       `LastOrgAdmin`: the transaction, and so the change, rolls back.
    """
    with transaction.atomic():
        admin_ids = list(org_admins().values_list("pk", flat=True))
        locked = (
            get_user_model().objects.select_for_update().filter(pk__in=admin_ids).order_by("pk")
        )
        had_admins = bool(list(locked.values_list("pk", flat=True)))
        yield
        if had_admins and not org_admins().exists():
            raise LastOrgAdmin()


@transaction.atomic
def add_member(actor, team: Team, user) -> None:
    """Put a user in a group by hand, audited; a membership SSO had granted becomes manual
    (the next Okta login no longer takes it away)."""
    tracker = audit.ChangeTracker(team)
    team.members.add(user)
    SsoMembership.objects.filter(team=team, user=user).delete()
    tracker.record(actor)


@transaction.atomic
def remove_member(actor, team: Team, user) -> None:
    """Take a user out of a group by hand (an SSO-granted membership too), audited."""
    with keeping_an_org_admin():
        tracker = audit.ChangeTracker(team)
        team.members.remove(user)
        SsoMembership.objects.filter(team=team, user=user).delete()
        tracker.record(actor)


def end_sessions(user) -> int:
    """Delete every stored session that belongs to the user; returns how many."""
    doomed = []
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if session.get_decoded().get("_auth_user_id") == str(user.pk):
            doomed.append(session.session_key)
    Session.objects.filter(session_key__in=doomed).delete()
    return len(doomed)


@transaction.atomic
def deactivate(actor, user) -> int:
    """Deactivate the user, end their sessions and revoke the invitations they sent and
    nobody accepted yet (an invitation grants its groups on the inviter's authority, which
    ends here); `LastOrgAdmin` if they are the last one. Returns the sessions ended."""
    before = user_snapshot(user)
    try:
        with keeping_an_org_admin():
            user.is_active = False
            user.save(update_fields=["is_active"])
    except LastOrgAdmin:
        user.is_active = True
        raise
    ended = end_sessions(user)
    revoked = invitations.revoke_sent_by(actor, user)
    audit.record(
        actor,
        AuditAction.UPDATED,
        user,
        before=before,
        after=user_snapshot(user),
        message=f"Deactivated; {ended} session(s) ended, {revoked} invitation(s) revoked",
    )
    return ended


@transaction.atomic
def reactivate(actor, user) -> None:
    before = user_snapshot(user)
    user.is_active = True
    user.save(update_fields=["is_active"])
    audit.record(
        actor,
        AuditAction.UPDATED,
        user,
        before=before,
        after=user_snapshot(user),
        message="Reactivated",
    )


# The engine (a higher layer) registers here, in its AppConfig.ready, a function that
# returns {user id: live workspaces} for some users; the user pages show it when present.
LIVE_WORKSPACE_COUNTERS: list = []


def active_workspace_counts(users) -> dict[int, int] | None:
    """{user id: live workspaces}, or None when no engine registered a counter."""
    if not LIVE_WORKSPACE_COUNTERS:
        return None
    counts: dict[int, int] = {}
    for counter in LIVE_WORKSPACE_COUNTERS:
        for user_id, n in counter(users).items():
            counts[user_id] = counts.get(user_id, 0) + n
    return counts
