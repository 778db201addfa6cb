"""The requests the live server is still handling, so that a browser test's teardown can
wait for none: the page's polls (the notifications badge every few seconds) may still be
in a query when the test's database is flushed, and the flush's TRUNCATE then deadlocks
with it (PostgreSQL ends one of them, and the teardown fails).

`in_flight_middleware` is first in the test settings; `wait_for_none` is for fixtures.
"""

import threading
import time

_lock = threading.Lock()
_handling = 0


def in_flight_middleware(get_response):
    def count(request):
        global _handling
        with _lock:
            _handling += 1
        try:
            return get_response(request)
        finally:
            with _lock:
                _handling -= 1

    return count


def wait_for_none(timeout: float = 10) -> None:
    """Return once no request is being handled; after `timeout` seconds, fail loudly."""
    deadline = time.monotonic() + timeout
    while _handling and time.monotonic() < deadline:
        time.sleep(0.02)
    if _handling:
        raise AssertionError(f"the live server still handles {_handling} request(s)")
