"""The Kubernetes client talks only to the server its kubeconfig names: an API server's
redirect is never followed, and is a permanent error that says so."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
import yaml

from pools import kube
from pools.drivers.base import PermanentError

NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ws-1"}}


class Elsewhere(BaseHTTPRequestHandler):
    """A service the kubeconfig never names (an internal one, a metadata endpoint): it
    records every request that reaches it and answers like an API server would."""

    hits: list = []

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        type(self).hits.append((self.command, self.path, body))
        data = json.dumps({"kind": "NodeList", "apiVersion": "v1", "items": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PATCH = do_POST = do_DELETE = _answer

    def log_message(self, *args):
        pass


def redirecting_to(target: str, status: int):
    class Redirect(BaseHTTPRequestHandler):
        """The API server the kubeconfig names, answering every request with a redirect."""

        def _answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(status)
            self.send_header("Location", f"{target}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_PATCH = do_POST = do_DELETE = _answer

        def log_message(self, *args):
            pass

    return Redirect


def serve(handler) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def kubeconfig(server: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": server}}],
            "users": [{"name": "u", "user": {"token": "sekrit-token"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        }
    )


@pytest.fixture(params=[301, 302, 307, 308])
def redirecting_client(request):
    Elsewhere.hits = []
    elsewhere = serve(Elsewhere)
    named = serve(redirecting_to(f"http://127.0.0.1:{elsewhere.server_address[1]}", request.param))
    server = f"http://127.0.0.1:{named.server_address[1]}"
    yield kube.client_for(SimpleNamespace(kubeconfig=kubeconfig(server), in_cluster=False))
    for running in (named, elsewhere):
        running.shutdown()
        running.server_close()


@pytest.mark.parametrize(
    "call",
    [
        lambda client: client.list("Node"),
        lambda client: client.get("Namespace", "ws-1"),
        lambda client: client.apply(NAMESPACE),
        lambda client: client.delete("Namespace", "ws-1"),
    ],
    ids=["list", "get", "apply", "delete"],
)
def test_a_redirect_is_never_followed_and_is_a_permanent_error(redirecting_client, call):
    """A redirect followed would send the request, an apply's whole object included, to any
    address the portal reaches, and the portal would believe that address's answer."""
    with pytest.raises(PermanentError) as raised:
        call(redirecting_client)

    assert Elsewhere.hits == []
    assert "redirected the request for" in str(raised.value)
    assert "The portal follows no redirect" in str(raised.value)
