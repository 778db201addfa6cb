"""Generated keys: processes starting together on a fresh data directory agree on them.

`bin/run` starts the web server and the workers at once, and each loads the settings,
which generate `secret_key` and `encryption_key` into PORTAL_DATA_DIR on first run (SQLite
or DEBUG). Were two to write different keys, one would sign sessions and encrypt secrets
the others cannot read. Here several real processes load the settings on the same empty
directory at the same instant, many times over.
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import stat
from pathlib import Path

from django.conf import settings

SETTINGS_FILE = Path(settings.BASE_DIR) / "portal" / "settings.py"
PROCESSES = 6
ROUNDS = 40
KEY_FILES = {"secret_key", "encryption_key"}
# What a fresh development process has: no keys given, SQLite.
UNSET = ("SECRET_KEY", "PORTAL_ENCRYPTION_KEYS", "DATABASE_URL", "DEBUG", "Q_BROKER_URL")


def load_keys_in_rounds(root: str, barrier, results) -> None:
    """One process: for each round, wait for the others, then load the settings on that
    round's empty directory and report the keys they came up with."""
    for name in UNSET:
        os.environ.pop(name, None)
    os.environ["PORTAL_STATIC_ROOT"] = os.path.join(root, "static")
    for round_number in range(ROUNDS):
        os.environ["PORTAL_DATA_DIR"] = os.path.join(root, str(round_number))
        barrier.wait(timeout=60)
        try:
            loaded = runpy.run_path(str(SETTINGS_FILE))
        except Exception as error:  # e.g. a key file read while another process wrote it
            results.put((round_number, f"refused to start: {error}", ""))
        else:
            results.put((round_number, loaded["SECRET_KEY"], loaded["ENCRYPTION_KEYS"][0]))


def test_processes_starting_together_end_up_with_the_same_keys(tmp_path):
    context = multiprocessing.get_context("spawn")  # fresh interpreters, as real starts are
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    processes = [
        context.Process(target=load_keys_in_rounds, args=(str(tmp_path), barrier, results))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    keys_by_round: dict[int, set[tuple[str, str]]] = {}
    try:
        for _ in range(PROCESSES * ROUNDS):
            round_number, secret_key, encryption_key = results.get(timeout=120)
            keys_by_round.setdefault(round_number, set()).add((secret_key, encryption_key))
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
    assert [process.exitcode for process in processes] == [0] * PROCESSES
    disagreements = {number: keys for number, keys in keys_by_round.items() if len(keys) > 1}
    assert disagreements == {}, f"{len(disagreements)} of {ROUNDS} rounds disagreed, e.g. " + str(
        next(iter(disagreements.values()), "")
    )
    for number, keys in keys_by_round.items():
        ((secret_key, encryption_key),) = keys
        assert secret_key and encryption_key, number  # never a half-written, empty file
        data_dir = tmp_path / str(number)
        assert (data_dir / "secret_key").read_text().strip() == secret_key
        assert {path.name for path in data_dir.iterdir()} == KEY_FILES  # no temporary left
        for name in KEY_FILES:
            assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600, name
