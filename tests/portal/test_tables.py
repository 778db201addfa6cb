"""portal.tables.listing(): one page of an admin list, counted or estimated, in a total order."""

from http import HTTPStatus

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test import RequestFactory
from django.urls import reverse

from portal import tables
from portal.models import AuditAction, AuditEntry, Team

pytestmark = pytest.mark.django_db
on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the estimate is PostgreSQL's planner's"
)


def make_entries(n: int) -> None:
    team_type = ContentType.objects.get_for_model(Team)
    AuditEntry.objects.bulk_create(
        AuditEntry(
            actor_name=f"user{i % 3}",  # ties: the id decides their order
            action=AuditAction.UPDATED,
            content_type=team_type,
            object_id=str(i),
            object_repr=f"group {i:03}",
        )
        for i in range(n)
    )


def listing(query: str, per_page: int) -> tables.Listing:
    request = RequestFactory().get(f"/admin/audit/?{query}")
    return tables.listing(tables.AuditTable(AuditEntry.objects.all()), request, per_page)


def object_reprs(page: tables.Listing) -> list[str]:
    column = [header.label for header in page.headers].index("Object")
    return [cells[column] for cells in page.rows]


@pytest.mark.parametrize("sort", ["actor_name", "-actor_name", "-timestamp"])
def test_every_row_shows_on_exactly_one_page_whichever_end_a_page_is_read_from(sort):
    make_entries(47)
    seen = []
    for number in range(1, 6):  # pages 4 and 5 are read from the end, in reverse
        page = listing(f"sort={sort}&page={number}", per_page=10)
        assert page.page.number == number
        seen += object_reprs(page)
    assert sorted(seen) == [f"group {i:03}" for i in range(47)]


def test_a_page_past_the_end_shows_the_last_page():
    make_entries(25)
    page = listing("page=99999999", per_page=10)
    assert (page.page.number, page.page.start, page.page.end) == (3, 21, 25)
    assert not page.page.estimated and not page.next_url


@on_postgresql
def test_a_long_unfiltered_list_shows_the_planners_estimate_labelled_about(
    admin_client, monkeypatch
):
    make_entries(60)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE portal_auditentry")
    monkeypatch.setattr(tables, "ESTIMATE_OVER", 50)
    response = admin_client.get(reverse("portal:auditentry_list"))
    assert response.status_code == HTTPStatus.OK
    assert response.context["listing"].page.estimated
    assert "of about 60" in response.content.decode()
    filtered = admin_client.get(reverse("portal:auditentry_list"), {"actor_name": "user1"})
    assert not filtered.context["listing"].page.estimated  # a filtered list is counted


@on_postgresql
def test_past_an_estimate_that_was_too_high_the_list_counts_and_shows_its_real_last_page(
    monkeypatch,
):
    make_entries(60)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE portal_auditentry")
    AuditEntry.objects.filter(pk__in=AuditEntry.objects.values("pk")[:45]).delete()
    monkeypatch.setattr(tables, "ESTIMATE_OVER", 50)
    page = listing("page=6", per_page=10)  # the estimate (60 rows) has six pages
    assert (page.page.number, page.page.count, page.page.estimated) == (2, 15, False)
    assert len(page.rows) == 5


@on_postgresql
def test_next_leads_on_past_an_estimate_that_was_too_low(monkeypatch):
    make_entries(60)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE portal_auditentry")
    make_entries(25)
    monkeypatch.setattr(tables, "ESTIMATE_OVER", 50)
    # The estimate scales the 60 analysed rows by the table's size now: 60 while the new
    # rows fit the same pages, a little more when they (or dead rows of earlier tests in
    # this database) took a new one. Either way it is short of 85 by a page or more.
    estimate, estimated = tables._count(AuditEntry.objects.all())
    assert estimated and 60 <= estimate <= 80, estimate  # 80: a page short of 85 at least
    last = -(-estimate // 10)  # the estimate's last page
    last_estimated = listing(f"page={last}", per_page=10)
    assert last_estimated.page.estimated and last_estimated.next_url == f"?page={last + 1}"
    page = listing(f"page={last + 1}", per_page=10)
    assert (page.page.number, page.page.count, page.page.estimated) == (last + 1, 85, False)
    assert len(page.rows) == min(85 - last * 10, 10)
