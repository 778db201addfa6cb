"""The admin overview: the fleet at a glance, each figure a link to the list behind it,
and a query count that does not grow with the number of workspaces (issue 18)."""

from datetime import timedelta
from http import HTTPStatus

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from pools.lifecycle import State
from pools.models import Pool, PoolInstance, Workspace
from profiles.choices import AllocationStrategy, HealthStatus
from profiles.models import Infrastructure, ServicesProfile
from workspaces import dashboard

WORKSPACES = reverse("workspaces:workspace_list")


@pytest.fixture(autouse=True)
def no_cached_local_gpus():
    cache.delete("overview:local-gpus")
    yield
    cache.delete("overview:local-gpus")


@pytest.fixture
def fleet(data_center, profile_factory, member):
    """A whole-GPU profile (2 GPUs each) and a MIG profile (one 3g.40gb slice), warm."""
    whole = profile_factory(data_center, "Two GPUs", groups=(("A100-80GB", 2),), published=True)
    sliced = profile_factory(
        data_center,
        "Slice",
        groups=(("A100-80GB", 1),),
        published=True,
        allocation_strategy=AllocationStrategy.WARM_POOL,
        desired_capacity=2,
    )
    sliced.resource_groups.update(mig_profile="3g.40gb")
    return whole, sliced


def make_workspaces(owner, profile, n: int, state: str, **fields) -> None:
    """`n` workspaces given what the profile holds, as a request gives it."""
    totals = profile.totals()
    Workspace.objects.bulk_create(
        Workspace(
            owner=owner,
            profile=profile,
            infrastructure=profile.infrastructure,
            state=state,
            gpus=totals["gpus"],
            mig_slices=totals["mig_slices"],
            **fields,
        )
        for _ in range(n)
    )


def test_gpus_by_infrastructure_and_model_total_in_use_warm_idle_unavailable(fleet, member):
    whole, sliced = fleet
    make_workspaces(member, whole, 2, State.READY)  # 4 GPUs
    make_workspaces(member, whole, 1, State.STOPPED)  # holds none
    make_workspaces(member, whole, 1, State.FAILED)  # 2 GPUs until deleted
    make_workspaces(member, sliced, 3, State.READY)
    PoolInstance.objects.create(
        profile=sliced, infrastructure=sliced.infrastructure, state=State.READY
    )
    # A workspace waiting for an instance on its way: its slice counts once, as in use.
    make_workspaces(member, sliced, 1, State.PROVISIONING)
    PoolInstance.objects.create(
        profile=sliced,
        infrastructure=sliced.infrastructure,
        state=State.PROVISIONING,
        workspace=Workspace.objects.get(state=State.PROVISIONING),
    )
    rows = {row.label: row for row in dashboard.build().gpus}
    gpus = rows["A100-80GB"]
    assert (gpus.total, gpus.in_use, gpus.warm, gpus.unavailable, gpus.idle) == (8, 4, 0, 2, 2)
    slices = rows["A100-80GB MIG 3g.40gb"]
    assert (slices.total, slices.in_use, slices.warm, slices.unit) == (None, 4, 1, "slices")


def test_free_gpus_of_infrastructure_that_is_not_ready_are_unavailable(fleet, member):
    whole, _ = fleet
    make_workspaces(member, whole, 1, State.READY)
    Infrastructure.objects.update(health_status=HealthStatus.UNREACHABLE)
    row = next(r for r in dashboard.build().gpus if r.label == "A100-80GB")
    assert (row.in_use, row.unavailable, row.idle) == (2, 6, 0)


def test_the_overview_links_every_figure_to_the_list_behind_it(admin_client, fleet, member):
    whole, sliced = fleet
    make_workspaces(member, whole, 2, State.REQUESTED)
    make_workspaces(member, whole, 1, State.FAILED, failure_reason="quota exceeded")
    Pool.objects.create(profile=sliced, halted=True, last_failure="no capacity")
    html = admin_client.get(reverse("overview:index")).content.decode()
    infra = fleet[0].infrastructure
    assert f'href="{WORKSPACES}?activity=waiting"><strong data-metric="waiting">2</strong>' in html
    assert (
        f'href="{WORKSPACES}?activity=failed_24h"><strong data-metric="failed">1</strong>' in html
    )
    assert f"{WORKSPACES}?activity=failed_24h&amp;failure_reason=quota%20exceeded" in html
    assert f"{WORKSPACES}?infrastructure={infra.pk}&amp;activity=holding_gpus" in html
    assert f'href="{WORKSPACES}?state=requested"' in html
    assert '<strong data-metric="halted">1</strong> warm pool halted' in html
    assert reverse("pools:pool_detail", args=[sliced.pk]) in html
    assert "?health_status=ready" in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("activity=waiting", {"requested"}),
        ("activity=failed_24h", {"recent failure"}),
        ("activity=holding_gpus", {"requested", "ready"}),
        ("failure_reason=old+failure", {"old failure"}),
        ("gpu_model=A100-80GB", {"requested", "ready", "recent failure", "old failure"}),
    ],
)
def test_the_workspace_list_filters_the_overview_links_to(
    admin_client, fleet, member, query, expected
):
    whole, _ = fleet
    make_workspaces(member, whole, 1, State.REQUESTED, name="requested")
    make_workspaces(member, whole, 1, State.READY, name="ready")
    make_workspaces(member, whole, 1, State.FAILED, name="recent failure")
    make_workspaces(
        member,
        whole,
        1,
        State.FAILED,
        name="old failure",
        failure_reason="old failure",
        state_changed=timezone.now() - timedelta(days=2),
    )
    response = admin_client.get(f"{WORKSPACES}?{query}")
    assert response.status_code == HTTPStatus.OK
    shown = {ws.name for ws in response.context["table"].data}
    assert shown == expected


def test_the_setup_checklist_stays_until_setup_is_done(admin_client, fleet):
    url = reverse("overview:index")
    ServicesProfile.objects.all().delete()  # the turnkey ones the migrations add
    assert "Set up GPU self-service" in admin_client.get(url).content.decode()
    ServicesProfile.objects.create(name="Notebooks", slug="notebooks")
    assert "Set up GPU self-service" not in admin_client.get(url).content.decode()


def test_htmx_gets_the_dashboard_alone(admin_client, fleet):
    response = admin_client.get(reverse("overview:index"), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="dashboard"') and "<html" not in html
    assert 'hx-trigger="every 15s"' in html


QUERIES = []


def overview_queries(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse("overview:index"), headers={"HX-Request": "true"})
    assert response.status_code == HTTPStatus.OK
    return len(captured)


def test_the_overview_runs_the_same_queries_for_three_times_the_workspaces(
    admin_client, fleet, member, user_factory
):
    """The pin: at N and 3N workspaces in every state (bench.pages measures 10,000)."""
    whole, sliced = fleet
    owners = [member, user_factory("ann"), user_factory("bob")]

    def add(batch: int):
        for index, state in enumerate(State):
            for owner in owners:
                profile = whole if index % 2 else sliced
                make_workspaces(owner, profile, batch, state, failure_reason=f"reason {index}")
        PoolInstance.objects.create(
            profile=sliced, infrastructure=sliced.infrastructure, state=State.READY
        )

    add(2)
    overview_queries(admin_client)  # warm-up: sessions, permissions
    at_n = overview_queries(admin_client)
    add(4)
    assert overview_queries(admin_client) == at_n
    assert at_n <= 12  # 3 for the session and the user's groups, 9 for the dashboard
