"""A workspace's HTTPS proxy runs with the rules the settings give now: one started before
the administrator changed LOCAL_WORKSPACE_EGRESS_SOURCE or LOCAL_WORKSPACE_EGRESS_ALLOW is
a problem of its workspace's check, which the repair mends by replacing it. Which
addresses a name resolved to stays the proxy's own: it tries each in turn, and names none.
"""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pools import supervisor
from tests.pools.test_egress import (  # noqa: F401 (fixtures)
    ASK_THROUGH_THE_PROXY,
    _job_result,
    _spec,
    ask,
    driver,
    mirror,
    source_address,
    start_proxy,
    where_from,
)


def _ask(driver, spec, destination) -> str:  # noqa: F811
    return _job_result(driver, spec, ASK_THROUGH_THE_PROXY, str(destination.port))


@pytest.fixture
def allowed(driver, settings, where_from, local_infrastructure, profile_factory):  # noqa: F811
    """A workspace whose proxy lets it reach a local destination (an exception; no source
    address set): its spec and the destination."""
    destination = where_from()
    settings.LOCAL_WORKSPACE_EGRESS_ALLOW = [f"127.0.0.1:{destination.port}"]
    settings.LOCAL_WORKSPACE_EGRESS_SOURCE = []
    spec = _spec(local_infrastructure, profile_factory)
    driver.provision(spec)
    assert _ask(driver, spec, destination).startswith("HTTP/1.1 200 ")
    return spec, destination


def repaired(driver, spec, old_rules: str) -> None:  # noqa: F811
    """The check names the proxy's `old_rules`; after the repair it names no proxy problem."""
    assert f"Its HTTPS proxy (its way to the internet) runs with old rules: {old_rules}" in (
        driver.check(spec)
    )
    driver.repair(spec)  # which also runs the job again
    assert not any("HTTPS proxy" in problem for problem in driver.check(spec))


def with_a_running_proxy(driver, spec):  # noqa: F811
    """`spec` provisioned and a process started in it, which starts its proxy: the
    workspace's directory and the proxy."""
    driver.provision(spec)
    driver.start_process(spec, [sys.executable, "-c", "import time; time.sleep(60)"])
    directory = driver.directory(spec.name)
    proxy = supervisor.egress_process(directory)
    assert supervisor.is_running(proxy)
    return directory, proxy


@pytest.mark.django_db
def test_a_proxy_started_before_a_source_was_set_is_replaced_by_the_repair(
    driver,  # noqa: F811
    settings,
    allowed,
    source_address,  # noqa: F811
):
    spec, destination = allowed
    assert destination.peers == ["127.0.0.1"]  # the host's own address, as configured then
    old = supervisor.egress_process(driver.directory(spec.name))

    settings.LOCAL_WORKSPACE_EGRESS_SOURCE = [source_address]
    repaired(
        driver,
        spec,
        "its connections leave from this host's address, where the settings now say "
        f"{source_address}.",
    )
    assert not supervisor.is_running(old)
    assert _ask(driver, spec, destination).startswith("HTTP/1.1 200 ")
    assert destination.peers[0] == "127.0.0.1"
    assert destination.peers[1:] and set(destination.peers[1:]) == {source_address}


@pytest.mark.django_db
def test_an_exception_the_administrator_revoked_is_closed_by_the_repair(
    driver,  # noqa: F811
    settings,
    allowed,
):
    spec, destination = allowed
    settings.LOCAL_WORKSPACE_EGRESS_ALLOW = []
    repaired(
        driver,
        spec,
        f"its exceptions are 127.0.0.1:{destination.port}, where the settings now say none.",
    )
    answer = _ask(driver, spec, destination)
    assert answer.startswith("HTTP/1.1 403 "), answer
    assert len(destination.peers) == 1, destination.peers


@pytest.mark.django_db
def test_a_proxy_with_the_rules_of_now_is_kept_however_often_it_is_ensured(
    driver,  # noqa: F811
    local_infrastructure,
    profile_factory,
):
    """A task delivered twice, or two processes starting at once, make one proxy."""
    spec = _spec(local_infrastructure, profile_factory)
    directory, first = with_a_running_proxy(driver, spec)
    assert supervisor.ensure_egress(directory, spec.name) == first
    assert supervisor.ensure_egress(directory, spec.name) == first
    driver.repair(spec)
    assert supervisor.egress_process(directory) == first
    assert supervisor.is_running(first)


@pytest.mark.django_db
def test_a_proxy_left_running_after_egress_was_turned_off_is_stopped_by_the_repair(
    driver,  # noqa: F811
    settings,
    local_infrastructure,
    profile_factory,
):
    spec = _spec(local_infrastructure, profile_factory)
    directory, proxy = with_a_running_proxy(driver, spec)

    settings.LOCAL_WORKSPACE_EGRESS = "off"
    assert driver.check(spec) == [
        "Its HTTPS proxy (its way to the internet) runs with old rules: workspaces have no "
        "way out of their network now."
    ]
    driver.repair(spec)

    assert driver.check(spec) == []
    assert not supervisor.is_running(proxy)
    assert supervisor.egress_process(directory) is None


# -- what a refusal and the log say -----------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        return closed.getsockname()[1]


def test_a_502_names_what_was_asked_not_the_address_a_name_resolved_to(start_proxy):  # noqa: F811
    """README: a refusal names what was asked, never the addresses a name resolved to (here
    an allowed name's, an internal mirror's): the error's own words, without its address."""
    nothing = _closed_port()
    port, log = start_proxy([f"localhost:{nothing}"])
    answer = ask(port, f"CONNECT localhost:{nothing} HTTP/1.1\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 502 "), answer
    assert answer.partition(b"\r\n\r\n")[2] == f"localhost:{nothing}: Connection refused\n".encode()
    assert f"refused localhost:{nothing}: localhost:{nothing}: Connection refused" in (
        log.read_text()
    )


def test_the_log_names_what_was_allowed_not_the_address_it_reached(
    start_proxy,  # noqa: F811
    where_from,  # noqa: F811
):
    """The log lies in the workspace's directory, for the workspace to read."""
    destination = where_from()
    port, log = start_proxy([f"localhost:{destination.port}"])
    answer = ask(port, f"CONNECT localhost:{destination.port} HTTP/1.1\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    allowed = [line for line in log.read_text().splitlines() if " allowed " in line]
    assert [line.split(" ", 1)[1] for line in allowed] == [f"allowed localhost:{destination.port}"]


# -- a name of both IP versions -----------------------------------------------------------

SERVES_ON_IPV4_ONLY = r"""
import socket
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)
connection, peer = server.accept()
connection.sendall(b"hello over IPv4")
connection.close()
"""


@pytest.fixture
def dual_stack_namespace():
    """A throwaway network namespace where the name dual.test has an IPv6 and an IPv4
    address (`ip netns exec` puts /etc/netns/NAME/hosts over /etc/hosts)."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("a network namespace needs root and ip")
    name = f"portal-test-dual-{os.getpid()}"
    etc = Path("/etc/netns") / name
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        etc.mkdir(parents=True)
        (etc / "hosts").write_text("::1 dual.test\n127.0.0.1 dual.test\n")
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)
        shutil.rmtree(etc, ignore_errors=True)


def test_a_name_of_both_ip_versions_is_reached_when_its_first_address_fails(
    dual_stack_namespace,
    start_proxy,  # noqa: F811
):
    """Its IPv6 address does not answer (an IPv6 gateway down, a service on IPv4 only):
    its IPv4 address is tried next, as any client would (RFC 8305)."""
    inside = ["ip", "netns", "exec", dual_stack_namespace]
    server = subprocess.Popen(
        [*inside, sys.executable, "-c", SERVES_ON_IPV4_ONLY], stdout=subprocess.PIPE, text=True
    )
    try:
        destination = int(server.stdout.readline())
        port, _ = start_proxy([f"dual.test:{destination}"], [], inside)
        got = ask(port, f"CONNECT dual.test:{destination} HTTP/1.1\r\n\r\n".encode())
    finally:
        server.kill()
        server.wait()
    assert got == b"HTTP/1.1 200 Connection established\r\n\r\nhello over IPv4", got


def test_every_address_of_a_name_failing_is_one_502_within_the_connect_timeout(
    dual_stack_namespace,
    start_proxy,  # noqa: F811
):
    nothing = _closed_port()
    inside = ["ip", "netns", "exec", dual_stack_namespace]
    port, _ = start_proxy([f"dual.test:{nothing}"], [], inside)
    answer = ask(port, f"CONNECT dual.test:{nothing} HTTP/1.1\r\n\r\n".encode())
    assert answer.partition(b"\r\n\r\n")[2] == f"dual.test:{nothing}: Connection refused\n".encode()
