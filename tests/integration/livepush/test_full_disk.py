"""A full disk under a running receiver: no push answered 200 is lost (issue 22, item 1).

The test mounts a small tmpfs of its own (we run as root; elsewhere it skips, saying why), starts a
real receiver on it, and pushes from several threads while it fills the filesystem with a filler file
to the last page. Group-commit writes then fail part-way (ENOSPC after a partial ``write``). It frees
the space and pushes on, stops the receiver, and loads what landed: every push answered 200 must be
in the table, and no landed line may be unreadable.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from airflow_provider_crowdtwist.livepush.dialects import SQLITE
from airflow_provider_crowdtwist.livepush.load import LiveFeedLoader
from airflow_provider_crowdtwist.livepush.process import ReceiverProcess
from airflow_provider_crowdtwist.livepush.samples import sample_profile
from tests.integration.livepush.conftest import API_KEY

HEADERS = {"x-api-key": API_KEY, "Content-Type": "application/json"}


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(path: Path) -> None:
    """Write ``path`` until the filesystem refuses a single byte more."""
    with open(path, "wb", buffering=0) as fh:
        for size in (65536, 4096, 1):
            while True:
                try:
                    fh.write(b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break


def test_a_full_disk_mid_stream_loses_no_acknowledged_push(small_fs: Path, tmp_path: Path) -> None:
    output = small_fs / "out"
    acked: list[int] = []
    statuses: dict[int, int] = {}
    counter = iter(range(1, 10**9))
    lock = threading.Lock()
    stop = threading.Event()

    def pusher(rx: ReceiverProcess) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                with lock:
                    member_id = next(counter)
                body = json.dumps(sample_profile(member_id))
                answer = session.post(f"{rx.url}/push/profile", data=body, headers=HEADERS, timeout=10)
                with lock:
                    statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                    if answer.status_code == 200:
                        acked.append(member_id)

    def count(status: int) -> int:
        with lock:
            return statuses.get(status, 0)

    def wait_until(condition, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.02)

    rx = ReceiverProcess(output, api_key=API_KEY, extra_args=["--roll-seconds", "600"])
    with rx:
        threads = [threading.Thread(target=pusher, args=(rx,)) for _ in range(6)]
        for thread in threads:
            thread.start()
        wait_until(lambda: count(200) >= 50, 20)
        filler = small_fs / "filler"
        for _ in range(3):  # three full-disk episodes, each freed again
            fill(filler)
            before = count(503)
            wait_until(lambda b=before: count(503) >= b + 20, 20)
            health = requests.get(f"{rx.url}/health", timeout=5)
            filler.unlink()
            acked_before = count(200)
            wait_until(lambda b=acked_before: count(200) >= b + 50, 20)
            assert count(503) >= before + 20, statuses
            assert count(200) >= acked_before + 50, statuses
        stop.set()
        for thread in threads:
            thread.join(30)
        assert health.status_code == 503 and health.json()["status"] == "write_failing"
        assert requests.get(f"{rx.url}/health", timeout=5).json() == {"status": "ok"}
        rx.stop()  # SIGTERM: publishes the open files

    db = sqlite3.connect(tmp_path / "warehouse.db")
    loader = LiveFeedLoader(db, SQLITE, feed="profile", table="members")
    summary = loader.load(output / "profile", rejects_path=tmp_path / "rejects.jsonl")
    rejects = (tmp_path / "rejects.jsonl").read_text() if (tmp_path / "rejects.jsonl").exists() else ""
    assert summary.rejected == 0, rejects[:2000]
    loaded = {row[0] for row in db.execute("SELECT member_id FROM members")}
    missing = sorted(set(acked) - loaded)
    assert not missing, f"{len(missing)} acknowledged push(es) lost, e.g. {missing[:10]}; {statuses}"
    assert len(acked) >= 200
