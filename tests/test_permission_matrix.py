# The people fixture is imported from tests/matrix_roles.py, so arguments "redefine" it.
# ruff: noqa: F811
"""Every URL of the portal × every role → the expected status, generated from the URLconf.

The URLs come from walking `get_resolver()`: every named URL whose view lives in one of the
portal's own apps (allauth's and Django admin's are skipped). Each must have an entry in
`EXPECTED`; a URL without one fails `test_url_has_an_expectation`, so a new page cannot be
forgotten. URLs with arguments get a real object from `FACTORIES`.

How to add a page:
1. Add `"app:url_name": <rule>` to `EXPECTED` (or a `**crud("app:model", Area.X)` line for
   the five standard catalog URLs). Rules: `view(area)` (GET, needs view), `change(area)`
   (GET of a form, needs change), `post(area)` (POST action, needs change, answers 302),
   `use_self_service()`, `logged_in()`, `public(status)`. Pass `overrides={ROLE: status}`
   for roles that differ (e.g. `{OTHER: 404}` for another member's object).
2. If the URL has arguments, add a factory to `FACTORIES` keyed by the URL name or a prefix
   of it ("app:model" covers "app:model_detail", "app:model_edit", ...). It gets the people
   ({role: user}) and returns the URL kwargs; objects owned by someone belong to MEMBER.

`tests/test_hostile_input.py` drives the same URLs, rules and factories with hostile input,
so a page listed here is also checked for 5xx answers and for refused requests that write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from api.tokens import create_token
from portal import audit, invitations
from portal.models import Invitation, Notification, SsoGroupMapping, Team
from portal.roles import CHANGE, ROLE_PERMISSIONS, USE, VIEW, Area, Role
from tests.matrix_roles import (
    ADMIN,
    ANON,
    MEMBER,
    OPERATOR,
    OTHER,
    ROLE_OF,
    ROLES,
    VIEWER,
    people,  # noqa: F401 (a fixture)
)

OWN_APPS = {"portal", "profiles", "pools", "services", "workspaces", "usage", "api"}
# The REST API's operations have a matrix of their own (tests/api/test_api_permission_matrix.py):
# they answer 401/403 problem details, not the login page.
SEPARATE_MATRIX = ("api.v1.",)

LOGIN = "login"  # a 302 to the login page
OK, FOUND, FORBIDDEN, NOT_FOUND = 200, 302, 403, 404


@dataclass(frozen=True)
class Rule:
    """Who may: a role holding ANY of `perms` gets `ok`; other roles 403, anonymous → login."""

    perms: tuple[tuple[str, str], ...] | None  # None: no login needed
    method: str = "get"
    ok: int = OK
    overrides: dict[str, int | str] = field(default_factory=dict)
    data: dict = field(default_factory=dict)

    def expected(self, role: str) -> int | str:
        if role in self.overrides:
            return self.overrides[role]
        if self.perms is None:
            return self.ok
        if role == ANON:
            return LOGIN
        granted = ROLE_PERMISSIONS[ROLE_OF[role]]
        return self.ok if any(p in granted for p in self.perms) else FORBIDDEN


def view(area: str, **kw) -> Rule:
    return Rule(((area, VIEW),), **kw)


def change(area: str, **kw) -> Rule:
    return Rule(((area, CHANGE),), **kw)


def post(area: str, ok: int = FOUND, **kw) -> Rule:
    return Rule(((area, CHANGE),), method="post", ok=ok, **kw)


def use_self_service(**kw) -> Rule:
    return Rule(((Area.SELF_SERVICE, USE),), **kw)


def logged_in(ok: int = OK, **kw) -> Rule:
    return Rule(
        (), ok=ok, overrides={r: ok for r in ROLES if r != ANON} | kw.pop("overrides", {}), **kw
    )


def public(status: int = OK, **kw) -> Rule:
    return Rule(None, ok=status, **kw)


def crud(prefix: str, area: str) -> dict[str, Rule]:
    """The five standard catalog URLs of `portal.urlhelpers.crud_urls`."""
    return {
        f"{prefix}_list": view(area),
        f"{prefix}_detail": view(area),
        f"{prefix}_add": change(area),
        f"{prefix}_edit": change(area),
        f"{prefix}_delete": change(area),
    }


# Workspaces: admins of the Workspaces area see all; self-service users only their own.
_WORKSPACE_VIEW = ((Area.WORKSPACES, VIEW), (Area.SELF_SERVICE, USE))
_WORKSPACE_CHANGE = ((Area.WORKSPACES, CHANGE), (Area.SELF_SERVICE, USE))

EXPECTED: dict[str, Rule] = {
    "home": logged_in(FOUND),
    # operations: probes for anyone; no worker heartbeat in a test, so /readyz is not ready;
    # /metrics without METRICS_TOKEN or METRICS_ALLOWED_IPS does not exist
    "healthz": public(OK),
    "readyz": public(503),
    "metrics": public(NOT_FOUND),
    # portal
    "overview:index": view(Area.PROFILES),
    "portal:auditentry_list": view(Area.AUDIT),
    "portal:auditentry_detail": view(Area.AUDIT),
    **crud("portal:team", Area.USERS),
    "portal:team_member_add": post(Area.USERS),
    "portal:team_member_remove": post(Area.USERS),
    "portal:user_list": view(Area.USERS),
    "portal:user_detail": view(Area.USERS),
    "portal:user_add": change(Area.USERS),
    "portal:user_deactivate": post(Area.USERS),
    "portal:user_reactivate": post(Area.USERS),
    "portal:invitation_list": view(Area.USERS),
    "portal:invitation_add": change(Area.USERS),
    "portal:invitation_resend": post(Area.USERS),
    "portal:invitation_revoke": post(Area.USERS),
    "portal:sso_settings": view(Area.USERS),
    "portal:sso_mapping_add": post(Area.USERS),
    "portal:sso_mapping_delete": post(Area.USERS),
    "portal:invitation_accept": public(OK),
    "portal:sso_no_access": public(FORBIDDEN),
    # the Okta login around allauth's views (issue 12): no such login while SSO is off
    "sso_login": public(NOT_FOUND),
    "sso_callback": public(NOT_FOUND),
    # replaces allauth's email page: read-only, addresses are the administrators' (issue 11)
    "portal:email_addresses": logged_in(OK),
    # each user's own notifications (issue 16); another's notification is not found
    "portal:notification_list": logged_in(OK),
    "portal:notification_badge": logged_in(OK),
    "portal:notification_settings": logged_in(OK),
    "portal:notification_read_all": logged_in(FOUND, method="post"),
    "portal:notification_read": logged_in(
        FOUND, method="post", overrides={r: NOT_FOUND for r in (OTHER, VIEWER, OPERATOR, ADMIN)}
    ),
    # profiles
    **crud("profiles:infrastructure", Area.INFRASTRUCTURE),
    "profiles:infrastructure_health": view(Area.INFRASTRUCTURE),
    "profiles:infrastructure_check": post(Area.INFRASTRUCTURE),
    **crud("profiles:computeprofile", Area.PROFILES),
    **crud("profiles:servicesprofile", Area.PROFILES),
    "profiles:servicesprofile_clone": post(Area.PROFILES),
    **crud("profiles:partitioningstrategy", Area.PROFILES),
    "profiles:partitioning_preview": post(Area.PROFILES, ok=OK),
    "profiles:partitioning_model_fields": change(Area.PROFILES),
    "profiles:partitioning_layouts": view(Area.PROFILES),
    "partitioning:nodes": view(Area.PROFILES),
    "partitioning:apply": post(Area.PROFILES),
    "partitioning:refresh": post(Area.PROFILES),
    "partitioning:drain": post(Area.PROFILES, data={"node": "gpu-1", "draining": "1"}),
    "profiles:support_matrix": logged_in(OK),
    # pools
    "pools:pool_list": view(Area.POOLS),
    "pools:pool_detail": view(Area.POOLS),
    "pools:pool_pause": post(Area.POOLS),
    "pools:pool_resume": post(Area.POOLS),
    "pools:pool_sizing": change(Area.POOLS),
    **crud("pools:poolschedule", Area.POOLS),
    # workspaces
    "workspaces:self_service": use_self_service(),
    "workspaces:mine": use_self_service(),
    "workspaces:request": Rule(((Area.SELF_SERVICE, USE),), method="post", ok=FOUND),
    "workspaces:workspace_list": view(Area.WORKSPACES),
    "workspaces:detail": Rule(_WORKSPACE_VIEW, overrides={OTHER: NOT_FOUND}),
    "workspaces:delete": Rule(
        _WORKSPACE_CHANGE, method="post", ok=FOUND, overrides={OTHER: NOT_FOUND}
    ),
    "workspaces:stop": Rule(
        _WORKSPACE_CHANGE, method="post", ok=FOUND, overrides={OTHER: NOT_FOUND}
    ),
    "workspaces:start": Rule(
        _WORKSPACE_CHANGE, method="post", ok=FOUND, overrides={OTHER: NOT_FOUND}
    ),
    "workspaces:reveal_secret": Rule(_WORKSPACE_VIEW, method="post", overrides={OTHER: NOT_FOUND}),
    # opening a web service logged in: the owner only (no service runs here: back to the page)
    "workspaces:open": Rule(
        _WORKSPACE_VIEW,
        ok=FOUND,
        overrides={r: NOT_FOUND for r in (OTHER, VIEWER, OPERATOR, ADMIN)},
    ),
    # keeping a workspace: snooze its idle stop, extend its lifetime (issue 16)
    "workspaces:snooze": Rule(
        _WORKSPACE_CHANGE, method="post", ok=FOUND, overrides={OTHER: NOT_FOUND}
    ),
    "workspaces:extend": Rule(_WORKSPACE_CHANGE, overrides={OTHER: NOT_FOUND}),
    # services deployed into a workspace (issue 7)
    "workspaces:services": Rule(_WORKSPACE_VIEW, overrides={OTHER: NOT_FOUND}),
    "workspaces:services_deploy": Rule(
        _WORKSPACE_CHANGE, method="post", ok=FOUND, overrides={OTHER: NOT_FOUND}
    ),
    "workspaces:services_redeploy": Rule(
        _WORKSPACE_CHANGE, method="post", ok=FOUND, overrides={OTHER: NOT_FOUND}
    ),
    "workspaces:services_remove": Rule(
        _WORKSPACE_CHANGE, method="post", ok=FOUND, overrides={OTHER: NOT_FOUND}
    ),
    "workspaces:services_secret": Rule(
        _WORKSPACE_VIEW, method="post", overrides={OTHER: NOT_FOUND}
    ),
    # API tokens (issue 15): everyone manages their own; Org admins revoke anyone's. The
    # token to revoke belongs to MEMBER.
    "api:token_list": logged_in(OK),
    "api:token_add": logged_in(OK, method="post"),
    "api:token_revoke": logged_in(
        FOUND, method="post", overrides={OTHER: NOT_FOUND, VIEWER: NOT_FOUND, OPERATOR: NOT_FOUND}
    ),
    # usage and cost (issue 16): all of it for admins, their groups' for members
    "usage:showback": Rule(_WORKSPACE_VIEW),
    "usage:export": Rule(_WORKSPACE_VIEW),
    **crud("usage:price", Area.PROFILES),
}


# -- objects for URLs with arguments ------------------------------------------------------------

User = get_user_model()


def _team(people) -> dict:
    team = Team.objects.create(name="Target group", role=Role.MEMBER)
    team.members.add(people[MEMBER])
    return {"pk": team.pk}


def _team_member(people) -> dict:
    return _team(people) | {"user_pk": people[MEMBER].pk}


def _user(people) -> dict:
    return {"pk": User.objects.create(username="target", email="target@example.com").pk}


def _inactive_user(people) -> dict:
    return {"pk": User.objects.create(username="gone", is_active=False).pk}


def _invitation(people) -> dict:
    return {"pk": invitations.invite(people[ADMIN], "invitee@example.com", []).pk}


def _invitation_link(people) -> dict:
    token = "a-known-token"
    invitation = Invitation.objects.create(
        email="invitee@example.com",
        invited_by=people[ADMIN],
        token_hash=invitations._hash(token),
        expires_at=timezone.now() + timedelta(days=1),
    )
    return {"pk": invitation.pk, "token": token}


def _sso_mapping(people) -> dict:
    team = Team.objects.create(name="Mapped")
    return {"pk": SsoGroupMapping.objects.create(sso_group="okta-group", team=team).pk}


def _audit_entry(people) -> dict:
    # About an infrastructure: entries about people are only for those who may see users
    # (tests/portal/test_audit_log.py).
    return {"pk": audit.record_created(people[ADMIN], _infrastructure()).pk}


def _infrastructure():
    from profiles.choices import InfrastructureKind
    from profiles.models import Infrastructure

    return Infrastructure.objects.create(name="Here", kind=InfrastructureKind.LOCAL)


def _compute_profile_obj():
    from profiles.models import ComputeProfile

    profile = ComputeProfile.objects.create(
        name="Open profile", infrastructure=_infrastructure(), published=True
    )
    profile.resource_groups.create(position=0, gpu_model="", gpu_count=0)
    return profile


def _services_profile(people) -> dict:
    from profiles.models import ServicesProfile

    return {"pk": ServicesProfile.objects.create(name="Plain", slug="plain").pk}


def _workspace(people) -> dict:
    from pools.models import Workspace

    profile = _compute_profile_obj()
    workspace = Workspace.objects.create(
        owner=people[MEMBER],
        profile=profile,
        infrastructure=profile.infrastructure,
        team=people[MEMBER].teams.first(),
        name="mine",
    )
    return {"pk": workspace.pk}


def _warm_profile_obj():
    profile = _compute_profile_obj()
    profile.allocation_strategy = "warm_pool"
    profile.desired_capacity = 2
    profile.save()
    return profile


def _pool_schedule(people) -> dict:
    from pools.models import PoolSchedule

    schedule = PoolSchedule.objects.create(
        profile=_warm_profile_obj(), weekdays=[5, 6], desired_capacity=1
    )
    return {"pk": schedule.pk}


def _service_deployment(people) -> dict:
    from pools.models import Workspace
    from profiles.models import ServicesProfile
    from services.tasks import create_deployment

    workspace = Workspace.objects.get(pk=_workspace(people)["pk"])
    deployment = create_deployment(
        workspace, ServicesProfile.objects.get(slug="jobs"), workspace=workspace
    )
    deployment.state = "failed"
    deployment.save()
    component = deployment.components.get()
    return {"pk": workspace.pk, "deployment_pk": deployment.pk, "component_pk": component.pk}


def _partitioning(people) -> dict:
    from profiles.models import PartitioningStrategy

    infrastructure = _infrastructure()
    strategy = PartitioningStrategy.objects.create(
        infrastructure=infrastructure, gpu_model="A100-40GB", nodes="gpu-1"
    )
    return {"pk": strategy.pk}


def _notification(people) -> dict:
    notification = Notification.objects.create(
        user=people[MEMBER], kind="workspace_ready", key="matrix", subject="Ready"
    )
    return {"pk": notification.pk}


def _price(people) -> dict:
    from usage.models import Price

    return {"pk": Price.objects.create(kind="gpu_model", key="T4", amount="0.50").pk}


def _api_token(people) -> dict:
    return {"pk": create_token(people[MEMBER], "CI", "read", 30)[0].pk}


FACTORIES: dict[str, Callable[[dict], dict]] = {
    "api:token_revoke": _api_token,
    "usage:price": _price,
    "portal:notification_read": _notification,
    "pools:pool": lambda people: {"profile_pk": _warm_profile_obj().pk},
    "pools:poolschedule": _pool_schedule,
    "portal:auditentry": _audit_entry,
    "portal:team": _team,
    "portal:team_member_remove": _team_member,
    "portal:user": _user,
    "portal:user_reactivate": _inactive_user,
    "portal:invitation": _invitation,
    "portal:invitation_accept": _invitation_link,
    "portal:sso_mapping": _sso_mapping,
    "sso_login": lambda people: {"provider_id": "okta"},
    "sso_callback": lambda people: {"provider_id": "okta"},
    "profiles:infrastructure": lambda people: {"pk": _infrastructure().pk},
    "profiles:computeprofile": lambda people: {"pk": _compute_profile_obj().pk},
    "profiles:servicesprofile": _services_profile,
    "profiles:partitioning_layouts": lambda people: {"gpu_model": "A100-40GB"},
    "profiles:partitioning": _partitioning,
    "profiles:partitioningstrategy": _partitioning,
    "partitioning": _partitioning,
    "workspaces:request": lambda people: {"profile_pk": _compute_profile_obj().pk},
    "workspaces:open": lambda people: _workspace(people) | {"service": "jupyterlab"},
    "workspaces:services_redeploy": _service_deployment,
    "workspaces:services_remove": _service_deployment,
    "workspaces:services_secret": _service_deployment,
    "workspaces": _workspace,
}


def _factory_for(name: str) -> Callable[[dict], dict] | None:
    """The factory of the URL name, else of its longest prefix ("a:b_c_d", "a:b_c", "a:b", "a")."""
    candidate = name
    while True:
        if candidate in FACTORIES:
            return FACTORIES[candidate]
        if "_" in candidate.split(":")[-1]:
            candidate = candidate.rsplit("_", 1)[0]
        elif ":" in candidate:
            candidate = candidate.split(":")[0]
        else:
            return None


# -- the URLconf walk ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PortalUrl:
    name: str
    route: str
    arguments: tuple[str, ...]


def _walk(patterns, namespace: tuple[str, ...] = (), route: str = ""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = (*namespace, pattern.namespace) if pattern.namespace else namespace
            yield from _walk(pattern.url_patterns, inner, route + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            module = getattr(pattern.callback, "__module__", "") or ""
            if module.split(".")[0] not in OWN_APPS or module.startswith(SEPARATE_MATRIX):
                continue  # allauth, django admin, ...; the REST API
            name = ":".join((*namespace, pattern.name or "<unnamed>"))
            arguments = tuple(pattern.pattern.converters) or tuple(pattern.pattern.regex.groupindex)
            yield PortalUrl(name, route + str(pattern.pattern), arguments)


def portal_urls() -> list[PortalUrl]:
    return sorted(set(_walk(get_resolver().url_patterns)), key=lambda u: u.name)


URLS = portal_urls()


def _status(client: Client, method: str, url: str, data: dict) -> int | str:
    try:
        response = getattr(client, method)(url, data)
    except Exception as error:  # a 500 is a finding, not a crash of the whole matrix
        return f"500 ({type(error).__name__}: {error})"
    if response.status_code == FOUND and response["Location"].startswith(reverse("account_login")):
        return LOGIN
    return response.status_code


def test_every_url_is_named():
    unnamed = [u.route for u in URLS if u.name.endswith("<unnamed>")]
    assert not unnamed, f"name these URLs so the permission matrix can list them: {unnamed}"


def test_no_stale_expectations():
    stale = sorted(set(EXPECTED) - {u.name for u in URLS})
    assert not stale, f"EXPECTED lists URLs that no longer exist: {stale}"


@pytest.mark.parametrize("url", URLS, ids=lambda u: u.name)
def test_url_has_an_expectation(url: PortalUrl):
    assert url.name in EXPECTED, (
        f"{url.name} ({url.route}) has no entry in EXPECTED of tests/test_permission_matrix.py:"
        " declare which roles may open it"
    )
    if url.arguments:
        assert _factory_for(url.name), f"add a factory for {url.name} to FACTORIES"


@pytest.mark.django_db
@pytest.mark.parametrize("url", [u for u in URLS if u.name in EXPECTED], ids=lambda u: u.name)
def test_permission_matrix(url: PortalUrl, people):
    rule = EXPECTED[url.name]
    wrong = []
    for role in ROLES:
        # Each role gets fresh objects, and its POST cannot change what the next role sees.
        with transaction.atomic():
            made = _factory_for(url.name)(people) if url.arguments else {}
            kwargs = {name: made[name] for name in url.arguments}
            client = Client()
            if role != ANON:
                client.force_login(people[role])
            got = _status(client, rule.method, reverse(url.name, kwargs=kwargs), rule.data)
            transaction.set_rollback(True)
        if got != rule.expected(role):
            wrong.append(f"{role}: expected {rule.expected(role)}, got {got}")
    assert not wrong, f"{rule.method.upper()} {url.name}:\n  " + "\n  ".join(wrong)
