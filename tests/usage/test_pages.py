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
from pools.models import PoolInstance, Workspace
from portal.models import AuditEntry, Team
from portal.roles import Role
from usage import ledger
from usage.forms import PriceForm
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


@pytest.mark.parametrize(
    ("name", "delimiter"),
    [
        ("Ops;=cmd|' /C calc'!A0;x", ";"),
        ("Ops; =cmd|' /C calc'!A0;x", ";"),
        ("Ops;-2+3;x", ";"),
        ("Ops\t@SUM(1)\tx", "\t"),
    ],
)
def test_a_group_name_is_no_formula_where_a_spreadsheet_splits_at_its_separator(
    client, used, org_admin, name, delimiter
):
    """Excel opens a .csv with the locale's list separator, ';' in much of Europe: every
    cell a group's name gives there starts as text."""
    Team.objects.filter(name="Team ada").update(name=name)
    client.force_login(org_admin)
    response = client.get(reverse("usage:export"), {"month": "2026-03", "by": "group"})
    text = response.content.decode()
    cells = [cell for row in csv.reader(io.StringIO(text), delimiter=delimiter) for cell in row]
    assert [cell for cell in cells if cell.lstrip()[:1] in ("=", "+", "-", "@")] == []


def test_warm_pool_idle_time_is_not_workspace_hours_of_no_group(clock, used, org_admin, client):
    """A warm instance idle for two hours: its GPU-hours and cost are the warm pools' in
    every breakdown, and no one's workspace-hours."""
    profile = Workspace.objects.first().profile
    clock.set(MARCH)
    instance = lifecycle.create(
        PoolInstance, message="warm", profile=profile, infrastructure=profile.infrastructure
    )
    lifecycle.transition(instance, State.PROVISIONING)
    lifecycle.transition(instance, State.READY)
    ledger.run(now=clock.set(MARCH.replace(hour=11)))

    client.force_login(org_admin)
    response = client.get(reverse("usage:showback"), {"month": "2026-03"})
    assert response.status_code == HTTPStatus.OK
    rows = {
        (section["key"], row.label): row
        for section in response.context["sections"]
        for row in section["rows"]
    }
    assert ("group", "No group") not in rows
    for key in ("group", "user"):
        pools = rows[(key, "Warm pools")]
        assert (pools.workspace_hours, pools.gpu_hours, pools.cost) == (0, 2, Decimal("6.00"))
    one_a100 = rows[("profile", "One A100")]  # two workspaces, two hours each, and the pool
    assert (one_a100.workspace_hours, one_a100.gpu_hours) == (4, 6)


def test_an_export_query_that_is_not_valid_is_refused_not_answered_with_another_month(
    client, used, org_admin
):
    client.force_login(org_admin)
    response = client.get(reverse("usage:export"), {"month": "2026-03", "by": "bogus"})
    assert response.status_code == HTTPStatus.BAD_REQUEST
    assert "Select a valid choice" in response.content.decode()
    bad_month = client.get(reverse("usage:export"), {"month": "2026-13", "by": "group"})
    assert bad_month.status_code == HTTPStatus.BAD_REQUEST


def test_the_page_keeps_the_month_asked_for_beside_a_breakdown_that_is_not_one(client, used):
    client.force_login(used["ada"])
    page = client.get(reverse("usage:showback"), {"month": "2026-03", "by": "bogus"})
    assert page.status_code == HTTPStatus.OK
    assert page.context["month"].date() == MARCH.date().replace(day=1)
    assert "$6.00" in page.content.decode()


def test_two_admins_adding_the_same_price_at_once_get_no_500(admin_client, monkeypatch):
    """The form looks for an existing price, then saves: an identical price saved in between
    (a double submit from two tabs) breaks the unique constraint. Nothing is saved, and the
    form says why (above it: here the other price is undone with the failed save)."""
    real_save = PriceForm.save

    def the_other_admin_saves_first(self, *args, **kwargs):
        Price.objects.create(kind=Price.Kind.STORAGE, amount=Decimal("0.08"))
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(PriceForm, "save", the_other_admin_saves_first)
    response = admin_client.post(reverse("usage:price_add"), {"kind": "storage", "amount": "1"})
    assert response.status_code == HTTPStatus.OK
    assert "someone else saved at the same moment" in " ".join(
        response.context["form"].non_field_errors()
    )
    assert not Price.objects.filter(amount=Decimal("1")).exists()


def test_a_price_another_admin_saved_meanwhile_is_named_next_to_its_field(
    admin_client, monkeypatch
):
    """Checked again after the clash, the form sees the other admin's price."""
    real_post_clean = PriceForm._post_clean

    def the_other_admin_saves_after_the_checks(self):
        real_post_clean(self)  # the last check: the model's constraints
        if not Price.objects.exists():
            Price.objects.create(kind=Price.Kind.STORAGE, amount=Decimal("0.08"))

    monkeypatch.setattr(PriceForm, "_post_clean", the_other_admin_saves_after_the_checks)
    response = admin_client.post(reverse("usage:price_add"), {"kind": "storage", "amount": "1"})
    assert response.status_code == HTTPStatus.OK
    form = response.context["form"]
    assert "already a price" in " ".join(form.errors["key"])
    assert not form.non_field_errors()
    assert Price.objects.get().amount == Decimal("0.08")
