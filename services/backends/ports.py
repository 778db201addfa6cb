"""Local ports of components' processes, reserved on this host.

A process's own port is registered with it (`SupervisedProcess.port`). A component whose
process listens on more ports (Ray Client's) names them (`Component.local_ports`), and the
local backend reserves one port for each before the start (`reserve`): one the kernel says
is free that no registered process and no reservation of this host holds, so two
workspaces are never given the same one where they share the host's network
(`pools.isolation`). Its own port, when the services profile fixes it (the `port`
parameter), is reserved too (`reserve_fixed`), or the component fails: in another
workspace's hands, its health check and its endpoint would be that workspace's service.
Once the process runs, its reservations are attached to its registration (`attach`) and
last as long as it; the supervisor unregistering it frees them. Every check plans the
process with the other ports it holds (`held`), so the plan names the ports it listens on.

Two workers may draw the same free port at once: the reservation's unique constraint lets
one of them have it, and the other draws again.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from pools import supervisor
from pools.drivers.base import PermanentError, TransientError
from pools.models import SupervisedProcess
from services.models import ReservedPort

# A reservation its start never attached (the worker died meanwhile) is free after this.
UNATTACHED_FOR = timedelta(minutes=10)
DRAWS = 20  # free ports drawn before giving up: all taken by workspaces is unlikely
FIXED = "port"  # the name of a reservation of a process's own port, fixed by its profile


def free_port() -> int:
    """A local port the kernel says is free and no workspace's process holds (registered
    with it, or reserved for it)."""
    taken = _taken()
    for _ in range(DRAWS):
        port = supervisor.free_port()
        if port not in taken:
            return port
    raise TransientError("No free local port that no workspace holds.")


def _taken() -> set[int]:
    registered = SupervisedProcess.objects.filter(
        host=supervisor.HOST, boot_id=supervisor.BOOT_ID, port__isnull=False
    ).values_list("port", flat=True)
    fresh = Q(process__isnull=False) | Q(created__gte=timezone.now() - UNATTACHED_FOR)
    reserved = _here().filter(fresh).values_list("port", flat=True)
    return set(registered) | set(reserved)


def _here():
    return ReservedPort.objects.filter(host=supervisor.HOST)


def _forget_stale() -> None:
    stale = timezone.now() - UNATTACHED_FOR
    _here().filter(process__isnull=True, created__lt=stale).delete()


def reserve(names: Iterable[str]) -> dict[str, int]:
    """A port reserved for each of `names` (not yet attached to a process)."""
    _forget_stale()
    return {name: _reserve_one(name) for name in names}


def _reserve_one(name: str) -> int:
    for _ in range(DRAWS):
        port = free_port()
        try:
            with transaction.atomic():
                ReservedPort.objects.create(host=supervisor.HOST, port=port, name=name)
        except IntegrityError:  # another worker reserved it since we looked
            continue
        return port
    raise TransientError(f"No free local port to reserve for {name}.")


def reserve_fixed(port: int) -> dict[str, int]:
    """`port`, the process's own port as its services profile fixes it, reserved for it as
    {FIXED: port} (not yet attached); {} for 0, which fixes none. PermanentError when a
    workspace's process holds it (registered with it or reserved for it) or something else
    on this host listens on it."""
    if not port:
        return {}
    _forget_stale()
    in_use = PermanentError(
        f"Port {port}, which its services profile sets, is in use on this host (by another "
        "workspace's service or another program); set another one there, or 0 for a free one."
    )
    if port in _taken() or _listened_on(port):
        raise in_use
    try:
        with transaction.atomic():
            ReservedPort.objects.create(host=supervisor.HOST, port=port, name=FIXED)
    except IntegrityError:  # another worker reserved it since we looked
        raise in_use from None
    return {FIXED: port}


def _listened_on(port: int) -> bool:
    """Whether a socket listens on `port` of 127.0.0.1 (one left in TIME_WAIT by a process
    that is gone does not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def attach(ports: dict[str, int], record: supervisor.ProcessRecord) -> None:
    """Hand the reservations `ports` to the process `record` started with them."""
    process = SupervisedProcess.objects.get(
        host=supervisor.HOST,
        boot_id=supervisor.BOOT_ID,
        pid=record.pid,
        start_time=record.start_time,
    )
    _here().filter(port__in=ports.values(), process=None).update(process=process)


def release(ports: dict[str, int]) -> None:
    """Free reservations `ports` whose process did not start."""
    _here().filter(port__in=ports.values(), process=None).delete()


def held(record: supervisor.ProcessRecord) -> dict[str, int]:
    """The ports reserved for the registered process `record` besides its own, by name."""
    rows = _here().filter(
        process__boot_id=supervisor.BOOT_ID,
        process__pid=record.pid,
        process__start_time=record.start_time,
    )
    return dict(rows.exclude(name=FIXED).values_list("name", "port"))
