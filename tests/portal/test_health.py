"""`/healthz` and `/readyz`: cheap, unauthenticated, and only "ok" or a short reason."""

from datetime import timedelta
from http import HTTPStatus

import pytest
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone
from django_q.models import Schedule, Task

from portal import health


@pytest.fixture(autouse=True)
def fresh_migration_check():
    health.forget_migrations()
    yield
    health.forget_migrations()


def heartbeat_at(when) -> None:
    """What a django-q2 worker saves after running the heartbeat schedule's task."""
    Task.objects.create(
        id=f"hb{when.timestamp()}".replace(".", "")[:32],
        name="heartbeat",
        func=health.HEARTBEAT_FUNC,
        started=when,
        stopped=when,
        success=True,
    )


def test_healthz_answers_ok_without_touching_the_database(client):
    response = client.get("/healthz")  # no db fixture: a query would raise
    assert response.status_code == HTTPStatus.OK
    assert response.content == b"ok\n"


@pytest.mark.django_db
def test_readyz_is_ok_with_a_recent_heartbeat(client):
    heartbeat_at(timezone.now() - timedelta(seconds=30))
    response = client.get("/readyz")
    assert response.status_code == HTTPStatus.OK
    assert response.content == b"ok\n"


@pytest.mark.django_db
def test_readyz_is_not_ready_without_a_heartbeat(client):
    response = client.get("/readyz")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.content == b"not ready: no django-q2 cluster heartbeat in the last 180 s\n"


@pytest.mark.django_db
def test_readyz_is_not_ready_when_the_last_heartbeat_is_too_old(client, settings):
    settings.READYZ_HEARTBEAT_MAX_AGE = 120
    heartbeat_at(timezone.now() - timedelta(seconds=121))
    response = client.get("/readyz")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert b"no django-q2 cluster heartbeat in the last 120 s" in response.content


@pytest.mark.django_db
def test_readyz_is_not_ready_while_a_migration_is_not_applied(client):
    heartbeat_at(timezone.now())
    # The portal's latest migration (an earlier one behind an applied one is not "pending").
    [(app, latest)] = MigrationLoader(connection).graph.leaf_nodes("portal")
    MigrationRecorder.Migration.objects.filter(app=app, name=latest).delete()
    response = client.get("/readyz")
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.content == b"not ready: 1 migration(s) not applied\n"


@pytest.mark.django_db
def test_readyz_checks_migrations_only_until_they_are_applied(
    client, django_assert_max_num_queries
):
    heartbeat_at(timezone.now())
    assert client.get("/readyz").status_code == HTTPStatus.OK
    with django_assert_max_num_queries(2):  # SELECT 1 and the heartbeat
        assert client.get("/readyz").status_code == HTTPStatus.OK


@pytest.mark.django_db
def test_probes_answer_any_host_and_need_no_login(client):
    heartbeat_at(timezone.now())
    for path in ("/healthz", "/readyz"):
        response = client.get(path, HTTP_HOST="10.1.2.3:8000")  # a kubelet calls the pod IP
        assert response.status_code == HTTPStatus.OK, path


def test_heartbeat_schedule_is_made_once_and_restored(db):
    Schedule.objects.filter(name=health.HEARTBEAT_NAME).delete()
    health.ensure_heartbeat_schedule()
    health.ensure_heartbeat_schedule()
    schedule = Schedule.objects.get(name=health.HEARTBEAT_NAME)
    assert schedule.func == "portal.health.heartbeat"
    assert schedule.minutes == 1
    assert health.heartbeat() == "ok"
