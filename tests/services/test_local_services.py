"""Turnkey profiles deployed for real on the local driver, queried through their own APIs.

These start real processes (JupyterLab, MLflow, Ray, the jobs queue) and take seconds to a
minute each: they are marked `local_services` and run in the suite.
"""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pools import isolation, supervisor
from pools.drivers import driver_for
from pools.lifecycle import State
from profiles.models import ServicesProfile
from services import actions as services
from services.backends.local import PROCESS_FILE, SERVICES_DIR
from services.components.jobrunner import CANCEL_GRACE
from services.components.ray import temp_dir as ray_temp_dir
from tests.services.conftest import drive, remove
from tests.workspace_fixtures import wait_for

pytestmark = [pytest.mark.django_db, pytest.mark.local_services]


def _get(url: str, token: str = "", timeout: float = 10):
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
        kind = response.headers.get("Content-Type", "")
        return json.loads(body) if "json" in kind else body.decode()


def _post(url: str, payload: dict, token: str = "") -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def session_members(sid: int) -> list[int]:
    """The processes still in session `sid` (their field 6 of /proc/<pid>/stat)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
        except OSError:
            continue
        if int(raw[raw.rindex(")") + 2 :].split()[3]) == sid:
            members.append(int(stat.parent.name))
    return members


def _client_server_logs(workspaces_root: Path, workspace) -> str:
    """What Ray Client's per-client servers wrote, where a failing start says to look."""
    workspace_dir = workspaces_root / workspace.resource_name
    temp = isolation.host_path(workspace_dir, ray_temp_dir(workspace_dir / SERVICES_DIR / "ray"))
    logs = sorted(temp.glob("session_latest/logs/ray_client_server*"))
    return "".join(f"\n== {path.name}\n{path.read_text()[-3000:]}" for path in logs)


def _record(workspace_dir: Path, code: str):
    return supervisor.ProcessRecord.load(workspace_dir / SERVICES_DIR / code / PROCESS_FILE)


def test_the_jobs_queue_runs_a_job_with_the_workspace_environment(
    ready_workspace, deploy, scientist, workspaces_root
):
    deployment = deploy(ready_workspace, "Jobs")
    assert deployment.state == State.READY, deployment.failure_reason
    queue = deployment.components.get(component="job-queue")
    assert queue.status == "ready"
    url = queue.endpoints[0]["url"]
    assert queue.secret  # stored encrypted, needed for every call

    with pytest.raises(urllib.error.HTTPError) as refused:
        _get(url)
    assert refused.value.code == 401
    job = _post(url, {"command": 'echo "gpus=$CUDA_VISIBLE_DEVICES"; pwd'}, queue.secret)
    assert job["status"] == "queued"

    def finished():
        return _get(f"{url}/{job['id']}", queue.secret)["status"] == "succeeded"

    wait_for(finished, timeout=20, what="the job to finish")
    log = _get(f"{url}/{job['id']}/log", queue.secret)
    assert "gpus=GPU-aaaa" in log  # the GPU the workspace was allocated
    assert str(workspaces_root / ready_workspace.resource_name) in log
    assert [j["id"] for j in _get(url, queue.secret)["jobs"]] == [job["id"]]

    record = _record(workspaces_root / ready_workspace.resource_name, "job-queue")
    deployment = remove(scientist, deployment)
    assert deployment.state == State.DELETED
    assert not supervisor.is_running(record)
    assert deployment.components.get().status == "removed"


@pytest.fixture
def job_queue(ready_workspace, deploy):
    """The workspace's jobs queue, ready: its URL and its token."""
    deployment = deploy(ready_workspace, "Jobs")
    assert deployment.state == State.READY, deployment.failure_reason
    queue = deployment.components.get(component="job-queue")
    return queue.endpoints[0]["url"], queue.secret


@pytest.mark.parametrize("job_id", [b"\xb2", b"9" * 5000], ids=["superscript two", "long"])
def test_a_hostile_job_id_is_a_404_not_a_dropped_connection(job_queue, job_id):
    """'²' (0xB2 in the request line, read as Latin-1) is a digit to `str.isdigit` but not
    to `int`, nor is a number of more digits than `int` reads."""
    url, token = job_queue
    with socket.create_connection(("127.0.0.1", urlsplit(url).port), timeout=10) as client:
        client.sendall(
            b"GET /jobs/" + job_id + b"/log HTTP/1.0\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n\r\n"
        )
        answer = client.recv(200)
    assert answer.startswith(b"HTTP/1.0 404"), f"answer: {answer!r}"


def test_a_cancelled_job_that_ignores_sigterm_is_killed_or_keeps_its_own_status(
    job_queue, ready_workspace, workspaces_root
):
    """Cancel sends SIGTERM, then SIGKILL after CANCEL_GRACE seconds: a job that ignores
    SIGTERM and would run on is killed; one that finishes first (its work done) keeps its
    own status, and is not reported cancelled."""
    url, token = job_queue
    workspace_dir = workspaces_root / ready_workspace.resource_name
    jobs = {
        seconds: _post(
            url, {"command": f"trap '' TERM; sleep {seconds}; touch ran-{seconds}"}, token
        )
        for seconds in (2, 60)
    }

    def status(seconds: int) -> str:
        return _get(f"{url}/{jobs[seconds]['id']}", token)["status"]

    wait_for(lambda: {status(2), status(60)} == {"running"}, 10, what="both jobs to run")
    time.sleep(0.3)  # each shell has set its trap
    cancelled_at = time.monotonic()
    for job in jobs.values():
        _post(f"{url}/{job['id']}/cancel", {}, token)

    wait_for(lambda: status(60) != "running", CANCEL_GRACE + 10, what="the long job to stop")
    assert time.monotonic() - cancelled_at < CANCEL_GRACE + 5
    assert status(60) == "cancelled"
    assert not (workspace_dir / "ran-60").exists()
    assert status(2) == "succeeded"
    assert (workspace_dir / "ran-2").exists()


def test_a_component_that_fails_to_start_shows_its_log_and_can_be_removed(
    ready_workspace, deploy, scientist, workspaces_root
):
    # The workspace put a file where the jobs queue keeps its jobs: the queue exits.
    directory = workspaces_root / ready_workspace.resource_name / SERVICES_DIR / "job-queue"
    directory.mkdir(parents=True)
    (directory / "jobs").write_text("not a directory")
    deployment = deploy(ready_workspace, "Jobs")
    assert deployment.state == State.FAILED
    row = deployment.components.get()
    assert row.status == "failed"
    assert "Jobs queue failed" in deployment.failure_reason
    assert "FileExistsError" in row.log_tail

    deployment = remove(scientist, deployment)
    assert deployment.state == State.DELETED


def test_a_component_whose_fixed_port_is_in_use_fails_saying_so(ready_workspace, deploy, scientist):
    """Whatever listens there would answer its health check and take its endpoint's
    requests (and token): it is not started."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        profile = ServicesProfile.objects.create(name="Broken jobs", slug="broken-jobs")
        profile.components.create(
            capability="jobs", component="job-queue", parameters={"port": str(port)}
        )
        deployment = deploy(ready_workspace, profile)
    assert deployment.state == State.FAILED
    row = deployment.components.get()
    assert (row.status, row.endpoints) == ("failed", [])
    assert f"Port {port}, which its services profile sets, is in use" in row.reason

    deployment = remove(scientist, deployment)
    assert deployment.state == State.DELETED


def test_a_component_that_exited_starts_again_on_the_port_its_profile_fixes(
    ready_workspace, deploy, scientist, workspaces_root
):
    """What is left of its exited process (its registration, with the port) is its own,
    not another's: a redeploy frees it and starts on that port again."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    profile = ServicesProfile.objects.create(name="Fixed jobs", slug="fixed-jobs")
    profile.components.create(
        capability="jobs", component="job-queue", parameters={"port": str(port)}
    )
    directory = workspaces_root / ready_workspace.resource_name / SERVICES_DIR / "job-queue"
    directory.mkdir(parents=True)
    (directory / "jobs").write_text("not a directory")  # the queue exits
    deployment = deploy(ready_workspace, profile)
    assert deployment.state == State.FAILED
    (directory / "jobs").unlink()

    services.redeploy(scientist, deployment)
    drive(deployment.pk)
    deployment.refresh_from_db()
    assert deployment.state == State.READY, deployment.failure_reason
    assert supervisor.ProcessRecord.registered_at(directory / PROCESS_FILE).port == port

    assert remove(scientist, deployment).state == State.DELETED


def test_mlops_runs_mlflow_locally_and_reports_the_rest_unavailable(
    ready_workspace, deploy, scientist, workspaces_root
):
    deployment = deploy(ready_workspace, "MLOps Platform")
    statuses = dict(deployment.components.values_list("component", "status"))
    assert statuses == {
        "minio": "unavailable",
        "mlflow": "ready",
        "kubeflow-pipelines": "unavailable",
        "feast": "unavailable",
        "oauth2-proxy": "unavailable",
    }
    assert deployment.state == State.READY
    reasons = deployment.components.exclude(component="mlflow").values_list("reason", flat=True)
    assert all("not available on local infrastructure" in r for r in reasons)

    mlflow = deployment.components.get(component="mlflow")
    base = next(e["url"] for e in mlflow.endpoints if e["name"] == "MLFLOW_TRACKING_URI")
    assert _get(f"{base}/health").strip() == "OK"
    created = _post(f"{base}/api/2.0/mlflow/experiments/create", {"name": "portal-test"})
    found = _get(f"{base}/api/2.0/mlflow/experiments/get?experiment_id={created['experiment_id']}")
    assert found["experiment"]["name"] == "portal-test"
    # The tracking data lives in the workspace.
    assert (workspaces_root / ready_workspace.resource_name / "services/mlflow/mlflow.db").exists()

    record = _record(workspaces_root / ready_workspace.resource_name, "mlflow")
    remove(scientist, deployment)
    assert not supervisor.is_running(record)


def test_ray_runs_a_task_and_deleting_the_workspace_stops_it(
    ready_workspace, deploy, workspaces_root, sync_tasks
):
    from pools import tasks
    from workspaces import actions

    deployment = deploy(ready_workspace, "Ray")
    assert deployment.state == State.READY, deployment.failure_reason
    ray = deployment.components.get()
    urls = {endpoint["name"]: endpoint["url"] for endpoint in ray.endpoints}

    def script(address: str) -> str:
        return (
            "import ray\n"
            f"ray.init(address={address!r}, log_to_driver=False)\n"
            "@ray.remote\n"
            "def square(x):\n    return x * x\n"
            "print('result', sum(ray.get([square.remote(i) for i in range(4)])), flush=True)\n"
        )

    # A job of the workspace (sandboxed, as a notebook's kernel is) reaches the cluster
    # through Ray Client.
    driver = driver_for(ready_workspace.infrastructure)
    client = urls["Ray Client (ray.init, from the workspace)"]
    job = driver.start_process(ready_workspace.spec(), [sys.executable, "-c", script(client)])
    wait_for(lambda: not supervisor.is_running(job), timeout=120, what="the Ray Client job")
    log = (workspaces_root / ready_workspace.resource_name / "process.log").read_text()
    assert "result 14" in log, log[-3000:] + _client_server_logs(workspaces_root, ready_workspace)
    # The administrator's shell runs in the workspace's network (pools.isolation), where
    # the cluster's ports are: Ray Client runs a task from there too, and `ray status`
    # reads the cluster from its address. (A driver given the address would need the
    # raylet's sockets, in the workspace's own /tmp, which the shell does not share.)
    network = isolation.network_prefix(workspaces_root / ready_workspace.resource_name)
    done = subprocess.run(
        [*network, sys.executable, "-c", script(client)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "result 14" in done.stdout, done.stderr[-3000:]
    address = urls["Ray address (ray status, from the administrator's shell)"]
    ray = str(Path(sys.executable).with_name("ray"))
    done = subprocess.run(
        [*network, ray, "status", "--address", address],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Node status" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]

    record = _record(workspaces_root / ready_workspace.resource_name, "ray")
    leader = record.pid
    actions.delete_workspace(ready_workspace.owner, ready_workspace)
    assert tasks.deprovision_workspace(ready_workspace.pk) == "deleted"
    deployment.refresh_from_db()
    assert deployment.state == State.DELETED
    assert not supervisor.is_running(record)
    # Nothing of the Ray cluster (gcs_server, raylet, workers) is left in its session.
    wait_for(lambda: not session_members(leader), timeout=10, what="ray's processes")
    assert not (workspaces_root / ready_workspace.resource_name).exists()


def test_jupyterlab_answers_with_its_token_only(ready_workspace, deploy, scientist):
    deployment = deploy(ready_workspace, "Jupyter Notebook")
    assert deployment.state == State.READY, deployment.failure_reason
    jupyter = deployment.components.get()
    lab = jupyter.endpoints[0]["url"]
    base = lab.rsplit("/lab", 1)[0]
    status = _get(f"{base}/api/status?token={jupyter.secret}")
    assert "started" in status
    with pytest.raises(urllib.error.HTTPError) as refused:
        _get(f"{base}/api/status")
    assert refused.value.code == 403
    time.sleep(0)  # the notebook is removed with the deployment
    remove(scientist, deployment)
