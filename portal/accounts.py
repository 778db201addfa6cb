"""allauth adapters: who may log in how, and what an Okta login does to group memberships.

- Nobody signs up by themselves: accounts are added or invited by administrators, or created
  by a first SSO login whose `groups` claim maps to at least one portal group.
- The SSO app comes from the SsoConfiguration row (`list_apps`), not from a SocialApp row.
- Every SSO login re-applies the group mapping (`pre_social_login` for known users,
  `save_user` for new ones).
- Too many bad passwords answer 429; with local login off, only break-glass admins may use the
  password form.
"""

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.core.ratelimit import respond_429
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.shortcuts import redirect

from portal import audit, invitations, sso
from portal import users as user_actions
from portal.models import AuditAction, SsoConfiguration
from portal.views.users import PENDING_INVITATION_SESSION_KEY

LOCAL_LOGIN_DISABLED_MESSAGE = (
    "Password login is turned off for this portal. Use “Log in with {name}” instead."
)


class PortalAccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        # Accounts are added or invited by administrators, never self-registered.
        return False

    def pre_authenticate(self, request, **credentials) -> None:
        config = SsoConfiguration.load()
        if (
            config.is_usable
            and config.local_login_disabled
            and not _is_break_glass(config, credentials)
        ):
            # Refused before the password is checked, so the answer reveals nothing about it.
            raise ValidationError(LOCAL_LOGIN_DISABLED_MESSAGE.format(name=config.display_name))
        try:
            super().pre_authenticate(request, **credentials)
        except ValidationError:
            # allauth's "login_failed" rate limit: answer 429 Too Many Requests, not a form.
            raise ImmediateHttpResponse(respond_429(request)) from None


def _is_break_glass(config: SsoConfiguration, credentials: dict) -> bool:
    allowed = config.break_glass()
    if not allowed:
        return False
    if username := credentials.get("username"):
        return username.lower() in allowed
    if email := credentials.get("email"):
        names = (
            get_user_model().objects.filter(email__iexact=email).values_list("username", flat=True)
        )
        return any(name.lower() in allowed for name in names)
    return False


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

    def pre_social_login(self, request, sociallogin) -> None:
        if sociallogin.is_existing and sociallogin.user.is_active:
            _after_sso_login(request, sociallogin)

    def save_user(self, request, sociallogin, form=None):
        user = super().save_user(request, sociallogin, form)
        audit.record(
            None,
            AuditAction.CREATED,
            user,
            after=user_actions.user_snapshot(user),
            message="Created by first SSO login",
        )
        _after_sso_login(request, sociallogin)
        return user


def _after_sso_login(request, sociallogin) -> None:
    user = sociallogin.user
    sso.apply_group_mapping(user, sso.claimed_groups(sociallogin.account.extra_data))
    if invitation := _pending_invitation(request, sociallogin):
        request.session.pop(_session_key(), None)
        if invitations.accept(invitation, user):
            messages.success(request, "Welcome! Your invitation has been accepted.")


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
