"""allauth adapters: who may log in how, and what an Okta login does to group memberships.

- Nobody signs up by themselves: accounts are added or invited by administrators, or created
  by a first SSO login whose `groups` claim maps to at least one portal group.
- The SSO app comes from the SsoConfiguration row (`list_apps`), not from a SocialApp row.
- Every SSO login re-applies the group mapping (`pre_social_login` for known users,
  `save_user` for new ones). While groups are mapped, a login without a groups claim is
  refused with the reason: applying "no groups" would strip every SSO-granted membership.
- Every failed SSO login is a page with the reason and the way back, logged and audited
  (`on_authentication_error`, and `portal.views.sso` for what allauth lets through).
- A user who may open nothing after logging in lands on the "ask your administrator" page.
- An Okta login signs into an existing, active account only through an address both Okta
  and the portal hold as verified (`authenticate_by_email`); addresses are compared as
  allauth compares a login's (`_holding`); every link is audited (`sso.py`).
- Connecting an Okta account to the logged-in user is not a login: it applies no mapping.
- Too many bad passwords answer 429 (counted per client address, `client_ip`, and per login);
  a browser this very account logged in from before, with its current password, counts its
  attempts on a login of its own, one per browser, so failures from elsewhere cannot lock
  the owner out (`trusted_browser`). With
  local login off, only break-glass admins (active Org admins on the list) may use the
  password form, by username or by email, and every refusal reads and counts the same
  (`authenticate`).
- A username is stored NFKC-normalised and unique ignoring case, an Okta login's too
  (`populate_user`, and `generate_unique_username` when allauth makes one up); a first Okta
  login that loses a race for its username or its address gets a page that says so, never
  a 500 (`save_user`).
- Every password change, first password and reset is audited (`set_password`).
"""

import secrets
from datetime import timedelta
from http import HTTPStatus
from typing import NamedTuple

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.models import EmailAddress
from allauth.account.utils import filter_users_by_email, user_username
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.core.ratelimit import respond_429
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.providers.base import AuthProcess
from allauth.utils import generate_username_candidates
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.crypto import constant_time_compare, salted_hmac

from portal import audit, invitations, sso
from portal import users as user_actions
from portal.middleware import client_ip
from portal.models import AuditAction, SsoConfiguration
from portal.roles import permissions_for
from portal.views.sso import failure_page
from portal.views.users import PENDING_INVITATION_SESSION_KEY

LOCAL_LOGIN_DISABLED_MESSAGE = (
    "Password login is turned off for this portal. Use “Log in with {name}” instead. "
    "(A break-glass administrator sees this too when the username or password is wrong.)"
)

# Set on every login, signed: "this browser (a random id) logged in as user N with their
# current password". See `trusted_browser`.
TRUSTED_BROWSER_COOKIE = "portal_trusted_browser"
TRUSTED_BROWSER_SALT = "portal.accounts.trusted-browser"
TRUSTED_BROWSER_AGE = timedelta(days=180)


class PortalAccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        # Accounts are added or invited by administrators, never self-registered.
        return False

    def pre_authenticate(self, request, **credentials) -> None:
        try:
            super().pre_authenticate(request, **credentials)
        except ValidationError:
            # allauth's "login_failed" rate limit: answer 429 Too Many Requests, not a form.
            raise ImmediateHttpResponse(respond_429(request)) from None

    def authenticate(self, request, **credentials):
        """allauth's password check; while password login is off, only break-glass admins pass.

        Every login is then checked and answered alike, so neither the answer, nor its time,
        nor the throttle tells an anonymous visitor who the break-glass admins are:
        1. The password is checked whoever the login names; allauth counts the attempt in its
           "login_failed" throttle and takes it back when the password is right.
        2. A wrong password and a login that may not use a password get the same refusal.
        3. A right password of an account that may not use it is counted again, as a wrong
           one is: else the throttle would tell which guess was right.
        """
        config = SsoConfiguration.load()
        if not (config.is_usable and config.local_login_disabled):
            return super().authenticate(request, **credentials)
        allowed = _is_break_glass(config, credentials)
        user = super().authenticate(request, **credentials)
        if user is not None and not allowed:
            self.pre_authenticate(request, **credentials)
        if user is None or not allowed:
            raise ValidationError(LOCAL_LOGIN_DISABLED_MESSAGE.format(name=config.display_name))
        return user

    @transaction.atomic
    def set_password(self, user, password: str) -> None:
        """Every password change, first password and reset: allauth's flows all come here,
        so each one is audited (never the password itself)."""
        had_password = user.has_usable_password()
        super().set_password(user, password)
        message = "Password changed" if had_password else "Password set"
        audit.record(user, AuditAction.UPDATED, user, message=message)

    def _get_login_attempts_cache_key(self, request, **credentials) -> str:
        """The login the per-login throttle ("5/5m/key") counts attempts against.

        Counted per login alone, failures from anywhere lock the account's owner out too:
        anyone could keep a break-glass admin out by failing with their name. A browser that
        this very account logged in from before (`trusted_browser`) counts on a login of its
        own instead, one per browser, so the owner's browser gets in while strangers, and
        other browsers that once logged in as the owner, are throttled. A guesser gains
        nothing: without that browser's cookie every attempt counts on the shared login as
        before, and the per-address throttle holds for every browser. Each bucket is a cache
        entry that expires with the throttle's window, so the buckets do not pile up.

        A password reset clears the shared login's bucket (allauth, as it intends): the
        password changed, so the resetting browser's cookie no longer counts as trusted.
        """
        key = super()._get_login_attempts_cache_key(request, **credentials)
        browser = trusted_browser(request)
        login = credentials.get("email", credentials.get("username", "")).lower()
        if browser and login in {browser.user.get_username().lower(), browser.user.email.lower()}:
            return f"{key}:trusted-browser:{browser.browser_id}"
        return key

    def post_login(self, request, user, **kwargs):
        """Every login (password or Okta) marks the browser, under a new random id, as this
        account's own while its password stays as it is."""
        response = super().post_login(request, user, **kwargs)
        browser_id = secrets.token_urlsafe(16)
        response.set_signed_cookie(
            TRUSTED_BROWSER_COOKIE,
            f"{user.pk}:{browser_id}:{_password_proof(user)}",
            salt=TRUSTED_BROWSER_SALT,
            max_age=int(TRUSTED_BROWSER_AGE.total_seconds()),
            secure=settings.SESSION_COOKIE_SECURE,
            httponly=True,
            samesite="Lax",
        )
        return response

    def generate_unique_username(self, txts, regex=None) -> str:
        """The username allauth makes up for a first Okta login whose own is taken: allauth's
        choice, unless the database's rule (portal 0009: UPPER(username), which `iexact`
        compares too) takes it for an existing name; then the first of allauth's suffixed
        candidates that rule lets through.

        allauth compares the names it found in Python's lower case, where "ıda" (a dotless
        ı) and "ida" differ; UPPER makes both "IDA", so the database would refuse its choice
        at every login.
        """
        username = super().generate_unique_username(txts, regex)
        users = get_user_model().objects
        for candidate in generate_username_candidates(username):
            if users.filter(username__iexact=candidate).exists():
                continue
            try:
                return self.clean_username(candidate, shallow=True)
            except ValidationError:  # a suffixed candidate may break a rule: the next
                continue
        raise NotImplementedError("Unable to find a unique username")  # as allauth's own

    def get_client_ip(self, request) -> str:
        """The address the per-IP login throttle counts: the client's, not a proxy's."""
        return client_ip(request)

    def get_login_redirect_url(self, request) -> str:
        """Where a login without a `next` lands: the "ask your administrator" page for a
        user who may open nothing (e.g. their Okta groups no longer map), else home."""
        if request.user.is_authenticated and not permissions_for(request.user):
            return reverse("portal:sso_no_access")
        return super().get_login_redirect_url(request)


class TrustedBrowser(NamedTuple):
    user: AbstractBaseUser
    browser_id: str


def trusted_browser(request) -> TrustedBrowser | None:
    """The active account this browser logged in as within `TRUSTED_BROWSER_AGE`, with the
    browser's id, or None (OWASP's "device cookie" against lockout attacks).

    The cookie is signed with SECRET_KEY, so only a login can set it: a forged, altered or
    expired one counts as none. It carries a proof of the password it was earned with, as
    Django's sessions do: once the password changes (someone else may have learned it), the
    browser is a stranger until it logs in again.
    """
    value = request.get_signed_cookie(
        TRUSTED_BROWSER_COOKIE,
        default=None,
        salt=TRUSTED_BROWSER_SALT,
        max_age=TRUSTED_BROWSER_AGE.total_seconds(),
    )
    parts = (value or "").split(":")
    if len(parts) != 3 or not parts[0].isdigit():
        return None
    pk, browser_id, proof = parts
    user = get_user_model().objects.filter(pk=pk, is_active=True).first()
    if user is None or not constant_time_compare(proof, _password_proof(user)):
        return None
    return TrustedBrowser(user, browser_id)


def _password_proof(user) -> str:
    """Derived from the account's password hash, and changing with it: an HMAC of
    `get_session_auth_hash()`, so the cookie never carries the session's own value."""
    return salted_hmac(TRUSTED_BROWSER_SALT, user.get_session_auth_hash()).hexdigest()


def _is_break_glass(config: SsoConfiguration, credentials: dict) -> bool:
    """Whether every account these credentials could log in to is a break-glass admin.

    allauth sends the login as `username`, and also as `email` when it looks like one; the
    password is then tried on each account either names. So all of them must be allowed:
    otherwise a Member whose address equals an admin's could log in with a password.
    """
    if not config.break_glass():
        return False
    users = get_user_model().objects
    candidates = set()
    if username := credentials.get("username"):
        candidates |= set(users.filter(username__iexact=username))
    if email := credentials.get("email"):
        candidates |= set(_holding(users.all(), email))
        candidates |= set(filter_users_by_email(email))
    return bool(candidates) and all(sso.is_break_glass(user, config) for user in candidates)


class PortalSocialAccountAdapter(DefaultSocialAccountAdapter):
    def list_apps(self, request, provider=None, client_id=None):
        apps = super().list_apps(request, provider=provider, client_id=client_id)
        app = sso.social_app()
        if app is None:
            return apps
        if provider not in (None, sso.PROVIDER, sso.PROVIDER_ID):
            return apps
        if client_id not in (None, app.client_id):
            return apps
        return [*apps, app]

    def is_open_for_signup(self, request, sociallogin) -> bool:
        """A new SSO user gets an account only if a mapped group or an invitation lets them in."""
        groups = sso.claimed_groups(sociallogin.account.extra_data)
        if sso.mapped_teams(groups) or _pending_invitation(request, sociallogin):
            return True
        raise ImmediateHttpResponse(redirect("portal:sso_no_access"))

    def authenticate_by_email(self, sociallogin):
        """The local account an Okta login may sign into by its address, or None.

        Only an address verified on both sides counts: Okta says it verified it, and the
        portal has it as a verified address of exactly one account (an administrator added
        the user or sent the invitation, or an earlier SSO login brought it). A bare
        `User.email` (e.g. from `createsuperuser`) never matches, so an Okta login can
        never land in an account that nobody vouched belongs to that person.
        """
        for address in sociallogin.email_addresses:
            if not address.verified or not self.can_authenticate_by_email(
                sociallogin, address.email
            ):
                continue
            verified = EmailAddress.objects.filter(verified=True).select_related("user")
            owners = {found.user for found in _holding(verified, address.email)}
            if len(owners) == 1:
                return owners.pop(), address.email
        return None

    def on_authentication_error(
        self, request, provider, error=None, exception=None, extra_context=None
    ) -> None:
        """Every failure allauth reports (Okta unreachable, client secret refused, state
        mismatch, Okta's own error, a token that does not verify): a page saying why."""
        state_found = bool((extra_context or {}).get("state"))
        failure = sso.describe_failure(error, exception, request.GET, state_found)
        raise ImmediateHttpResponse(failure_page(request, failure))

    def pre_social_login(self, request, sociallogin) -> None:
        if sociallogin.state.get("process") == AuthProcess.CONNECT:
            # Linking an Okta account to the logged-in user is not a login: it grants and
            # takes away nothing (a connect may carry no groups claim at all). allauth
            # refuses an Okta account that is linked to someone else.
            return
        if sso.missing_groups_claim(sociallogin.account.extra_data):
            who = (
                sociallogin.user.get_username()
                if sociallogin.is_existing
                else f"Okta user {sociallogin.account.uid}"
            )
            raise ImmediateHttpResponse(failure_page(request, sso.no_groups_claim(who), who))
        if sociallogin.is_existing and not sociallogin.user.is_active:
            # Refused here, before allauth links the Okta account to an account matched by
            # its address (and wipes its password): a deactivated account gets neither.
            raise ImmediateHttpResponse(redirect("account_inactive"))
        if sociallogin.is_existing:
            _after_sso_login(request, sociallogin)
        elif _address_taken(sociallogin):
            # A local account has this address but nobody verified it: neither sign into
            # that account nor make a second one with the same address.
            raise ImmediateHttpResponse(
                render(request, "portal/sso_address_unverified.html", status=403)
            )

    def populate_user(self, request, sociallogin, data):
        """As allauth fills it in from the claims, with the username stored as the forms
        store it: NFKC-normalised, so Okta's "ＯＬＧＡ" is "OLGA" and allauth's
        case-insensitive check (and the database's index) take it for "olga"'s twin."""
        user = super().populate_user(request, sociallogin, data)
        user_username(user, user.normalize_username(user_username(user) or ""))
        return user

    def save_user(self, request, sociallogin, form=None):
        # allauth checked the username is free (else it made another one up), but a login
        # at the same moment may have taken it since: the database refuses the second.
        try:
            with transaction.atomic():
                user = super().save_user(request, sociallogin, form)
        except IntegrityError:
            who, email = user_username(sociallogin.user), sociallogin.user.email
            taken = user_actions.taken_by_another(who, email)
            if taken is None:
                raise
            failure = _created_meanwhile(who, email, taken)
            raise ImmediateHttpResponse(failure_page(request, failure, who)) from None
        audit.record(
            None,
            AuditAction.CREATED,
            user,
            after=user_actions.user_snapshot(user),
            message="Created by first SSO login",
        )
        _after_sso_login(request, sociallogin)
        return user


def _created_meanwhile(username: str, email: str, taken: ValidationError) -> sso.LoginFailure:
    """The page of a first Okta login whose username or address another account took
    after allauth checked it."""
    if isinstance(taken, user_actions.UsernameTaken):
        return sso.LoginFailure(
            "username_taken",
            "Username taken at the same moment",
            f"Another sign-in created an account named “{username}” (or one differing only "
            "in case) at the same moment as yours, so no account was made for you. Log in "
            "again: the portal will then find your account, or give you another username.",
            detail=f"username {username!r} taken by a concurrent sign-in",
            status=HTTPStatus.CONFLICT,
        )
    return sso.LoginFailure(
        "email_taken",
        "Email address taken at the same moment",
        f"Another account with your address {email} was created at the same moment as "
        "yours, so no account was made for you. Log in again: the portal will then sign you "
        "in to that account if an administrator vouched for the address, or say why not.",
        detail=f"email {email!r} taken by an account created at the same moment",
        status=HTTPStatus.CONFLICT,
    )


def _after_sso_login(request, sociallogin) -> None:
    user = sociallogin.user
    sso.apply_group_mapping(user, sso.claimed_groups(sociallogin.account.extra_data))
    if invitation := _pending_invitation(request, sociallogin):
        request.session.pop(_session_key(), None)
        if invitations.accept(invitation, user):
            messages.success(request, "Welcome! Your invitation has been accepted.")


def _address_taken(sociallogin) -> bool:
    """Whether a local account already uses one of the login's addresses."""
    users = get_user_model().objects.all()
    for address in sociallogin.email_addresses:
        if _holding(users, address.email) or filter_users_by_email(address.email):
            return True
    return False


def _holding(rows: QuerySet, address: str) -> list:
    """The rows (users or allauth's EmailAddress) whose `email` is this address, compared as
    allauth compares a login's: equal once lowercased.

    The database only narrows the search: PostgreSQL runs `iexact` as UPPER(a) = UPPER(b),
    and UPPER('ı') is 'I', so it takes alice@gmaıl.com (a dotless ı: another domain, another
    mailbox) for alice@gmail.com.
    """
    return [
        row for row in rows.filter(email__iexact=address) if row.email.lower() == address.lower()
    ]


def _session_key() -> str:

    return PENDING_INVITATION_SESSION_KEY


def _pending_invitation(request, sociallogin):
    """The invitation the SSO login started from, if its email is one Okta verified."""
    pending = request.session.get(_session_key()) if request else None
    if not pending:
        return None
    invitation, problem = invitations.check_link(*pending)
    if problem:
        return None
    verified = {e.email.lower() for e in sociallogin.email_addresses if e.verified}
    if invitation.email.lower() not in verified:
        messages.error(
            request,
            f"The invitation was for {invitation.email}, but Okta signed you in with another "
            "address. Ask your administrator to invite the address you use with Okta.",
        )
        return None
    return invitation
