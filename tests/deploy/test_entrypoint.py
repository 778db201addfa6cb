"""The image's entrypoint and the production settings, run as real processes.

There is no container daemon here, so the image itself cannot be built; its entrypoint
(`bin/entrypoint`, which the Dockerfile names) is run outside a container with the same
environment variables the image and the manifests set.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from tests.deploy.processes import (
    ENTRYPOINT,
    TEST_ENCRYPTION_KEY,
    TEST_SECRET_KEY,
    free_port,
    get,
    portal_env,
    start,
    stop,
    wait_until_serving,
)

CLOSED_PORT_DATABASE = "postgresql://postgres@127.0.0.1:1/portal"  # nothing listens on 1


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=120
    )


# -- production settings fail loudly -------------------------------------------------------


@pytest.mark.parametrize(
    "given, missing",
    [
        ({}, "SECRET_KEY and PORTAL_ENCRYPTION_KEYS must be set"),
        ({"SECRET_KEY": TEST_SECRET_KEY}, "PORTAL_ENCRYPTION_KEYS must be set"),
        ({"PORTAL_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEY}, "SECRET_KEY must be set"),
    ],
)
def test_with_debug_off_and_postgresql_the_portal_refuses_to_start_without_keys(
    tmp_path, given, missing
):
    env = portal_env(DATABASE_URL=CLOSED_PORT_DATABASE, PORTAL_DATA_DIR=str(tmp_path), **given)
    result = run(["check"], env)
    assert result.returncode != 0
    assert f"ConfigurationError: {missing}" in result.stderr
    assert not (tmp_path / "secret_key").exists()  # nothing generated
    assert not (tmp_path / "encryption_key").exists()


def test_the_web_server_refuses_to_start_without_keys_too(tmp_path):
    env = portal_env(
        DATABASE_URL=CLOSED_PORT_DATABASE,
        PORTAL_DATA_DIR=str(tmp_path),
        WEB_BIND=f"127.0.0.1:{free_port()}",
        WEB_CONCURRENCY="1",
    )
    log = tmp_path / "web.log"
    process = start(["web"], env, log)
    try:
        process.wait(60)
    finally:
        stop(process)
    assert process.returncode != 0
    assert "SECRET_KEY and PORTAL_ENCRYPTION_KEYS must be set" in log.read_text()


def test_with_both_keys_set_it_starts(tmp_path):
    env = portal_env(
        DATABASE_URL=CLOSED_PORT_DATABASE,
        PORTAL_DATA_DIR=str(tmp_path),
        SECRET_KEY=TEST_SECRET_KEY,
        PORTAL_ENCRYPTION_KEYS=TEST_ENCRYPTION_KEY,
    )
    result = run(["check"], env)
    assert result.returncode == 0, result.stderr


def test_with_debug_off_and_postgresql_the_portal_refuses_to_start_without_a_mail_server(
    tmp_path,
):
    """Else invitation links, bearer secrets, would go to the console: the pod's log."""
    env = portal_env(
        DATABASE_URL=CLOSED_PORT_DATABASE,
        PORTAL_DATA_DIR=str(tmp_path),
        SECRET_KEY=TEST_SECRET_KEY,
        PORTAL_ENCRYPTION_KEYS=TEST_ENCRYPTION_KEY,
    )
    del env["EMAIL_BACKEND"]
    result = run(["check"], env)
    assert result.returncode != 0
    assert "ConfigurationError: EMAIL_HOST (an SMTP server) or EMAIL_BACKEND must be set" in (
        result.stderr
    )
    result = run(["check"], {**env, "EMAIL_HOST": "smtp.example.com"})
    assert result.returncode == 0, result.stderr


def test_a_malformed_encryption_key_is_refused_by_name(tmp_path):
    env = portal_env(
        DATABASE_URL=CLOSED_PORT_DATABASE,
        PORTAL_DATA_DIR=str(tmp_path),
        SECRET_KEY=TEST_SECRET_KEY,
        PORTAL_ENCRYPTION_KEYS="not-a-fernet-key",
    )
    result = run(["check"], env)
    assert result.returncode != 0
    assert "PORTAL_ENCRYPTION_KEYS: each key must be a Fernet key" in result.stderr


@pytest.mark.parametrize(
    "extra",
    [
        {},  # SQLite: one host, keys generated once into the data directory
        {"DEBUG": "1", "DATABASE_URL": CLOSED_PORT_DATABASE},  # development on PostgreSQL
    ],
)
def test_sqlite_or_debug_still_generate_keys(tmp_path, extra):
    env = portal_env(PORTAL_DATA_DIR=str(tmp_path), **extra)
    result = run(["check"], env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "secret_key").exists()
    assert (tmp_path / "encryption_key").exists()


def test_a_broker_url_that_is_not_redis_is_refused_without_printing_its_password(tmp_path):
    env = portal_env(
        PORTAL_DATA_DIR=str(tmp_path), Q_BROKER_URL="amqp://guest:hunter2-secret@rabbit:5672"
    )
    result = run(["check"], env)
    assert result.returncode != 0
    assert "Q_BROKER_URL has the scheme 'amqp': only Redis is supported" in result.stderr
    assert "hunter2-secret" not in result.stderr


def test_a_cache_url_that_is_not_redis_is_refused_without_printing_its_password(tmp_path):
    env = portal_env(PORTAL_DATA_DIR=str(tmp_path), CACHE_URL="Redis://:hunter2-secret@redis:6379")
    result = run(["check"], env)
    assert result.returncode != 0
    assert "CACHE_URL has the scheme 'Redis': only Redis is supported" in result.stderr
    assert "hunter2-secret" not in result.stderr


# -- the entrypoint's commands -------------------------------------------------------------


def test_web_serves_healthz_and_readyz_says_the_database_is_unreachable(tmp_path):
    """gunicorn as the image runs it, pointed at a database port where nothing listens."""
    port = free_port()
    env = portal_env(
        DATABASE_URL=CLOSED_PORT_DATABASE,
        PORTAL_DATA_DIR=str(tmp_path),
        SECRET_KEY=TEST_SECRET_KEY,
        PORTAL_ENCRYPTION_KEYS=TEST_ENCRYPTION_KEY,
        WEB_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="1",
        LOG_FORMAT="json",
    )
    log = tmp_path / "web.log"
    process = start(["web"], env, log)
    try:
        status, body = wait_until_serving(f"http://127.0.0.1:{port}/healthz", process, log)
        assert (status, body) == (200, "ok\n")
        status, body = get(f"http://127.0.0.1:{port}/readyz")
        assert (status, body) == (503, "not ready: database unreachable\n")
    finally:
        code = stop(process)
    assert code == 0, log.read_text()[-3000:]  # a clean shutdown on SIGTERM
    assert '"logger": "gunicorn.error", "message": "Booting worker' in log.read_text()


def test_an_unknown_command_prints_the_usage(tmp_path):
    result = run(["serve"], portal_env(PORTAL_DATA_DIR=str(tmp_path)))
    assert result.returncode == 64
    assert "usage:" in result.stderr and "pools-worker" in result.stderr


def test_the_pools_worker_needs_the_pool_queue_named(tmp_path):
    result = run(["pools-worker"], portal_env(PORTAL_DATA_DIR=str(tmp_path)))
    assert result.returncode != 0
    assert "set WARM_POOL_CLUSTER" in result.stderr


# -- the Dockerfile ------------------------------------------------------------------------


def dockerfile_stages(text: str) -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split by FROM."""
    lines = re.sub(r"\\\n\s*", " ", text).splitlines()
    instructions = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    stages: list[list[str]] = []
    for instruction in instructions:
        if instruction.upper().startswith("FROM "):
            stages.append([])
        stages[-1].append(instruction)
    return stages


def test_the_dockerfile_is_multi_stage_non_root_and_runs_the_entrypoint():
    root = Path(settings.BASE_DIR)
    stages = dockerfile_stages((root / "Dockerfile").read_text())
    assert len(stages) >= 2
    final = stages[-1]
    user = [i for i in final if i.startswith("USER ")]
    assert user and user[-1].split()[1].split(":")[0] not in ("0", "root")
    assert 'ENTRYPOINT ["/app/bin/entrypoint"]' in final
    assert 'CMD ["web"]' in final
    assert os.access(ENTRYPOINT, os.X_OK)
    usage = run(["--help"], portal_env()).stderr
    for command in ("web", "worker", "pools-worker", "migrate"):
        assert command in usage
    for stage in stages:
        for instruction in stage:
            if instruction.startswith("COPY ") and "--from=" not in instruction:
                sources = [s for s in instruction.split()[1:-1] if not s.startswith("--")]
                for source in sources:
                    assert (root / source).exists(), instruction
