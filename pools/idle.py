"""Idle workspaces (issue 16): notice them, warn their owners, stop them (files kept).

Signals of activity. Each is optional: one that cannot be read says nothing, and a
workspace with no readable signal at all is never judged idle (nothing proves it is).
- JupyterLab's own activity API, for a local workspace that serves it (its own process,
  or a notebook component of its services stack): `/api/status` (`last_activity`: the
  latest of its API use, kernels and terminals) and `/api/kernels` (a busy kernel is
  active now, even while it prints nothing). Read with `no_track_activity`, so the
  portal's own look is not activity, within JUPYTER_TIMEOUT seconds in all per server.
- GPU utilisation of the workspace's allocated devices through NVML on this host's driver
  (`GPU_ACTIVE_PERCENT`). A host without a driver has no NVML, and NVML has no utilisation
  counter for a MIG device: neither gives a signal. Kubernetes: see the README (DCGM).
- CPU time of its supervised processes and what they started (`supervisor.cpu_seconds`):
  more than `CPU_ACTIVE_SHARE` of one core since the last look.

The pass (`run_pass`, in `sweep`: a schedule every `schedules.IDLE_MINUTES`), for each
ready workspace of a group that stops workspaces idle for N hours, warning T minutes
before (`Policy`):
1. Read the signals (`read_activity`). Activity newer than the last one seen moves
   `active_at` and ends a warning and the snoozes in a row. No signal at all ends a
   warning too: nothing proves the workspace idle, so it will not be stopped.
2. `decide()`: idle for N hours minus T minutes and not warned yet → warn (email and the
   portal's banner; `idle_stop_at` says when it stops); warned and that time reached →
   stop. The stop comes at least T minutes after its warning, even after missed passes.
3. Warning and stopping decide again on the locked row, so a snooze at the same moment
   either wins or loses as a whole. Stopping takes the Stop button's path
   (`tasks.request_stop`), is audited, and its event says why. Notifications are keyed by
   the occurrence, so a pass delivered twice warns and tells once.
A workspace whose check fails is logged and counted as "failed"; the pass goes on to the
others (and the sweep to the expiry warnings). A warning of a workspace whose group stops
idle workspaces no more is over, and so cleared, before the pass: every page agrees that
no stop is coming.

`snooze()` (the owner's button) counts as activity, up to the group's limit in a row, and
only while a warning is on (`announced_stop`, which the pages' banner shows too).
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from pools import lifetime, supervisor, tasks
from pools.lifecycle import State, log_step
from pools.models import GpuAllocation, Workspace
from portal import audit, notifications
from portal.models import MAX_IDLE_STOP_HOURS, AuditAction, NotificationKind
from profiles.choices import InfrastructureKind
from profiles.mig.nvml import utilisation as gpu_utilisation
from services.components.base import Capability
from services.models import ComponentDeployment, ComponentStatus

logger = logging.getLogger(__name__)

GPU_ACTIVE_PERCENT = 5  # a device this busy or busier is in use
CPU_ACTIVE_SHARE = 0.05  # of one core, averaged since the last look
# What the workspace's own JupyterLab may cost a pass: seconds for all the requests to one
# server however slowly it answers, and the bytes of one answer (headers included).
JUPYTER_TIMEOUT = 3
JUPYTER_MAX_BYTES = 1024 * 1024

NOTHING, WARN, STOP = "", "warn", "stop"
STOPS_IDLE = Q(team__idle_stop_hours__gt=0)  # the workspaces whose group has a Policy


class SnoozeRefused(Exception):
    """The owner may not snooze now; the message says why, for the page."""


@dataclass(frozen=True)
class Policy:
    """A group's rule: stop after `stop_after` idle, warn `warn_before` that, snooze limit."""

    stop_after: timedelta
    warn_before: timedelta
    max_snoozes: int

    @classmethod
    def of(cls, team) -> Policy | None:
        if team is None or not team.idle_stop_hours:
            return None
        # A stored value beyond the bound (not saved through the group form) counts as the
        # bound: the times derived from it (idle start + N hours) must stay dates.
        stop_after = timedelta(hours=min(team.idle_stop_hours, MAX_IDLE_STOP_HOURS))
        warn_before = min(timedelta(minutes=team.idle_warning_minutes), stop_after)
        return cls(stop_after, warn_before, team.idle_max_snoozes)


@dataclass(frozen=True)
class Reading:
    """What the signals said at one look."""

    signals: tuple[str, ...] = ()  # the signals that could be read
    last_active: datetime | None = None  # the latest activity any of them saw
    active: tuple[str, ...] = ()  # the signals that saw activity since the last look
    cpu_seconds: float | None = None


# -- deciding ---------------------------------------------------------------------------


def idle_since(workspace: Workspace) -> datetime:
    """Its last activity (or snooze), or when it became ready if later."""
    return max(t for t in (workspace.active_at, workspace.state_changed) if t is not None)


def warned(workspace: Workspace, policy: Policy) -> bool:
    """Whether its owner was warned in this idle stretch. A warning always names a stop
    at least N hours after the idle start; one that does not was made before the
    workspace became ready again by a path that left it (a repair, a restart) and is over.
    """
    stop_at = workspace.idle_stop_at
    return stop_at is not None and stop_at >= idle_since(workspace) + policy.stop_after


def announced_stop(workspace: Workspace) -> datetime | None:
    """When its owner was warned the workspace will be stopped for being idle; None when
    no warning is on (none was made, or the one made is over: `warned`). What the pages
    show and what a snooze answers, so neither acts on a stop that is not coming."""
    policy = Policy.of(workspace.team)
    if workspace.state != State.READY or policy is None or not warned(workspace, policy):
        return None
    return workspace.idle_stop_at


def decide(workspace: Workspace, policy: Policy, now: datetime) -> str:
    if workspace.state != State.READY:
        return NOTHING
    if not warned(workspace, policy):
        warn_at = idle_since(workspace) + policy.stop_after - policy.warn_before
        return WARN if now >= warn_at else NOTHING
    return STOP if now >= workspace.idle_stop_at else NOTHING


def stop_time(workspace: Workspace, policy: Policy, now: datetime) -> datetime:
    """When a workspace warned at `now` is stopped: N hours idle, and T minutes' notice."""
    return max(idle_since(workspace) + policy.stop_after, now + policy.warn_before)


# -- the pass ---------------------------------------------------------------------------


def sweep() -> dict:
    """The schedule: idle workspaces, then lifetimes about to end (`pools.lifetime`)."""
    return {"idle": run_pass(), "expiry_warnings": lifetime.warn_expiring()}


def run_pass(now: datetime | None = None, read: Callable | None = None) -> dict[str, int]:
    """One pass over every ready workspace whose group stops idle ones; the outcomes."""
    now = now or timezone.now()
    read = read or read_activity
    outcomes: dict[str, int] = {}
    ready = Workspace.objects.filter(state=State.READY)
    # A warning whose group stops idle workspaces no more (or that left its group) is
    # over: no pass will stop the workspace, so its banner goes too.
    ready.exclude(STOPS_IDLE).filter(idle_stop_at__isnull=False).update(idle_stop_at=None)
    candidates = ready.filter(STOPS_IDLE).select_related("team", "infrastructure", "owner")
    for workspace in candidates.iterator():
        try:
            outcome = check(workspace, Policy.of(workspace.team), now, read(workspace, now))
        except Exception:  # one workspace, whatever is wrong with it, spares the rest
            logger.exception("idle pass: checking workspace %s failed", workspace.pk)
            outcome = "failed"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def check(workspace: Workspace, policy: Policy, now: datetime, reading: Reading) -> str:
    """One workspace, one look: record the reading, then warn or stop if it is due.

    With no signal, nothing proves it idle: it is never stopped, so a warning it had is
    over (its banner goes too; a signal that comes back warns again first)."""
    if not reading.signals:
        _end_warning(workspace)
        return "no signal"
    record_reading(workspace, reading, now)
    if not warned(workspace, policy):
        _end_warning(workspace)  # made before it became ready again
    action = decide(workspace, policy, now)
    if action == WARN:
        return "warned" if warn(workspace.pk, policy, now) else "unchanged"
    if action == STOP:
        return "stopped" if stop(workspace.pk, policy, now) else "unchanged"
    return "active" if reading.active else "idle"


def _end_warning(workspace: Workspace) -> None:
    """Forget the workspace's idle warning, unless a pass or snooze changed it meanwhile."""
    if workspace.idle_stop_at is None:
        return
    Workspace.objects.filter(pk=workspace.pk, idle_stop_at=workspace.idle_stop_at).update(
        idle_stop_at=None
    )
    workspace.idle_stop_at = None


def record_reading(workspace: Workspace, reading: Reading, now: datetime) -> None:
    """Store the CPU sample; activity newer than the last seen moves `active_at` (only
    forward: a snooze written meanwhile is not undone) and ends warning and snoozes."""
    rows = Workspace.objects.filter(pk=workspace.pk)
    rows.update(cpu_seconds=reading.cpu_seconds, idle_checked_at=now)
    workspace.cpu_seconds, workspace.idle_checked_at = reading.cpu_seconds, now
    seen = min(reading.last_active, now) if reading.last_active else None
    if seen is None or seen <= idle_since(workspace):
        return
    moved = rows.filter(Q(active_at__isnull=True) | Q(active_at__lt=seen)).update(
        active_at=seen, idle_stop_at=None, idle_snoozes=0
    )
    if moved:
        workspace.active_at, workspace.idle_stop_at, workspace.idle_snoozes = seen, None, 0


def _locked(workspace_id: int) -> Workspace:
    return Workspace.objects.select_for_update().select_related("owner").get(pk=workspace_id)


def warn(workspace_id: int, policy: Policy, now: datetime) -> bool:
    """Tell the owner when the workspace will be stopped; False if not due any more."""
    with transaction.atomic():
        workspace = _locked(workspace_id)
        if decide(workspace, policy, now) != WARN:
            return False
        since = idle_since(workspace)
        workspace.idle_stop_at = stop_time(workspace, policy, now)
        workspace.save(update_fields=["idle_stop_at"])
        when = _clock(workspace.idle_stop_at)
        log_step(workspace, f"idle since {_clock(since)}: will be stopped at {when}")
        notifications.notify(
            [workspace.owner],
            notifications.Message(
                kind=NotificationKind.IDLE_WARNING,
                key=f"workspace:{workspace.pk}:idle-warning:{since.isoformat()}",
                subject=f"Workspace “{workspace}” is idle and will be stopped at {when}",
                body=(
                    f"Your workspace “{workspace}” has not been used since {_clock(since)}. "
                    f"It will be stopped at {when} to free its resources; its files are kept. "
                    "Use it, or snooze the stop on its page, to keep it running."
                ),
                url=workspace.get_absolute_url(),
            ),
        )
    return True


def stop(workspace_id: int, policy: Policy, now: datetime) -> bool:
    """Stop the workspace for being idle (files kept), audited, the owner told."""
    with transaction.atomic():
        workspace = _locked(workspace_id)
        if decide(workspace, policy, now) != STOP:
            return False
        since = idle_since(workspace)
        hours = policy.stop_after.total_seconds() / 3600
        why = (
            f"stopped for being idle: no activity since {_clock(since)} "
            f"(its group stops workspaces idle for {hours:g} h); files kept"
        )
        stopped_at = workspace.idle_stop_at
        if not tasks.request_stop(workspace, message=why):
            return False
        audit.record(None, AuditAction.ACTION, workspace, message=why)
        notifications.notify(
            [workspace.owner],
            notifications.Message(
                kind=NotificationKind.IDLE_STOPPED,
                key=f"workspace:{workspace.pk}:idle-stop:{stopped_at.isoformat()}",
                subject=f"Workspace “{workspace}” was stopped for being idle",
                body=(
                    f"Your workspace “{workspace}” was not used since {_clock(since)} and has "
                    "been stopped; its resources are free again and its files are kept. "
                    "Start it again from its page."
                ),
                url=workspace.get_absolute_url(),
            ),
        )
    return True


@transaction.atomic
def snooze(workspace: Workspace, actor, now: datetime | None = None) -> Workspace:
    """Keep a warned workspace running: counts as activity, up to the group's limit."""
    now = now or timezone.now()
    locked = _locked(workspace.pk)
    if announced_stop(locked) is None:
        raise SnoozeRefused("This workspace is not about to be stopped for being idle.")
    policy = Policy.of(locked.team)
    if locked.idle_snoozes >= policy.max_snoozes:
        raise SnoozeRefused(
            f"Snoozed {locked.idle_snoozes} times in a row already, the most your group "
            "allows: use the workspace to keep it running."
        )
    locked.active_at, locked.idle_stop_at = now, None
    locked.idle_snoozes += 1
    locked.save(update_fields=["active_at", "idle_stop_at", "idle_snoozes"])
    message = f"snoozed the idle stop ({locked.idle_snoozes} of {policy.max_snoozes})"
    log_step(locked, message, actor=actor)
    audit.record(actor, AuditAction.ACTION, locked, message=message)
    return locked


def _clock(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z")


# -- the signals ------------------------------------------------------------------------


def read_activity(workspace: Workspace, now: datetime, nvml=None) -> Reading:
    """Every signal this portal can read for the workspace, combined."""
    infrastructure = workspace.infrastructure
    if infrastructure is None or infrastructure.kind != InfrastructureKind.LOCAL:
        return Reading()  # Kubernetes and AWS: DCGM-exporter metrics, see the README
    signals, active, latest = [], [], []
    jupyter = jupyter_activity(workspace, now)
    if jupyter is not None:
        signals.append("JupyterLab")
        latest.append(jupyter)
        if jupyter > idle_since(workspace):
            active.append("JupyterLab")
    holder = workspace.resources_spec().name  # an adopted warm instance's name
    uuids = list(
        GpuAllocation.objects.filter(infrastructure=infrastructure, holder=holder).values_list(
            "device_uuid", flat=True
        )
    )
    gpu = gpu_busy(uuids, nvml)
    if gpu is not None:
        signals.append("GPU")
        if gpu:
            active.append("GPU")
            latest.append(now)
    cpu = supervisor.cpu_seconds(holder)
    if cpu is not None:
        signals.append("CPU")
        if cpu_busy(workspace, cpu, now):
            active.append("CPU")
            latest.append(now)
    return Reading(
        signals=tuple(signals),
        last_active=max(latest) if latest else None,
        active=tuple(active),
        cpu_seconds=cpu,
    )


def cpu_busy(workspace: Workspace, cpu_seconds: float, now: datetime) -> bool:
    """More than CPU_ACTIVE_SHARE of a core used since the last look (none: not known)."""
    if workspace.cpu_seconds is None or workspace.idle_checked_at is None:
        return False
    elapsed = (now - workspace.idle_checked_at).total_seconds()
    used = cpu_seconds - workspace.cpu_seconds
    return elapsed > 0 and used > CPU_ACTIVE_SHARE * elapsed


def gpu_busy(device_uuids: list[str], nvml=None) -> bool | None:
    """Whether any of the devices is busy; None when NVML cannot tell for any of them
    (no driver on this host, a MIG device, no devices)."""
    percent = gpu_utilisation(device_uuids, nvml)
    return None if percent is None else percent >= GPU_ACTIVE_PERCENT


def jupyter_servers(workspace: Workspace) -> list[tuple[int, str]]:
    """(port on 127.0.0.1, token) of each Jupyter server of the workspace: its own process
    (the local driver's `url`, its secret), and the running notebook components of its
    services stacks (JupyterLab: the Jupyter Server API, the component's token)."""
    found = [(workspace.connection.get("url", ""), workspace.secret)]
    notebooks = ComponentDeployment.objects.filter(
        deployment__workspace=workspace,
        capability=Capability.NOTEBOOK,
        status=ComponentStatus.READY,
    )
    for notebook in notebooks:
        found += [(endpoint.get("url", ""), notebook.secret) for endpoint in notebook.endpoints]
    servers = []
    for url, token in found:
        target = urlsplit(url if isinstance(url, str) else "")
        if target.hostname == "127.0.0.1" and target.port and token:
            servers.append((target.port, token))
    return servers


def jupyter_activity(workspace: Workspace, now: datetime) -> datetime | None:
    """The latest activity its Jupyter servers report (a busy kernel: now); None when no
    server answers. Only servers on 127.0.0.1 (the addresses the portal itself wrote),
    with their token, without following redirects, JUPYTER_TIMEOUT seconds for each."""
    answered, latest = False, None
    for port, token in jupyter_servers(workspace):
        deadline = time.monotonic() + JUPYTER_TIMEOUT
        status = _jupyter_get(port, "/api/status", token, deadline)
        if not isinstance(status, dict):
            continue
        answered = True
        kernels = _kernel_activity(port, token, now, deadline)
        for seen in [status.get("last_activity")] + kernels:
            moment = seen if isinstance(seen, datetime) else _parse_time(seen)
            if moment and (latest is None or moment > latest):
                latest = moment
    return latest if answered else None


def _kernel_activity(port: int, token: str, now: datetime, deadline: float) -> list:
    """Each kernel's last activity; `now` for a busy one (it may print nothing for hours)."""
    kernels = _jupyter_get(port, "/api/kernels", token, deadline)
    seen = []
    for kernel in kernels if isinstance(kernels, list) else ():
        if isinstance(kernel, dict):
            busy = kernel.get("execution_state") == "busy"
            seen.append(now if busy else kernel.get("last_activity"))
    return seen


def _jupyter_get(port: int, path: str, token: str, deadline: float):
    """The JSON of a 200 answer to GET `path`, or None.

    The server is the workspace's, so its whole answer is read under `deadline`
    (http.client's timeout is per read: an answer sent byte by byte would hold the pass
    for as long as the workspace likes), then parsed: at most JUPYTER_MAX_BYTES of it, and
    a JSON nested too deeply for the parser is no answer either."""
    left = deadline - time.monotonic()
    if left <= 0:
        return None
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=left)
    try:
        connection.request(
            "GET",
            f"{path}?no_track_activity=1",
            headers={"Authorization": f"token {token}", "Connection": "close"},
        )
        received = _receive_all(connection.sock, deadline)
        if received is None:
            return None
        response = http.client.HTTPResponse(_Received(received))
        response.begin()
        if response.status != 200:
            return None
        return json.loads(response.read())
    except (OSError, http.client.HTTPException, ValueError, RecursionError):
        return None
    finally:
        connection.close()


def _receive_all(sock, deadline: float) -> bytes | None:
    """Everything the server sends until it closes the connection (asked to, after its
    answer); None when that is more than JUPYTER_MAX_BYTES or takes past `deadline`."""
    received = bytearray()
    while len(received) <= JUPYTER_MAX_BYTES:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            return bytes(received)
        received += chunk
    return None


class _Received:
    """An answer already received whole, for http.client to parse as it would a socket's."""

    def __init__(self, data: bytes):
        self.data = data

    def makefile(self, mode: str):
        return io.BytesIO(self.data)


def _parse_time(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = parse_datetime(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment is None or timezone.is_naive(moment):
        return None
    return moment
