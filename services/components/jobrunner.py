"""A small, real jobs queue for local workspaces (the jobs queue and the training runner).

Run as a script by the local driver's supervisor, inside the workspace's environment (so
every job sees the workspace's `CUDA_VISIBLE_DEVICES`, `WORKSPACE_DIR`, ...). Standard
library only: it must start without Django.

    python jobrunner.py --port P --state-dir DIR --token T [--max-parallel N]

HTTP API on 127.0.0.1 (every request but /health needs `Authorization: Bearer T`):
- `GET /health` → `{"status": "ok"}`
- `POST /jobs` with `{"command": "...", "name": "..."}` → 201 and the job
- `GET /jobs` → every job, newest first; `GET /jobs/<id>` → one job
- `GET /jobs/<id>/log` → the job's output (stdout and stderr), as text
- `POST /jobs/<id>/cancel` → stops a queued or running job: SIGTERM to a running job's
  process group, SIGKILL `CANCEL_GRACE` seconds later if it is still running. A running
  job is reported cancelled only when one of these signals ended it; one that ignored
  SIGTERM and finished first keeps its own status.

Jobs run with `/bin/sh -c COMMAND` in the workspace directory, at most `max_parallel` at
once, first in first out. Each job is a folder `<state-dir>/<id>/` holding `job.json` and
`output.log`, so the queue survives a restart: jobs that were running when the runner died
are marked failed ("runner restarted"), queued ones run.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import os
import signal
import subprocess
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
)
MAX_COMMAND = 10_000
MAX_BODY = 100_000
MAX_LOG_BYTES = 1_000_000
MAX_ID_DIGITS = 9  # more than a queue numbers; `int` refuses over 4,300
CANCEL_GRACE = 5  # seconds a cancelled job has to stop after SIGTERM


class Queue:
    def __init__(self, state_dir: Path, workdir: Path, max_parallel: int):
        self.state_dir = state_dir
        self.workdir = workdir
        self.max_parallel = max_parallel
        self.lock = threading.Lock()
        self.jobs: dict[int, dict] = {}
        self.processes: dict[int, subprocess.Popen] = {}
        self.cancelling: set[int] = set()  # running jobs asked to stop
        self.signalled: dict[int, set[int]] = {}  # the signals sent to each, to stop it
        self.wakeup = threading.Event()
        state_dir.mkdir(parents=True, exist_ok=True)
        for path in sorted(state_dir.glob("*/job.json")):
            job = json.loads(path.read_text())
            if job["status"] == RUNNING:
                job.update(status=FAILED, error="runner restarted", finished=time.time())
                self._save(job)
            self.jobs[job["id"]] = job

    def _save(self, job: dict) -> None:
        folder = self.state_dir / str(job["id"])
        folder.mkdir(exist_ok=True)
        tmp = folder / "job.json.tmp"
        tmp.write_text(json.dumps(job))
        tmp.replace(folder / "job.json")

    def submit(self, command: str, name: str = "") -> dict:
        with self.lock:
            number = max(self.jobs, default=0) + 1
            job = {
                "id": number,
                "name": name or f"job-{number}",
                "command": command,
                "status": QUEUED,
                "exit_code": None,
                "error": "",
                "submitted": time.time(),
                "started": None,
                "finished": None,
            }
            self.jobs[number] = job
            self._save(job)
        self.wakeup.set()
        return dict(job)

    def cancel(self, number: int) -> dict | None:
        with self.lock:
            job = self.jobs.get(number)
            if job is None:
                return None
            if job["status"] == QUEUED:
                job.update(status=CANCELLED, finished=time.time())
                self._save(job)
            elif job["status"] == RUNNING:
                self.cancelling.add(number)
            # None while the job is starting: `_run` stops it once it has started.
            process = self.processes.get(number)
        if process is not None:
            self._stop(number, process)
        return dict(job)

    def _stop(self, number: int, process: subprocess.Popen) -> None:
        """SIGTERM to the job's process group, and SIGKILL if it is still running
        CANCEL_GRACE seconds later (it may ignore SIGTERM)."""
        self._signal(number, process, signal.SIGTERM)
        timer = threading.Timer(CANCEL_GRACE, self._signal, args=(number, process, signal.SIGKILL))
        timer.daemon = True
        timer.start()

    def _signal(self, number: int, process: subprocess.Popen, signum: int) -> None:
        with self.lock:
            if process.returncode is not None:
                return  # it ended: its process group may be gone, and its id reused
            self.signalled.setdefault(number, set()).add(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)

    def log(self, number: int) -> bytes | None:
        if number not in self.jobs:
            return None
        path = self.state_dir / str(number) / "output.log"
        if not path.exists():
            return b""
        with open(path, "rb") as log:
            log.seek(max(path.stat().st_size - MAX_LOG_BYTES, 0))
            return log.read()

    def listing(self) -> list[dict]:
        with self.lock:
            return [dict(job) for job in sorted(self.jobs.values(), key=lambda j: -j["id"])]

    def run_forever(self) -> None:
        while True:
            self.wakeup.wait(timeout=0.5)
            self.wakeup.clear()
            with self.lock:
                running = sum(1 for j in self.jobs.values() if j["status"] == RUNNING)
                queued = sorted(n for n, j in self.jobs.items() if j["status"] == QUEUED)
                to_start = queued[: max(self.max_parallel - running, 0)]
                for number in to_start:
                    job = self.jobs[number]
                    job.update(status=RUNNING, started=time.time())
                    self._save(job)
            for number in to_start:
                threading.Thread(target=self._run, args=(number,), daemon=True).start()

    def _run(self, number: int) -> None:
        job = self.jobs[number]
        log_path = self.state_dir / str(number) / "output.log"
        try:
            with open(log_path, "ab") as log:
                process = subprocess.Popen(
                    ["/bin/sh", "-c", job["command"]],
                    cwd=self.workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            with self.lock:
                self.processes[number] = process
                cancelled_while_starting = number in self.cancelling
            if cancelled_while_starting:
                self._stop(number, process)
            code = process.wait()
        except OSError as error:
            code, job["error"] = None, str(error)
        with self.lock:
            self.processes.pop(number, None)
            self.cancelling.discard(number)
            signalled = self.signalled.pop(number, set())
            # A negative code is the signal that ended the process.
            if code is not None and -code in signalled:
                status = CANCELLED
            else:
                status = SUCCEEDED if code == 0 else FAILED
            job.update(status=status, exit_code=code, finished=time.time())
            self._save(job)
        self.wakeup.set()


def make_handler(queue: Queue, token: str):
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body, content_type: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            given = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if hmac.compare_digest(given.encode(), token.encode()):
                return True
            self._send(HTTPStatus.UNAUTHORIZED, {"error": "missing or wrong token"})
            return False

        def _job_id(self, part: str) -> int | None:
            """The job id a path names: ASCII digits only (`isdigit` takes "²" too, which
            `int` refuses), and few enough for `int`."""
            if part.isascii() and part.isdigit() and len(part) <= MAX_ID_DIGITS:
                return int(part)
            return None

        def do_GET(self):
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            if parts == ["health"]:
                return self._send(HTTPStatus.OK, {"status": "ok"})
            if not self._authorised():
                return None
            if parts == ["jobs"]:
                return self._send(HTTPStatus.OK, {"jobs": queue.listing()})
            if len(parts) in (2, 3) and parts[0] == "jobs":
                number = self._job_id(parts[1])
                if len(parts) == 3 and parts[2] == "log":
                    log = queue.log(number) if number else None
                    if log is not None:
                        return self._send(HTTPStatus.OK, log, "text/plain; charset=utf-8")
                elif len(parts) == 2:
                    job = next((j for j in queue.listing() if j["id"] == number), None)
                    if job:
                        return self._send(HTTPStatus.OK, job)
            return self._send(HTTPStatus.NOT_FOUND, {"error": "no such job"})

        def do_POST(self):
            if not self._authorised():
                return None
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            if parts == ["jobs"]:
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    if not 0 <= length <= MAX_BODY:
                        raise ValueError("a negative or too large Content-Length")
                    payload = json.loads(self.rfile.read(length) or b"{}")
                    command = str(payload["command"]).strip()
                except (ValueError, KeyError, TypeError):
                    return self._send(HTTPStatus.BAD_REQUEST, {"error": 'send {"command": …}'})
                if not command or len(command) > MAX_COMMAND:
                    return self._send(HTTPStatus.BAD_REQUEST, {"error": "empty or long command"})
                job = queue.submit(command, str(payload.get("name", ""))[:100])
                return self._send(HTTPStatus.CREATED, job)
            if len(parts) == 3 and parts[0] == "jobs" and parts[2] == "cancel":
                job = queue.cancel(self._job_id(parts[1]) or 0)
                if job:
                    return self._send(HTTPStatus.OK, job)
            return self._send(HTTPStatus.NOT_FOUND, {"error": "no such job"})

        def log_message(self, format, *args):
            print(format % args, flush=True)

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=Path.cwd())
    parser.add_argument("--max-parallel", type=int, default=2)
    args = parser.parse_args(argv)
    token = os.environ.get("JOBRUNNER_TOKEN", "")
    if not token:
        raise SystemExit("JOBRUNNER_TOKEN is not set")
    queue = Queue(args.state_dir, args.workdir, args.max_parallel)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(queue, token))
    threading.Thread(target=queue.run_forever, daemon=True).start()
    print(f"jobs queue listening on 127.0.0.1:{args.port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()


if __name__ == "__main__":
    main()
