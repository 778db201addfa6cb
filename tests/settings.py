"""The settings of the test suite: the portal's own, with test-only keys.

With a server database (CI runs on PostgreSQL) and DEBUG off the portal refuses to start
without SECRET_KEY and PORTAL_ENCRYPTION_KEYS, or without a mail backend. The tests, and the
web and worker processes they start (which inherit this environment), use fixed test-only
keys and Django's in-memory mail backend unless the environment names its own.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-never-used-outside-the-tests")
os.environ.setdefault("PORTAL_ENCRYPTION_KEYS", "T3AWZqzeOo0FV_sGyhm6NBsIdk2UhitUQd-IgTY-9ds=")
os.environ.setdefault("EMAIL_BACKEND", "django.core.mail.backends.locmem.EmailBackend")

from portal.settings import *  # noqa: F403

# Each xdist worker has a workspaces root of its own, and the lock that hands out uids is
# per root: two workers would give their first workspaces the same uid, and stopping one
# (which ends every process of its uid) would kill the other's. So each worker gets a
# range of its own, as two portals on one host need (README: settings).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
LOCAL_WORKSPACE_UID_MIN = 70000 + 1000 * (int(_WORKER) if _WORKER.isdigit() else 0)
LOCAL_WORKSPACE_UID_MAX = LOCAL_WORKSPACE_UID_MIN + 999

# The GPUs of the tests are NVML stand-ins (tests/workspace_fixtures.py), which no CUDA can
# open; tests/pools/test_gpu_check.py turns the check on where it is the subject.
LOCAL_GPU_CHECK = "off"

# Counts the requests in flight, so a browser test waits for none before its database is
# flushed (tests/browser/in_flight.py).
MIDDLEWARE = ["tests.browser.in_flight.in_flight_middleware", *MIDDLEWARE]  # noqa: F405
