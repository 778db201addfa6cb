"""The showback page at 10,000 workspaces: the same number of queries as at ten (pinned),
however many intervals, groups and users there are."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from time import perf_counter, process_time

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from portal.models import Team
from usage.models import Price, UsageInterval

START = datetime(2026, 3, 1, tzinfo=UTC)


def _usage(workspaces: int, teams: list[Team], users: list) -> None:
    """Each workspace ran, was stopped, and runs again (three intervals)."""
    rows = []
    for n in range(workspaces):
        begin = START + timedelta(minutes=n % 1440)
        common = {
            "kind": UsageInterval.Kind.WORKSPACE,
            "source_id": n + 1,
            "owner": users[n % len(users)],
            "team": teams[n % len(teams)],
            "profile_name": f"Profile {n % 7}",
            "infrastructure_name": "This machine",
            "storage_gb": 100,
        }
        gpu = {"gpu_model": "A100-40GB", "gpus": 1, "gpu_share": 1.0, "counts_workspace": True}
        rows += [
            UsageInterval(position=1, state="ready", start=begin,
                          end=begin + timedelta(hours=8), **common, **gpu),
            UsageInterval(position=2, state="stopped", start=begin + timedelta(hours=8),
                          end=begin + timedelta(hours=20), **common),
            UsageInterval(position=3, state="ready", start=begin + timedelta(hours=20),
                          end=None, **common, **gpu),
        ]  # fmt: skip
    UsageInterval.objects.bulk_create(rows, batch_size=5000)


def _queries(client) -> tuple[int, tuple[float, float]]:
    with CaptureQueriesContext(connection) as queries:
        started, cpu = perf_counter(), process_time()
        response = client.get(reverse("usage:showback"), {"month": "2026-03"})
        elapsed = (perf_counter() - started, process_time() - cpu)
    assert response.status_code == 200
    return len(queries), elapsed


def test_the_showback_page_costs_the_same_queries_at_ten_and_at_ten_thousand_workspaces(
    admin_client, user_factory
):
    Price.objects.create(kind=Price.Kind.GPU_MODEL, key="A100-40GB", amount=Decimal("2"))
    teams = [Team.objects.create(name=f"Group {i}") for i in range(40)]
    users = [user_factory(f"user{i}") for i in range(50)]
    _usage(10, teams, users)
    small, _ = _queries(admin_client)
    UsageInterval.objects.all().delete()
    _usage(10_000, teams, users)
    large, elapsed = _queries(admin_client)
    assert large == small
    print(
        f"\nshowback page, 10,000 workspaces (30,000 intervals): {large} queries, "
        f"{elapsed[0]:.2f} s wall, {elapsed[1]:.2f} s CPU of the test process"
    )
