"""One lock across every worker and process, for the warm-pool loop.

PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`), released when the block
ends or, if the process dies, when its connection closes. Elsewhere (SQLite): a `LoopLock`
row taken with a conditional UPDATE that only succeeds when the row's lease has expired, so
a holder that died frees the lock after `ttl` at the latest.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from pools.models import LoopLock


def advisory_key(name: str) -> int:
    """A stable 32-bit key for `name` (pg_try_advisory_lock takes a bigint)."""
    return zlib.crc32(f"gpu-paas:{name}".encode())


@contextmanager
def try_lock(name: str, ttl: timedelta = timedelta(minutes=10)) -> Iterator[bool]:
    """Yield True while holding the lock `name`, or False at once if someone else holds it.

    Never call it inside a transaction: the lock must outlive (and not be undone by) the
    transactions of the work it guards.
    """
    if connection.vendor == "postgresql":
        key = advisory_key(name)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
            acquired = cursor.fetchone()[0]
        try:
            yield acquired
        finally:
            if acquired:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        return

    token = uuid.uuid4().hex
    acquired = _take_row(name, token, ttl)
    try:
        yield acquired
    finally:
        if acquired:
            LoopLock.objects.filter(name=name, holder=token).update(
                holder="", expires=timezone.now()
            )


def _take_row(name: str, token: str, ttl: timedelta) -> bool:
    now = timezone.now()
    try:
        with transaction.atomic():
            LoopLock.objects.get_or_create(name=name, defaults={"expires": now})
    except IntegrityError:  # created by someone else at the same moment
        pass
    taken = LoopLock.objects.filter(name=name, expires__lte=now).update(
        holder=token, expires=now + ttl
    )
    return taken == 1
