"""Benchmark the hot pages at scale: `DATABASE_URL=postgresql://… python -m bench.pages`.

It creates a scratch database next to the one DATABASE_URL names (`bench_pages_<pid>`,
dropped at the end), migrates it, fills it with `bench.dataset` (10,000 workspaces and
100,000 audit entries by default), and requests each hot page in-process through Django's
test client, logged in as the user who sees it: the self-service page and its htmx-polled
list as a data scientist with live workspaces; every workspace (every sort, deep pages,
filters), the warm pools, the overview dashboard and the audit log as an Org admin. It
prints, per page, the queries one request runs and the server time (median and p95 of
`--repeat` requests, after two warm-up requests) and the median CPU time the request took
in this process (the server's Python work, which other load on the machine inflates less
than wall time).

Goal (issue 17): median <= 50 ms, and a query count that does not grow with the data
(<= 12; the same pages are pinned by tests/test_query_pins.py).

`--save FILE` writes the results as JSON; `--compare FILE` adds that earlier run's
median as a "before" column, e.g. the run of the commit before a change.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from bench.warmpool import admin_execute, scratch_url

GOAL_MS = 50
GOAL_QUERIES = 12


def pages(data) -> list[tuple[str, object, str]]:
    """(label, user, URL) of every page measured."""
    from django.urls import reverse

    from workspaces.tables import WorkspaceTable

    everything = reverse("workspaces:workspace_list")
    audit = reverse("portal:auditentry_list")
    profile = data.profiles[1]
    rows = [
        ("self-service", data.scientist, reverse("workspaces:self_service")),
        ("my workspaces (htmx poll)", data.scientist, reverse("workspaces:mine")),
        ("all workspaces", data.admin, everything),
        ("all workspaces, page 100", data.admin, f"{everything}?page=100"),
        ("all workspaces, last page", data.admin, f"{everything}?page=100000"),
    ]
    for column in WorkspaceTable.Meta.fields:  # every sortable column
        rows.append(
            (
                f"all workspaces, sort -{column} p.20",
                data.admin,
                f"{everything}?sort=-{column}&page=20",
            )
        )
    rows += [
        ("all workspaces, state=ready", data.admin, f"{everything}?state=ready"),
        ("all workspaces, user contains", data.admin, f"{everything}?user=user000"),
        (
            "all workspaces, owner+profile",
            data.admin,
            f"{everything}?owner={data.scientist.pk}&profile={profile.pk}",
        ),
        (
            "all workspaces, team+state p.3",
            data.admin,
            f"{everything}?team={data.teams[2].pk}&state=deleted&page=3",
        ),
        ("pools", data.admin, reverse("pools:pool_list")),
        ("overview (dashboard)", data.admin, reverse("overview:index")),
        ("audit log", data.admin, audit),
        ("audit log, page 1000", data.admin, f"{audit}?page=1000"),
        ("audit log, last page", data.admin, f"{audit}?page=100000"),
        ("audit log, sort object", data.admin, f"{audit}?sort=object_repr&page=5"),
        ("audit log, action=deleted", data.admin, f"{audit}?action=deleted"),
        ("audit log, who contains", data.admin, f"{audit}?actor_name=user0001"),
        ("audit log, object contains", data.admin, f"{audit}?object_repr=experiment+99"),
    ]
    return rows


def measure(client, url: str, repeat: int) -> dict:
    from django.db import connection

    for _ in range(2):  # warm up: templates compiled, caches filled
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    statements = []
    with connection.execute_wrapper(
        lambda execute, sql, *args: statements.append(sql) or execute(sql, *args)
    ):
        client.get(url)
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        client.get(url)
        cpu.append((time.process_time() - start_cpu) * 1000)
        wall.append((time.perf_counter() - start) * 1000)
    wall.sort()
    return {
        "queries": len(statements),
        "median": statistics.median(wall),
        "p95": wall[min(len(wall) - 1, int(0.95 * len(wall)))],
        "cpu": statistics.median(cpu),
    }


def run(scale, repeat: int, reuse: bool, only: str = "") -> dict[str, dict]:
    from django.test import Client

    from bench import dataset

    start = time.perf_counter()
    data = dataset.load() if reuse else dataset.build(scale)
    print(
        f"{data.workspaces:,} workspaces and {data.audit_entries:,} audit entries "
        f"{'found' if reuse else 'built'} in {time.perf_counter() - start:.1f} s"
    )
    clients = {}
    results = {}
    for label, user, url in pages(data):
        if only not in label:
            continue
        if user.pk not in clients:
            clients[user.pk] = Client()
            clients[user.pk].force_login(user)
        results[label] = measure(clients[user.pk], url, repeat) | {"url": url}
    return results


def print_table(results: dict[str, dict], before: dict[str, dict]) -> None:
    print(
        f"\n{'page':<38} {'queries':>7} {'median ms':>9} {'p95 ms':>8} {'CPU ms':>7}"
        f"  {'before: queries, median ms':>26}"
    )
    for label, row in results.items():
        old = before.get(label)
        was = f"{old['queries']:>3} {old['median']:>8.1f}" if old else ""
        print(
            f"{label:<38} {row['queries']:>7} {row['median']:>9.1f} {row['p95']:>8.1f}"
            f" {row['cpu']:>7.1f}  {was:>26}"
        )
    worst = max((row["median"] for row in results.values()), default=0)
    most = max((row["queries"] for row in results.values()), default=0)
    print(
        f"slowest median {worst:.1f} ms (goal <= {GOAL_MS}); "
        f"most queries {most} (goal <= {GOAL_QUERIES})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspaces", type=int, default=10_000)
    parser.add_argument("--audit-entries", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15, help="timed requests per page")
    parser.add_argument("--save", help="write the results to this JSON file")
    parser.add_argument("--compare", help="show the medians of this earlier --save file")
    parser.add_argument(
        "--database",
        help="measure this database, filled by an earlier run with --keep, instead of a new one",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--only", default="", help="measure only pages whose label has this")
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        print("Set DATABASE_URL to a PostgreSQL server, e.g.")
        print("  DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python -m bench.pages")
        return 2
    name = args.database or f"bench_pages_{os.getpid()}"
    if not args.database:
        admin_execute(url, f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = scratch_url(url, name)
    # A scratch database of its own: the test settings' fixed keys are enough.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # not a line per request on the console
    try:
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        from bench.dataset import Scale

        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
        call_command("migrate", verbosity=0)
        scale = Scale(workspaces=args.workspaces, audit_entries=args.audit_entries)
        results = run(scale, args.repeat, reuse=bool(args.database), only=args.only)
    finally:
        from django.db import connections

        connections.close_all()
        if args.keep or args.database:
            print(f"Kept the database {name} (--database {name} measures it again)")
        else:
            admin_execute(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    before = {}
    if args.compare:
        with open(args.compare) as file:
            before = json.load(file)
    print_table(results, before)
    if args.save:
        with open(args.save, "w") as file:
            json.dump(results, file, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
