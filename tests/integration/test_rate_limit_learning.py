"""The adaptive limiter against the sandbox's rate limit: a program whose real limit is a quarter of
what the connection says. Every row lands (the end state equals the source), and the 429s stay few:
the limiter learns the real rate instead of probing the limit again and again. Speed is not asserted
here (benchmarks/rate_limit_storm.py measures it)."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_crowdtwist.sync.members.sync import MemberSyncConfig, sync_members

from .test_member_sync import assert_end_state_equals_source, counts, make_client, sqlite_chunks, write_sqlite

LOG = logging.getLogger("test.rate_limit_learning")
N = 400
REAL_LIMIT = 2_400  # per minute: 40/s
CONFIGURED = 9_600


@pytest.mark.slow
@pytest.mark.parametrize("retry_after", [True, False], ids=["retry-after", "no-retry-after"])
def test_learns_the_real_limit_loses_nothing_and_keeps_429s_few(sandbox_process, tmp_path, retry_after):
    db = tmp_path / "warehouse.sqlite"
    admin = sandbox_process.admin
    write_sqlite(db, N, generation=0)
    with make_client(sandbox_process) as client:  # the members exist first, unlimited
        sync_members(client, sqlite_chunks(db), MemberSyncConfig(max_workers=16), LOG)
    write_sqlite(db, N, generation=1)
    admin.set_faults(latency_ms=20, rate_limit_per_minute=REAL_LIMIT, retry_after=retry_after)
    before = admin.stats()["by_status"].get("429", 0)
    with make_client(
        sandbox_process, requests_per_minute=CONFIGURED, max_retries=20, max_retry_wait=300.0
    ) as client:
        summary = sync_members(client, sqlite_chunks(db), MemberSyncConfig(max_workers=32), LOG)
        limiter = client.rate_limiter
    limited = admin.stats()["by_status"].get("429", 0) - before
    admin.set_faults(rate_limit_per_minute=0, latency_ms=0)
    LOG.warning("%d x 429 for %d rows; limiter: %s", limited, N, limiter.stats())
    assert counts(summary) == {"updated": N}
    assert_end_state_equals_source(admin, N, generation=1)
    assert limited > 0  # the limit was really hit ...
    assert limiter.stats()["rate_limited"] == limited  # ... every 429 reached the limiter ...
    assert limited <= 0.08 * N  # ... and few: a plain token bucket at the configured pace got ~15-20%
    learned = limiter.learned_requests_per_minute
    assert learned is not None and learned <= REAL_LIMIT * 1.25
    assert limiter.current_requests_per_minute <= CONFIGURED
