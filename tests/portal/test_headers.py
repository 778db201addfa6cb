"""Issue 11, finding 9: Content-Security-Policy on every page, HSTS when the site is HTTPS."""

import os
import re
import subprocess
import sys
from http import HTTPStatus
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


def _policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


@pytest.mark.parametrize("path", ["/workspaces/", "/admin/users/", "/admin/groups/"])
def test_pages_carry_a_policy_without_inline_script(admin_client, path):
    response = admin_client.get(path)
    assert response.status_code == HTTPStatus.OK
    policy = _policy(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src-elem"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "'unsafe-eval'" not in response["Content-Security-Policy"]


def test_the_login_page_carries_the_policy(client):
    response = client.get("/accounts/login/")
    assert response.status_code == HTTPStatus.OK
    assert _policy(response)["script-src"] == ["'self'"]


def test_no_template_relies_on_inline_script():
    """Inline <script> bodies, on* handlers and javascript: URLs would be blocked by the CSP."""
    offenders = []
    for path in sorted((ROOT / "templates").rglob("*.html")):
        text = path.read_text()
        for pattern in (r"<script(?![^>]*\bsrc=)[^>]*>", r"\son[a-z]+\s*=", r"javascript:"):
            if re.search(pattern, text, re.IGNORECASE):
                offenders.append(f"{path.relative_to(ROOT)}: {pattern}")
    assert offenders == []


def test_hsts_is_sent_on_https_requests(settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    secure = Client().get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
    assert secure["Strict-Transport-Security"] == "max-age=31536000"
    plain = Client().get("/accounts/login/")
    assert "Strict-Transport-Security" not in plain


def _settings_value(name: str, tmp_path, **env) -> str:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"SITE_URL", "SECURE_COOKIES", "SECURE_HSTS_SECONDS", "DATABASE_URL"}
    }
    environment.update(PORTAL_DATA_DIR=str(tmp_path), **env)
    result = subprocess.run(
        [sys.executable, "-c", f"import portal.settings as s; print(s.{name})"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def test_hsts_is_on_by_default_for_an_https_site_url_only(tmp_path):
    https = _settings_value("SECURE_HSTS_SECONDS", tmp_path, SITE_URL="https://gpu.example.com")
    assert https == "31536000"
    assert _settings_value("SECURE_HSTS_SECONDS", tmp_path, SITE_URL="http://127.0.0.1") == "0"
    chosen = _settings_value(
        "SECURE_HSTS_SECONDS", tmp_path, SITE_URL="https://a.example", SECURE_HSTS_SECONDS="600"
    )
    assert chosen == "600"
