"""`/healthz` (the process answers) and `/readyz` (it can do useful work), for probes.

Both are unauthenticated and cheap, and say no more than "ok" or "not ready: <reason>":

- `/healthz` touches nothing: a liveness probe must not restart a healthy web process just
  because the database is down.
- `/readyz` checks, in order, that the database answers (`SELECT 1`), that every migration
  is applied (checked until it once is, then remembered for the life of the process), and
  that a django-q2 cluster ran the heartbeat task recently: `portal: heartbeat` is a
  schedule every minute (`ensure_heartbeat_schedule`, run by a data migration), so a
  finished heartbeat task younger than `READYZ_HEARTBEAT_MAX_AGE` seconds means some
  cluster's scheduler and one of its workers are alive.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_q.models import Success

from portal.schedules import every

logger = logging.getLogger(__name__)

HEARTBEAT_NAME = "portal: heartbeat"
HEARTBEAT_FUNC = "portal.health.heartbeat"
HEARTBEAT_MINUTES = 1

_migrated = False  # once every migration is applied, it stays so for this process


def heartbeat() -> str:
    """The heartbeat task: finishing it is the proof a cluster is alive."""
    return "ok"


def ensure_heartbeat_schedule(schedule_model=None) -> None:
    """Create (or restore) the heartbeat schedule; idempotent."""
    every(HEARTBEAT_MINUTES, HEARTBEAT_NAME, HEARTBEAT_FUNC, schedule_model)


def _plain(status: int, text: str) -> HttpResponse:
    return HttpResponse(text + "\n", status=status, content_type="text/plain; charset=utf-8")


@never_cache
@require_GET
def healthz(request):
    return _plain(200, "ok")


def pending_migrations() -> int:
    global _migrated
    if _migrated:
        return 0
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    _migrated = not plan
    return len(plan)


def forget_migrations() -> None:
    """Check migrations again on the next probe (tests)."""
    global _migrated
    _migrated = False


def last_heartbeat():
    return (
        Success.objects.filter(func=HEARTBEAT_FUNC)
        .order_by("-stopped")
        .values_list("stopped", flat=True)
        .first()
    )


def not_ready_reason() -> str:
    """Why the process is not ready, or "" when it is."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        logger.warning("readyz: the database is unreachable", exc_info=True)
        return "database unreachable"
    pending = pending_migrations()
    if pending:
        return f"{pending} migration(s) not applied"
    max_age = settings.READYZ_HEARTBEAT_MAX_AGE
    beat = last_heartbeat()
    if beat is None or timezone.now() - beat > timedelta(seconds=max_age):
        return f"no django-q2 cluster heartbeat in the last {max_age} s"
    return ""


@never_cache
@require_GET
def readyz(request):
    reason = not_ready_reason()
    if reason:
        return _plain(503, f"not ready: {reason}")
    return _plain(200, "ok")
