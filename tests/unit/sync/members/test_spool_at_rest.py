"""The spool at rest (issue #14, finding 5): payloads are ciphertext on disk, dead runs' spools go."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys

from airflow_provider_crowdtwist.sync.members import spool as spool_module
from airflow_provider_crowdtwist.sync.members.spool import Spool

SECRET = "  s3cret pass  "


def test_payloads_are_encrypted_on_disk_and_read_back_exactly(tmp_path: pathlib.Path) -> None:
    payload = json.dumps({"email_address": "a@example.com", "password": SECRET})
    with Spool(str(tmp_path)) as spool:
        spool.add_many([(1, "a@example.com", "a@example.com", payload), (2, "b", "b", payload)])
        assert [r.payload_json for r in spool.survivors()] == [payload, payload]
        spool._db.commit()
        on_disk = pathlib.Path(spool.path).read_bytes()
        assert SECRET.encode() not in on_disk and b"s3cret" not in on_disk
    assert list(tmp_path.iterdir()) == []  # closed: nothing left


def test_only_spools_whose_owner_died_are_removed(tmp_path: pathlib.Path) -> None:
    code = (
        "import os, signal, sys; from airflow_provider_crowdtwist.sync.members.spool import Spool; "
        f"s = Spool({str(tmp_path)!r}); print(s.path, flush=True); os.kill(os.getpid(), signal.SIGKILL)"
    )
    env = {**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).parents[3])}
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert child.returncode == -signal.SIGKILL
    dead_dir = os.path.dirname(child.stdout.strip())
    assert os.path.isdir(dead_dir)
    unrelated = tmp_path / "crowdtwist-spool-old-format"  # no owner lock: cannot prove it is dead
    unrelated.mkdir()
    with Spool(str(tmp_path)) as live:
        assert live.removed_dead == [dead_dir]
        assert spool_module.remove_dead_spools(str(tmp_path)) == []  # the live one holds its lock
        assert os.path.exists(live.path) and unrelated.exists()
