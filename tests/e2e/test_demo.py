"""The README's first command, ``bash scripts/demo``, run as a user runs it.

It must finish with success, print the summaries (counts by outcome, rows/s, where the rejects went)
and leave no sandbox behind. It runs on the Airflow line of the interpreter running the tests, in a
temporary demo folder (``CROWDTWIST_DEMO_HOME``) so it never touches a developer's ``.demo/``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, airflow_major

pytestmark = pytest.mark.e2e


def test_demo_command_runs_prints_summaries_and_stops_the_sandbox(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CROWDTWIST_"))}
    env["AIRFLOW_LINE"] = str(airflow_major())
    env["CROWDTWIST_DEMO_HOME"] = str(tmp_path / "demo")
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "demo")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]

    rows = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line.startswith(("sync_members ", "credit_events "))
    }
    assert set(rows) == {"sync_members", "credit_events"}, out[-4000:]
    header = next(line.split() for line in out.splitlines() if line.startswith("task "))
    members = dict(zip(header, rows["sync_members"], strict=True))
    credits = dict(zip(header, rows["credit_events"], strict=True))
    # 2,000 members plus one listed twice; the planted bad rows are rejected, the rest created.
    assert int(members["rows"]) == 2001
    assert int(members["created"]) + int(members["rejected"]) + int(members["skipped"]) == 2001
    assert int(members["rejected"]) > 0 and int(members["created"]) > 1900
    assert int(credits["credited"]) > 0 and int(credits["rejected"]) > 0
    assert float(members["rows/s"]) > 0
    assert re.search(r"sync_members: \d+ rejected/failed rows -> .*members-\d{4}-\d{2}-\d{2}\.jsonl", out)
    # The reasons are grouped and shown; a broken email is sent (no documented rule refuses it before
    # sending) and the reason is CrowdTwist's (the sandbox's) answer.
    assert "is not a valid email address" in out
    assert re.search(rf"{members['created']} members, {credits['credited']} credits worth \d+ points", out)

    # The trap stopped the sandbox: its port no longer answers.
    port = int(re.search(r"listening on http://127\.0\.0\.1:(\d+)", out).group(1))
    assert "sandbox stopped" in out
    with socket.socket() as s:
        s.settimeout(1)
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the sandbox is still listening after the demo"
    assert (tmp_path / "demo" / "rejects").is_dir()
