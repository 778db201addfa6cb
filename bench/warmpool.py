"""Benchmark the warm pool on PostgreSQL: `DATABASE_URL=postgresql://… python -m bench.warmpool`.

It creates a scratch database next to the one DATABASE_URL names (`bench_warmpool_<pid>`,
dropped at the end; pass --keep to keep it), migrates it, and measures:

1. Claim latency under 64 concurrent claimants (64 processes, each with its own
   connection), next to one bare single-row UPDATE on the same database in the same run,
   with the same 64 processes:
   - "bare UPDATE": `UPDATE … SET expires = now() WHERE name = <the process's own row>`;
   - "claim": `pools.claims.claim_instance`, the statement `request_workspace` runs (one
     statement, compiled once per profile version: UPDATE … WHERE id = (SELECT … FOR
     UPDATE SKIP LOCKED LIMIT 1) RETURNING id, with its event row);
   - "request_workspace": the whole request (quota lock, workspace row, claim, hand-over,
     events, audit entry) in its one transaction, each claimant in its own group.
   Goal: claim p99 within 3x the bare UPDATE's p99.
   Before that, one warm-hit `request_workspace` alone: its queries and CPU time (goal:
   <= 15 queries, <= 15 ms of CPU).
2. One reconcile pass (`pools.warmpool.reconcile`) over 1,000 warm-pool profiles at 10,000
   and at 100,000 instances: a steady pass (nothing to do) and a pass where 10% of the
   profiles are each 2 short. Goal: <= 1 s, with a query count that does not grow with the
   number of instances.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from urllib.parse import urlsplit, urlunsplit

WORKERS = 64


def scratch_url(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def admin_execute(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return p50 * 1000, p99 * 1000


def in_processes(work, per_worker: int) -> list[float]:
    """Run `work(worker, i)` per_worker times in each of WORKERS forked processes.

    Processes, not threads: with 64 Python threads the client's GIL, not the database,
    would decide the latencies. Each child opens its own database connection.
    """
    from django.db import connections

    connections.close_all()  # never share a connection across fork
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(WORKERS)
    results = context.Queue()

    def run(worker: int) -> None:
        from django.db import connection

        try:
            connection.ensure_connection()
            barrier.wait(60)
            latencies = []
            for i in range(per_worker):
                start = time.perf_counter()
                work(worker, i)
                latencies.append(time.perf_counter() - start)
            results.put(("ok", latencies))
        except BaseException as error:
            results.put(("error", repr(error)))
        finally:
            connection.close()

    processes = [context.Process(target=run, args=(w,)) for w in range(WORKERS)]
    for process in processes:
        process.start()
    collected = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
    errors = [detail for kind, detail in collected if kind == "error"]
    if errors:
        raise RuntimeError(errors[0])
    return [x for _, latencies in collected for x in latencies]


def bench_claims(per_worker: int) -> list[tuple[str, list[float]]]:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from pools import claims, tasks, warmpool
    from pools.lifecycle import State
    from pools.models import LoopLock, PoolInstance
    from portal.models import Team
    from portal.roles import Role
    from profiles.models import ComputeProfile, Infrastructure
    from workspaces import actions

    # Keep the measurement about the database: nothing is enqueued.
    tasks.enqueue_provision = lambda pk: None
    warmpool.enqueue_loop = lambda: None

    # As the engine's health check leaves a working host: ready to provision on.
    infrastructure = Infrastructure.objects.create(
        name="Bench", kind="local", health_status="ready"
    )
    profile = ComputeProfile.objects.create(
        name="Bench warm",
        infrastructure=infrastructure,
        published=True,
        allocation_strategy="warm_pool",
        desired_capacity=1,
    )
    profile.resource_groups.create(position=0, gpu_model="", gpu_count=0)
    total = WORKERS * per_worker

    def fill_pool(n: int) -> None:
        PoolInstance.objects.bulk_create(
            PoolInstance(
                profile=profile,
                infrastructure=infrastructure,
                profile_version=profile.version,
                state=State.READY,
            )
            for _ in range(n)
        )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE pools_poolinstance")

    LoopLock.objects.bulk_create(LoopLock(name=f"bench-{t}") for t in range(WORKERS))
    table = LoopLock._meta.db_table

    def bare_update(worker: int, i: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET expires = now() WHERE name = %s", [f"bench-{worker}"]
            )

    def claim(worker: int, i: int) -> None:
        assert claims.claim_instance(profile) is not None

    def claim_in_transaction(worker: int, i: int) -> None:
        with transaction.atomic():
            assert claims.claim_instance(profile) is not None

    users = []
    for t in range(WORKERS):
        user = get_user_model().objects.create(username=f"bench{t}")
        Team.objects.create(name=f"bench team {t}", role=Role.MEMBER).members.add(user)
        users.append(user)

    def request(worker: int, i: int) -> None:
        workspace = actions.request_workspace(users[worker], profile)
        assert workspace.state == State.READY

    results = []
    fill_pool(UNCONTENDED + 3)
    results.append(("uncontended", warm_hit_alone(users[0], profile)))
    in_processes(bare_update, 5)  # warm up connections and caches
    results.append(("bare single-row UPDATE", in_processes(bare_update, per_worker)))
    fill_pool(total)
    results.append(("claim (one statement)", in_processes(claim, per_worker)))
    fill_pool(total)
    results.append(("claim in its own transaction", in_processes(claim_in_transaction, per_worker)))
    fill_pool(total)
    results.append(("request_workspace (warm hit)", in_processes(request, per_worker)))
    results.append(("bare single-row UPDATE (again)", in_processes(bare_update, per_worker)))
    return results


UNCONTENDED = 50  # warm hits measured one after another in this process


def warm_hit_alone(user, profile) -> dict:
    """Queries and CPU time of one warm-hit `request_workspace`, nothing else running:
    the median over UNCONTENDED requests, after two that warm the caches up."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from workspaces import actions

    for _ in range(2):
        actions.request_workspace(user, profile)
    cpu, wall = [], []
    for _ in range(UNCONTENDED):
        start, start_cpu = time.perf_counter(), time.process_time()
        actions.request_workspace(user, profile)
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    with CaptureQueriesContext(connection) as queries:
        actions.request_workspace(user, profile)
    # Django logs the transaction's BEGIN and COMMIT as queries too: round trips all the same.
    return {
        "queries": len(queries),
        "cpu_ms": statistics.median(cpu) * 1000,
        "wall_ms": statistics.median(wall) * 1000,
    }


def bench_reconcile(profiles: int, per_profile: int, short_share: float) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from pools import tasks, warmpool
    from pools.lifecycle import State
    from pools.models import LoopDecision, PoolInstance, PoolInstanceEvent
    from profiles.models import ComputeProfile, Infrastructure

    tasks.enqueue_pool_provision = lambda pk: None
    PoolInstanceEvent.objects.all().delete()
    PoolInstance.objects.all().delete()
    LoopDecision.objects.all().delete()
    ComputeProfile.objects.filter(name__startswith="Reconcile ").delete()
    infrastructure, _ = Infrastructure.objects.get_or_create(
        name="Bench", kind="local", defaults={"health_status": "ready"}
    )
    made = ComputeProfile.objects.bulk_create(
        ComputeProfile(
            name=f"Reconcile {i}",
            slug=f"reconcile-{i}",
            infrastructure=infrastructure,
            published=True,
            allocation_strategy="warm_pool",
            desired_capacity=per_profile,
        )
        for i in range(profiles)
    )
    short = set(range(0, profiles, round(1 / short_share))) if short_share else set()
    batch = []
    for index, profile in enumerate(made):
        have = per_profile - 2 if index in short else per_profile
        for n in range(have):
            batch.append(
                PoolInstance(
                    profile=profile,
                    infrastructure=infrastructure,
                    profile_version=1,
                    state=State.READY if n % 10 else State.PROVISIONING,
                )
            )
        if len(batch) >= 20_000:
            PoolInstance.objects.bulk_create(batch)
            batch = []
    PoolInstance.objects.bulk_create(batch)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE pools_poolinstance")
    warmpool.reconcile(None)  # warm up (and fill the short ones)
    if short:  # make them short again for the measured pass
        PoolInstance.objects.filter(state=State.REQUESTED).delete()
    instances = PoolInstance.objects.count()
    with CaptureQueriesContext(connection) as queries:
        start = time.perf_counter()
        rows = warmpool.reconcile(None)
        elapsed = time.perf_counter() - start
    created = sum(r.count for r in rows if r.action == "create")
    return {
        "profiles": profiles,
        "instances": instances,
        "created": created,
        "seconds": elapsed,
        "queries": len(queries),
    }


def main() -> int:
    global WORKERS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims-per-worker", type=int, default=20)
    parser.add_argument("--workers", type=int, default=WORKERS, help="concurrent processes")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--claims-only", action="store_true", help="skip the reconcile passes")
    args = parser.parse_args()
    WORKERS = args.workers

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        print("Set DATABASE_URL to a PostgreSQL server, e.g.")
        print(
            "  DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python -m bench.warmpool"
        )
        return 2
    name = f"bench_warmpool_{os.getpid()}"
    admin_execute(url, f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = scratch_url(url, name)
    # A scratch database of its own: the test settings' fixed keys are enough (the portal's
    # own settings refuse to start on PostgreSQL without SECRET_KEY and encryption keys).
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        claim_rows = bench_claims(args.claims_per_worker)
        sizes = [] if args.claims_only else [(10, 0.0), (10, 0.1), (100, 0.0), (100, 0.1)]
        reconcile_rows = [bench_reconcile(1000, n, short) for n, short in sizes]
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            admin_execute(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    alone = dict(claim_rows).pop("uncontended")
    claim_rows = [row for row in claim_rows if row[0] != "uncontended"]
    print(f"\nWarm-hit request_workspace alone (median of {UNCONTENDED})")
    print(
        f"queries {alone['queries']} with BEGIN and COMMIT (goal <= 15), "
        f"CPU {alone['cpu_ms']:.2f} ms (goal <= 15), "
        f"wall {alone['wall_ms']:.2f} ms"
    )
    print(f"\nLatency, {WORKERS} concurrent processes, {args.claims_per_worker} operations each")
    print(f"{'operation':<34} {'n':>6} {'p50 ms':>8} {'p99 ms':>8}")
    stats = {}
    for label, samples in claim_rows:
        p50, p99 = percentiles(samples)
        stats[label] = (p50, p99)
        print(f"{label:<34} {len(samples):>6} {p50:>8.2f} {p99:>8.2f}")
    bare = stats["bare single-row UPDATE"][1]
    claim = stats["claim (one statement)"][1]
    print(f"claim p99 / bare UPDATE p99 = {claim / bare:.2f}x (goal <= 3x)")

    print("\nOne reconcile pass over every warm-pool profile")
    print(f"{'profiles':>9} {'instances':>10} {'created':>8} {'seconds':>8} {'queries':>8}")
    for row in reconcile_rows:
        print(
            f"{row['profiles']:>9} {row['instances']:>10} {row['created']:>8} "
            f"{row['seconds']:>8.3f} {row['queries']:>8}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
