"""Idle workspaces (issue 16): warned, snoozed, stopped, with time travel; and the signals.

Times are set relative to the real clock so that the owner's snooze, made through the page
at the real "now", falls where the story needs it: the workspace became ready 100 minutes
ago, its group stops workspaces idle for 2 hours and warns 30 minutes before.
"""

# Fixtures are imported from tests/workspace_fixtures.py, so arguments "redefine" them.
# ruff: noqa: F811
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pynvml
import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from pools import idle, supervisor
from pools.idle import Policy, Reading
from pools.lifecycle import State, transition
from pools.models import Workspace
from portal.models import (
    MAX_IDLE_STOP_HOURS,
    AuditEntry,
    Notification,
    NotificationKind,
    Team,
)
from profiles.choices import InfrastructureKind
from profiles.models import Infrastructure, ServicesProfile
from services.components.base import Capability
from services.models import ComponentStatus
from services.tasks import create_deployment
from tests.mig.fake_nvml import FakeNvml
from tests.workspace_fixtures import starter, workspace_factory  # noqa: F401

BECAME_READY = timedelta(minutes=100)  # before the real now
# A process that names itself with bytes that are not UTF-8 (/proc/self/comm), says so and
# waits.
NOT_UTF8_NAME = (
    "import time\n"
    "open('/proc/self/comm', 'wb').write(b'\\xff\\xfe\\xfd')\n"
    "print('renamed', flush=True)\n"
    "time.sleep(120)\n"
)


@pytest.fixture
def t0():
    return timezone.now() - BECAME_READY


@pytest.fixture
def idle_group(member):
    team = member.teams.get()
    team.idle_stop_hours = 2
    team.idle_warning_minutes = 30
    team.idle_max_snoozes = 1
    team.save()
    return team


@pytest.fixture
def workspace(member, starter, workspace_factory, idle_group, t0):
    return workspace_factory(
        member, starter, state=State.READY, team=idle_group, name="notebook", state_changed=t0
    )


@pytest.fixture
def stops(monkeypatch):
    """The stop tasks enqueued on commit, instead of queueing them."""
    calls = []
    monkeypatch.setattr("pools.tasks.enqueue_stop", calls.append)
    return calls


def quiet_jupyter(t0):
    """A JupyterLab that was last used before the workspace became ready."""
    return lambda workspace, now: Reading(signals=("JupyterLab",), last_active=t0)


def test_an_idle_workspace_is_warned_snoozed_once_then_stopped(
    workspace, t0, stops, client, member, django_capture_on_commit_callbacks
):
    read = quiet_jupyter(t0)
    with django_capture_on_commit_callbacks(execute=True):
        assert idle.run_pass(t0 + timedelta(minutes=60), read) == {"idle": 1}
    assert mail.outbox == []

    # 90 minutes idle: 30 minutes before the 2 hours, the owner is warned by email.
    with django_capture_on_commit_callbacks(execute=True):
        assert idle.run_pass(t0 + timedelta(minutes=89), read) == {"idle": 1}
        assert idle.run_pass(t0 + timedelta(minutes=90), read) == {"warned": 1}
        assert idle.run_pass(t0 + timedelta(minutes=95), read) == {"idle": 1}  # once
    workspace.refresh_from_db()
    assert workspace.idle_stop_at == t0 + timedelta(hours=2)
    (warning,) = mail.outbox
    assert warning.to == [member.email]
    assert "is idle and will be stopped" in warning.subject
    assert workspace.get_absolute_url() in warning.body

    # The banner on the portal; the owner snoozes (now = 100 minutes after ready).
    client.force_login(member)
    for url in (
        reverse("workspaces:detail", args=[workspace.pk]),
        reverse("workspaces:self_service"),
    ):
        assert "Keep it running" in client.get(url).content.decode()
    response = client.post(reverse("workspaces:snooze", args=[workspace.pk]))
    assert response.status_code == 302
    workspace.refresh_from_db()
    assert (workspace.idle_stop_at, workspace.idle_snoozes) == (None, 1)
    assert AuditEntry.objects.filter(message__startswith="snoozed the idle stop").exists()
    snoozed = workspace.active_at
    assert "Keep it running" not in client.get(workspace.get_absolute_url()).content.decode()

    # Idle again: warned 90 minutes after the snooze; the group allows no second snooze.
    with django_capture_on_commit_callbacks(execute=True):
        assert idle.run_pass(snoozed + timedelta(minutes=90), read) == {"warned": 1}
    assert len(mail.outbox) == 2
    client.post(reverse("workspaces:snooze", args=[workspace.pk]))
    workspace.refresh_from_db()
    assert workspace.idle_snoozes == 1 and workspace.idle_stop_at is not None

    # The stop: files kept (the Stop button's path), audited, the event says why, told.
    with django_capture_on_commit_callbacks(execute=True):
        assert idle.run_pass(snoozed + timedelta(minutes=119), read) == {"idle": 1}
        assert idle.run_pass(snoozed + timedelta(minutes=120), read) == {"stopped": 1}
    workspace.refresh_from_db()
    assert workspace.state == State.STOPPING
    assert stops == [workspace.pk]
    event = workspace.events.last()
    assert event.to_state == State.STOPPING
    assert event.message.startswith("stopped for being idle: no activity since")
    assert "idle for 2 h" in event.message
    entry = AuditEntry.objects.get(message=event.message)
    assert entry.actor is None and entry.object_id == str(workspace.pk)
    assert "was stopped for being idle" in mail.outbox[2].subject
    kinds = list(Notification.objects.order_by("id").values_list("kind", flat=True))
    assert kinds == [
        NotificationKind.IDLE_WARNING,
        NotificationKind.IDLE_WARNING,
        NotificationKind.IDLE_STOPPED,
    ]


def test_a_workspace_whose_check_fails_spares_the_others_and_the_expiry_warnings(
    workspace, member, starter, workspace_factory, idle_group, t0, monkeypatch
):
    other = workspace_factory(
        member, starter, state=State.READY, team=idle_group, name="other", state_changed=t0
    )

    def read(checked, now):
        if checked.pk == workspace.pk:
            raise RuntimeError("a signal that cannot be read this time")
        return quiet_jupyter(t0)(checked, now)

    monkeypatch.setattr(idle, "read_activity", read)
    # The real now: 100 minutes after ready, due for the warning.
    assert idle.sweep() == {"idle": {"failed": 1, "warned": 1}, "expiry_warnings": 0}
    other.refresh_from_db()
    assert other.idle_stop_at is not None


def test_the_snooze_limit_is_the_groups(workspace, t0, member):
    idle.run_pass(t0 + timedelta(minutes=91), quiet_jupyter(t0))
    workspace.refresh_from_db()
    idle.snooze(workspace, member)
    workspace.refresh_from_db()
    idle.run_pass(workspace.active_at + timedelta(minutes=91), quiet_jupyter(t0))
    with pytest.raises(idle.SnoozeRefused, match="Snoozed 1 times in a row already"):
        idle.snooze(workspace, member)


def test_snoozing_a_workspace_that_is_not_warned_is_refused(workspace, member, client):
    client.force_login(member)
    response = client.post(reverse("workspaces:snooze", args=[workspace.pk]), follow=True)
    assert "not about to be stopped" in response.content.decode()


def test_activity_ends_the_warning_and_the_snoozes_in_a_row(workspace, t0):
    idle.run_pass(t0 + timedelta(minutes=91), quiet_jupyter(t0))
    Workspace.objects.filter(pk=workspace.pk).update(idle_snoozes=1)
    used = t0 + timedelta(minutes=95)
    outcome = idle.run_pass(
        t0 + timedelta(minutes=96),
        lambda ws, now: Reading(signals=("JupyterLab",), last_active=used, active=("JupyterLab",)),
    )
    assert outcome == {"active": 1}
    workspace.refresh_from_db()
    assert (workspace.active_at, workspace.idle_stop_at, workspace.idle_snoozes) == (used, None, 0)
    # ... and the stop is 2 hours after that use, not before.
    assert idle.run_pass(used + timedelta(minutes=89), quiet_jupyter(t0)) == {"idle": 1}


def test_a_missed_pass_still_gives_the_full_warning(workspace, t0, stops):
    late = t0 + timedelta(hours=5)
    assert idle.run_pass(late, quiet_jupyter(t0)) == {"warned": 1}
    workspace.refresh_from_db()
    assert workspace.idle_stop_at == late + timedelta(minutes=30)
    assert idle.run_pass(late + timedelta(minutes=29), quiet_jupyter(t0)) == {"idle": 1}


def test_without_any_signal_nothing_is_judged_idle(workspace, t0):
    assert idle.run_pass(t0 + timedelta(hours=10), lambda ws, now: Reading()) == {"no signal": 1}
    workspace.refresh_from_db()
    assert workspace.idle_stop_at is None


def test_groups_without_the_setting_are_left_alone(workspace, idle_group, t0):
    idle_group.idle_stop_hours = None
    idle_group.save()
    assert idle.run_pass(t0 + timedelta(hours=10), quiet_jupyter(t0)) == {}


def test_a_warning_is_over_once_the_group_stops_idle_workspaces_no_more(
    workspace, idle_group, t0, client, member
):
    assert idle.run_pass(t0 + timedelta(minutes=90), quiet_jupyter(t0)) == {"warned": 1}
    idle_group.idle_stop_hours = None
    idle_group.save()
    assert idle.run_pass(timezone.now(), quiet_jupyter(t0)) == {}
    workspace.refresh_from_db()
    assert workspace.idle_stop_at is None
    client.force_login(member)
    assert "Keep it running" not in client.get(workspace.get_absolute_url()).content.decode()


def test_a_warning_is_over_once_no_signal_can_be_read(workspace, t0, client, member, stops):
    assert idle.run_pass(t0 + timedelta(minutes=90), quiet_jupyter(t0)) == {"warned": 1}
    workspace.refresh_from_db()
    past_stop = workspace.idle_stop_at + timedelta(minutes=1)
    assert idle.run_pass(past_stop, lambda ws, now: Reading()) == {"no signal": 1}
    workspace.refresh_from_db()
    assert workspace.idle_stop_at is None and stops == []  # never stopped: nothing proves it
    client.force_login(member)
    assert "Keep it running" not in client.get(workspace.get_absolute_url()).content.decode()


def test_a_kubernetes_workspace_has_no_signal_here(workspace, t0):
    workspace.infrastructure = Infrastructure.objects.create(
        name="Cluster", kind=InfrastructureKind.KUBERNETES
    )
    assert idle.read_activity(workspace, timezone.now()) == Reading()


def test_the_policy_never_warns_before_the_idle_time_starts():
    class Team:
        idle_stop_hours, idle_warning_minutes, idle_max_snoozes = 1, 90, 2

    assert Policy.of(Team()).warn_before == timedelta(hours=1)


def test_an_idle_time_stored_beyond_the_bound_counts_as_the_bound(workspace, idle_group, t0):
    # Saved around the group form: idle start + 100 million hours would end after year 9999.
    Team.objects.filter(pk=idle_group.pk).update(idle_stop_hours=100_000_000)
    idle_group.refresh_from_db()
    assert Policy.of(idle_group).stop_after == timedelta(hours=MAX_IDLE_STOP_HOURS)
    assert idle.run_pass(t0 + timedelta(hours=3), read=quiet_jupyter(t0)) == {"idle": 1}


# -- the signals -----------------------------------------------------------------------------


class BusyNvml(FakeNvml):
    """FakeNvml with utilisation: whole GPUs report `percent`; MIG devices cannot say."""

    def __init__(self, percent, **kwargs):
        super().__init__(**kwargs)
        self.percent = percent

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return uuid

    def nvmlDeviceGetUtilizationRates(self, handle):
        if handle.startswith("MIG-"):
            raise pynvml.NVMLError_NotSupported()
        return type("Rates", (), {"gpu": self.percent, "memory": 0})()


def test_gpu_utilisation_through_nvml():
    assert idle.gpu_busy(["GPU-aaaa"], BusyNvml(40)) is True
    assert idle.gpu_busy(["GPU-aaaa"], BusyNvml(0)) is False
    assert idle.gpu_busy(["MIG-b1"], BusyNvml(40)) is None  # no counter for a MIG device
    assert idle.gpu_busy([], BusyNvml(40)) is None


def test_a_host_without_nvml_gives_no_gpu_signal():
    no_driver = BusyNvml(40, init_error=pynvml.NVMLError_LibraryNotFound())
    assert idle.gpu_busy(["GPU-aaaa"], no_driver) is None
    assert idle.gpu_busy(["GPU-aaaa"]) is None  # this machine: no driver at all


class FakeJupyter(BaseHTTPRequestHandler):
    """JupyterLab's activity API, as far as the portal reads it."""

    token = "s3cret"
    kernels: list = []
    seen: list = []

    def do_GET(self):
        self.seen.append(self.path)
        if self.headers.get("Authorization") != f"token {self.token}":
            self.send_response(403)
            self.end_headers()
            return
        body = {
            "/api/status?no_track_activity=1": {"last_activity": "2026-11-30T08:00:00.000000Z"},
            "/api/kernels?no_track_activity=1": self.kernels,
        }.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def jupyter():
    server = HTTPServer(("127.0.0.1", 0), FakeJupyter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeJupyter.seen = []
    yield server
    server.shutdown()


def test_jupyterlab_activity_from_its_own_api(jupyter, workspace):
    workspace.connection = {"url": f"http://127.0.0.1:{jupyter.server_port}/"}
    workspace.secret = FakeJupyter.token
    now = timezone.now()
    FakeJupyter.kernels = [{"execution_state": "idle", "last_activity": "2026-11-30T08:30:00Z"}]
    assert idle.jupyter_activity(workspace, now).isoformat() == "2026-11-30T08:30:00+00:00"
    assert all("no_track_activity=1" in path for path in FakeJupyter.seen)
    FakeJupyter.kernels = [{"execution_state": "busy", "last_activity": "2026-11-30T08:30:00Z"}]
    assert idle.jupyter_activity(workspace, now) == now  # a busy kernel is in use now
    workspace.secret = "wrong"
    assert idle.jupyter_activity(workspace, now) is None


def test_only_the_workspaces_own_local_jupyterlab_is_asked(workspace):
    workspace.secret = "token"
    workspace.connection = {"url": "http://169.254.169.254:80/"}
    assert idle.jupyter_activity(workspace, timezone.now()) is None


class HostileJupyter:
    """A 'JupyterLab' the workspace controls: answers each request with `respond(conn,
    stopped)`, from a thread of its own."""

    def __init__(self, respond):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.respond = respond
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        try:
            conn.recv(65536)
            self.respond(conn, self.stopped)
        except OSError:
            pass
        finally:
            conn.close()

    def serve(self, workspace):
        Workspace.objects.filter(pk=workspace.pk).update(
            connection={"url": f"http://127.0.0.1:{self.port}/lab"}, secret="tok"
        )
        workspace.refresh_from_db()

    def close(self):
        self.stopped.set()
        self.sock.close()


@pytest.fixture
def hostile_jupyter():
    servers = []

    def start(respond):
        servers.append(HostileJupyter(respond))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_a_jupyterlab_that_drips_its_answer_cannot_hold_the_pass(workspace, hostile_jupyter):
    # Its headers, then a byte every half second: each read waits less than a timeout per
    # read would, so only a deadline for the whole answer ends the look.
    def respond(conn, stopped):
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 1000000\r\n\r\n{")
        for _ in range(60):
            if stopped.is_set():
                return
            time.sleep(0.5)
            conn.sendall(b" ")

    hostile_jupyter(respond).serve(workspace)
    started = time.monotonic()
    assert idle.jupyter_activity(workspace, timezone.now()) is None
    assert time.monotonic() - started < idle.JUPYTER_TIMEOUT + 1


def test_a_jupyterlab_answer_nested_deeply_spares_the_other_workspaces(
    workspace, member, starter, workspace_factory, idle_group, t0, hostile_jupyter
):
    # json.loads raises RecursionError (no ValueError) for 50,000 nested brackets.
    body = b"[" * 50_000 + b"]" * 50_000
    answer = b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    hostile_jupyter(lambda conn, stopped: conn.sendall(answer)).serve(workspace)
    other = workspace_factory(
        member, starter, state=State.READY, team=idle_group, name="other", state_changed=t0
    )

    def read(checked, now):
        if checked.pk == workspace.pk:
            return idle.read_activity(checked, now)
        return quiet_jupyter(t0)(checked, now)

    assert idle.jupyter_activity(workspace, timezone.now()) is None
    assert idle.run_pass(timezone.now(), read) == {"no signal": 1, "warned": 1}
    other.refresh_from_db()
    assert other.idle_stop_at is not None


def test_cpu_time_of_a_workspaces_processes(db, tmp_path):
    """A process that burns half a second of CPU, then sleeps: that half second is read."""
    burn = "import time\nwhile time.process_time() < 0.5: pass\ntime.sleep(60)"
    argv = [sys.executable, "-c", burn]
    record = supervisor.start(argv, tmp_path, {}, tmp_path / "log", holder="ws-cpu")
    try:
        deadline = time.monotonic() + 30
        while supervisor.cpu_seconds("ws-cpu") < 0.4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert 0.4 <= supervisor.cpu_seconds("ws-cpu") < 2  # in clock ticks
        assert supervisor.cpu_seconds("ws-nothing") is None
    finally:
        supervisor.stop(record)


def test_a_process_named_with_bytes_that_are_not_utf8_spares_the_pass(workspace, tmp_path):
    # Any process on the host, a workspace's own included, may rename itself so.
    argv = [sys.executable, "-c", "import time; time.sleep(120)"]
    holder = workspace.resources_spec().name
    record = supervisor.start(argv, tmp_path, {}, tmp_path / "log", holder=holder)
    renamed = subprocess.Popen([sys.executable, "-c", NOT_UTF8_NAME], stdout=subprocess.PIPE)
    try:
        assert renamed.stdout.readline() == b"renamed\n"
        assert idle.run_pass(timezone.now()) == {"warned": 1}  # its CPU time was read
    finally:
        renamed.kill()
        renamed.wait()
        supervisor.stop(record)


def test_cpu_counts_as_activity_above_a_share_of_a_core(workspace):
    now = timezone.now()
    workspace.cpu_seconds, workspace.idle_checked_at = 10.0, now - timedelta(minutes=5)
    assert idle.cpu_busy(workspace, 10.0 + 0.10 * 300, now)
    assert not idle.cpu_busy(workspace, 10.0 + 0.01 * 300, now)
    workspace.cpu_seconds = None
    assert not idle.cpu_busy(workspace, 99.0, now)  # the first look knows no rate yet


# -- the group setting --------------------------------------------------------------------------


def test_the_group_form_sets_the_idle_rule(admin_client):
    data = {"name": "Research", "role": "member", "idle_stop_hours": "4"}
    assert admin_client.post("/admin/groups/add/", data).status_code == 302
    team = Team.objects.get(name="Research")
    assert (team.idle_stop_hours, team.idle_warning_minutes, team.idle_max_snoozes) == (4, 30, 2)
    page = admin_client.get(team.get_absolute_url()).content.decode()
    assert "Stopped after 4 h idle (files kept)" in page


def test_the_warning_must_come_before_the_stop(admin_client):
    data = {"name": "Research", "role": "member", "idle_stop_hours": "1"}
    page = admin_client.post("/admin/groups/add/", data | {"idle_warning_minutes": "60"})
    assert "The warning must come before the stop: less than 60 minutes." in page.content.decode()
    assert not Team.objects.filter(name="Research").exists()


# -- a real JupyterLab ----------------------------------------------------------------------


@pytest.fixture
def jupyterlab(tmp_path):
    """JupyterLab itself (the demo extra installs it), on a free port with a token."""
    port, token = supervisor.free_port(), "real-token"
    argv = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1"]
    argv += ["--port", str(port), f"--ServerApp.root_dir={tmp_path}", "--allow-root"]
    env = {"JUPYTER_TOKEN": token, "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while idle._jupyter_get(port, "/api/status", token, time.monotonic() + 5) is None:
            assert time.monotonic() < deadline and process.poll() is None, (
                "JupyterLab did not start"
            )
            time.sleep(0.5)
        yield port, token
    finally:
        process.terminate()
        process.wait(30)


def test_a_real_jupyterlab_reports_its_activity_and_the_portal_adds_none(jupyterlab, workspace):
    port, token = jupyterlab
    workspace.connection = {"url": f"http://127.0.0.1:{port}/"}
    workspace.secret = token
    first = idle.jupyter_activity(workspace, timezone.now())
    assert first is not None
    time.sleep(1.1)
    assert idle.jupyter_activity(workspace, timezone.now()) == first  # looking is not using

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/terminals",
        data=b"{}",
        method="POST",
        headers={"Authorization": f"token {token}"},
    )
    urllib.request.urlopen(request, timeout=30).close()  # the scientist opens a terminal
    assert idle.jupyter_activity(workspace, timezone.now()) > first


def test_a_notebook_component_of_the_workspaces_stack_is_asked_too(workspace):
    stack = create_deployment(
        workspace, ServicesProfile.objects.get(slug="jobs"), workspace=workspace
    )
    stack.components.update(
        capability=Capability.NOTEBOOK,
        status=ComponentStatus.READY,
        endpoints=[{"name": "JupyterLab", "url": "http://127.0.0.1:8899/lab"}],
    )
    component = stack.components.get()
    component.secret = "component-token"
    component.save()
    assert idle.jupyter_servers(workspace) == [(8899, "component-token")]


def test_an_idle_pass_costs_one_query_per_workspace_when_nothing_is_due(
    member, starter, workspace_factory, idle_group, t0, django_assert_num_queries
):
    for number in range(4):
        workspace_factory(
            member, starter, state=State.READY, team=idle_group, name=f"w{number}", state_changed=t0
        )
    # Warnings of groups without the rule ended, the candidates; each one's reading stored.
    with django_assert_num_queries(2 + 4):
        assert idle.run_pass(t0 + timedelta(minutes=10), quiet_jupyter(t0)) == {"idle": 4}


def test_a_warning_from_before_a_restart_is_over(workspace, t0, stops):
    idle.run_pass(t0 + timedelta(minutes=90), quiet_jupyter(t0))
    # Ready again later by a path that kept the warning (e.g. a repair after degraded).
    again = t0 + timedelta(minutes=100)
    Workspace.objects.filter(pk=workspace.pk).update(state_changed=again)
    assert idle.run_pass(t0 + timedelta(minutes=125), quiet_jupyter(t0)) == {"idle": 1}
    workspace.refresh_from_db()
    assert workspace.idle_stop_at is None and stops == []  # no stop, no stale banner
    assert idle.run_pass(again + timedelta(minutes=90), quiet_jupyter(t0)) == {"warned": 1}


def warned_then_repaired(workspace, t0) -> Workspace:
    """Warned, then degraded and repaired by the watch: ready again, which begins a new
    idle stretch, with the old warning's `idle_stop_at` still on the row."""
    assert idle.run_pass(t0 + timedelta(minutes=91), quiet_jupyter(t0)) == {"warned": 1}
    workspace = Workspace.objects.get(pk=workspace.pk)
    assert transition(workspace, State.DEGRADED, message="degraded: process gone")
    assert transition(workspace, State.READY, message="repaired")
    return Workspace.objects.get(pk=workspace.pk)


def test_a_warning_from_before_a_repair_is_shown_nowhere(workspace, t0, client, member):
    repaired = warned_then_repaired(workspace, t0)
    assert idle.announced_stop(repaired) is None
    client.force_login(member)
    for url in (repaired.get_absolute_url(), reverse("workspaces:self_service")):
        page = client.get(url).content.decode()
        assert "will be <strong>stopped at" not in page and "Keep it running" not in page


def test_a_warning_from_before_a_repair_spends_no_snooze(workspace, t0, member):
    repaired = warned_then_repaired(workspace, t0)
    with pytest.raises(idle.SnoozeRefused, match="not about to be stopped"):
        idle.snooze(repaired, member)
    assert Workspace.objects.get(pk=repaired.pk).idle_snoozes == 0
