"""The settings of the test suite: the portal's own, with test-only keys.

With a server database (CI runs on PostgreSQL) and DEBUG off the portal refuses to start
without SECRET_KEY and PORTAL_ENCRYPTION_KEYS. The tests, and the web and worker processes
they start (which inherit this environment), use fixed test-only keys unless the
environment names its own.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-never-used-outside-the-tests")
os.environ.setdefault("PORTAL_ENCRYPTION_KEYS", "T3AWZqzeOo0FV_sGyhm6NBsIdk2UhitUQd-IgTY-9ds=")

from portal.settings import *  # noqa: F403
