"""The login throttle counts once for every web worker when `CACHE_URL` names a Redis.

Two gunicorn workers, each request on a new connection (so either worker may take it):
the sixth bad password for one account is refused whichever worker counts it, and the
counts are in Redis, not in the workers' memory.
"""

from __future__ import annotations

import pytest
import requests
from django.contrib.auth import get_user_model
from django.db import connections

from tests.deploy.processes import free_port, shared_database_env, start, stop, wait_until_serving
from tests.deploy.test_redis_broker import redis_db  # noqa: F401 (a fixture)
from tests.workspace_fixtures import database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.scale_out]

REDIS_URL = "redis://127.0.0.1:6379/13"  # redis_db's database, emptied around the test


def bad_password(base: str) -> int:
    with requests.Session() as session:  # a new connection: any worker may answer
        session.get(f"{base}/accounts/login/", timeout=30)
        response = session.post(
            f"{base}/accounts/login/",
            data={
                "login": "mia",
                "password": "not her password",
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
            },
            timeout=30,
        )
        return response.status_code


def test_bad_passwords_are_counted_once_across_web_workers(
    redis_db,  # noqa: F811
    shared_database,
    tmp_path,
):
    if connections["default"].vendor != "postgresql":
        pytest.skip("several processes on one database: PostgreSQL")
    get_user_model().objects.create_user("mia", password="her own long passphrase")
    connections.close_all()
    port = free_port()
    env = shared_database_env(
        database_url(shared_database),
        tmp_path / "data",
        CACHE_URL=REDIS_URL,
        WEB_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="2",
    )
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "web.log"
    web = start(["web"], env, log)
    try:
        wait_until_serving(f"{base}/healthz", web, log)
        assert [bad_password(base) for _ in range(5)] == [200] * 5
        assert bad_password(base) == 429
        assert list(redis_db.scan_iter(match="portal:*"))  # counted in Redis
    finally:
        stop(web)
