"""The roles both permission matrices (pages and API) ask every URL or operation as."""

from portal.roles import Role

ANON, MEMBER, OTHER, VIEWER, OPERATOR, ADMIN = (
    "anonymous",
    "member",
    "other_member",
    "viewer",
    "operator",
    "org_admin",
)
ROLES = [ANON, MEMBER, OTHER, VIEWER, OPERATOR, ADMIN]
# The portal role each signed-in matrix user gets through a group (OTHER is a second member
# who must not see the first one's workspaces).
ROLE_OF = {
    MEMBER: Role.MEMBER,
    OTHER: Role.MEMBER,
    VIEWER: Role.VIEWER,
    OPERATOR: Role.OPERATOR,
    ADMIN: Role.ORG_ADMIN,
}
