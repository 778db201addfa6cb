"""Log records that say which request, user, workspace and task they belong to.

Context travels in context variables: the request middleware binds the request id and the
user, the django-q2 worker binds the task id and the request id the task was enqueued
under (`portal.tasklog`), and code that works on one object binds it with
`bind(workspace_id=42)`. `ContextFilter` copies the bound values onto every record, so
both formatters can print them:

- `HumanFormatter`: one readable line (the default, what `bin/run` prints);
- `JsonFormatter`: one JSON object per line with timestamp, level, logger, message and
  every bound id (`LOG_FORMAT=json`), for a log pipeline.

This module needs nothing from Django, so gunicorn's configuration can use it too.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

# The ids a record may carry, in the order the human format prints them.
FIELDS = ("request_id", "user", "workspace_id", "pool_instance_id", "task_id", "task")

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "portal_log_context", default=None
)


def current() -> dict[str, str]:
    """The ids bound right now (a copy)."""
    return dict(_context.get() or {})


@contextmanager
def bind(**fields) -> Iterator[None]:
    """Add ids to every record logged inside the block; None values are left out."""
    merged = current() | {name: str(value) for name, value in fields.items() if value is not None}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def replace(fields: dict[str, str]):
    """Bind exactly `fields` (a worker starting a task); returns a token for `restore`."""
    return _context.set(dict(fields))


def restore(token) -> None:
    _context.reset(token)


class ContextFilter(logging.Filter):
    """Copy the bound ids onto the record (as attributes named like the fields)."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _context.get() or {}
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, bound.get(name, ""))
        return True


class QuietProbes(logging.Filter):
    """Drop Django's "Service Unavailable: /readyz" records: a probe asks every few seconds,
    and the metrics and the probe's own answer already say it."""

    PATHS = frozenset({"/healthz", "/readyz"})

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        return getattr(request, "path", "") not in self.PATHS


class HumanFormatter(logging.Formatter):
    """`2025-01-01 12:00:00,000 INFO pools.tasks [req=… user=… task=…] message`."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s %(context)s%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        ids = [f"{name}={getattr(record, name)}" for name in FIELDS if getattr(record, name, "")]
        record.context = f"[{' '.join(ids)}] " if ids else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; empty ids are left out."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for name in FIELDS:
            value = getattr(record, name, "")
            if value:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


FORMATTERS = {"text": HumanFormatter, "json": JsonFormatter}


def logging_config(log_format: str, level: str) -> dict:
    """The `LOGGING` dict of settings (and of gunicorn's own loggers)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}, "quiet_probes": {"()": QuietProbes}},
        "formatters": {"portal": {"()": FORMATTERS[log_format]}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "filters": ["context"],
                "formatter": "portal",
            }
        },
        "loggers": {"django.request": {"filters": ["quiet_probes"]}},
        "root": {"handlers": ["console"], "level": level},
    }
