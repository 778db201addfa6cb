"""gunicorn's configuration: `gunicorn --config python:portal.gunicorn_conf portal.wsgi`.

Read from the environment (README: configuration reference) with the same helpers as the
settings, so a typo stops the server with the variable's name:

- `WEB_BIND` (default `127.0.0.1:$PORT`, PORT defaulting to 8000; the image binds
  `0.0.0.0:8000`), `WEB_CONCURRENCY` worker processes (default 2), `WEB_THREADS` threads
  each (default 4), `WEB_TIMEOUT` seconds a request may take (default 60).
- Metrics from several worker processes: each worker writes its prometheus-client values
  to files in `PROMETHEUS_MULTIPROC_DIR` (a fresh temporary directory when unset); the
  directory is emptied when the server starts, and a dead worker's live gauges are dropped.
  The variable is set here, before the application (and prometheus-client) is imported in
  the workers.
- Logs: gunicorn's own messages go through the portal's formatter (`LOG_FORMAT`); the
  access log is off because the portal logs every request itself, with its request id.
"""

import os
import shutil
import tempfile
from pathlib import Path

from portal import logs
from portal.env import env_choice, env_int, env_str

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="portal-metrics-")
METRICS_DIR = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])

bind = env_str("WEB_BIND") or f"127.0.0.1:{env_int('PORT', 8000, minimum=1)}"
workers = env_int("WEB_CONCURRENCY", 2, minimum=1)
threads = env_int("WEB_THREADS", 4, minimum=1)
worker_class = "gthread"
timeout = env_int("WEB_TIMEOUT", 60, minimum=5)
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then (with jitter, so they do not all restart at once).
max_requests = env_int("WEB_MAX_REQUESTS", 5000, minimum=0)
max_requests_jitter = max_requests // 10
# Heartbeat files in memory: a container's root filesystem may be read-only or slow.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# No runtime control socket: it would be written under $HOME, read-only in the container.
control_socket_disable = True
forwarded_allow_ips = env_str("FORWARDED_ALLOW_IPS", "127.0.0.1")
_level = env_choice("LOG_LEVEL", "INFO", {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})
logconfig_dict = logs.logging_config(env_choice("LOG_FORMAT", "text", {"text", "json"}), _level)
logconfig_dict["loggers"] |= {
    "gunicorn.error": {"level": _level, "handlers": [], "propagate": True},
    # Off: the portal's own request log (portal.access) has the request id and user.
    "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
}


def on_starting(server):
    """Start from an empty metrics directory: old files would add up to stale counts."""
    METRICS_DIR.mkdir(parents=True, exist_ok=True)
    for entry in METRICS_DIR.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def child_exit(server, worker):
    # Imported here, in the master, long after PROMETHEUS_MULTIPROC_DIR was set above.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
