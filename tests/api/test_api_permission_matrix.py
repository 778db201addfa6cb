# The people fixture is imported from tests/matrix_roles.py, so arguments "redefine" it.
# ruff: noqa: F811
"""Every API operation × every role → the expected status (the pages' matrix,
`tests/test_permission_matrix.py`, for the REST API).

The operations come from the live OpenAPI schema; each must have an entry in `EXPECTED`, so
a new operation cannot be forgotten. A role whose permissions (`portal.roles`) include one
of the rule's gets `ok`; anonymous gets 401; other roles 403, unless `overrides` says
otherwise (404 for another member's workspace). `ok` is what the operation answers the
empty or minimal body sent here: 400 for a create (the form's messages), 428 for an update
without If-Match; either way past the permission check. Each role's request runs on fresh
objects in a transaction rolled back afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client

from api.urls import router
from pools.lifecycle import State
from pools.models import PoolSchedule, Workspace
from portal import audit, invitations
from portal.models import Team
from portal.roles import CHANGE, ROLE_PERMISSIONS, USE, VIEW, Area
from profiles.choices import InfrastructureKind
from profiles.models import ComputeProfile, Infrastructure, PartitioningStrategy, ServicesProfile
from services.models import ServiceDeployment
from services.tasks import create_deployment
from tests.api.conftest import ApiClient
from tests.matrix_roles import (
    ADMIN,
    ANON,
    MEMBER,
    OTHER,
    ROLE_OF,
    ROLES,
    people,  # noqa: F401 (a fixture)
)

OK, CREATED, ACCEPTED, NO_CONTENT = 200, 201, 202, 204
BAD, FORBIDDEN, NOT_FOUND, CONFLICT, NEEDS_IF_MATCH = 400, 403, 404, 409, 428


@dataclass(frozen=True)
class Rule:
    perms: tuple[tuple[str, str], ...]
    ok: int = OK
    body: dict | None = None
    overrides: dict[str, int] = field(default_factory=dict)

    def expected(self, role: str) -> int:
        if role in self.overrides:
            return self.overrides[role]
        if role == ANON:
            return HTTPStatus.UNAUTHORIZED
        granted = ROLE_PERMISSIONS[ROLE_OF[role]]
        return self.ok if any(p in granted for p in self.perms) else FORBIDDEN


def view(area: str, **kw) -> Rule:
    return Rule(((area, VIEW),), **kw)


def change(area: str, ok: int = OK, **kw) -> Rule:
    return Rule(((area, CHANGE),), ok=ok, **kw)


def catalog(prefix: str, area: str) -> dict[str, Rule]:
    """List, read, create, update, delete of a resource backed by the catalog pages."""
    return {
        f"{prefix}_list": view(area),
        f"{prefix}_retrieve": view(area),
        f"{prefix}_create": change(area, BAD),
        f"{prefix}_partial_update": change(area, NEEDS_IF_MATCH),
        f"{prefix}_destroy": change(area, NO_CONTENT),
    }


# Workspaces: administrators of the Workspaces area, or their owner with self-service.
_WS_VIEW = ((Area.WORKSPACES, VIEW), (Area.SELF_SERVICE, USE))
_WS_CHANGE = ((Area.WORKSPACES, CHANGE), (Area.SELF_SERVICE, USE))
_NOT_YOURS = {OTHER: NOT_FOUND}

EXPECTED: dict[str, Rule] = {
    **catalog("infrastructure", Area.INFRASTRUCTURE),
    "infrastructure_check_create": change(Area.INFRASTRUCTURE, ACCEPTED),
    **catalog("compute_profiles", Area.PROFILES),
    **catalog("services_profiles", Area.PROFILES),
    "services_profiles_clone_create": change(Area.PROFILES, CREATED),
    **catalog("partitioning", Area.PROFILES),
    # local infrastructure: applying is refused (Kubernetes only) after the permission check
    "partitioning_apply_create": change(Area.PROFILES, CONFLICT),
    "partitioning_refresh_create": change(Area.PROFILES, ACCEPTED),
    "partitioning_drain_create": change(Area.PROFILES, body={"node": "gpu-1", "draining": True}),
    "partitioning_validate_layout_create": view(
        Area.PROFILES, body={"gpu_model": "A100-40GB", "counts": {"7g.40gb": 1}}
    ),
    "pools_list": view(Area.POOLS),
    "pools_retrieve": view(Area.POOLS),
    "pools_decisions_list": view(Area.POOLS),
    "pools_pause_create": change(Area.POOLS),
    "pools_resume_create": change(Area.POOLS),
    **catalog("pools_schedules", Area.POOLS),
    "workspaces_list": Rule(_WS_VIEW),
    "workspaces_create": Rule(((Area.SELF_SERVICE, USE),), ok=BAD),
    "workspaces_retrieve": Rule(_WS_VIEW, overrides=_NOT_YOURS),
    "workspaces_events_list": Rule(_WS_VIEW, overrides=_NOT_YOURS),
    "workspaces_services_list": Rule(_WS_VIEW, overrides=_NOT_YOURS),
    "workspaces_secret_create": Rule(_WS_VIEW, overrides=_NOT_YOURS),
    "workspaces_destroy": Rule(_WS_CHANGE, ok=ACCEPTED, overrides=_NOT_YOURS),
    "workspaces_stop_create": Rule(_WS_CHANGE, ok=ACCEPTED, overrides=_NOT_YOURS),
    # the workspace is ready, not stopped: past the permission check, refused by its state
    "workspaces_start_create": Rule(_WS_CHANGE, ok=CONFLICT, overrides=_NOT_YOURS),
    "workspaces_services_create": Rule(_WS_CHANGE, ok=BAD, overrides=_NOT_YOURS),
    "workspaces_services_redeploy_create": Rule(_WS_CHANGE, ok=ACCEPTED, overrides=_NOT_YOURS),
    "workspaces_services_remove_create": Rule(_WS_CHANGE, ok=ACCEPTED, overrides=_NOT_YOURS),
    "users_list": view(Area.USERS),
    "users_retrieve": view(Area.USERS),
    "users_create": change(Area.USERS, BAD),
    "users_deactivate_create": change(Area.USERS),
    "users_reactivate_create": change(Area.USERS),
    **catalog("groups", Area.USERS),
    "groups_members_create": change(Area.USERS, BAD),  # no user named: the form's message
    "groups_members_destroy": change(Area.USERS),
    "invitations_list": view(Area.USERS),
    "invitations_retrieve": view(Area.USERS),
    "invitations_create": change(Area.USERS, BAD),
    "invitations_resend_create": change(Area.USERS),
    "invitations_revoke_create": change(Area.USERS),
    "audit_list": view(Area.AUDIT),
    "audit_retrieve": view(Area.AUDIT),
}


# -- objects for paths with ids -----------------------------------------------------------------

User = get_user_model()


def _infrastructure() -> Infrastructure:
    return Infrastructure.objects.create(name="Matrix", kind=InfrastructureKind.LOCAL)


def _profile() -> ComputeProfile:
    profile = ComputeProfile.objects.create(
        name="Matrix profile", infrastructure=_infrastructure(), published=True
    )
    profile.resource_groups.create(position=0)
    return profile


def _workspace(people) -> int:
    profile = _profile()
    return Workspace.objects.create(
        owner=people[MEMBER],
        profile=profile,
        infrastructure=profile.infrastructure,
        state=State.READY,
    ).pk


def _schedule(people) -> int:
    profile = _profile()
    ComputeProfile.objects.filter(pk=profile.pk).update(
        allocation_strategy="warm_pool", desired_capacity=2
    )
    return PoolSchedule.objects.create(profile=profile, weekdays=[5, 6], desired_capacity=1).pk


def _service_deployment(people) -> dict:
    workspace = Workspace.objects.get(pk=_workspace(people))
    deployment = create_deployment(
        workspace, ServicesProfile.objects.get(slug="jobs"), workspace=workspace
    )
    ServiceDeployment.objects.filter(pk=deployment.pk).update(state=State.FAILED)
    return {"id": workspace.pk, "deployment_pk": deployment.pk}


def _group_with_member(people) -> dict:
    team = Team.objects.create(name="Target group")
    team.members.add(User.objects.create(username="target"))
    return {"id": team.pk, "user_pk": team.members.get().pk}


FACTORIES: dict[str, Callable[[dict], int | dict]] = {
    "groups_members_destroy": _group_with_member,
    "workspaces_services_redeploy": _service_deployment,
    "workspaces_services_remove": _service_deployment,
    "infrastructure": lambda people: _infrastructure().pk,
    "compute_profiles": lambda people: _profile().pk,
    "services_profiles": lambda people: ServicesProfile.objects.create(name="Plain").pk,
    "partitioning": lambda people: (
        PartitioningStrategy.objects.create(
            infrastructure=_infrastructure(), gpu_model="A100-40GB", nodes="gpu-1"
        ).pk
    ),
    "pools": lambda people: _profile().pk,
    "pools_schedules": _schedule,
    "workspaces": _workspace,
    "users_reactivate": lambda people: User.objects.create(username="gone", is_active=False).pk,
    "users": lambda people: User.objects.create(username="target").pk,
    "groups": lambda people: Team.objects.create(name="Target group").pk,
    "invitations": lambda people: invitations.invite(people[ADMIN], "x@example.com", []).pk,
    "audit": lambda people: audit.record_created(people[ADMIN], _infrastructure()).pk,
}


def _factory(operation_id: str) -> Callable[[dict], int | dict]:
    candidates = [name for name in FACTORIES if operation_id.startswith(name)]
    return FACTORIES[max(candidates, key=len)]


# -- the schema and the people ------------------------------------------------------------------

_OPERATIONS: dict[str, tuple[str, str]] = {}


def operations() -> dict[str, tuple[str, str]]:
    """operationId → (method, path template), read once from the live schema."""
    if not _OPERATIONS:
        client = Client()
        client.force_login(User.objects.create(username="schema-reader"))
        schema = client.get("/api/schema/?format=json").json()
        for path, methods in schema["paths"].items():
            for method, operation in methods.items():
                _OPERATIONS[operation["operationId"]] = (method, path)
    return _OPERATIONS


@pytest.fixture
def clients(people, token_for) -> dict[str, ApiClient]:
    return {ANON: ApiClient()} | {role: ApiClient(token_for(people[role])) for role in ROLES[1:]}


@pytest.mark.django_db
def test_every_operation_has_an_expectation_and_no_stale_ones():
    found = set(operations())
    assert not found - set(EXPECTED), "add these API operations to EXPECTED"
    assert not set(EXPECTED) - found, "EXPECTED lists operations that no longer exist"


@pytest.mark.parametrize("operation_id", sorted(EXPECTED))
def test_api_permission_matrix(operation_id: str, people, clients):
    method, template = operations()[operation_id]
    rule = EXPECTED[operation_id]
    wrong = []
    for role in ROLES:
        with transaction.atomic():
            path = template
            if "{" in template:
                made = _factory(operation_id)(people)
                if not isinstance(made, dict):  # the one id of the path, whatever its name
                    made = {template[template.index("{") + 1 : template.index("}")]: made}
                for name, value in made.items():
                    path = path.replace(f"{{{name}}}", str(value))
            client = clients[role]
            if method == "get":
                response = client.get(path)
            else:
                response = getattr(client, method)(path, rule.body or {})
            transaction.set_rollback(True)
        if response.status_code != rule.expected(role):
            wrong.append(f"{role}: expected {rule.expected(role)}, got {response.status_code}")
    assert not wrong, f"{method.upper()} {template} ({operation_id}):\n  " + "\n  ".join(wrong)


# -- a non-numeric id ---------------------------------------------------------------------------


def _router_paths_with_a_non_numeric_id() -> list[tuple[str, str]]:
    """(method, path) of every route the API's router registers with an id, "abc" for each
    id: a viewset added later is walked too."""
    found = []
    for route in router.urls:
        template = str(route.pattern)
        if "<" in template:
            path = "/api/v1/" + re.sub(r"<[^>]+>", "abc", template)
            found += [(method, path) for method in route.callback.actions]
    return found


@pytest.mark.parametrize("method,path", _router_paths_with_a_non_numeric_id())
def test_a_non_numeric_id_in_any_api_path_is_a_problem_not_a_server_error(
    method: str, path: str, clients
):
    for role, client in clients.items():
        response = getattr(client, method)(path)

        assert response.status_code < HTTPStatus.INTERNAL_SERVER_ERROR, role
        assert response["Content-Type"] == "application/problem+json", role


@pytest.mark.parametrize(
    "role,method,path",
    [
        (MEMBER, "get", "/api/v1/workspaces/abc/"),
        (MEMBER, "get", "/api/v1/workspaces/abc/events/"),
        (MEMBER, "get", "/api/v1/workspaces/abc/services/"),
        (MEMBER, "post", "/api/v1/workspaces/abc/stop/"),
        (MEMBER, "post", "/api/v1/workspaces/abc/start/"),
        (MEMBER, "post", "/api/v1/workspaces/abc/secret/"),
        (MEMBER, "delete", "/api/v1/workspaces/abc/"),
        (MEMBER, "post", "/api/v1/workspaces/abc/services/1/redeploy/"),
        (ADMIN, "post", "/api/v1/users/abc/deactivate/"),
        (ADMIN, "post", "/api/v1/users/abc/reactivate/"),
        (ADMIN, "post", "/api/v1/invitations/abc/resend/"),
        (ADMIN, "post", "/api/v1/invitations/abc/revoke/"),
    ],
)
def test_a_non_numeric_id_is_a_404_problem(role: str, method: str, path: str, clients):
    response = getattr(clients[role], method)(path)

    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response["Content-Type"] == "application/problem+json"
