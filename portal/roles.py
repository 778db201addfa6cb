"""The fixed roles and what each may do, in one table.

A user's permissions are the union over the roles of their teams (portal groups). Views and
querysets ask `has_perm(user, area, action)`; nothing else decides access.
"""

from django.db import models


class Role(models.TextChoices):
    ORG_ADMIN = "org_admin", "Org admin"
    OPERATOR = "operator", "Operator"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


class Area(models.TextChoices):
    INFRASTRUCTURE = "infrastructure", "Infrastructure"
    PROFILES = "profiles", "Compute and services profiles"
    POOLS = "pools", "Warm pools"
    WORKSPACES = "workspaces", "All workspaces"
    USERS = "users", "Users and groups"
    AUDIT = "audit", "Audit log"
    SELF_SERVICE = "self_service", "Self-service workspaces"


VIEW = "view"
CHANGE = "change"
USE = "use"

_ADMIN_AREAS = [Area.INFRASTRUCTURE, Area.PROFILES, Area.POOLS, Area.WORKSPACES, Area.AUDIT]

ROLE_PERMISSIONS: dict[str, frozenset[tuple[str, str]]] = {
    Role.ORG_ADMIN: frozenset(
        {(area, action) for area in Area.values for action in (VIEW, CHANGE)}
        | {(Area.SELF_SERVICE, USE)}
    ),
    Role.OPERATOR: frozenset(
        {(area, action) for area in _ADMIN_AREAS for action in (VIEW, CHANGE)}
        - {(Area.AUDIT, CHANGE)}
        | {(Area.SELF_SERVICE, USE)}
    ),
    Role.MEMBER: frozenset({(Area.SELF_SERVICE, USE)}),
    Role.VIEWER: frozenset({(area, VIEW) for area in [*_ADMIN_AREAS, Area.USERS]}),
}

ROLE_DESCRIPTIONS = {
    Role.ORG_ADMIN: "Everything, including users, groups and SSO.",
    Role.OPERATOR: "Infrastructure, profiles, partitioning and pools; no user management.",
    Role.MEMBER: "Self-service workspaces only.",
    Role.VIEWER: "Read-only access to the admin pages.",
}


def permissions_for(user) -> frozenset[tuple[str, str]]:
    """The union of the permissions of the user's teams, cached on the user object."""
    if not user.is_authenticated or not user.is_active:
        return frozenset()
    cached = getattr(user, "_portal_permissions", None)
    if cached is not None:
        return cached
    if user.is_superuser:
        perms = ROLE_PERMISSIONS[Role.ORG_ADMIN]
    else:
        roles = set(user.teams.values_list("role", flat=True))
        perms = frozenset().union(*(ROLE_PERMISSIONS[role] for role in roles))
    user._portal_permissions = perms
    return perms


def has_perm(user, area: str, action: str) -> bool:
    return (area, action) in permissions_for(user)


def is_admin_user(user) -> bool:
    """Whether the user sees the Admin navigation at all (any view permission on an area)."""
    return any(action == VIEW for _, action in permissions_for(user))
