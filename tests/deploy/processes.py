"""Real processes for the deployment tests: the entrypoint's servers and workers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings

ENTRYPOINT = Path(settings.BASE_DIR) / "bin" / "entrypoint"
TEST_SECRET_KEY = "deploy-test-secret-key"
TEST_ENCRYPTION_KEY = "T3AWZqzeOo0FV_sGyhm6NBsIdk2UhitUQd-IgTY-9ds="
# A production start must name a mail backend; the test processes send nothing anywhere.
TEST_EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def portal_env(**overrides: str) -> dict[str, str]:
    """The environment of a portal process started the way production starts it: the
    portal's own settings module, this virtual environment's Python, a mail backend that
    keeps what it is given, nothing inherited from the test run's settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {
            "DJANGO_SETTINGS_MODULE",
            "SECRET_KEY",
            "PORTAL_ENCRYPTION_KEYS",
            "DATABASE_URL",
            "DEBUG",
            "PROMETHEUS_MULTIPROC_DIR",
            "Q_BROKER_URL",
            "CACHE_URL",
            "WARM_POOL_CLUSTER",
            "Q_CLUSTER_NAME",
            "EMAIL_HOST",
        }
    }
    env["PYTHON"] = sys.executable
    env["EMAIL_BACKEND"] = TEST_EMAIL_BACKEND
    env.update(overrides)
    return env


def shared_database_env(database_url: str, data_dir: Path, **overrides: str) -> dict[str, str]:
    """`portal_env` for processes that share this test's database: the same keys as this
    process (it enqueues tasks too, signed with SECRET_KEY, and reads their secrets)."""
    return portal_env(
        DATABASE_URL=database_url,
        SECRET_KEY=settings.SECRET_KEY,
        PORTAL_ENCRYPTION_KEYS=",".join(settings.ENCRYPTION_KEYS),
        PORTAL_DATA_DIR=str(data_dir),
        **overrides,
    )


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [str(ENTRYPOINT), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen, timeout: float = 30) -> int:
    """SIGTERM the process (the container's PID 1); SIGKILL its group if anything lingers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    deadline = time.monotonic() + 10  # the rest of the group (gunicorn workers, q workers)
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    return process.returncode


def get(url: str, headers: dict | None = None, timeout: float = 10) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_until_serving(url: str, process: subprocess.Popen, log: Path, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            return get(url, timeout=2)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")
