"""Benchmark logging in: `python -m bench.login [--repeat N]`.

It migrates a scratch SQLite database in a temporary directory, makes one user, and posts
the login form through Django's test client in this process, `--repeat` times after a
warm-up, first with the portal's password hasher (portal.hashers) and then with Django's
default (PBKDF2-SHA256, 1,000,000 iterations) for comparison. It prints, per hasher, the
median and p95 server time of a whole login (form, password check, session) and of the
password check alone.

Goal (issue 18): a login under 300 ms of server time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

GOAL_MS = 300
PASSWORD = "a-long-bench-passphrase"
HASHERS = {
    "portal (Argon2id, 19 MiB, t=2, p=1)": "portal.hashers.PortalArgon2PasswordHasher",
    "Django default (PBKDF2, 1,000,000 iterations)": (
        "django.contrib.auth.hashers.PBKDF2PasswordHasher"
    ),
}


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


def measure(hasher: str, repeat: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """(median, p95) in ms of a whole login and of the password check, with `hasher`."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import check_password
    from django.core.cache import cache
    from django.test import Client, override_settings
    from django.urls import reverse

    with override_settings(PASSWORD_HASHERS=[hasher]):
        user, _ = get_user_model().objects.get_or_create(username="bench")
        user.set_password(PASSWORD)
        user.save()
        logins, checks = [], []
        client = Client()  # one, as a server loads its middleware once
        for attempt in range(repeat + 2):  # two warm-ups
            client.cookies.clear()  # logged out again
            cache.clear()  # the login rate limit: these are many people, not one
            started = time.perf_counter()
            response = client.post(
                reverse("account_login"), {"login": "bench", "password": PASSWORD}
            )
            elapsed = time.perf_counter() - started
            if response.status_code != 302:
                raise SystemExit(f"login failed: HTTP {response.status_code}")
            started = time.perf_counter()
            assert check_password(PASSWORD, user.password)
            if attempt >= 2:
                logins.append(elapsed)
                checks.append(time.perf_counter() - started)
    return _ms(logins), _ms(checks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="bench-login-")
    os.environ["DATABASE_URL"] = f"sqlite:///{scratch}/bench.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    django.setup()
    setup_test_environment()  # the test client's host, in-memory email
    try:
        call_command("migrate", verbosity=0)
        return report(args.repeat)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def report(repeat: int) -> int:
    print(f"{'hasher':48} {'login p50':>10} {'login p95':>10} {'check p50':>10}  goal")
    medians = []
    for label, hasher in HASHERS.items():
        (login50, login95), (check50, _) = measure(hasher, repeat)
        mark = "ok" if login50 <= GOAL_MS else "over"
        print(f"{label:48} {login50:8.0f}ms {login95:8.0f}ms {check50:8.0f}ms  {mark}")
        medians.append(login50)
    print(f"(median of {repeat} logins each; goal: under {GOAL_MS} ms with the portal's)")
    return 0 if medians[0] <= GOAL_MS else 1  # the portal's hasher comes first


if __name__ == "__main__":
    sys.exit(main())
