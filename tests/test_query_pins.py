"""The hot pages run a fixed number of queries, however many rows there are (issue 17).

Each page named in bench/pages.py (self-service, its htmx-polled list, every workspace
in every sort, deep pages and filters, the warm pools, the overview, the audit log) is
requested on a small data set (bench.dataset) and again after that set has grown to three
times its size: the count must be the same, and at most MAX_QUERIES. The timings at 10,000
workspaces live in the benchmark (`python -m bench.pages`), never here.
"""

from http import HTTPStatus

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from bench import dataset, pages

pytestmark = pytest.mark.django_db

MAX_QUERIES = 12
SMALL = dataset.Scale(
    workspaces=30,
    audit_entries=60,
    users=6,
    teams=3,
    profiles=4,
    events_per_workspace=3,
    own_workspaces=4,
    ready_per_pool=2,
    claimed_per_pool=3,
    decisions_per_pool=4,
)


def query_counts(data) -> dict[str, int]:
    """{page label: queries of one request}, after a request that fills the caches."""
    ContentType.objects.clear_cache()
    clients: dict[int, Client] = {}
    counts = {}
    for label, user, url in pages.pages(data):
        if user.pk not in clients:
            clients[user.pk] = Client()
            clients[user.pk].force_login(user)
        client = clients[user.pk]
        assert client.get(url).status_code == HTTPStatus.OK, label
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        counts[label] = len(queries)
    return counts


def test_every_hot_page_runs_the_same_few_queries_at_three_times_the_rows():
    data = dataset.build(SMALL)
    small = query_counts(data)
    dataset.grow(data, SMALL)
    dataset.grow(data, SMALL)
    large = query_counts(data)

    grew = {label: (small[label], large[label]) for label in small if small[label] != large[label]}
    assert grew == {}, f"query count grows with the rows (N rows, 3N rows); all: {large}"
    too_many = {label: n for label, n in large.items() if n > MAX_QUERIES}
    assert too_many == {}, f"more than {MAX_QUERIES} queries; all: {large}"
