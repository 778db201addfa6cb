"""The roles both permission matrices (pages and API) ask every URL or operation as, and
the users who play them (`people`, a fixture both import)."""

import pytest
from django.contrib.auth import get_user_model

from portal.models import Team
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


@pytest.fixture
def people(db) -> dict:
    """A user per signed-in role, each in a group of that role."""
    people = {}
    for role in ROLES[1:]:
        user = get_user_model().objects.create(username=role, email=f"{role}@example.com")
        group_name = "other members" if role == OTHER else f"{role} group"
        team, _ = Team.objects.get_or_create(name=group_name, defaults={"role": ROLE_OF[role]})
        team.members.add(user)
        people[role] = user
    return people
