"""schemathesis against the live schema (`/api/schema/`, served by the portal itself), with a
read-write token of every role: no 5xx, every response as the schema documents it (status,
content type, body), and a refused request creates nothing.

A few examples per operation and role keep the run short (`MAX_EXAMPLES`); path ids are
the ids of real objects, so the operations act on something rather than answering 404.
"""

from http import HTTPStatus

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, connection, transaction
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pools.lifecycle import State
from pools.models import PoolSchedule
from portal import invitations
from portal.models import Team
from profiles.models import ServicesProfile
from services.tasks import create_deployment
from tests.api.conftest import ROLES
from tests.conftest import RUN_SUMMARY
from tests.test_hostile_input import _count_sql

MAX_EXAMPLES = 2
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def objects(org_admin, member, local_infrastructure, profile_factory, workspace_factory) -> dict:
    """One object of each kind, its id under its resource's name (or its path parameter's)."""
    profile = profile_factory(local_infrastructure, published=True)
    workspace = workspace_factory(member, profile, state=State.READY)
    team = Team.objects.create(name="Vision team")
    invitation = invitations.invite(org_admin, "new@example.com", [team])
    deployment = create_deployment(
        workspace, ServicesProfile.objects.get(slug="jobs"), workspace=workspace
    )
    schedule = PoolSchedule.objects.create(profile=profile, weekdays=[5], desired_capacity=1)
    return {
        "deployment_pk": deployment.pk,
        "compute-profiles": profile.pk,
        "pools": profile.pk,
        "schedules": schedule.pk,
        "workspaces": workspace.pk,
        "infrastructure": local_infrastructure.pk,
        "groups": team.pk,
        "invitations": invitation.pk,
        "users": member.pk,
    }


def _real_ids(case, objects: dict) -> None:
    """Point the case's path id at a real object of its resource, when there is one."""
    resource = case.operation.path.split("{")[0].rstrip("/").split("/")[-1]
    for name in case.path_parameters or {}:
        real = objects.get(name, objects.get(resource))
        if real is not None:
            case.path_parameters[name] = real


@pytest.fixture
def portal_app():
    """The portal's WSGI application, in the test's transaction: Django closes the database
    connection at the end of each request, which would end the test's transaction (the
    test client switches that off the same way)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield get_wsgi_application()
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _fuzz(operation, role: str, token: str, objects: dict, tally: dict) -> None:
    """`MAX_EXAMPLES` cases of one operation with one role's token, each checked."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        tally["cases"] += 1
        _real_ids(case, objects)
        with transaction.atomic():  # each case sees the same objects
            before = _counts()
            response = case.call(headers={"Authorization": f"Bearer {token}"})
            case.validate_response(response, checks=CHECKS)
            if response.status_code >= HTTPStatus.BAD_REQUEST and _counts() != before:
                tally["refused_writes"].append(f"{role} {operation.label} {response.status_code}")
            transaction.set_rollback(True)

    try:
        run()
    except Exception as failure:  # every operation's findings, then fail
        tally["failures"].append(f"{role} {operation.label}: {failure}")


def _counts() -> tuple:
    sql, _ = _count_sql()
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()


def test_the_api_conforms_to_its_schema_for_every_role(
    user_factory, token_for, objects, portal_app
):
    tokens = {role: token_for(user_factory(f"st-{role}", role)) for role in ROLES}
    schema = schemathesis.openapi.from_wsgi(
        "/api/schema/?format=json",
        portal_app,
        headers={"Authorization": f"Bearer {tokens[ROLES[0]]}"},
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    tally = {"cases": 0, "refused_writes": [], "failures": []}
    for operation in operations:
        for role, token in tokens.items():
            cache.clear()  # the rate limit is tested on its own
            _fuzz(operation, role, token, objects, tally)
    refused_writes = tally["refused_writes"]

    RUN_SUMMARY["API operations checked by schemathesis (tests/api)"] = len(operations)
    RUN_SUMMARY["schemathesis cases run, all roles (tests/api)"] = tally["cases"]
    assert len(operations) >= 50
    assert not tally["failures"], "\n\n".join(tally["failures"])
    assert not refused_writes, "refused requests that wrote rows:\n" + "\n".join(refused_writes)
