"""The showback pages, the CSV export and the prices admins set."""

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from http import HTTPStatus

import pytest
from django.urls import reverse

from pools import lifecycle
from pools.lifecycle import State
from pools.models import Workspace
from portal.models import AuditEntry, Team
from portal.roles import Role
from usage import ledger
from usage.models import Price

MARCH = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def used(clock, user_factory, local_infrastructure, profile_factory):
    """Two groups' members, each with a workspace that ran two hours on one A100."""
    profile = profile_factory(local_infrastructure, "One A100", groups=(("A100-40GB", 1),))
    Price.objects.create(kind=Price.Kind.GPU_MODEL, key="A100-40GB", amount=Decimal("3.00"))
    people = {}
    for name in ("ada", "bob"):
        user = user_factory(name)
        team = Team.objects.create(name=f"Team {name}", role=Role.MEMBER)
        team.members.add(user)
        clock.set(MARCH)
        workspace = lifecycle.create(
            Workspace, message="requested", owner=user, profile=profile,
            infrastructure=local_infrastructure, team=team, gpus=1,
        )  # fmt: skip
        lifecycle.transition(workspace, State.PROVISIONING)
        lifecycle.transition(workspace, State.READY)
        clock.set(MARCH.replace(hour=11))
        lifecycle.transition(workspace, State.STOPPING)
        lifecycle.transition(workspace, State.STOPPED)
        people[name] = user
    ledger.run(now=clock.set(MARCH.replace(hour=12)))
    return people


def test_a_member_sees_the_usage_of_their_group_only(client, used):
    client.force_login(used["ada"])
    page = client.get(reverse("usage:showback"), {"month": "2026-03"})
    assert page.status_code == HTTPStatus.OK
    body = page.content.decode()
    assert "Team ada" in body and "Team bob" not in body
    assert "$6.00" in body  # 2 GPU-hours at $3.00
    assert "Warm pools" not in body


def test_an_org_admin_sees_every_group_and_the_warm_pools(client, used, org_admin):
    client.force_login(org_admin)
    body = client.get(reverse("usage:showback"), {"month": "2026-03"}).content.decode()
    assert "Team ada" in body and "Team bob" in body
    assert "Warm pools: idle cost" in body
    assert "<svg" in body and 'role="img"' in body


def test_a_month_that_is_not_one_is_refused_next_to_the_field(client, used):
    client.force_login(used["ada"])
    page = client.get(reverse("usage:showback"), {"month": "2026-13"})
    assert page.status_code == HTTPStatus.OK
    assert "Enter a month as YYYY-MM" in page.content.decode()


def test_the_csv_export_has_one_row_per_user(client, used, org_admin):
    client.force_login(org_admin)
    response = client.get(reverse("usage:export"), {"month": "2026-03", "by": "user"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:2] == ["month", "user"]
    by_user = {row[1]: row for row in rows[1:]}
    assert set(by_user) == {"ada", "bob"}
    assert by_user["ada"][3] == "2.0000"  # GPU-hours
    assert by_user["ada"][-2] == "6.00"


def test_an_admin_sets_a_price_and_it_is_audited(admin_client):
    response = admin_client.post(
        reverse("usage:price_add"),
        {"kind": "instance_type", "key": "g5.xlarge", "region": "us-east-1", "amount": "0.90"},
    )
    assert response.status_code == HTTPStatus.FOUND
    price = Price.objects.get(key="g5.xlarge")
    assert price.amount == Decimal("0.90")
    assert AuditEntry.objects.filter(object_id=str(price.pk), action="created").exists()


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"kind": "gpu_model", "key": "A100", "amount": "1"}, "key", "Not a GPU model"),
        ({"kind": "instance_type", "key": "x.huge", "amount": "1"}, "key", "Not an instance type"),
        (
            {"kind": "instance_type", "key": "g5.xlarge", "region": "mars-1", "amount": "1"},
            "region",
            "Not a cloud region",
        ),
        ({"kind": "storage", "key": "A100-40GB", "amount": "1"}, "key", "leave this empty"),
        ({"kind": "gpu_model", "key": "T4", "amount": "-1"}, "amount", "greater than or equal"),
        ({"kind": "gpu_model", "key": "T4", "amount": "NaN"}, "amount", "Enter a number"),
        ({"kind": "gpu_model", "key": "T4", "amount": "1e30"}, "amount", "digits"),
    ],
)
def test_a_bad_price_is_refused_next_to_its_field(admin_client, data, field, message):
    response = admin_client.post(reverse("usage:price_add"), data)
    assert response.status_code == HTTPStatus.OK
    errors = response.context["form"].errors
    assert field in errors and message in " ".join(errors[field])
    assert not Price.objects.exists()


def test_a_second_price_for_the_same_thing_is_refused(admin_client):
    Price.objects.create(kind=Price.Kind.STORAGE, amount=Decimal("0.08"))
    response = admin_client.post(reverse("usage:price_add"), {"kind": "storage", "amount": "1"})
    assert "already a price" in " ".join(response.context["form"].errors["key"])


def test_the_price_list_shows_the_public_prices_and_their_source(admin_client):
    body = admin_client.get(reverse("usage:price_list")).content.decode()
    assert "p4d.24xlarge" in body and "instances.vantage.sh" in body


def test_a_label_a_spreadsheet_would_run_as_a_formula_is_quoted(client, used, org_admin):
    Team.objects.filter(name="Team ada").update(name="=HYPERLINK(1)")
    client.force_login(org_admin)
    response = client.get(reverse("usage:export"), {"month": "2026-03", "by": "group"})
    labels = [row[1] for row in csv.reader(io.StringIO(response.content.decode()))][1:]
    assert sorted(labels) == ["'=HYPERLINK(1)", "Team bob"]
