"""Relay connections across a local workspace's own network namespace.

A local workspace's processes run in a network namespace of their own
(`pools.isolation.network_prefix`): they cannot connect to the portal, its database or
another workspace, and their services listen on 127.0.0.1 inside it. Two relays cross it,
each handed a socket that the portal made on the other side (systemd's socket activation
works the same way). Both use the standard library only: they run sandboxed, as the
workspace's uid.

`relay.py FD PORT -- COMMAND...`: a service's port, served on the host. FD is the
service's port on the host's 127.0.0.1, bound but not listening. This runs COMMAND in the
namespace, waits until COMMAND accepts connections on 127.0.0.1:PORT there, and only then
listens on the host socket: until the service is up, a connection to its port is refused,
as it was before the sandbox had a network of its own. Each accepted connection is copied
both ways to a connection of its own to the service. When COMMAND ends, so does the relay,
with its exit status, and the port closes. COMMAND is the workspace's code, running as
the same uid in the same PID namespace: it must never get hold of FD, a socket of the
host's network, which it could connect to any port of the host's loopback (the portal,
PostgreSQL, another workspace's services). FD is not inherited, and the relay makes
itself undumpable before it starts COMMAND, which keeps same-uid processes from tracing
it and from copying its sockets (pidfd_getfd(2), /proc/PID/fd).

`relay.py --egress [--source ADDRESS]... FD [ALLOWED ...]`: the workspace's way out, an
HTTPS proxy. It runs in the host's network; FD listens on 127.0.0.1:3128 in the
workspace's namespace, where `https_proxy` points. It forwards only CONNECT (HTTPS, and
anything else tunnelled the same way) to port 443 of a public address, resolved once here
and connected to as resolved, so a name cannot be re-pointed between the check and the
connection; each address of the name that passes is tried in turn until one answers.
Names are resolved by the host's resolver, from the host's address. Refused: any other
port; loopback, private, link-local (cloud metadata at 169.254.169.254), shared,
documentation and reserved addresses (`NOT_PUBLIC_IPV4` lists the IPv4 ones; a Kubernetes
workspace's NetworkPolicy refuses the same); local-use NAT64 addresses (64:ff9b:1::/48),
whose IPv4 address cannot be told; and this host's own addresses and prefixes, public ones
included, where the portal may listen. ALLOWED are the administrator's exceptions
(`LOCAL_WORKSPACE_EGRESS_ALLOW`): `NAME:PORT`, `ADDRESS:PORT` or `NETWORK/BITS:PORT` (IPv6
in brackets), allowed whatever the address (an internal package mirror). Each ADDRESS
(`LOCAL_WORKSPACE_EGRESS_SOURCE`: an IPv4 address, an IPv6 one, or one of each; neither
loopback nor link-local) is where its connections leave from, so that the outside can tell
the workspaces' traffic from the portal's; without one, they leave from the host's own
address. A destination is then reached only from the source of its IP
version, and not at all while a source is not this host's address: never from the host's
own address instead. Each decision is a line of its log (once: the same decision again
adds none), so a user can see why a download was refused; like the refusals, it names
what was asked, never the addresses a name resolved to. The proxy runs in a sandbox and
PID namespace of its own, which no process of the workspace shares; it makes itself
undumpable all the same.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ipaddress
import os
import re
import selectors
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

CHUNK = 65536
EGRESS_PORT = 3128  # in the workspace's namespace: the usual proxy port
PUBLIC_PORTS = frozenset({443})
REQUEST_LIMIT = 8192  # bytes of request line and headers
REQUEST_TIMEOUT = 10.0  # seconds to send them
CONNECT_TIMEOUT = 10.0
MAX_CONNECTIONS = 128  # at once, per workspace
# A tunnel silent both ways this long is closed, so tunnels left open to nowhere cannot
# hold every connection the workspace may have (squid's read_timeout is as long).
TUNNEL_IDLE = 15 * 60.0
# New connections a second (on average; BURST at once): they go out from the host, whose
# connection tracking and resolver a loop of connections must not exhaust.
RATE, BURST = 20, 100
LOG_LINES = 10_000  # distinct decisions logged, once each; then none
NAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_-]{1,63})*\.?")

PR_SET_DUMPABLE = 4  # prctl(2), from <linux/prctl.h>

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def main(argv: list[str]) -> int:
    undumpable()
    if argv[:1] == ["--egress"]:
        return egress(argv[1:])
    fd, port, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit(__doc__.splitlines()[0])
    outside = socket.socket(fileno=int(fd))
    outside.set_inheritable(False)  # passed inheritable: COMMAND must not have it
    child = subprocess.Popen(command, close_fds=True)
    while child.poll() is None and not _answers(int(port)):
        time.sleep(0.1)
    if child.poll() is not None:
        return child.returncode
    outside.listen(128)
    threading.Thread(target=_serve, args=(outside, int(port)), daemon=True).start()
    return child.wait()


def undumpable() -> None:
    """Make this process undumpable, so that processes of the same uid (the workspace's
    code) can neither trace it nor copy its sockets; the kernel resets the flag when a
    child execs, so the service itself is unaffected. Exits saying why when it cannot:
    a relay open to its workspace's code must not run."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError) as error:
        raise SystemExit(f"relay.py: no prctl to make itself undumpable ({error})") from None
    if prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        why = os.strerror(ctypes.get_errno())
        raise SystemExit(f"relay.py: cannot make itself undumpable ({why}); not running")


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _serve(outside: socket.socket, port: int) -> None:
    while True:
        client, _ = outside.accept()
        threading.Thread(target=_to_service, args=(client, port), daemon=True).start()


def _to_service(client: socket.socket, port: int) -> None:
    try:
        service = socket.create_connection(("127.0.0.1", port))
    except OSError:
        client.close()
        return
    copy_both_ways(client, service)


def copy_both_ways(client: socket.socket, server: socket.socket, idle: float | None = None) -> None:
    """Copy bytes both ways until both sides have finished sending, or until nothing has
    come either way for `idle` seconds; then close both."""
    peers = {client: server, server: client}
    open_reads = set(peers)
    for sock in peers:  # nor may a send wait longer on a peer that stopped reading
        sock.settimeout(idle)
    with selectors.DefaultSelector() as selector:
        for sock in peers:
            selector.register(sock, selectors.EVENT_READ)
        while open_reads:
            ready = selector.select(idle)
            if not ready:
                break  # silent for `idle` seconds
            for key, _ in ready:
                source = key.fileobj
                try:
                    data = source.recv(CHUNK)
                    if data:
                        peers[source].sendall(data)
                        continue
                    peers[source].shutdown(socket.SHUT_WR)  # pass the end of the stream on
                except OSError:
                    open_reads.clear()  # a reset: close both
                    break
                selector.unregister(source)
                open_reads.discard(source)
    client.close()
    server.close()


# -- egress ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Allowed:
    """An administrator's exception: a name as clients ask for it, or a network; a port."""

    port: int
    name: str = ""
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None

    @classmethod
    def parse(cls, text: str) -> Allowed:
        """`NAME:PORT`, `ADDRESS:PORT`, `NETWORK/BITS:PORT`, `[IPV6]:PORT`; ValueError
        saying what is wrong otherwise."""
        destination, port = split_target(text.strip())
        try:
            network = ipaddress.ip_network(destination, strict=False)
        except ValueError:
            if "/" in destination or not NAME.fullmatch(destination):
                raise ValueError(f"{text!r}: {destination!r} is no name or network") from None
            return cls(port, name=destination.lower().rstrip("."))
        return cls(port, network=network)

    def covers(self, name: str, address: Address, port: int) -> bool:
        if port != self.port:
            return False
        if self.name:
            return name.lower().rstrip(".") == self.name
        return address in self.network or _unmapped(address) in self.network


def split_target(target: str) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6]:port"; ValueError when it is neither."""
    host, colon, port = target.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{target!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ValueError(f"{target!r} is not HOST:PORT")
    return host, int(port)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def choose(
    name: str, port: int, addresses: list[Address], own: list[Network], allowed: list[Allowed]
) -> tuple[list[Address], str]:
    """The addresses to try, in order, for `name`:`port`; or none and why not (the last
    address refused says).

    The reason names what the client asked for, not the addresses a name resolved to:
    which internal addresses a name has is not the workspace's to learn.
    """
    chosen, why_not = [], f"{name} has no address"
    for address in addresses:
        if any(rule.covers(name, address, port) for rule in allowed):
            chosen.append(address)
            continue
        plain = _unmapped(address)
        if port not in PUBLIC_PORTS:
            why_not = f"port {port} is not allowed (only 443, for HTTPS)"
        elif any(plain in network for network in own):
            why_not = f"{name} is this host's own address"
        elif plain in LOCAL_USE_NAT64:
            why_not = (
                f"{name} is not a public address (local-use NAT64, 64:ff9b:1::/48: "
                "which IPv4 address it stands for cannot be told)"
            )
        elif not _public(plain):
            why_not = f"{name} is not a public address"
        else:
            chosen.append(address)
    return chosen, "" if chosen else why_not


# The IPv4 addresses that are not public (IANA's special-purpose registry): the proxy
# refuses them, and so does a Kubernetes workspace's NetworkPolicy
# (`pools.drivers.k8s_manifests`), which needs them written out as networks.
NOT_PUBLIC_IPV4 = tuple(
    ipaddress.IPv4Network(network)
    for network in (
        "0.0.0.0/8",  # "this" network
        "10.0.0.0/8",  # private: a cluster's pods and services, the portal among them
        "100.64.0.0/10",  # shared address space (carrier-grade NAT, some pod networks)
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local: the cloud's metadata service, node credentials
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation (TEST-NET-1)
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation (TEST-NET-2)
        "203.0.113.0/24",  # documentation (TEST-NET-3)
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
    )
)
GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")  # the only IPv6 the internet routes
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the IPv4 address is the last 32 bits
# A network's own NAT64 prefix (RFC 8215) may be this /48 or a longer one, which puts the
# IPv4 address at other bits (RFC 6052): which one an address reaches cannot be told.
LOCAL_USE_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # the old ::a.b.c.d form


def _public(address: Address) -> bool:
    if address.is_multicast or not address.is_global:
        return False
    if address.version == 4:
        return not any(address in network for network in NOT_PUBLIC_IPV4)
    return address in GLOBAL_UNICAST


def _unmapped(address: Address) -> Address:
    """An IPv6 address that stands for an IPv4 one (mapped ::ffff:10.0.0.1, compatible
    ::10.0.0.1, 6to4, NAT64's 64:ff9b::/96) as that IPv4 address, which is what the check
    must judge."""
    if address.version == 4:
        return address
    if address in IPV4_COMPATIBLE or address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.ipv4_mapped or address.sixtofour or address


RTF_LOCAL = 0x80000000  # a local route's flag in /proc/net/ipv6_route


def own_networks() -> list[Network]:
    """What this host answers on, from the kernel's tables of the network the proxy runs
    in: every local route, IPv4 and IPv6 (an address, or a whole prefix such as
    127.0.0.0/8, or one added with `ip -6 route add local PREFIX dev lo`), and every IPv6
    address. Fails closed: OSError when the tables cannot be read or show no loopback."""
    found: list[Network] = []
    with open("/proc/net/fib_trie") as trie:
        leaf = ""  # each "|-- address" line is followed by its routes, one per line
        for line in trie:
            entry = line.strip()
            if entry.startswith("|-- "):
                leaf = entry.removeprefix("|-- ")
            elif entry.endswith(" host LOCAL") and entry.startswith("/") and leaf:
                bits = entry.split()[0].removeprefix("/")
                found.append(ipaddress.ip_network(f"{leaf}/{bits}", strict=False))
    with contextlib.suppress(FileNotFoundError), open("/proc/net/if_inet6") as table:
        for line in table:
            found.append(ipaddress.IPv6Network(int(line.split()[0], 16)))
    with contextlib.suppress(FileNotFoundError), open("/proc/net/ipv6_route") as routes:
        for line in routes:  # destination, its prefix length, ..., flags (9th), device
            fields = line.split()
            if int(fields[8], 16) & RTF_LOCAL:
                found.append(ipaddress.IPv6Network((int(fields[0], 16), int(fields[1], 16))))
    found.append(ipaddress.ip_network("::1/128"))
    if not any(ipaddress.ip_address("127.0.0.1") in network for network in found):
        raise OSError("the kernel's table of local addresses shows no loopback")
    return found


Sources = dict[int, Address]  # where egress leaves from, by IP version (4, 6)


def parse_sources(texts: list[str]) -> Sources:
    """At most one address of each IP version (the same one twice is once), neither a
    loopback nor a link-local one, whose connections never leave this host or its link;
    ValueError saying what is wrong otherwise."""
    sources: Sources = {}
    for text in texts:
        try:
            address = ipaddress.ip_address(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address") from None
        if address.version == 6 and address.ipv4_mapped:
            raise ValueError(f"{text!r} is an IPv4 address: write it as {address.ipv4_mapped}")
        if address.is_loopback:
            raise ValueError(f"{address} is a loopback address: nothing leaves this host from it")
        if address.is_link_local:
            raise ValueError(f"{address} is a link-local address: it reaches its link only")
        if sources.get(address.version) == address:
            continue
        if address.version in sources:
            first = sources[address.version]
            raise ValueError(f"{first} and {address} are both IPv{address.version}: one of each")
        sources[address.version] = address
    return sources


def sources_problem(sources: Sources, own: list[Network]) -> str:
    """Why egress cannot leave from `sources` ("" when it can). Each must be an address of
    this host (where the host lets sockets bind to addresses it does not have,
    net.ipv4.ip_nonlocal_bind, the answers would never come), and one a socket can bind to
    (an IPv6 address of a local route, not of an interface, is not)."""
    for address in sources.values():
        if not any(address in network for network in own):
            return f"{address} is not an address of this host"
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        with socket.socket(family) as probe:
            try:
                probe.setsockopt(socket.IPPROTO_IP, socket.IP_BIND_ADDRESS_NO_PORT, 1)
                probe.bind((str(address), 0))
            except OSError as error:
                return f"{address} cannot be bound to ({error.strerror or error})"
    return ""


def describe_sources(sources: Sources) -> str:
    return " and ".join(str(address) for address in sources.values()) or "this host's address"


def reachable_from(sources: Sources, addresses: list[Address]) -> list[Address]:
    """Those of `addresses` that a source can reach: a source of one IP version cannot
    connect to an address of the other, and the host's own address must not stand in."""
    if not sources:
        return addresses
    return [address for address in addresses if _as_sent(address).version in sources]


def _as_sent(address: Address) -> Address:
    """The address a connection goes to: an IPv4-mapped IPv6 one is its IPv4 address."""
    if address.version == 6 and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def connect_any(addresses: list[Address], port: int, sources: Sources) -> socket.socket:
    """A connection to the first of `addresses` (at least one) that answers on `port`: a
    name's IPv6 address may not answer where its IPv4 one does (RFC 8305). All within
    CONNECT_TIMEOUT, each try taking at most its share of the time left; the last try's
    OSError when none answers."""
    deadline = time.monotonic() + CONNECT_TIMEOUT
    for tried, address in enumerate(addresses):
        share = (deadline - time.monotonic()) / (len(addresses) - tried)
        try:
            return connect(address, port, sources, share)
        except OSError as error:
            failure = error
    raise failure


def connect(address: Address, port: int, sources: Sources, timeout: float) -> socket.socket:
    """A connection to `address`:`port`, from the source of its IP version where egress has
    sources (`reachable_from` keeps only the addresses it has one for); OSError when it
    cannot be made, from that source."""
    target = _as_sent(address)
    server = socket.socket(socket.AF_INET if target.version == 4 else socket.AF_INET6)
    try:
        server.settimeout(max(timeout, 0.001))
        if sources:
            # The local port is then picked by connect(2), for the destination: bind(2)
            # alone would take one for good, and every workspace's connections together
            # could hold no more than the source's ~28,000 ephemeral ports.
            server.setsockopt(socket.IPPROTO_IP, socket.IP_BIND_ADDRESS_NO_PORT, 1)
            server.bind((str(sources[target.version]), 0))
        server.connect((str(target), port))
    except OSError:
        server.close()
        raise
    return server


class Refused(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


REASONS = {400: "Bad Request", 403: "Forbidden", 405: "Method Not Allowed", 502: "Bad Gateway"}
REASONS |= {431: "Request Header Fields Too Large", 503: "Service Unavailable"}


def read_connect(client: socket.socket) -> tuple[str, int, bytes]:
    """The CONNECT request's host and port, and whatever the client sent after it."""
    deadline = time.monotonic() + REQUEST_TIMEOUT  # for the whole request, not each read
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > REQUEST_LIMIT:
            raise Refused(431, "request too long")
        try:
            client.settimeout(max(deadline - time.monotonic(), 0.001))
            chunk = client.recv(4096)
        except OSError as error:
            raise Refused(400, f"no request ({error})") from None
        if not chunk:
            raise Refused(400, "the connection closed before the request ended")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    if len(head) > REQUEST_LIMIT:
        raise Refused(431, "request too long")
    parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise Refused(400, "not an HTTP request")
    if parts[0] != "CONNECT":
        raise Refused(405, f"{parts[0][:16]} is not forwarded: only HTTPS (CONNECT) is")
    try:
        host, port = split_target(parts[1])
    except ValueError as error:
        raise Refused(400, str(error)) from None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not NAME.fullmatch(host):
            raise Refused(400, f"{host[:64]!r} is not a host name") from None
    return host, port, rest


def resolve(host: str, port: int) -> list[Address]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise Refused(502, f"{host} does not resolve ({error})") from None
    addresses = []
    for *_, sockaddr in found:
        address = ipaddress.ip_address(sockaddr[0].split("%")[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def forward(client: socket.socket, allowed: list[Allowed], sources: Sources, log) -> None:
    """Serve one client: check, connect, tunnel; or refuse, saying why."""
    target = "?"
    try:
        host, port, early = read_connect(client)
        target = f"{host}:{port}"
        try:
            own = own_networks()
        except (OSError, ValueError) as error:
            raise Refused(503, f"this host's addresses are unknown ({error})") from None
        if why_not := sources_problem(sources, own):
            raise Refused(503, f"{why_not}, and egress leaves from nowhere else")
        addresses = resolve(host, port)
        reachable = reachable_from(sources, addresses)
        if addresses and not reachable:
            where = describe_sources(sources)
            raise Refused(502, f"{host} has no address that egress reaches from {where}")
        chosen, why_not = choose(host, port, reachable, own, allowed)
        if not chosen:
            raise Refused(403, why_not)
        try:
            server = connect_any(chosen, port, sources)
        except OSError as error:  # its strerror alone: the message may name the address
            raise Refused(502, f"{target}: {error.strerror or error}") from None
    except Refused as refusal:
        log(f"refused {target}: {refusal}")
        _refuse(client, refusal.status, str(refusal))
        return
    log(f"allowed {target}")
    server.settimeout(None)
    client.settimeout(None)
    try:
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if early:
            server.sendall(early)
    except OSError:
        client.close()
        server.close()
        return
    copy_both_ways(client, server, idle=TUNNEL_IDLE)


def _refuse(client: socket.socket, status: int, reason: str) -> None:
    """Answer `status` saying why, and close. What the client sent that was not read is
    drained first (for a while): closing over unread bytes would reset the connection,
    and the client could lose the answer."""
    body = f"{reason}\n".encode()
    head = f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: text/plain\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    with contextlib.suppress(OSError):
        client.sendall(head.encode() + body)
        client.shutdown(socket.SHUT_WR)
        client.settimeout(2)
        drained = 0
        while drained < 16 * REQUEST_LIMIT and (chunk := client.recv(CHUNK)):
            drained += len(chunk)
    client.close()


def egress_options(argv: list[str]) -> tuple[int, list[str], list[str]]:
    """The FD, the --source ADDRESSes and the ALLOWED of `relay.py --egress ARGV...`: what
    a proxy runs with, read from its command line by the portal too."""
    arguments = argparse.ArgumentParser(prog="relay.py --egress")
    arguments.add_argument("--source", action="append", default=[])
    arguments.add_argument("fd", type=int)
    arguments.add_argument("rules", nargs="*")
    options = arguments.parse_args(argv)
    return options.fd, options.source, options.rules


def egress(argv: list[str]) -> int:
    fd, source_texts, rules = egress_options(argv)
    sources = parse_sources(source_texts)
    allowed = [Allowed.parse(rule) for rule in rules]
    listener = socket.socket(fileno=fd)
    listener.listen(128)
    lock, said = threading.Lock(), set()

    def log(line: str) -> None:
        """Each line once: the log is in the workspace's directory, and a client polling
        one host (or retrying a refused one) must not fill its disk."""
        with lock:
            if line in said or len(said) > LOG_LINES:
                return
            said.add(line)
            if len(said) > LOG_LINES:
                line = f"{LOG_LINES} decisions logged: no more are"
            print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}", flush=True)

    slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
    log(
        f"egress proxy on 127.0.0.1:{EGRESS_PORT}: HTTPS to public addresses"
        + (f", and {', '.join(rules)}" if rules else "")
        + f"; it leaves from {describe_sources(sources)}"
    )
    with contextlib.suppress(OSError, ValueError):  # unknown: each connection says so
        if why_not := sources_problem(sources, own_networks()):
            log(f"{why_not}: every connection is refused until it is")
    bucket = Bucket(RATE, BURST)
    while True:
        client, _ = listener.accept()
        if not bucket.take():
            log(f"refused connections: more than {RATE} a second")
            client.close()
            continue
        if not slots.acquire(blocking=False):
            log(f"refused a connection: more than {MAX_CONNECTIONS} at once")
            client.close()
            continue
        worker = threading.Thread(target=_one, args=(client, allowed, sources, log, slots))
        worker.daemon = True
        worker.start()


class Bucket:
    """A token bucket: `rate` a second on average, `burst` at once."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.tokens, self.last = burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def _one(client: socket.socket, allowed: list[Allowed], sources: Sources, log, slots) -> None:
    try:
        forward(client, allowed, sources, log)
    finally:
        slots.release()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
