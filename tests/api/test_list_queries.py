"""Every list operation of the API runs a fixed number of queries, whatever the number of
rows on the page (no N+1): counted with 2 rows of everything, then with 12."""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from pools.lifecycle import State
from portal import audit, invitations
from portal.models import Team

LISTS = [
    "/api/v1/infrastructure/",
    "/api/v1/compute-profiles/",
    "/api/v1/services-profiles/",
    "/api/v1/partitioning/",
    "/api/v1/pools/",
    "/api/v1/workspaces/",
    "/api/v1/users/",
    "/api/v1/groups/",
    "/api/v1/invitations/",
    "/api/v1/audit/",
]


def _add_rows(n, admin, member, infrastructure, profile_factory, workspace_factory, user_factory):
    for _ in range(n):
        i = Team.objects.count()
        team = Team.objects.create(name=f"Team {i}")
        team.members.add(user_factory(f"user{i}", "member"))
        profile = profile_factory(
            infrastructure,
            f"Profile {i}",
            groups=(("", 0), ("", 0)),
            published=True,
            allocation_strategy="warm_pool",
            desired_capacity=1,
        )
        team.compute_profiles.add(profile)
        workspace = workspace_factory(member, profile, state=State.READY, team=team)
        workspace.log_event("requested", "ready", "ready", actor=member)
        invitations.invite(admin, f"invitee{i}@example.com", [team])
        audit.record_created(admin, team)


def _queries(api, path) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert api.get(path).status_code == 200
    return len(captured)


def test_list_queries_do_not_grow_with_the_rows(
    org_admin,
    member,
    api_for,
    local_infrastructure,
    profile_factory,
    workspace_factory,
    user_factory,
):
    api = api_for(org_admin)
    make = (
        org_admin,
        member,
        local_infrastructure,
        profile_factory,
        workspace_factory,
        user_factory,
    )
    _add_rows(2, *make)
    few = {path: _queries(api, path) for path in LISTS}
    _add_rows(10, *make)
    many = {path: _queries(api, path) for path in LISTS}

    grew = {path: (few[path], many[path]) for path in LISTS if many[path] > few[path]}
    assert not grew, f"queries (2 rows, 12 rows) of lists whose count grows: {grew}"
    print("\n".join(f"{path}: {many[path]} queries" for path in LISTS))
