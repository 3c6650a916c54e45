"""Partitions against the sandbox: n partitions side by side give exactly what one sync gives.

Each partition runs in its own thread with its own client (as a mapped task on its own worker would),
all at once against one sandbox that enforces the program's cap. Asserted: the end state equals the
source, every row counted once over all partitions (rejected rows and duplicates included), each
partition's own files, no 429 (each client paced at its share of the cap), and credits exactly once
across a rerun. Speed is benchmarks/partitions.py's business.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pandas as pd
import pytest

from airflow_provider_crowdtwist.client.client import CrowdTwistClient
from airflow_provider_crowdtwist.client.config import ClientConfig
from airflow_provider_crowdtwist.sync.credits.ledger import CreditLedger, ledger_location
from airflow_provider_crowdtwist.sync.credits.sync import CreditSyncConfig, sync_credits
from airflow_provider_crowdtwist.sync.members.sync import MemberSyncConfig, sync_members
from airflow_provider_crowdtwist.sync.partition import (
    Partition,
    PartitionError,
    combine_summaries,
)

from .test_member_sync import assert_end_state_equals_source, sqlite_chunks, write_sqlite

LOG = logging.getLogger("test.partitions")
N = 1200
PARTS = 4
CAP = 6000  # per minute for the program: 1,500 for each partition


def _client(sandbox: Any, partition: Partition) -> CrowdTwistClient:
    return CrowdTwistClient(
        ClientConfig(
            base_url=sandbox.base_url,
            api_key=sandbox.api_key,
            requests_per_minute=partition.share(CAP),
            backoff_base=0.01,
            max_retries=10,
        )
    )


def _run_all(work: Any) -> list[Any]:
    results: list[Any] = [None] * PARTS
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            results[i] = work(Partition(i, PARTS))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(PARTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    return results


@pytest.mark.slow
def test_partitioned_member_sync_equals_the_source(sandbox_process, tmp_path):
    db = tmp_path / "warehouse.sqlite"
    write_sqlite(db, N, generation=0)
    admin = sandbox_process.admin
    admin.set_faults(rate_limit_per_minute=CAP, retry_after=True, latency_ms=10)

    def members(part: Partition) -> Any:
        config = MemberSyncConfig(
            max_workers=8,
            partition=(part.index, part.count),
            state_path=str(tmp_path / "state.sqlite"),
            rejects_path=str(tmp_path / "rejects.jsonl"),
        )
        with _client(sandbox_process, part) as client:
            return sync_members(client, sqlite_chunks(db, chunksize=300), config, LOG)

    summaries = _run_all(members)
    stats = admin.stats()
    admin.set_faults(rate_limit_per_minute=0, latency_ms=0)
    assert stats["by_status"].get("429", 0) == 0  # each partition kept to its share of the cap
    assert [s.partition for s in summaries] == [(i, PARTS) for i in range(PARTS)]
    assert all(s.rows_read > 0 for s in summaries)
    total = combine_summaries(s.to_dict() for s in summaries)
    assert total["rows_read"] == N == sum(total["counts"].values())
    assert total["counts"] == {**total["counts"], "created": N}
    assert_end_state_equals_source(admin, N, generation=0)
    for i in range(PARTS):
        assert (tmp_path / f"state.part-{i}-of-{PARTS}.sqlite").is_file()
    assert not (tmp_path / "state.sqlite").exists()
    # the state per partition works: a rerun sends nothing
    requests_before = admin.stats()["total"]
    again = _run_all(members)
    assert sum(s.count("unchanged") for s in again) == N
    assert admin.stats()["total"] == requests_before


def test_bad_rows_and_duplicates_are_counted_once_over_all_partitions(sandbox, tmp_path):
    rows = pd.DataFrame(
        [
            {"user_id": "dup@example.com", "first_name": "First", "last_name": "A", "postal_code": "02134"},
            {"user_id": "DUP@example.com", "first_name": "Second", "last_name": "B", "postal_code": "02134"},
            {"user_id": "not-an-email", "first_name": "Bad", "last_name": "C", "postal_code": "02134"},
            {"user_id": None, "first_name": "None", "last_name": "D", "postal_code": "02134"},
            *[
                {"user_id": f"m{i}@example.com", "first_name": "M", "last_name": "E", "postal_code": "02134"}
                for i in range(20)
            ],
        ]
    )
    summaries = []
    for i in range(PARTS):
        part = Partition(i, PARTS)
        with _client(sandbox, part) as client:
            summaries.append(sync_members(client, [rows], MemberSyncConfig(partition=part), LOG))
    total = combine_summaries(s.to_dict() for s in summaries)
    assert total["rows_read"] == len(rows)
    assert {k: v for k, v in total["counts"].items() if v} == {"created": 21, "skipped": 1, "rejected": 2}
    stored = {m["email_address"].lower(): m for m in sandbox.admin.members()}
    assert stored["dup@example.com"]["first_name"] == "Second"  # last row wins, across case
    assert len(stored) == 21


def test_partitioned_credits_exactly_once_and_a_changed_layout_is_refused(sandbox, tmp_path):
    # one credit per member: CrowdTwist refuses a member's rapid duplicates ("Event already processed")
    members = [{"user_id": f"c{i}@example.com", "first_name": "C", "last_name": "R"} for i in range(120)]
    rows = pd.DataFrame(
        [{"user_id": f"c{i}@example.com", "event_id": f"e{i}", "activity_id": "purchase"} for i in range(120)]
    )
    with _client(sandbox, Partition(0, 1)) as client:  # the members exist first
        sync_members(
            client,
            [pd.DataFrame([{**m, "postal_code": "02134"} for m in members])],
            MemberSyncConfig(),
            LOG,
        )
    ledger = tmp_path / "ledger.sqlite"

    def credits(part: Partition) -> Any:
        config = CreditSyncConfig(
            id_column="user_id",
            activity_id_column="activity_id",
            dedupe_key_column="event_id",
            partition=part,
        )
        with _client(sandbox, part) as client, CreditLedger(ledger_location(ledger, part)) as book:
            return sync_credits(client, [rows], config, book, LOG)

    first = _run_all(credits)
    assert sum(s.count("credited") for s in first) == 120
    assert len(sandbox.admin.credits()) == 120
    again = _run_all(credits)
    assert sum(s.count("credited") for s in again) == 0
    assert sum(s.count("skipped") for s in again) == 120
    assert len(sandbox.admin.credits()) == 120
    with pytest.raises(PartitionError, match="another partition layout"):
        credits(Partition(0, 3))
    assert len(sandbox.admin.credits()) == 120
