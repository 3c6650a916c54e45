"""Finding 5 of issue #14: SIGKILL a member sync mid-run, then search the temp directory for passwords.

The worker (``member_worker.py``) is a real child process with its own ``TMPDIR``, syncing members
that all have passwords against the sandbox with latency, so the spool is full when it is killed. A
kill runs no cleanup: the spool directory stays behind. Its payloads must be ciphertext (the key
died with the process), and the next spool created there removes it, while a live one is kept.
"""

from __future__ import annotations

import json
import pathlib
import signal
import sys
from typing import Any

import pytest

from airflow_provider_crowdtwist.sync.members.spool import Spool
from tests.integration.sigkill import kill_when

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

WORKER = pathlib.Path(__file__).with_name("member_worker.py")
ROWS = 600


def member_requests(sandbox: Any) -> int:
    by_route = sandbox.admin.stats()["by_route"]
    return sum(v for k, v in by_route.items() if "users" in k and k.startswith(("PUT", "POST")))


def files_holding(root: pathlib.Path, secrets: list[bytes]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits.extend(f"{path}: {s.decode()}" for s in secrets if s in data)
    return hits


def test_sigkill_leaves_no_password_in_clear_and_the_next_run_removes_the_dead_spool(
    sandbox: Any, tmp_path: pathlib.Path
) -> None:
    passwords = [f"Pw-{i:04d}-cleartext-{i * 7919 % 10007}" for i in range(ROWS)]
    rows = [
        {
            "user_id": f"member{i}@example.com",
            "first_name": "Kill",
            "last_name": "Test",
            "postal_code": "02134",
            "password": passwords[i],
        }
        for i in range(ROWS)
    ]
    rows_path = tmp_path / "rows.jsonl"
    rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    sandbox.admin.set_faults(latency_ms=40)
    command = [sys.executable, str(WORKER), sandbox.base_url, sandbox.api_key, str(rows_path)]
    env = {"TMPDIR": str(private_tmp)}  # every temp file of the worker lands here
    returncode = kill_when(command, lambda: member_requests(sandbox) >= 40, env=env, timeout=90)
    sandbox.admin.set_faults(latency_ms=0)
    assert returncode == -signal.SIGKILL
    assert 0 < member_requests(sandbox) < 2 * ROWS  # killed mid-run

    left = sorted(private_tmp.glob("crowdtwist-spool-*"))
    assert len(left) == 1 and (left[0] / "spool.sqlite").stat().st_size > 0  # the kill left the spool
    secrets = [p.encode() for p in passwords]
    assert files_holding(private_tmp, secrets) == []
    assert files_holding(tmp_path, secrets) == [f"{rows_path}: {p}" for p in passwords]  # the search works

    with Spool(str(private_tmp)) as live:  # the next run: the dead spool goes, its own stays
        assert live.removed_dead == [str(left[0])]
        assert not left[0].exists()
        with Spool(str(private_tmp)) as other:  # a second live spool does not remove the first
            assert other.removed_dead == []
            assert pathlib.Path(live.path).exists()
