"""Scale-out, for real: two gunicorn servers and two django-q2 clusters on one PostgreSQL.

The servers and clusters are started with `bin/entrypoint` (as the image starts them), on
the test database, with JSON logs and a metrics token. Ten users log in over HTTP and send
100 workspace requests, half for a warm-pool profile (10 warm instances, so most of those
miss and fall back to on-demand provisioning) and half for an on-demand profile, eight at a
time, alternating between the two servers. Then, once all is quiet:

1. every workspace was provisioned exactly once (one transition into provisioning at most,
   exactly one into ready, one directory);
2. no warm instance was claimed twice;
3. the warm-pool loop never ran two passes at once: its advisory lock, sampled every few
   milliseconds, never had two holders, the pool never held more live instances than its
   desired capacity, and no pass ever had extras to delete (a second, concurrent pass
   would have created the same instances again);
4. `/metrics` of both servers agrees with the database, and the HTTP request counts of the
   two servers (one with two worker processes) add up to the 100 requests;
5. the request id a client got back appears in the worker's log lines of the task its
   request enqueued.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from django.contrib.auth import get_user_model
from django.db import connection, connections
from django.db.models import Count, Q
from django_q.models import OrmQ

from pools import warmpool
from pools.lifecycle import State
from pools.locks import advisory_key
from pools.models import (
    LoopDecision,
    PoolInstance,
    PoolInstanceEvent,
    Workspace,
    WorkspaceEvent,
)
from pools.schedules import ensure_schedules
from portal.health import ensure_heartbeat_schedule
from portal.models import Team
from portal.roles import Role
from profiles.choices import AllocationStrategy
from tests.conftest import PASSWORD
from tests.deploy.metrics_helpers import parse, total, value
from tests.deploy.processes import (
    free_port,
    shared_database_env,
    start,
    stop,
    wait_until_serving,
)
from tests.workspace_fixtures import database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.scale_out]

REQUESTS = 100
USERS = 10
WARM_CAPACITY = 10
CONCURRENCY = 8
METRICS_TOKEN = "scale-out-test-token"
REQUEST_ROUTE = "/workspaces/request/<int:profile_pk>/"


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("several processes on one database: the test runs on PostgreSQL")


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class LockSampler(threading.Thread):
    """Every few milliseconds: holders of the loop's advisory lock, live warm instances."""

    def __init__(self, profile):
        super().__init__(daemon=True)
        self.profile = profile
        self.stopping = threading.Event()
        self.max_holders = 0
        self.seen_held = 0
        self.max_live = 0
        self.samples = 0

    def run(self):
        key = advisory_key(warmpool.LOCK_NAME)
        live = (State.REQUESTED, State.PROVISIONING, State.READY)
        try:
            with connection.cursor() as cursor:
                while not self.stopping.is_set():
                    cursor.execute(
                        # pg_locks covers every database of the server: only ours counts.
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND database = (SELECT oid FROM pg_database "
                        "WHERE datname = current_database()) "
                        "AND classid = 0 AND objid = %s AND objsubid = 1 AND granted",
                        [key],
                    )
                    holders = cursor.fetchone()[0]
                    cursor.execute(
                        "SELECT count(*) FROM pools_poolinstance "
                        "WHERE profile_id = %s AND state = ANY(%s)",
                        [self.profile.pk, list(live)],
                    )
                    self.max_live = max(self.max_live, cursor.fetchone()[0])
                    self.max_holders = max(self.max_holders, holders)
                    self.seen_held += holders > 0
                    self.samples += 1
                    time.sleep(0.005)
        finally:
            connection.close()


def json_lines(path: Path) -> list[dict]:
    records = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def login(base: str, username: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base}/accounts/login/", timeout=30)
    response = session.post(
        f"{base}/accounts/login/",
        data={
            "login": username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        allow_redirects=False,
        timeout=30,
    )
    assert response.status_code == 302, response.text[:500]
    return session


def test_two_servers_and_two_clusters_serve_100_requests_consistently(
    shared_database, workspaces_root, local_infrastructure, profile_factory, tmp_path
):
    warm = profile_factory(
        local_infrastructure,
        "Warm",
        published=True,
        allocation_strategy=AllocationStrategy.WARM_POOL,
        desired_capacity=WARM_CAPACITY,
    )
    on_demand = profile_factory(local_infrastructure, "OnDemand", published=True)
    users = []
    for i in range(USERS):  # each in a group of their own: only the claim is contended
        user = get_user_model().objects.create_user(f"user{i}", password=PASSWORD)
        Team.objects.create(name=f"team {i}", role=Role.MEMBER).members.add(user)
        users.append(user)
    ensure_schedules()
    ensure_heartbeat_schedule()
    connections.close_all()
    clock = time.monotonic()
    phases = {}

    def phase(name: str) -> None:
        nonlocal clock
        phases[name] = round(time.monotonic() - clock, 1)
        clock = time.monotonic()

    env = shared_database_env(
        database_url(shared_database),
        tmp_path / "data",
        PORTAL_WORKSPACES_ROOT=str(workspaces_root),
        LOG_FORMAT="json",
        METRICS_TOKEN=METRICS_TOKEN,
        Q_WORKERS="2",
        WEB_THREADS="4",
    )
    processes = []
    logs = {}

    def launch(name: str, args: list[str], **extra: str):
        logs[name] = tmp_path / f"{name}.log"
        processes.append(start(args, env | extra, logs[name]))
        return processes[-1]

    ports = [free_port(), free_port()]
    servers = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for name, port, workers in (("web-a", ports[0], "2"), ("web-b", ports[1], "1")):
            launch(
                name,
                ["web"],
                WEB_BIND=f"127.0.0.1:{port}",
                WEB_CONCURRENCY=workers,
                PROMETHEUS_MULTIPROC_DIR=str(tmp_path / f"metrics-{name}"),
            )
        launch("cluster-1", ["worker"])
        launch("cluster-2", ["worker"])
        # Fill the warm pool: one pass here, the clusters provision the instances.
        warmpool.run_loop()
        for name, process, base in zip(("web-a", "web-b"), processes, servers, strict=False):
            wait_until_serving(f"{base}/healthz", process, logs[name])
        phase("servers up")

        # One login per user, on either server: the session lives in the shared database,
        # so the same cookie is good on both.
        with ThreadPoolExecutor(4) as pool:
            sessions = list(
                pool.map(lambda i: login(servers[i % 2], users[i].username), range(USERS))
            )
        phase("logged in")
        wait_for(
            lambda: warmpool.count_instances([warm])[warm.pk].ready == WARM_CAPACITY,
            60,
            "the warm pool to fill",
        )
        phase("pool filled")
        sampler = LockSampler(warm)
        sampler.start()

        def send(i: int):
            profile = warm if i % 2 == 0 else on_demand
            base = servers[(i // 2) % 2]
            session = sessions[i % USERS]
            response = session.post(
                f"{base}/workspaces/request/{profile.pk}/",
                data={"csrfmiddlewaretoken": session.cookies["csrftoken"]},
                allow_redirects=False,
                timeout=60,
            )
            return i, base, profile, response.status_code, response.headers.get("X-Request-ID")

        started = time.monotonic()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            answers = list(pool.map(send, range(REQUESTS)))
        requests_seconds = time.monotonic() - started
        assert [a[3] for a in answers] == [302] * REQUESTS

        def quiet() -> bool:
            live = Workspace.objects.exclude(state=State.READY).exists()
            moving = PoolInstance.objects.filter(
                state__in=(State.REQUESTED, State.PROVISIONING, State.DELETING)
            ).exists()
            return not live and not moving and not OrmQ.objects.exists()

        wait_for(quiet, 120, "every workspace ready and the queue empty")
        settled_seconds = time.monotonic() - started
        # The loop held back while users waited; refill now (as the minute's pass would).
        warmpool.run_loop(patience=30)
        wait_for(
            lambda: quiet() and warmpool.count_instances([warm])[warm.pk].ready == WARM_CAPACITY,
            60,
            "the warm pool to refill",
        )
        phase("requests served, pool refilled")
        sampler.stopping.set()
        sampler.join(10)

        waiting_before = OrmQ.objects.count()
        scrapes = [
            parse(
                requests.get(
                    f"{base}/metrics",
                    headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                    timeout=30,
                ).text
            )
            for base in servers
        ]
        waiting_after = OrmQ.objects.count()
    finally:
        with ThreadPoolExecutor(len(processes) or 1) as pool:
            list(pool.map(stop, processes))
        connections.close_all()
        phase("stopped")
        for name, path in logs.items():
            print(f"---- {name} (last lines) ----\n" + path.read_text(errors="replace")[-3000:])

    print(
        f"{REQUESTS} requests answered in {requests_seconds:.1f} s; all ready after "
        f"{settled_seconds:.1f} s; lock sampled {sampler.samples} times, held in "
        f"{sampler.seen_held}; most live warm instances {sampler.max_live}; phases {phases}"
    )

    # 1. every workspace provisioned exactly once
    workspaces = list(Workspace.objects.order_by("pk"))
    assert len(workspaces) == REQUESTS
    transitions = {
        row["workspace"]: row
        for row in WorkspaceEvent.objects.values("workspace").annotate(
            to_provisioning=Count(
                "pk", filter=Q(to_state=State.PROVISIONING) & ~Q(from_state=State.PROVISIONING)
            ),
            to_ready=Count("pk", filter=Q(to_state=State.READY) & ~Q(from_state=State.READY)),
        )
    }
    for ws in workspaces:
        assert ws.state == State.READY, ws.pk
        assert transitions[ws.pk]["to_provisioning"] == 1, ws.pk
        assert transitions[ws.pk]["to_ready"] == 1, ws.pk
    hits = [ws for ws in workspaces if ws.detail.get("pool_instance")]
    on_demand_workspaces = [ws for ws in workspaces if not ws.detail.get("pool_instance")]
    # Mixed: the 10 warm instances were claimed, the pool could not keep up with the rest.
    assert WARM_CAPACITY <= len(hits) < REQUESTS // 2
    for ws in on_demand_workspaces:
        assert (workspaces_root / f"ws-{ws.pk}").is_dir()
    assert len(list(workspaces_root.glob("ws-*"))) == len(on_demand_workspaces)

    # 2. no warm instance claimed twice
    claimed = PoolInstance.objects.filter(state=State.CLAIMED)
    owners = list(claimed.values_list("workspace_id", flat=True))
    assert len(owners) == len(set(owners)) == len(hits)
    assert set(owners) == {ws.pk for ws in hits}
    assert len({ws.detail["pool_instance"] for ws in hits}) == len(hits)
    claim_events = PoolInstanceEvent.objects.filter(to_state=State.CLAIMED)
    assert claim_events.count() == len(hits)
    assert claim_events.values("instance").annotate(n=Count("pk")).filter(n__gt=1).count() == 0

    # 3. the loop never ran two passes at once
    assert sampler.samples > 100 and sampler.seen_held > 0
    assert sampler.max_holders == 1
    assert sampler.max_live <= WARM_CAPACITY
    decisions = LoopDecision.objects.filter(profile=warm)
    assert decisions.count() >= 2
    assert not decisions.filter(action=LoopDecision.Action.DELETE).exists()
    assert PoolInstance.objects.filter(state=State.READY).count() <= WARM_CAPACITY

    # 4. /metrics agrees with the database, across processes and servers
    for samples in scrapes:
        for profile in (warm, on_demand):
            for state in State.values:
                expected = Workspace.objects.filter(profile=profile, state=state).count()
                got = value(samples, "portal_workspaces", state=state, profile=profile.name)
                assert got == expected, (profile.name, state)
            for state in State.values:
                expected = PoolInstance.objects.filter(profile=profile, state=state).count()
                got = value(samples, "portal_pool_instances", state=state, profile=profile.name)
                assert got == expected, (profile.name, state)
        ready_now = warmpool.count_instances([warm])[warm.pk].ready
        assert value(samples, "portal_warm_pool_ready", profile="Warm") == ready_now
        assert value(samples, "portal_warm_pool_desired", profile="Warm") == WARM_CAPACITY
        assert value(samples, "portal_warm_pool_claims_total", profile="Warm", result="hit") == (
            len(hits)
        )
        misses = REQUESTS // 2 - len(hits)
        assert (
            value(samples, "portal_warm_pool_claims_total", profile="Warm", result="miss") == misses
        )
        # A schedule may enqueue a task between two reads; the gauge is one of the two.
        depth = value(samples, "portal_task_queue_depth", queue="portal")
        assert depth in (waiting_before, waiting_after)
        ready_histogram = "portal_workspace_ready_duration_seconds_count"
        assert total(samples, ready_histogram) == REQUESTS
        assert value(samples, ready_histogram, profile="Warm", source="warm") == len(hits)
        assert total(samples, "portal_failures_total") == 0
    sent = {base: sum(1 for a in answers if a[1] == base) for base in servers}
    posts = {"method": "POST", "route": REQUEST_ROUTE, "status": "302"}
    counted = {
        base: value(samples, "portal_http_request_duration_seconds_count", **posts)
        for base, samples in zip(servers, scrapes, strict=True)
    }
    assert counted == sent
    assert sum(counted.values()) == REQUESTS
    web_a_pids = {
        r["pid"]
        for r in json_lines(logs["web-a"])
        if r.get("logger") == "portal.access" and r["message"].startswith("POST /workspaces/")
    }
    assert len(web_a_pids) == 2  # server A's count added up both of its worker processes

    # 5. one request's id in the web log and in the worker log of its task
    web = json_lines(logs["web-a"]) + json_lines(logs["web-b"])
    worker = json_lines(logs["cluster-1"]) + json_lines(logs["cluster-2"])
    enqueued = {
        r["request_id"]: r
        for r in web
        if r.get("message", "").startswith("enqueued task")
        and r.get("task") == "pools.tasks.provision_workspace"
    }
    ran = {
        r["task_id"]: r
        for r in worker
        if r.get("message", "").startswith("running task") and "task_id" in r
    }
    on_demand_ids = {a[4] for a in answers if a[2] == on_demand}
    assert len(on_demand_ids) == REQUESTS // 2
    for request_id in on_demand_ids:
        web_record = enqueued[request_id]
        worker_record = ran[web_record["task_id"]]
        assert worker_record["request_id"] == request_id
        assert worker_record["workspace_id"] == web_record["workspace_id"]
        assert worker_record["user"] == web_record["user"]
