"""bin/check-gpu-workspace, the end-to-end check run on a real GPU host (README: "Checked on
a real GPU"), kept working here on its CPU path: the same request, provisioning, Jobs
deployment, job and deletion, with the demo's CPU-only profile."""

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

SCRIPT = Path(__file__).resolve().parents[2] / "bin" / "check-gpu-workspace"


def test_the_check_runs_a_workspace_end_to_end_and_leaves_nothing_behind(tmp_path):
    # Its own data directory, and uids from the top half of this test worker's range: a
    # workspace's processes are stopped by uid, so they must not share one with anything.
    low = settings.LOCAL_WORKSPACE_UID_MIN + 500
    env = os.environ | {
        "LOCAL_WORKSPACE_UID_MIN": str(low),
        "LOCAL_WORKSPACE_UID_MAX": str(low + 99),
    }
    env.pop("DJANGO_SETTINGS_MODULE")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--without-gpu", "--keep", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    for step in (
        "PASS  a workspace of “Starter” is provisioned",
        "PASS  the Jobs services profile is deployed into it",
        "PASS  a job in it runs",
        "PASS  deleting it releases its GPU and stops its processes",
    ):
        assert step in report, report
    assert "no GPU asked for" in report  # the job's own output, read back from its log
    assert "all checks passed" in report
    # Deleting the workspace removed its directory; its processes were checked above.
    assert not any((tmp_path / "data" / "workspaces").iterdir())
