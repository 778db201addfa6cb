"""A local workspace with a network of its own reaches the internet over HTTPS through a
proxy of its own (`pools/relay.py --egress`), and through it nothing else: not the
portal, the database, cloud metadata nor this host's own addresses.

The first tests run the proxy as a plain process (any machine); the last ones start real
workspace processes in their own network namespaces (the portal as root, as in CI).
"""

import ipaddress
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pools import health, isolation, relay, supervisor
from pools.drivers import driver_for
from pools.drivers.base import WorkspaceSpec
from tests import workspace_fixtures
from tests.workspace_fixtures import forget_host_resources, wait_for

ip = ipaddress.ip_address
workspaces_root = workspace_fixtures.workspaces_root
PUBLIC = ip("8.8.8.8")


# -- the decision ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "port", "why_not"),
    [
        ("8.8.8.8", 443, ""),
        ("2606:4700::1111", 443, ""),
        ("8.8.8.8", 22, "port 22 is not allowed (only 443, for HTTPS)"),
        ("8.8.8.8", 80, "port 80 is not allowed (only 443, for HTTPS)"),
        ("127.0.0.1", 443, "not a public address"),
        ("10.1.2.3", 443, "not a public address"),
        ("192.168.0.10", 443, "not a public address"),
        ("169.254.169.254", 443, "not a public address"),  # cloud metadata
        ("100.100.100.200", 443, "not a public address"),  # Alibaba's metadata
        ("fd00:ec2::254", 443, "not a public address"),  # AWS's metadata over IPv6
        ("100.64.0.1", 443, "not a public address"),  # carrier-grade NAT
        ("0.0.0.0", 443, "not a public address"),
        ("224.0.0.251", 443, "not a public address"),  # multicast
        ("::1", 443, "not a public address"),
        ("fe80::1", 443, "not a public address"),
        ("fd00::2", 443, "not a public address"),
        ("fec0::1", 443, "not a public address"),  # site-local (deprecated, still routable)
        ("5f00::1", 443, "not a public address"),  # outside 2000::/3, which is all that's routed
        ("ff02::1", 443, "not a public address"),
        # IPv4 written as IPv6: judged as the IPv4 address it stands for.
        ("::ffff:127.0.0.1", 443, "not a public address"),  # mapped
        ("::ffff:10.0.0.1", 443, "not a public address"),
        ("::a9fe:a9fe", 443, "not a public address"),  # compatible (::169.254.169.254)
        ("::ffff:0:a9fe:a9fe", 443, "not a public address"),  # SIIT
        ("64:ff9b::a9fe:a9fe", 443, "not a public address"),  # NAT64
        ("64:ff9b::808:808", 443, ""),  # NAT64 of 8.8.8.8
        ("2002:a00:1::1", 443, "not a public address"),  # 6to4 of 10.0.0.1
        ("2001::1", 443, "not a public address"),  # Teredo
        ("192.0.2.1", 443, "not a public address"),  # documentation
        ("198.51.100.1", 443, "not a public address"),
        ("203.0.113.1", 443, "not a public address"),
        ("192.0.0.8", 443, "not a public address"),  # IETF protocol assignments
        ("::ffff:8.8.8.8", 443, ""),
    ],
)
def test_only_port_443_of_a_public_address_is_allowed(address, port, why_not):
    chosen, reason = relay.choose(address, port, [ip(address)], [], [])
    if why_not.startswith("not"):
        why_not = f"{address} is {why_not}"
    assert reason == why_not
    assert chosen == ([] if why_not else [ip(address)])


def test_a_local_use_nat64_address_is_refused_as_its_ipv4_address_cannot_be_told():
    """With a /48 of 64:ff9b:1::/48 as its prefix, a translator finds the IPv4 address in
    bits 48-63 and 72-87 (RFC 6052), not in the last 32: this one reaches the metadata
    service, though its last 32 bits are 8.8.8.8."""
    address = ip("64:ff9b:1:a9fe:a9:fe00:808:808")
    raw = address.packed
    assert ipaddress.IPv4Address(raw[6:8] + raw[9:11]) == ip("169.254.169.254")

    for asked in (address, ip("64:ff9b:1::808:808"), ip("64:ff9b:1::a9fe:a9fe")):
        chosen, reason = relay.choose(str(asked), 443, [asked], [], [])
        assert chosen == []
        assert reason == (
            f"{asked} is not a public address (local-use NAT64, 64:ff9b:1::/48: "
            "which IPv4 address it stands for cannot be told)"
        )


def test_the_proxy_refuses_exactly_the_ipv4_ranges_a_kubernetes_workspace_is_refused():
    """`NOT_PUBLIC_IPV4`, which the NetworkPolicy lists too: inside each range, at both
    ends, refused; just outside it, allowed, unless another range starts there."""

    def refused(address):
        return relay.choose(str(address), 443, [address], [], [])[0] == []

    def listed(address):
        return any(address in network for network in relay.NOT_PUBLIC_IPV4)

    for network in relay.NOT_PUBLIC_IPV4:
        assert refused(network[0]) and refused(network[-1]), network
        for outside in (int(network[0]) - 1, int(network[-1]) + 1):
            if 0 <= outside < 2**32:
                neighbour = ipaddress.IPv4Address(outside)
                assert refused(neighbour) == listed(neighbour), neighbour


def test_the_hosts_own_public_address_is_refused():
    """The portal may listen on every address of its host, public ones too."""
    own = [ipaddress.ip_network("8.8.8.8/32")]
    chosen, reason = relay.choose("me.example.org", 443, [PUBLIC], own, [])
    assert chosen == [] and reason == "me.example.org is this host's own address"
    assert relay.choose("me", 443, [ip("::ffff:8.8.8.8")], own, [])[0] == []


def test_a_name_resolving_to_a_private_and_a_public_address_gets_the_public_one():
    chosen, _ = relay.choose("mixed.example.org", 443, [ip("10.0.0.1"), PUBLIC], [], [])
    assert chosen == [PUBLIC]
    # Which private address a name has is not said: the workspace is not to map the network.
    assert relay.choose("internal.example.org", 443, [ip("10.0.0.1")], [], []) == (
        [],
        "internal.example.org is not a public address",
    )
    assert relay.choose("nothing.example.org", 443, [], [], []) == (
        [],
        "nothing.example.org has no address",
    )


def test_every_acceptable_address_of_a_name_is_chosen_in_the_resolvers_order():
    """They are tried in turn until one answers (`relay.connect_any`)."""
    v6, private = ip("2606:4700::1111"), ip("10.0.0.1")
    assert relay.choose("dual.example.org", 443, [v6, private, PUBLIC], [], []) == (
        [v6, PUBLIC],
        "",
    )


def test_an_administrators_exceptions_allow_their_destination_on_their_port_only():
    allowed = [
        relay.Allowed.parse("pypi.internal:8443"),
        relay.Allowed.parse("10.20.0.0/16:443"),
        relay.Allowed.parse("[fd00::/8]:3141"),
        relay.Allowed.parse("10.30.0.0/16:8080"),
    ]
    mirror = ip("10.9.9.9")
    assert relay.choose("PyPI.internal.", 8443, [mirror], [], allowed) == ([mirror], "")
    assert relay.choose("pypi.internal", 8444, [mirror], [], allowed)[0] == []
    assert relay.choose("other.internal", 8443, [mirror], [], allowed)[0] == []
    assert relay.choose("x", 443, [ip("10.20.1.1")], [], allowed)[0] == [ip("10.20.1.1")]
    assert relay.choose("x", 443, [ip("10.21.1.1")], [], allowed)[0] == []
    assert relay.choose("x", 3141, [ip("fd00::5")], [], allowed)[0] == [ip("fd00::5")]
    assert relay.choose("x", 3141, [ip("fe80::5")], [], allowed)[0] == []
    # On a port other than 443, every address of the name is judged against the exceptions.
    two = [ip("10.99.0.1"), ip("10.30.0.7")]
    assert relay.choose("x", 8080, two, [], allowed)[0] == [ip("10.30.0.7")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pypi.internal", "is not HOST:PORT"),
        ("pypi.internal:0", "is not HOST:PORT"),
        ("pypi.internal:99999", "is not HOST:PORT"),
        (":443", "is not HOST:PORT"),
        ("10.0.0.0/33:443", "is no name or network"),
        ("bad name:443", "is no name or network"),
        ("$(reboot):443", "is no name or network"),
    ],
)
def test_a_wrong_exception_says_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        relay.Allowed.parse(text)


def test_the_hosts_own_addresses_come_from_the_kernel():
    own = relay.own_networks()
    assert any(ip("127.0.0.5") in network for network in own)  # all of 127/8 is local
    assert any(ip("::1") in network for network in own)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: it picks the source address
        except OSError:
            return  # no route at all: only the loopback is known
        assert any(ip(probe.getsockname()[0]) in network for network in own)


PROBE_OWN_PREFIX = r"""
import ipaddress, json, socket
from pools import relay
server = socket.socket(socket.AF_INET6)
server.bind(("::", 443))  # the host's HTTPS service (the portal's reverse proxy)
server.listen()
target = "2a00:1450:dead::5"
client = socket.create_connection((target, 443), timeout=3)
_, peer = server.accept()
address = ipaddress.ip_address(target)
chosen, why_not = relay.choose(target, 443, [address], relay.own_networks(), [])
print(json.dumps({"host_answers_from": peer[0], "chosen": chosen, "why_not": why_not}))
"""


@pytest.fixture
def network_namespace():
    """A throwaway network namespace whose host answers on a whole IPv6 prefix, as one
    serving many addresses does (`ip -6 route add local PREFIX dev lo`, "AnyIP")."""
    name = f"portal-test-prefix-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        route = ["ip", "-n", name, "-6", "route", "add", "local", "2a00:1450:dead::/64"]
        subprocess.run([*route, "dev", "lo"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


needs_a_network_namespace = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip"), reason="a network namespace needs root and ip"
)


@needs_a_network_namespace
def test_every_address_of_an_ipv6_prefix_the_host_answers_on_is_its_own(network_namespace):
    done = subprocess.run(
        ["ip", "netns", "exec", network_namespace, sys.executable, "-c", PROBE_OWN_PREFIX],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["host_answers_from"] == "::1"  # the address is the host's own
    assert result["chosen"] == []
    assert result["why_not"] == "2a00:1450:dead::5 is this host's own address"


def test_new_connections_are_limited_to_a_rate():
    bucket = relay.Bucket(rate=0, burst=3)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_a_tunnel_silent_both_ways_is_closed_and_a_busy_one_is_not():
    workspace_side, client = socket.socketpair()
    mirror_side, server = socket.socketpair()
    copying = threading.Thread(target=relay.copy_both_ways, args=(client, server, 0.5))
    copying.start()
    for _ in range(5):  # 1.2 s of traffic, longer than the limit, in shorter gaps
        workspace_side.sendall(b"ping")
        assert mirror_side.recv(4) == b"ping"
        last = time.monotonic()
        assert copying.is_alive()
        time.sleep(0.3)
    copying.join(timeout=5)
    assert not copying.is_alive()
    assert time.monotonic() - last > 0.45  # after 0.5 s of silence (from its own last send)
    assert workspace_side.recv(1) == b"" and mirror_side.recv(1) == b""  # both closed
    assert relay.TUNNEL_IDLE == 900  # what the proxy passes for its tunnels


def test_the_proxys_sandbox_resolves_names_as_the_host_does(tmp_path):
    """Where resolv.conf links into /run (systemd-resolved), which a sandbox empties."""
    resolver = tmp_path / "run" / "systemd" / "resolve"
    resolver.mkdir(parents=True)
    (resolver / "stub-resolv.conf").write_text("nameserver 127.0.0.53\n")
    link = tmp_path / "resolv.conf"
    link.symlink_to(resolver / "stub-resolv.conf")
    assert isolation.resolver_mounts(link) == ["--ro-bind", str(resolver), str(resolver)]
    plain = tmp_path / "plain-resolv.conf"
    plain.write_text("nameserver 192.0.2.53\n")
    assert isolation.resolver_mounts(plain) == []


# -- the proxy, as a process ---------------------------------------------------------------


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from the mirror"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror():
    """An HTTP server on the host's loopback, standing in for an internal mirror."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def start_proxy(settings, tmp_path):
    """Factory: the egress proxy on a port of this host, started as a workspace's is
    (`isolation.egress_argv`) with these exceptions and source addresses, behind `prefix`
    (a command that runs it elsewhere); its port and log."""
    started = []

    def start(allowed: list[str], sources: list[str] = (), prefix=()) -> tuple[int, Path]:
        settings.LOCAL_WORKSPACE_EGRESS_ALLOW = allowed
        settings.LOCAL_WORKSPACE_EGRESS_SOURCE = list(sources)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        log = tmp_path / f"egress-{len(started)}.log"
        with listener, log.open("w") as output:
            argv = [*prefix, *isolation.egress_argv(listener.fileno())]
            started.append(subprocess.Popen(argv, pass_fds=(listener.fileno(),), stdout=output))
            port = listener.getsockname()[1]
        wait_for(lambda: _answers(port), timeout=10, what="the proxy")
        return port, log

    yield start
    for process in started:
        process.kill()
        process.wait()


@pytest.fixture
def proxy(start_proxy, mirror):
    """The egress proxy, allowing the mirror as an exception."""
    return start_proxy([f"127.0.0.1:{mirror}"])


def _answers(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def ask(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(request)
        answer = b""
        while chunk := client.recv(4096):
            answer += chunk
    return answer


def test_a_tunnel_to_an_allowed_destination_carries_a_real_clients_request(proxy, mirror):
    port, log = proxy
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.set_tunnel("127.0.0.1", mirror)  # what https_proxy makes a client do
    connection.request("GET", "/")
    response = connection.getresponse()
    assert (response.status, response.read()) == (200, b"hello from the mirror")
    connection.close()
    assert f"allowed 127.0.0.1:{mirror}\n" in log.read_text()


@pytest.mark.parametrize(
    ("request_", "status", "reason"),
    [
        (b"CONNECT 127.0.0.1:5432 HTTP/1.1\r\n\r\n", 403, b"port 5432 is not allowed"),
        (b"CONNECT 127.0.0.1:443 HTTP/1.1\r\n\r\n", 403, b"127.0.0.1 is this host's own"),
        (b"CONNECT 169.254.169.254:443 HTTP/1.1\r\n\r\n", 403, b"is not a public address"),
        (b"CONNECT localhost:443 HTTP/1.1\r\n\r\n", 403, b"is this host's own address"),
        (b"GET http://example.org/ HTTP/1.1\r\nHost: x\r\n\r\n", 405, b"only HTTPS"),
        (b"CONNECT nowhere HTTP/1.1\r\n\r\n", 400, b"is not HOST:PORT"),
        (b"CONNECT bad\x00name:443 HTTP/1.1\r\n\r\n", 400, b"is not a host name"),
        (b"hello\r\n\r\n", 400, b"not an HTTP request"),
        (b"CONNECT a:443 HTTP/1.1\r\nX: " + b"y" * 9000 + b"\r\n\r\n", 431, b"too long"),
    ],
)
def test_everything_else_is_refused_saying_why(proxy, request_, status, reason):
    port, log = proxy
    answer = ask(port, request_)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer
    assert reason in answer
    wait_for(lambda: "refused" in log.read_text(), timeout=5, what="the log line")


def test_a_decision_is_logged_once_however_often_a_client_asks(proxy, mirror):
    port, log = proxy
    for _ in range(3):
        assert ask(port, b"CONNECT 10.1.2.3:443 HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 403 ")
    ask(port, b"CONNECT 10.1.2.4:443 HTTP/1.1\r\n\r\n")
    wait_for(lambda: "10.1.2.4" in log.read_text(), timeout=5, what="the second refusal")
    assert log.read_text().count("refused 10.1.2.3:443: 10.1.2.3 is not a public address") == 1


def test_the_mirrors_port_is_not_an_opening_to_the_rest_of_the_host(proxy, mirror):
    port, _ = proxy
    other = supervisor.free_port()
    answer = ask(port, f"CONNECT 127.0.0.1:{other} HTTP/1.1\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 403 ")


# -- where it leaves from -----------------------------------------------------------------


class SaysWhereFrom(socketserver.BaseRequestHandler):
    def handle(self):
        self.server.peers.append(self.client_address[0])
        self.request.sendall(self.client_address[0].encode())


class WhereFromServer(socketserver.ThreadingTCPServer):
    """A plain TCP server that answers each connection with the address it came from, and
    keeps those addresses."""

    daemon_threads = True

    def __init__(self, host: str):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.peers: list[str] = []
        super().__init__((host, 0), SaysWhereFrom)
        self.port = self.server_address[1]


@pytest.fixture
def where_from():
    """Factory: a `WhereFromServer` on the host's loopback, standing in for a destination
    that checks where its clients come from (an allowlist, an audit log)."""
    servers = []

    def start(host: str = "127.0.0.1") -> WhereFromServer:
        servers.append(WhereFromServer(host))
        threading.Thread(target=servers[-1].serve_forever, daemon=True).start()
        return servers[-1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def source_address():
    """An address of this host other than its loopback's, standing in for one routed
    through an egress gateway: added to the loopback device for the test (198.18.0.0/15 is
    for benchmarks), which needs root."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("adding an address to the host needs root and ip")
    pid = os.getpid()
    address = f"198.18.{pid >> 8 & 255}.{pid & 255}"
    subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True)
    yield address
    subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", "lo"], check=False)


def test_a_source_is_an_ip_address_and_at_most_one_of_each_version():
    assert relay.parse_sources([" 10.9.0.5", "2001:db8::5"]) == {
        4: ip("10.9.0.5"),
        6: ip("2001:db8::5"),
    }
    assert relay.parse_sources(["10.9.0.5", "10.9.0.5 "]) == {4: ip("10.9.0.5")}  # once
    assert relay.parse_sources([]) == {}


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["eth1"], "'eth1' is not an IP address"),
        (["10.9.0.0/24"], "'10.9.0.0/24' is not an IP address"),
        (["10.9.0.5", "10.9.0.6"], "10.9.0.5 and 10.9.0.6 are both IPv4: one of each"),
        (["::ffff:10.9.0.5"], "is an IPv4 address: write it as 10.9.0.5"),
        (["127.0.0.2"], "127.0.0.2 is a loopback address: nothing leaves this host from it"),
        (["::1"], "::1 is a loopback address: nothing leaves this host from it"),
        (["169.254.7.1"], "169.254.7.1 is a link-local address: it reaches its link only"),
        (["fe80::7"], "fe80::7 is a link-local address: it reaches its link only"),
    ],
)
def test_a_wrong_source_says_what_is_wrong(texts, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        relay.parse_sources(texts)


def test_a_source_must_be_an_address_of_this_host(source_address):
    own = relay.own_networks()
    assert relay.sources_problem(relay.parse_sources([source_address]), own) == ""
    assert relay.sources_problem({4: ip("198.51.100.7")}, own) == (
        "198.51.100.7 is not an address of this host"
    )


def test_only_destinations_of_a_sources_ip_version_are_tried():
    addresses = [ip("2606:4700::1111"), PUBLIC, ip("::ffff:8.8.4.4"), ip("64:ff9b::808:808")]
    assert relay.reachable_from({4: ip("10.9.0.5")}, addresses) == [PUBLIC, ip("::ffff:8.8.4.4")]
    assert relay.reachable_from({6: ip("2001:db8::5")}, addresses) == [
        ip("2606:4700::1111"),
        ip("64:ff9b::808:808"),
    ]
    assert relay.reachable_from({}, addresses) == addresses  # the host's own address


def test_the_proxys_connections_leave_from_its_source_address(
    start_proxy, where_from, source_address
):
    destination = where_from()
    port, log = start_proxy([f"127.0.0.1:{destination.port}"], [source_address])
    answer = ask(port, f"CONNECT 127.0.0.1:{destination.port} HTTP/1.1\r\n\r\n".encode())
    assert answer == b"HTTP/1.1 200 Connection established\r\n\r\n" + source_address.encode()
    assert destination.peers == [source_address]
    assert f"; it leaves from {source_address}" in log.read_text()


def test_without_a_source_the_proxys_connections_leave_from_the_hosts_address(
    start_proxy, where_from
):
    destination = where_from()
    port, log = start_proxy([f"127.0.0.1:{destination.port}"])
    answer = ask(port, f"CONNECT 127.0.0.1:{destination.port} HTTP/1.1\r\n\r\n".encode())
    assert answer == b"HTTP/1.1 200 Connection established\r\n\r\n127.0.0.1"
    assert "; it leaves from this host's address" in log.read_text()


def test_a_source_the_host_does_not_have_refuses_every_connection(start_proxy, where_from):
    """Never from the host's own address instead (198.51.100.0/24 is documentation's)."""
    destination = where_from()
    port, log = start_proxy([f"127.0.0.1:{destination.port}"], ["198.51.100.7"])
    answer = ask(port, f"CONNECT 127.0.0.1:{destination.port} HTTP/1.1\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert b"198.51.100.7 is not an address of this host, and egress leaves from nowhere else" in (
        answer
    )
    assert destination.peers == []
    assert (
        "198.51.100.7 is not an address of this host: every connection is refused until it is"
        in log.read_text()
    )


def test_a_destination_no_source_reaches_is_not_reached_from_the_hosts_address(
    start_proxy, where_from, source_address
):
    """An IPv4 source only: an IPv6 destination is refused, not reached from the host's
    own IPv6 address."""
    destination = where_from("::1")
    port, _ = start_proxy([f"[::1]:{destination.port}"], [source_address])
    answer = ask(port, f"CONNECT [::1]:{destination.port} HTTP/1.1\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 502 ")
    assert f"::1 has no address that egress reaches from {source_address}".encode() in answer
    assert destination.peers == []


def test_the_source_address_is_no_way_to_the_hosts_own_services(
    start_proxy, where_from, source_address
):
    """It is one of the host's addresses, which the proxy refuses as every other."""
    service = where_from(source_address)  # a service of the host listening on it
    port, _ = start_proxy([], [source_address])
    for asked in (443, service.port):
        answer = ask(port, f"CONNECT {source_address}:{asked} HTTP/1.1\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 403 "), answer
    assert service.peers == []


# In a throwaway network namespace: a server on its ::1 that tells the one connection it
# takes where that came from.
SAYS_WHERE_FROM = r"""
import socket
server = socket.create_server(("::1", 0), family=socket.AF_INET6)
print(server.getsockname()[1], flush=True)
connection, peer = server.accept()
connection.sendall(peer[0].encode())
connection.close()
"""


@needs_a_network_namespace
@pytest.mark.parametrize(
    ("source", "status", "says"),
    [
        ("2001:db8:e::7", 200, b"established\r\n\r\n2001:db8:e::7"),
        # The host answers on its prefix, but only an interface's IPv6 address can be bound.
        ("2a00:1450:dead::7", 503, b"2a00:1450:dead::7 cannot be bound to (Cannot assign"),
    ],
)
def test_connections_leave_from_an_ipv6_source_address(
    network_namespace, start_proxy, source, status, says
):
    """The proxy runs in a namespace whose loopback has the address 2001:db8:e::7, and
    whose host answers on the prefix 2a00:1450:dead::/64 too."""
    subprocess.run(
        ["ip", "-n", network_namespace, "addr", "add", "2001:db8:e::7/128", "dev", "lo", "nodad"],
        check=True,
    )
    inside = ["ip", "netns", "exec", network_namespace]
    server = subprocess.Popen(
        [*inside, sys.executable, "-c", SAYS_WHERE_FROM], stdout=subprocess.PIPE, text=True
    )
    try:
        destination = int(server.stdout.readline())
        port, _ = start_proxy([f"[::1]:{destination}"], [source], inside)
        got = ask(port, f"CONNECT [::1]:{destination} HTTP/1.1\r\n\r\n".encode())
    finally:
        server.kill()
        server.wait()
    assert got.startswith(f"HTTP/1.1 {status} ".encode()) and says in got, got


def test_the_status_says_where_egress_leaves_from(settings, source_address):
    settings.LOCAL_WORKSPACE_EGRESS_SOURCE = []
    if not isolation.host_capability().own_network:
        pytest.skip(isolation.host_capability().description)
    assert "Its connections leave from this host's address." in isolation.describe()[1]
    settings.LOCAL_WORKSPACE_EGRESS_SOURCE = [source_address]
    assert isolation.host_capability().egress
    assert f"Its connections leave from {source_address}." in isolation.describe()[1]


@pytest.mark.django_db
def test_the_machines_health_says_where_egress_leaves_from_or_why_it_cannot(
    settings, local_infrastructure, workspaces_root, monkeypatch, source_address
):
    monkeypatch.setattr("pools.drivers.local.gpu_inventory", lambda: [])
    settings.LOCAL_WORKSPACE_EGRESS_SOURCE = [source_address]
    if not isolation.host_capability().own_network:
        pytest.skip(isolation.host_capability().description)
    reason = health.check(local_infrastructure).reason
    assert f"Its connections leave from {source_address}." in reason
    settings.LOCAL_WORKSPACE_EGRESS_SOURCE = ["198.51.100.7"]
    assert (
        "Its proxy refuses every connection now: LOCAL_WORKSPACE_EGRESS_SOURCE is wrong "
        "(198.51.100.7 is not an address of this host), and its connections leave from "
        "nowhere else."
    ) in health.check(local_infrastructure).reason


@pytest.mark.django_db
def test_the_status_says_whether_the_host_has_the_source_address_each_time_it_is_made(
    settings, local_infrastructure, workspaces_root, monkeypatch, source_address
):
    """The proxies check it for each connection: an address the host lost (or got back)
    since the portal started is what they find, and so is what the status says."""
    monkeypatch.setattr("pools.drivers.local.gpu_inventory", lambda: [])
    settings.LOCAL_WORKSPACE_EGRESS_SOURCE = [source_address]
    if not isolation.host_capability().own_network:
        pytest.skip(isolation.host_capability().description)
    assert isolation.host_capability().egress
    assert (
        f"Its connections leave from {source_address}." in health.check(local_infrastructure).reason
    )

    subprocess.run(["ip", "addr", "del", f"{source_address}/32", "dev", "lo"], check=True)
    gone = f"{source_address} is not an address of this host"
    assert relay.sources_problem(relay.parse_sources([source_address]), relay.own_networks()) == (
        gone
    )
    reason = health.check(local_infrastructure).reason
    assert f"Its connections leave from {source_address}." not in reason
    assert (
        f"Its proxy refuses every connection now: LOCAL_WORKSPACE_EGRESS_SOURCE is wrong ({gone})"
        in reason
    )

    subprocess.run(["ip", "addr", "add", f"{source_address}/32", "dev", "lo"], check=True)
    assert (
        f"Its connections leave from {source_address}." in health.check(local_infrastructure).reason
    )


def test_a_source_the_host_lacks_keeps_the_proxy_which_says_why_it_refuses(settings):
    """Whether the host has the address is for each connection to find (`relay.forward`):
    the workspaces keep their proxy, which answers 503 saying why."""
    settings.LOCAL_WORKSPACE_EGRESS_SOURCE = ["198.51.100.7"]
    capability = isolation.host_capability()
    if not capability.own_network:
        pytest.skip(capability.description)
    assert capability.egress
    assert "https_proxy" in isolation.sandbox_env({}, Path("/nowhere/ws-1"))


@pytest.mark.parametrize(
    ("sources", "why"),
    [
        (["10.9.0.5", "10.9.0.6"], "10.9.0.5 and 10.9.0.6 are both IPv4: one of each"),
        (["eth1"], "'eth1' is not an IP address"),
        (["127.0.0.2"], "127.0.0.2 is a loopback address: nothing leaves this host from it"),
    ],
)
def test_a_wrong_source_closes_the_way_out_and_the_status_says_why(settings, sources, why):
    settings.LOCAL_WORKSPACE_EGRESS_SOURCE = sources
    capability = isolation.host_capability()
    if not capability.own_network:
        pytest.skip(capability.description)
    assert not capability.egress
    assert f"It reaches no internet: LOCAL_WORKSPACE_EGRESS_SOURCE is wrong ({why})" in (
        capability.description
    )
    assert "https_proxy" not in isolation.sandbox_env({}, Path("/nowhere/ws-1"))


# -- in a workspace's own network ----------------------------------------------------------

# What a job does: through the proxy (as pip would, from https_proxy) to the mirror, then
# straight to it, then through the proxy to the portal's database port.
JOB = r"""
import http.client, json, os, socket, sys
mirror = int(sys.argv[1])
result = {"https_proxy": os.environ.get("https_proxy"), "no_proxy": os.environ.get("no_proxy")}
proxy = os.environ["https_proxy"].removeprefix("http://")
host, port = proxy.rsplit(":", 1)
connection = http.client.HTTPConnection(host, int(port), timeout=10)
connection.set_tunnel("127.0.0.1", mirror)
connection.request("GET", "/")
result["through_the_proxy"] = connection.getresponse().read().decode()
try:
    socket.create_connection(("127.0.0.1", mirror), timeout=3).close()
    result["straight"] = "ok"
except OSError as error:
    result["straight"] = type(error).__name__
with socket.create_connection((host, int(port)), timeout=10) as client:
    client.sendall(b"CONNECT 127.0.0.1:5432 HTTP/1.1\r\n\r\n")
    result["database"] = client.recv(200).decode().splitlines()[0]
print("RESULT " + json.dumps(result), flush=True)
"""


@pytest.fixture
def driver(settings, tmp_path, monkeypatch, local_infrastructure, mirror):
    settings.DATA_DIR = tmp_path / "var"
    settings.DATA_DIR.mkdir()
    settings.WORKSPACES_ROOT = settings.DATA_DIR / "workspaces"
    monkeypatch.setenv("PORTAL_WORKSPACES_ROOT", str(settings.WORKSPACES_ROOT))
    settings.LOCAL_WORKSPACE_EGRESS_ALLOW = [f"127.0.0.1:{mirror}"]
    yield driver_for(local_infrastructure)
    supervisor.stop_registered_below(settings.WORKSPACES_ROOT)
    forget_host_resources(settings.WORKSPACES_ROOT)


def _spec(local_infrastructure, profile_factory, name="ws-1"):
    profile = profile_factory(local_infrastructure, "Starter")
    return WorkspaceSpec.from_profile(name, "mia", profile)


@pytest.mark.django_db
def test_a_workspace_downloads_through_its_proxy_and_reaches_nothing_else(
    driver, mirror, local_infrastructure, profile_factory
):
    capability = isolation.host_capability()
    assert capability.egress, capability.description
    assert f"port 443 of public addresses, and 127.0.0.1:{mirror}." in capability.description
    spec = _spec(local_infrastructure, profile_factory)
    driver.provision(spec)
    directory = driver.directory("ws-1")

    result = _job_result(driver, spec, JOB, str(mirror))

    assert result["https_proxy"] == f"http://127.0.0.1:{relay.EGRESS_PORT}"
    assert "127.0.0.1" in result["no_proxy"].split(",")
    assert result["through_the_proxy"] == "hello from the mirror"
    assert result["straight"] == "ConnectionRefusedError"  # its own loopback: no mirror
    assert result["database"].startswith("HTTP/1.1 403 ")
    proxy_log = (directory / supervisor.EGRESS_LOG).read_text()
    assert f"allowed 127.0.0.1:{mirror}" in proxy_log
    assert "refused 127.0.0.1:5432: port 5432 is not allowed" in proxy_log

    # The proxy runs sandboxed as the workspace, in the host's network, and is the only one.
    proxy = supervisor.egress_process(directory)
    assert supervisor.is_running(proxy)
    wait_for(lambda: _proxy_pids(directory), timeout=10, what="the proxy to run")
    pids = _proxy_pids(directory)
    assert len(pids) == 1, pids
    assert _uid(pids[0]) == isolation.identity_of(directory) != 0
    assert os.readlink(f"/proc/{pids[0]}/ns/net") == os.readlink("/proc/self/ns/net")
    # A second process of the workspace uses the same proxy.
    driver.start_process(spec, [sys.executable, "-c", "pass"])
    assert supervisor.egress_process(directory) == proxy

    driver.deprovision(spec)
    assert not supervisor.is_running(proxy)
    assert _proxy_pids(directory) == []


def _job_result(driver, spec, script: str, *arguments: str) -> dict:
    """Run `script` as the workspace's process; what it printed after RESULT (the log
    keeps what earlier runs printed: the last such line)."""
    record = driver.start_process(spec, [sys.executable, "-c", script, *arguments])
    wait_for(lambda: not supervisor.is_running(record), timeout=30, what="the job to end")
    log = (driver.directory(spec.name) / "process.log").read_text()
    line = next((x for x in reversed(log.splitlines()) if x.startswith("RESULT ")), None)
    assert line, log
    return json.loads(line.removeprefix("RESULT "))


# What a job does to reach a destination through its proxy, with nothing but a socket.
ASK_THROUGH_THE_PROXY = r"""
import json, os, socket, sys
host, port = os.environ["https_proxy"].removeprefix("http://").rsplit(":", 1)
with socket.create_connection((host, int(port)), timeout=10) as proxy:
    proxy.sendall(f"CONNECT 127.0.0.1:{sys.argv[1]} HTTP/1.1\r\n\r\n".encode())
    answer = b""
    while chunk := proxy.recv(4096):
        answer += chunk
print("RESULT " + json.dumps(answer.decode()), flush=True)
"""


@pytest.mark.django_db
def test_a_workspaces_connections_leave_from_the_source_address(
    driver, settings, where_from, local_infrastructure, profile_factory, source_address
):
    destination = where_from()
    settings.LOCAL_WORKSPACE_EGRESS_ALLOW = [f"127.0.0.1:{destination.port}"]
    settings.LOCAL_WORKSPACE_EGRESS_SOURCE = [source_address]
    capability = isolation.host_capability()
    assert capability.egress, capability.description
    assert f"Its connections leave from {source_address}." in isolation.describe()[1]
    spec = _spec(local_infrastructure, profile_factory)
    driver.provision(spec)

    answer = _job_result(driver, spec, ASK_THROUGH_THE_PROXY, str(destination.port))

    assert answer == f"HTTP/1.1 200 Connection established\r\n\r\n{source_address}"
    assert destination.peers == [source_address]
    proxy_log = (driver.directory("ws-1") / supervisor.EGRESS_LOG).read_text()
    assert f"; it leaves from {source_address}" in proxy_log


@pytest.mark.django_db
def test_a_proxy_that_died_is_a_problem_the_repair_mends(
    driver, local_infrastructure, profile_factory
):
    spec, directory = _proxy_died(driver, local_infrastructure, profile_factory)

    assert any("HTTPS proxy" in problem for problem in driver.check(spec))
    driver.repair(spec)
    assert driver.check(spec) == []
    assert supervisor.is_running(supervisor.egress_process(directory))


def test_the_status_says_when_workspaces_reach_no_internet(settings):
    settings.LOCAL_WORKSPACE_EGRESS = "off"
    capability = isolation.host_capability()
    if capability.own_network:
        assert not capability.egress
        assert "It reaches no internet: LOCAL_WORKSPACE_EGRESS=off." in capability.description
        assert "https_proxy" not in isolation.sandbox_env({}, Path("/nowhere/ws-1"))
    settings.LOCAL_WORKSPACE_EGRESS = "https"
    settings.LOCAL_WORKSPACE_EGRESS_ALLOW = ["pypi.internal"]
    capability = isolation.host_capability()
    if capability.own_network:
        assert not capability.egress
        assert "LOCAL_WORKSPACE_EGRESS_ALLOW is wrong" in capability.description
        assert "'pypi.internal' is not HOST:PORT" in capability.description


def _proxy_died(driver, local_infrastructure, profile_factory):
    """A workspace whose proxy was killed (its registry row stays, as a crash leaves it)."""
    assert isolation.host_capability().egress, isolation.host_capability().description
    spec = _spec(local_infrastructure, profile_factory)
    driver.provision(spec)
    directory = driver.directory("ws-1")
    driver.start_process(spec, [sys.executable, "-c", "import time; time.sleep(60)"])
    proxy = supervisor.egress_process(directory)
    wait_for(lambda: _proxy_pids(directory), timeout=10, what="the proxy to run")
    os.kill(_proxy_pids(directory)[0], signal.SIGKILL)
    wait_for(lambda: not supervisor.is_running(proxy), timeout=10, what="the proxy to end")
    return spec, directory


def _proxy_pids(directory) -> list[int]:
    """The proxies (not their bubblewrap) serving this workspace."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        proxy = b"--egress" in argv and not argv[0].endswith(b"bwrap")
        if proxy and _in(entry, directory):
            found.append(int(entry.name))
    return found


def _in(entry: Path, directory) -> bool:
    try:
        return os.readlink(entry / "cwd").startswith(str(directory))
    except OSError:
        return False


def _uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("Uid:")).split()[1])


@pytest.mark.django_db
def test_a_repair_after_the_uid_range_changed_does_not_hang(
    driver, settings, local_infrastructure, profile_factory
):
    """The workspace then has no uid of the range: getting one takes the host's lock, which
    the proxy's start holds (flock is not re-entrant: it would wait for itself)."""
    spec, directory = _proxy_died(driver, local_infrastructure, profile_factory)
    settings.LOCAL_WORKSPACE_UID_MIN += 500  # still this worker's own range (tests.settings)

    def hung(signum, frame):
        raise TimeoutError("the repair hangs on the host's lock")

    previous = signal.signal(signal.SIGALRM, hung)  # flock waits until a signal comes
    signal.alarm(60)
    try:
        driver.repair(spec)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

    assert isolation.identity_of(directory) >= settings.LOCAL_WORKSPACE_UID_MIN
    assert supervisor.is_running(supervisor.egress_process(directory))
