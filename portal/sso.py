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
from portal.models import AuditAction, SsoConfiguration, SsoGroupMapping, SsoMembership, Team

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
    3. SSO-granted groups the claim no longer maps to: leave.
    Returns (joined, left) group names; both are audit-logged on the user.
    """
    target = mapped_teams(groups)
    granted = {m.team: m for m in SsoMembership.objects.filter(user=user).select_related("team")}
    current = set(user.teams.all())
    joined, left = [], []
    for team in sorted(target - current, key=str):
        team.members.add(user)
        SsoMembership.objects.get_or_create(user=user, team=team)
        joined.append(team.name)
    for team, membership in granted.items():
        if team not in target:
            membership.delete()
            team.members.remove(user)
            left.append(team.name)
    if joined or left:
        user._portal_permissions = None
        audit.record(
            None,
            AuditAction.ACTION,
            user,
            before={"groups": sorted(t.name for t in current)},
            after={"groups": sorted(user.teams.values_list("name", flat=True))},
            message=f"SSO login applied group mapping: joined {joined or 'none'}, "
            f"left {left or 'none'}",
        )
    return joined, left


def local_login_allowed(user) -> bool:
    """Whether this user may log in with a password (always, unless local login is off)."""
    config = SsoConfiguration.load()
    if not (config.is_usable and config.local_login_disabled):
        return True
    return user.get_username().lower() in config.break_glass()
