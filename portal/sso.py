"""Okta single sign-on: the allauth app built from SsoConfiguration, and the group mapping.

allauth's `openid_connect` provider does the protocol (discovery from the issuer URL, code
flow, ID token checks). This module only answers two questions:

1. Which app is configured? `social_app()` builds an unsaved SocialApp (provider_id "okta")
   from the SsoConfiguration row, so no SocialApp row or settings entry is needed.
2. Which portal groups does this login grant? `apply_group_mapping()` sets the user's
   SSO-granted memberships to exactly the groups the `groups` claim maps to. Memberships added
   by hand are never touched.
"""

from django.db import transaction

from portal import audit
from portal import users as user_actions
from portal.models import AuditAction, SsoConfiguration, SsoGroupMapping, SsoMembership, Team
from portal.roles import CHANGE, Area, has_perm

PROVIDER = "openid_connect"
PROVIDER_ID = "okta"


def social_app(config: SsoConfiguration | None = None):
    """The allauth SocialApp for the SSO configuration, or None when SSO is off."""
    from allauth.socialaccount.models import SocialApp

    config = config or SsoConfiguration.load()
    if not config.is_usable:
        return None
    return SocialApp(
        provider=PROVIDER,
        provider_id=PROVIDER_ID,
        name=config.display_name or "Okta",
        client_id=config.client_id,
        secret=config.client_secret,
        settings={"server_url": config.issuer.rstrip("/"), "scope": config.scopes.split()},
    )


def claimed_groups(extra_data: dict) -> list[str]:
    """The `groups` claim: from userinfo when fetched, else from the ID token."""
    for source in ("userinfo", "id_token"):
        groups = (extra_data.get(source) or {}).get("groups")
        if groups is not None:
            if isinstance(groups, str):
                return [groups]
            return [str(group) for group in groups]
    return []


def mapped_teams(groups: list[str]) -> set[Team]:
    wanted = set(groups)
    return {m.team for m in SsoGroupMapping.objects.select_related("team") if m.sso_group in wanted}


@transaction.atomic
def apply_group_mapping(user, groups: list[str]) -> tuple[list[str], list[str]]:
    """Make the user's SSO-granted memberships exactly the mapped groups.

    1. Groups the claim maps to that the user is not in: join, remembered as SSO-granted.
    2. Groups the claim maps to that the user joined by hand: left as they are (manual).
    3. SSO-granted groups the claim no longer maps to: leave, unless that would take away
       the portal's last Org admin (then the membership stays, and the audit entry says so).
    Returns (joined, left) group names; both are audit-logged on the user.
    """
    target = mapped_teams(groups)
    granted = {m.team: m for m in SsoMembership.objects.filter(user=user).select_related("team")}
    current = set(user.teams.all())
    joined, left, kept = [], [], []
    for team in sorted(target - current, key=str):
        team.members.add(user)
        SsoMembership.objects.get_or_create(user=user, team=team)
        joined.append(team.name)
    for team, membership in granted.items():
        if team not in target:
            try:
                with user_actions.keeping_an_org_admin():
                    membership.delete()
                    team.members.remove(user)
            except user_actions.LastOrgAdmin:
                kept.append(team.name)
            else:
                left.append(team.name)
    if joined or left or kept:
        user._portal_permissions = None
        note = f"; kept {kept}: the portal's last Org admin" if kept else ""
        audit.record(
            None,
            AuditAction.ACTION,
            user,
            before={"groups": sorted(t.name for t in current)},
            after={"groups": sorted(user.teams.values_list("name", flat=True))},
            message=f"SSO login applied group mapping: joined {joined or 'none'}, "
            f"left {left or 'none'}{note}",
        )
    return joined, left


def is_break_glass(user, config: SsoConfiguration | None = None) -> bool:
    """Named on the break-glass list and an active Org admin (a demoted admin is not)."""
    config = config or SsoConfiguration.load()
    return user.get_username().lower() in config.break_glass() and has_perm(
        user, Area.USERS, CHANGE
    )


def local_login_allowed(user) -> bool:
    """Whether this user may log in with a password (always, unless local login is off)."""
    config = SsoConfiguration.load()
    if not (config.is_usable and config.local_login_disabled):
        return True
    return is_break_glass(user, config)


def record_link(sender, instance, created: bool, **kwargs) -> None:
    """Audit every Okta account linked to a local account (`post_save` of SocialAccount):
    a first SSO login, an Okta login matched by a verified address, or a user connecting
    their own Okta account. The entry is on the local user, whose account it opens."""
    if not created:
        return
    audit.record(
        instance.user,
        AuditAction.ACTION,
        instance.user,
        after={"sso_provider": instance.provider, "sso_uid": instance.uid},
        message=f"SSO account {instance.uid} ({instance.provider}) linked to this account",
    )


def record_unlink(sender, instance, **kwargs) -> None:
    """Audit an Okta account unlinked from a local account (`post_delete`)."""
    audit.record(
        None,
        AuditAction.ACTION,
        instance.user,
        before={"sso_provider": instance.provider, "sso_uid": instance.uid},
        message=f"SSO account {instance.uid} ({instance.provider}) unlinked from this account",
    )
