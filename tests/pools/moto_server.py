"""A real moto server for the AWS tests: a subprocess answering HTTP on 127.0.0.1.

`moto_endpoint` (session scope) starts `moto_server` on a free port, waits until it answers,
yields its URL and stops it. `aws` (per test) resets moto's state, points the portal's
`AWS_ENDPOINT_URL` setting at the server and gives the environment dummy credentials (for
the portal's own identity when it assumes a role). Bind both in a test module:

    moto_endpoint = moto_server.moto_endpoint
    aws = moto_server.aws
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _command(port: int) -> list[str]:
    script = Path(sys.executable).with_name("moto_server")
    if script.exists() or shutil.which("moto_server"):
        return [
            str(script if script.exists() else shutil.which("moto_server")),
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
        ]
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


@pytest.fixture(scope="session")
def moto_endpoint():
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        _command(port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"moto_server exited: {process.stderr.read()[-2000:]}")
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("moto_server did not answer within 30 s")
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def aws(moto_endpoint, settings, monkeypatch):
    """A clean moto, with the portal pointed at it."""
    request = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    settings.AWS_ENDPOINT_URL = moto_endpoint
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "portal-identity")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "portal-identity-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    return moto_endpoint
