"""The shared rate limit across processes, against the sandbox and a real redis-server.

* eight task processes of one program: a ``Retry-After`` answered to one of them pauses all eight;
* Redis killed in the middle of a sync: the sync finishes on the fallback pace (the task's share),
  says so in the log and the summary, and is never unpaced; the end state equals the source.

The pace across processes under a real limit is benchmarks/shared_cap.py's business.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_crowdtwist.client.client import CrowdTwistClient
from airflow_provider_crowdtwist.client.config import ClientConfig
from airflow_provider_crowdtwist.client.ratelimit import RateLimiter
from airflow_provider_crowdtwist.client.shared_limit import SharedRateLimiter, program_key
from airflow_provider_crowdtwist.sandbox.admin import busiest_window
from airflow_provider_crowdtwist.sandbox.server import SandboxServer
from airflow_provider_crowdtwist.sync.members.sync import MemberSyncConfig, sync_members

from .test_member_sync import assert_end_state_equals_source, sqlite_chunks, write_sqlite

pytestmark = [pytest.mark.integration, pytest.mark.redis]

WORKER = Path(__file__).with_name("shared_limit_worker.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_retry_after_given_to_one_process_pauses_all_eight(sandbox: Any, redis_db: Any) -> None:
    # Process 0 talks to a program limited to 12/min with a burst of 1: its second request, 1.5 s after
    # its first, is answered 429 with Retry-After (4 s: the next token is 3.5 s away). The seven others
    # talk to an unlimited one. All eight share one key.
    limited = SandboxServer(rate_limit_per_minute=12, rate_limit_burst=1).start()
    key = program_key("https://one-program.crowdtwist.test")
    start_at = time.time() + 8.0  # every process started and imported (a loaded machine is slow)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    try:
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(WORKER),
                    limited.base_url if i == 0 else sandbox.base_url,
                    sandbox.api_key,
                    redis_db.url,
                    key,
                    "8",
                    str(start_at),
                    "1.5" if i == 0 else "0",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(8)
        ]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        limited.stop()
    assert all(r["shared"] for r in results)
    limited_at = results[0]["limited_at"]
    assert limited_at is not None, "process 0 was never answered 429"
    retry_after = results[0]["retry_after"]
    assert retry_after is not None and retry_after >= 3
    for i, result in enumerate(results[1:], start=1):
        sent = result["sent"]
        # slots granted just before the pause may still leave; nothing from +0.3 s to the pause's end
        during = [t - limited_at for t in sent if limited_at + 0.3 < t < limited_at + retry_after - 0.3]
        assert during == [], f"process {i} sent during the pause: {during}"
        assert any(t < limited_at for t in sent), f"process {i} sent nothing before the 429"
        assert any(t > limited_at + retry_after - 0.3 for t in sent), f"process {i} never resumed"


@pytest.mark.slow
def test_redis_killed_mid_run_finishes_on_the_fallback_and_says_so(
    sandbox: Any, own_redis_server: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n, cap, share = 300, 6000, 1500  # the program's 100/s; this task's fallback share 25/s
    path = tmp_path / "members.sqlite"
    write_sqlite(path, n)
    sandbox.admin.set_faults(latency_ms=20)
    limiter = SharedRateLimiter(
        own_redis_server.client(),
        program_key(sandbox.base_url),
        cap,
        fallback=RateLimiter(share),
        where=own_redis_server.url,
        fallback_note=f"{cap}/min / 4 partitions",
    )
    assert limiter.shared
    config = ClientConfig(base_url=sandbox.base_url, api_key=sandbox.api_key, requests_per_minute=cap)
    killed_at: list[float] = []

    def kill() -> None:
        time.sleep(0.8)
        killed_at.append(time.monotonic())
        own_redis_server.kill()

    killer = threading.Thread(target=kill)
    with caplog.at_level(logging.WARNING), CrowdTwistClient(config, rate_limiter=limiter) as client:
        killer.start()
        summary = sync_members(
            client, sqlite_chunks(path), MemberSyncConfig(max_workers=8), logging.getLogger("test.shared")
        )
    killer.join()
    assert summary.count("created") == n
    assert_end_state_equals_source(sandbox.admin, n, 0)
    # said in the log (when it happened, once; again with the summary) and in the summary
    assert caplog.text.count("this task now paces on its own at 1500 requests/min") == 1
    assert "(6000/min / 4 partitions) until it ends" in caplog.text
    assert "Shared rate limit not used to the end: Redis" in caplog.text
    fallback = summary.to_dict()["rate_limit"]["shared_limiter_fallback"]
    assert "unreachable mid-run" in fallback and "paced alone at 1500 requests/min" in fallback
    # never unpaced: after the kill, no second holds more than the share (25/s, burst 3) allows
    tick_s, counts = sandbox.admin.arrivals()
    after = {t: c for t, c in counts.items() if t * tick_s > killed_at[0] + 0.2}
    assert sum(after.values()) > 100  # most of the run was on the fallback
    assert busiest_window(after, round(1.0 / tick_s)) <= 30
