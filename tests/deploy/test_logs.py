"""Structured logs: the ids a record carries, and how a request's id reaches its tasks."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from django_q.conf import Conf
from django_q.tasks import async_task, result

from portal import logs


def observe(workspace_id: int) -> dict:
    """A task that reports the log context it runs under."""
    return logs.current()


def format_record(formatter: logging.Formatter, message: str) -> str:
    record = logging.LogRecord("pools.tasks", logging.WARNING, __file__, 1, message, (), None)
    logs.ContextFilter().filter(record)
    return formatter.format(record)


def test_a_json_line_carries_every_bound_id():
    with logs.bind(request_id="r-1", user="mia"), logs.bind(workspace_id=42, task_id=None):
        line = format_record(logs.JsonFormatter(), "disk /data full")
    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "pools.tasks"
    assert entry["message"] == "disk /data full"
    assert entry["request_id"] == "r-1"
    assert entry["user"] == "mia"
    assert entry["workspace_id"] == "42"
    assert "task_id" not in entry  # None is not bound
    assert entry["timestamp"].endswith("+00:00")


def test_the_human_format_is_one_readable_line():
    with logs.bind(request_id="r-2", pool_instance_id=7):
        line = format_record(logs.HumanFormatter(), "ready")
    assert line.endswith("WARNING pools.tasks [request_id=r-2 pool_instance_id=7] ready")
    assert format_record(logs.HumanFormatter(), "plain").endswith("WARNING pools.tasks plain")


def test_bind_restores_the_outer_context():
    with logs.bind(request_id="outer"):
        with logs.bind(request_id="inner", user="u"):
            assert logs.current() == {"request_id": "inner", "user": "u"}
        assert logs.current() == {"request_id": "outer"}
    assert logs.current() == {}


@pytest.mark.django_db
def test_a_response_names_its_request_id(client, member):
    client.force_login(member)
    response = client.get("/workspaces/")
    uuid.UUID(response["X-Request-ID"])
    assert client.get("/workspaces/")["X-Request-ID"] != response["X-Request-ID"]


@pytest.mark.django_db
def test_the_access_log_writes_a_password_reset_key_as_redacted(client, caplog):
    """Whoever reads the log must not be able to set the account's password."""
    with caplog.at_level("INFO", logger="portal.access"):
        client.get("/accounts/password/reset/key/1z-cfa8kp-0123456789abcdef0123/")
        client.get("/accounts/password/reset/")
    logged = [r.getMessage() for r in caplog.records if r.name == "portal.access"]
    assert [line.rsplit(" ", 3)[0] for line in logged] == [
        "GET /accounts/password/reset/key/1z-redacted/",
        "GET /accounts/password/reset/",
    ]


@pytest.mark.django_db
def test_a_task_runs_under_the_request_id_it_was_enqueued_with(monkeypatch):
    monkeypatch.setattr(Conf, "SYNC", True)  # run in this process, through the same signals
    with logs.bind(request_id="req-9", user="mia"):
        task_id = async_task("tests.deploy.test_logs.observe", 42)
        assert logs.current() == {"request_id": "req-9", "user": "mia"}  # restored after
    seen = result(task_id)
    assert seen == {
        "request_id": "req-9",
        "user": "mia",
        "task_id": task_id,
        "task": "tests.deploy.test_logs.observe",
        "workspace_id": "42",
    }
