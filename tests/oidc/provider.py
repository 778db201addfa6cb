"""Run a real OpenID Connect provider (node-oidc-provider v8, see ``server.js``) for tests.

The provider mimics an Okta custom authorization server: the issuer is
``http://127.0.0.1:<port>/oauth2/default`` and the endpoints are ``<issuer>/v1/authorize``,
``/v1/token``, ``/v1/userinfo``, ``/v1/keys`` and ``/v1/logout``. The login page has inputs
``name="username"`` / ``name="password"`` and a "Sign in" button; consent is automatic.

Requires Node.js >= 18 and ``npm ci`` run once in ``tests/oidc``.

Usage::

    from tests.oidc.provider import OidcProvider

    with OidcProvider().start() as op:          # free port, default client + users
        op.issuer                               # http://127.0.0.1:<port>/oauth2/default
        op.set_groups("ada", ["gpu-users"])     # seen on the NEXT login / userinfo call

or, in pytest, the session-scoped ``oidc_provider`` fixture defined here (import it into a
``conftest.py`` or list this module in ``pytest_plugins``).

Users live in ``<tmpdir>/users.json``; the server re-reads that file on every account lookup, and
``set_groups`` goes through the server's ``POST /__test__/users/<username>/groups`` endpoint, which
rewrites the same file. So a test may equally call ``update_user`` (which edits the file) between
logins.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

OIDC_DIR = Path(__file__).resolve().parent
SERVER_JS = OIDC_DIR / "server.js"

DEFAULT_ISSUER_PATH = "/oauth2/default"
DEFAULT_CLIENT_ID = "portal-test"
DEFAULT_CLIENT_SECRET = "portal-test-secret"
# allauth's callback for an ``openid_connect`` app whose provider_id is "okta".
DEFAULT_CALLBACK_PATH = "/accounts/oidc/okta/login/callback/"
# The portal's live-server port is not known in advance: every redirect_uri starting with one of
# these prefixes is accepted for the default client (see ``redirect_uri_prefix`` in server.js).
DEFAULT_REDIRECT_URI_PREFIXES = ("http://127.0.0.1:", "http://localhost:")

DEFAULT_USERS: list[dict[str, Any]] = [
    {
        "id": "00u-ada",
        "username": "ada",
        "password": "ada-password",
        "email": "ada@example.com",
        "email_verified": True,
        "given_name": "Ada",
        "family_name": "Lovelace",
        "groups": ["gpu-users", "ml-team"],
    },
    {
        "id": "00u-grace",
        "username": "grace",
        "password": "grace-password",
        "email": "grace@example.com",
        "email_verified": True,
        "given_name": "Grace",
        "family_name": "Hopper",
        "groups": ["unmapped"],
    },
]


def default_client(
    redirect_uris: list[str] | None = None,
    redirect_uri_prefix: list[str] | tuple[str, ...] | str | None = DEFAULT_REDIRECT_URI_PREFIXES,
) -> dict[str, Any]:
    """The ``portal-test`` confidential client (client_secret_basic and _post both work)."""
    client: dict[str, Any] = {
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "client_name": "GPU Portal (test)",
        "redirect_uris": list(redirect_uris or [f"http://127.0.0.1{DEFAULT_CALLBACK_PATH}"]),
        "post_logout_redirect_uris": [],
        "token_endpoint_auth_method": "client_secret_basic",
    }
    if redirect_uri_prefix:
        prefixes = (
            [redirect_uri_prefix] if isinstance(redirect_uri_prefix, str) else redirect_uri_prefix
        )
        client["redirect_uri_prefix"] = list(prefixes)
    return client


class OidcProviderError(RuntimeError):
    """The provider process could not be started or answered unexpectedly."""


class OidcProvider:
    """A ``node server.js`` child process serving a real OIDC provider on 127.0.0.1."""

    def __init__(self, node: str | None = None) -> None:
        self.node = node or os.environ.get("OIDC_TEST_NODE") or shutil.which("node") or "node"
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.issuer_path = DEFAULT_ISSUER_PATH
        self.clients: list[dict[str, Any]] = []
        self._initial_users: list[dict[str, Any]] = []
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._issuer: str | None = None
        self._log_file: Any = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(
        self,
        port: int | None = None,
        clients: list[dict[str, Any]] | None = None,
        users: list[dict[str, Any]] | None = None,
        *,
        redirect_uris: list[str] | None = None,
        issuer_path: str = DEFAULT_ISSUER_PATH,
        require_pkce: bool = False,
        timeout: float = 20.0,
    ) -> OidcProvider:
        """Start the provider and wait until discovery answers; returns ``self``.

        ``port=None`` lets the server bind a free port (no race). ``clients=None`` registers
        ``default_client(redirect_uris)``; ``users=None`` uses ``DEFAULT_USERS`` (ada, grace).
        """
        if self.process is not None:
            raise OidcProviderError("provider already started")
        if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
            raise OidcProviderError(
                f"{OIDC_DIR / 'node_modules'} is missing: run `npm ci` in {OIDC_DIR} "
                "(needs Node.js >= 18) before running the OIDC tests"
            )
        if shutil.which(self.node) is None and not Path(self.node).is_file():
            raise OidcProviderError(f"Node.js executable {self.node!r} not found")

        self.issuer_path = "/" + issuer_path.strip("/") if issuer_path.strip("/") else ""
        self.clients = (
            copy.deepcopy(clients) if clients is not None else [default_client(redirect_uris)]
        )
        self._initial_users = copy.deepcopy(users if users is not None else DEFAULT_USERS)

        self._tmpdir = tempfile.TemporaryDirectory(prefix="oidc-provider-")
        tmp = Path(self._tmpdir.name)
        self.users_file = tmp / "users.json"
        self.config_path = tmp / "config.json"
        self.log_path = tmp / "server.log"
        ready_file = tmp / "ready.json"
        self._write_users(self._initial_users)
        self.config_path.write_text(
            json.dumps(
                {
                    "port": int(port or 0),
                    "issuer_path": self.issuer_path,
                    "clients": self.clients,
                    "users_file": str(self.users_file),
                    "require_pkce": require_pkce,
                    "ready_file": str(ready_file),
                },
                indent=2,
            )
        )
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [self.node, str(SERVER_JS), str(self.config_path)],
            cwd=OIDC_DIR,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            self._wait_ready(ready_file, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, ready_file: Path, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise OidcProviderError(
                    f"OIDC provider exited with code {self.process.returncode}:\n{self.output()}"
                )
            if self._issuer is None and ready_file.exists():
                info = json.loads(ready_file.read_text())
                self._issuer = info["issuer"]
                self.port = int(info["port"])
            if self._issuer is not None:
                try:
                    doc = self.discovery()
                    if doc.get("issuer") == self._issuer:
                        return
                except (OSError, ValueError, OidcProviderError) as exc:
                    last_error = exc
            time.sleep(0.05)
        raise OidcProviderError(
            f"OIDC provider did not answer discovery within {timeout:.0f}s "
            f"(last error: {last_error!r}):\n{self.output()}"
        )

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 5 s) and remove its temp files."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        self._issuer = None
        self.port = None

    def __enter__(self) -> OidcProvider:
        if self.process is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- URLs -----------------------------------------------------------------------------------
    @property
    def issuer(self) -> str:
        """``http://127.0.0.1:<port>/oauth2/default`` (no trailing slash)."""
        if self._issuer is None:
            raise OidcProviderError("provider not started")
        return self._issuer

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (where the ``/__test__/`` endpoints live)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.issuer}/v1/authorize"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/v1/token"

    @property
    def userinfo_endpoint(self) -> str:
        return f"{self.issuer}/v1/userinfo"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/v1/keys"

    @property
    def end_session_endpoint(self) -> str:
        return f"{self.issuer}/v1/logout"

    @property
    def client_id(self) -> str:
        return self.clients[0]["client_id"]

    @property
    def client_secret(self) -> str:
        return self.clients[0].get("client_secret", "")

    def allauth_app_settings(self, provider_id: str = "okta", name: str = "Okta") -> dict[str, Any]:
        """A ``SOCIALACCOUNT_PROVIDERS["openid_connect"]["APPS"]`` entry for the first client."""
        return {
            "provider_id": provider_id,
            "name": name,
            "client_id": self.client_id,
            "secret": self.client_secret,
            "settings": {"server_url": self.issuer},
        }

    # -- HTTP helpers ---------------------------------------------------------------------------
    def _request(self, method: str, url: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise OidcProviderError(f"{method} {url} -> {exc.code}: {detail}") from exc

    def discovery(self) -> dict[str, Any]:
        """The discovery document (fetched live)."""
        return self._request("GET", self.discovery_url)

    # -- user management ------------------------------------------------------------------------
    def _write_users(self, users: list[dict[str, Any]]) -> None:
        tmp = self.users_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"users": users}, indent=2))
        os.replace(tmp, self.users_file)

    def users(self) -> list[dict[str, Any]]:
        """The users as currently on file (``sub`` filled in)."""
        return self._request("GET", f"{self.base_url}/__test__/users")["users"]

    def set_groups(self, username: str, groups: list[str]) -> None:
        """Replace a user's ``groups`` claim; effective for the next ID token / userinfo call."""
        quoted = urllib.parse.quote(username, safe="")
        self._request("POST", f"{self.base_url}/__test__/users/{quoted}/groups", list(groups))

    def update_user(self, username: str, **fields: Any) -> None:
        """Change fields of a user (added if unknown) by rewriting the users file."""
        doc = json.loads(self.users_file.read_text())
        users = doc["users"] if isinstance(doc, dict) else doc
        for user in users:
            if str(user.get("username", "")).lower() == username.lower():
                user.update(fields)
                break
        else:
            users.append({"username": username, **fields})
        self._write_users(users)

    def clear_sessions(self) -> int:
        """Forget every provider-side SSO session: the next authorize shows the login form."""
        return self._request("POST", f"{self.base_url}/__test__/sessions/clear")["cleared"]

    def reset(self) -> None:
        """Restore the users given to ``start`` and clear provider sessions."""
        self._write_users(copy.deepcopy(self._initial_users))
        self.clear_sessions()

    def output(self) -> str:
        """Everything the server printed so far (stdout + stderr)."""
        try:
            if self._log_file is not None:
                self._log_file.flush()
            return self.log_path.read_text(errors="replace")
        except (AttributeError, OSError):
            return ""


@pytest.fixture(scope="session")
def oidc_provider() -> Any:
    """Session-wide provider: client ``portal-test``/``portal-test-secret`` (any redirect_uri
    under ``http://127.0.0.1:`` / ``http://localhost:``), users ``ada`` (ada-password,
    groups gpu-users + ml-team) and ``grace`` (grace-password, groups unmapped).

    State is shared by the whole session: call ``oidc_provider.reset()`` after changing groups.
    """
    provider = OidcProvider().start()
    try:
        yield provider
    finally:
        provider.stop()
