"""django-q2 on Redis (`Q_BROKER_URL`), against this machine's Redis server.

A web server and a cluster both configured with `Q_BROKER_URL` (the database stays the
ORM broker's only in name: no task passes through its queue table): a workspace requested
over HTTP waits in Redis (and `/metrics` says so) until the cluster starts, which then
provisions it.
"""

from __future__ import annotations

import os
import time

import pytest
import redis
import requests
from django.contrib.auth import get_user_model
from django.db import connections
from django_q.models import OrmQ

from pools.lifecycle import State
from pools.models import Workspace
from portal.models import Team
from portal.roles import Role
from tests.conftest import PASSWORD
from tests.deploy.metrics_helpers import parse, value
from tests.deploy.processes import free_port, shared_database_env, start, stop, wait_until_serving
from tests.workspace_fixtures import database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.scale_out]

REDIS_URL = "redis://127.0.0.1:6379/13"  # a database of our own on the local server
QUEUE_KEY = "django_q:portal:q"
TOKEN = "redis-test-token"


@pytest.fixture
def redis_db():
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        if os.environ.get("CI"):
            pytest.fail("Redis is not running at 127.0.0.1:6379 (CI must start it)")
        pytest.skip("no Redis server at 127.0.0.1:6379")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_a_request_travels_through_redis_to_a_worker(
    redis_db, shared_database, workspaces_root, local_infrastructure, profile_factory, tmp_path
):
    if connections["default"].vendor != "postgresql":
        pytest.skip("several processes on one database: PostgreSQL")
    profile = profile_factory(local_infrastructure, "Starter", published=True)
    user = get_user_model().objects.create_user("rita", password=PASSWORD)
    Team.objects.create(name="team", role=Role.MEMBER).members.add(user)
    connections.close_all()

    port = free_port()
    env = shared_database_env(
        database_url(shared_database),
        tmp_path / "data",
        PORTAL_WORKSPACES_ROOT=str(workspaces_root),
        Q_BROKER_URL=REDIS_URL,
        METRICS_TOKEN=TOKEN,
        WEB_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="1",
        Q_WORKERS="1",
    )
    base = f"http://127.0.0.1:{port}"
    web_log, worker_log = tmp_path / "web.log", tmp_path / "worker.log"
    web = start(["web"], env, web_log)
    worker = None
    try:
        wait_until_serving(f"{base}/healthz", web, web_log)
        session = requests.Session()
        session.get(f"{base}/accounts/login/", timeout=30)
        session.post(
            f"{base}/accounts/login/",
            data={
                "login": "rita",
                "password": PASSWORD,
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
            },
            timeout=30,
        )
        response = session.post(
            f"{base}/workspaces/request/{profile.pk}/",
            data={"csrfmiddlewaretoken": session.cookies["csrftoken"]},
            allow_redirects=False,
            timeout=30,
        )
        assert response.status_code == 302
        workspace = Workspace.objects.get(owner__username="rita")
        assert workspace.state == State.REQUESTED
        assert redis_db.llen(QUEUE_KEY) == 1  # waiting in Redis, not in the database
        assert not OrmQ.objects.exists()
        time.sleep(1.1)
        metrics = parse(
            requests.get(
                f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
            ).text
        )
        assert value(metrics, "portal_task_queue_depth", queue="portal") == 1
        assert value(metrics, "portal_task_queue_oldest_age_seconds", queue="portal") >= 1

        worker = start(["worker"], env, worker_log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            workspace.refresh_from_db()
            if workspace.state == State.READY:
                break
            time.sleep(0.25)
        assert workspace.state == State.READY, worker_log.read_text()[-3000:]
        assert (workspaces_root / workspace.resource_name).is_dir()
        assert redis_db.llen(QUEUE_KEY) == 0
        assert not OrmQ.objects.exists()
    finally:
        for process in (worker, web):
            if process is not None:
                stop(process)
        connections.close_all()
