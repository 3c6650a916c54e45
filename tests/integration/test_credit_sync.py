"""The credit sync against the sandbox over real HTTP: exactly once per dedupe key, whatever happens.

Every test reads the truth from the sandbox's own ledger of applied credits (``admin.credits()``),
not from what the engine says it did. Each credit carries its dedupe key in ``extra_data.order_id``
so that the sandbox's ledger can be counted per key.
"""

from __future__ import annotations

import collections
import json
import logging
import pathlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import pytest

from airflow_provider_crowdtwist.sync.credits.ledger import CreditLedger, LedgerError
from airflow_provider_crowdtwist.sync.credits.sync import (
    CreditSyncConfig,
    CreditSyncSummary,
    credit_threshold_violation,
    sync_credits,
)
from airflow_provider_crowdtwist.sync.sources import iter_chunks
from airflow_provider_crowdtwist.sync.summary import SyncAbortedError, ThresholdExceededError

pytestmark = pytest.mark.integration

MEMBERS = 200


def create_members(client: Any, n: int = MEMBERS) -> list[str]:
    """Members must exist before they can be credited; created through the client like a user would."""
    emails = [f"member{i}@example.com" for i in range(n)]

    def make(email: str) -> None:
        client.create_user(
            {"first_name": "Test", "last_name": "Member", "email_address": email, "postal_code": "02134"}
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(make, emails))
    return emails


def credit_rows(n: int, emails: list[str], *, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "email": emails[i % len(emails)],
            "order_id": f"order-{i}",
            "activity": ("purchase", "review", "signup")[i % 3],
            "points": i % 50,
            "ordered_at": f"2026-0{1 + i % 9}-1{i % 10}T10:00:00Z",
        }
        for i in range(start, start + n)
    ]


def config(**overrides: Any) -> CreditSyncConfig:
    options: dict[str, Any] = {
        "id_column": "email",
        "activity_id_column": "activity",
        "points_column": "points",
        "activity_date_column": "ordered_at",
        "extra_data_columns": ["order_id"],
        "dedupe_key_column": "order_id",
        "max_workers": 16,
        "run_id": "test-run",
    }
    options.update(overrides)
    return CreditSyncConfig(**options)


def applied_per_key(sandbox: Any) -> collections.Counter[str]:
    return collections.Counter(
        str((c.get("extra_data") or {}).get("order_id")) for c in sandbox.admin.credits()
    )


def credit_requests(sandbox: Any) -> int:
    """Credit requests the sandbox received (every attempt)."""
    by_route = sandbox.admin.stats()["by_route"]
    return sum(v for k, v in by_route.items() if "activities" in k and k.startswith("POST"))


def run_sync(
    client: Any, rows: Any, cfg: CreditSyncConfig, ledger_path: Any, chunksize: int = 500
) -> CreditSyncSummary:
    """One run; a threshold failure (e.g. unknown credits) still gives its summary for the asserts."""
    with CreditLedger.open(ledger_path, run_id=cfg.run_id) as ledger:
        try:
            return sync_credits(client, iter_chunks(pd.DataFrame(rows), chunksize), cfg, ledger)
        except ThresholdExceededError as exc:
            assert isinstance(exc.summary, CreditSyncSummary)
            return exc.summary


@pytest.fixture
def emails(sandbox: Any, client_for: Any) -> Iterator[list[str]]:
    client = client_for(sandbox)
    yield create_members(client)


def test_credits_once_and_rerun_sends_zero_credit_requests(
    sandbox: Any, client_for: Any, emails: list[str], tmp_path: pathlib.Path
) -> None:
    client = client_for(sandbox)
    rows = credit_rows(600, emails)
    ledger_path = tmp_path / "ledger.sqlite"
    summary = run_sync(client, rows, config(), ledger_path)
    assert summary.count("credited") == 600
    assert summary.rows_read == 600
    assert summary.is_consistent()
    applied = applied_per_key(sandbox)
    assert len(applied) == 600
    assert set(applied.values()) == {1}
    # What was sent is what the row said.
    first = next(c for c in sandbox.admin.credits() if c["extra_data"]["order_id"] == "order-7")
    assert first["activity_id"] == "review"
    assert first["num_points"] == 7
    assert first["email_address"] == "member7@example.com"
    assert summary.ledger_counts["credited"] == 600

    before = credit_requests(sandbox)
    again = run_sync(client, rows, config(run_id="rerun"), ledger_path)
    assert credit_requests(sandbox) == before  # zero credit requests on a rerun
    assert again.count("skipped") == 600
    assert again.requests_sent == 1  # only the one list_activities() call
    assert len(sandbox.admin.credits()) == 600
    assert credit_threshold_violation(again) is None


def test_bad_rows_rejected_before_sending(
    sandbox: Any, client_for: Any, emails: list[str], tmp_path: pathlib.Path
) -> None:
    client = client_for(sandbox)
    rows = [
        {"email": emails[0], "order_id": "ok-1", "activity": "purchase", "points": 5, "ordered_at": None},
        {"email": None, "order_id": "no-user", "activity": "purchase", "points": 5, "ordered_at": None},
        {"email": emails[1], "order_id": "no-activity", "activity": None, "points": 5, "ordered_at": None},
        {"email": emails[1], "order_id": "neg", "activity": "purchase", "points": -1, "ordered_at": None},
        {"email": emails[1], "order_id": "frac", "activity": "purchase", "points": 2.5, "ordered_at": None},
        {
            "email": emails[1],
            "order_id": "date",
            "activity": "purchase",
            "points": 1,
            "ordered_at": "yesterday",
        },
        {"email": emails[1], "order_id": "typo", "activity": "purchse", "points": 1, "ordered_at": None},
        {
            "email": emails[1],
            "order_id": "inactive",
            "activity": "legacy_survey",
            "points": 1,
            "ordered_at": None,
        },
        {
            "email": "nobody@example.com",
            "order_id": "404",
            "activity": "purchase",
            "points": 1,
            "ordered_at": None,
        },
        {"email": emails[2], "order_id": "ok-1", "activity": "review", "points": 1, "ordered_at": None},
        {"email": emails[3], "order_id": None, "activity": "review", "points": 1, "ordered_at": None},
    ]
    rejects = tmp_path / "rejects.jsonl"
    summary = run_sync(client, rows, config(rejects_path=str(rejects)), tmp_path / "l.sqlite")
    assert summary.counts["credited"] == 1
    assert summary.counts["skipped"] == 1  # the second "ok-1": duplicate in this run
    assert summary.counts["rejected"] == 9
    assert summary.is_consistent()
    # Only the valid row, the unknown member and the negative points reached CrowdTwist (no documented
    # rule refuses a negative num_points, so it is sent and CrowdTwist's answer recorded).
    assert credit_requests(sandbox) == 3
    records = {r["row_number"]: r for r in map(json.loads, rejects.read_text().splitlines())}
    assert set(records) == {2, 3, 4, 5, 6, 7, 8, 9, 11}
    assert "'email' (member identifier) is empty" in records[2]["message"]
    assert "'activity' (activity_id) is empty" in records[3]["message"]
    assert records[4]["status"] == 400 and "num_points" in records[4]["message"]
    assert "expected a whole number" in records[5]["message"]
    assert "cannot read 'yesterday' as a date" in records[6]["message"]
    assert "'purchse' is not an active activity" in records[7]["message"]
    assert "'legacy_survey' is not an active activity" in records[8]["message"]
    assert records[9]["message"].startswith("row 9: member not found")
    assert records[9]["outcome"] == "rejected"
    assert records[9]["status"] == 404
    assert "(dedupe key) is empty" in records[11]["message"]
    assert all(r["message"].startswith(f"row {n}: ") for n, r in records.items())
    # A 404 member is 'failed' in the ledger: a later run (after the member sync) sends it again.
    client.create_user(
        {
            "first_name": "Late",
            "last_name": "Member",
            "email_address": "nobody@example.com",
            "postal_code": "02134",
        }
    )
    again = run_sync(client, rows, config(run_id="after-member-sync"), tmp_path / "l.sqlite")
    assert again.counts["credited"] == 1
    assert again.counts["skipped"] == 2
    assert applied_per_key(sandbox) == {"ok-1": 1, "404": 1}


def test_absent_credits_are_resent_a_bounded_number_of_times_then_reconciled(
    sandbox: Any, client_for: Any, emails: list[str], tmp_path: pathlib.Path
) -> None:
    """Dropped before they landed: verified absent, sent again (same key) up to verify_resends times,
    then left 'unknown' with their attempts; the next run settles them first."""
    client = client_for(sandbox, max_retries=2)
    rows = credit_rows(10, emails, start=100)
    ledger_path = tmp_path / "l.sqlite"
    sandbox.admin.set_faults(drop_rate=1.0, fault_routes=["credit"])  # never lands, nobody answers
    with (
        CreditLedger.open(ledger_path, run_id="dropped") as ledger,
        pytest.raises(ThresholdExceededError, match="10 credit\\(s\\) are 'unknown'") as info,
    ):
        sync_credits(
            client, iter_chunks(pd.DataFrame(rows)), config(verify_delay=0.1, verify_resends=2), ledger
        )
        pytest.fail("unreachable")
    lost = info.value.summary
    assert isinstance(lost, CreditSyncSummary)
    assert lost.counts["unknown"] == 10 and lost.resent == 20 and lost.verified == 0
    assert credit_requests(sandbox) == 30  # each sent 3 times: once, then twice after verified absent
    assert lost.ledger_counts["unknown"] == 10
    assert sorted(lost.unknown_keys) == sorted(r["order_id"] for r in rows)
    with CreditLedger.open(ledger_path) as ledger:
        entries = ledger.unknown_keys()
    assert {(e.attempts, e.checks) for e in entries} == {(3, 3)}
    assert all("verify_resends=2" in (e.message or "") for e in entries)
    violation = credit_threshold_violation(lost)
    assert violation is not None and "10 credit(s) are 'unknown'" in violation
    assert credit_threshold_violation(lost, fail_on_unknown=False) is None
    assert sandbox.admin.credits() == []

    sandbox.admin.set_faults(drop_rate=0.0)
    rerun = run_sync(client, rows, config(run_id="rerun", verify_delay=0.1), ledger_path)
    assert rerun.reconciled == {"credited": 10}  # settled before the rows were read
    assert rerun.counts["skipped"] == 10 and rerun.counts["unknown"] == 0
    assert rerun.ledger_counts == {"pending": 0, "credited": 10, "unknown": 0, "failed": 0}
    assert set(applied_per_key(sandbox).values()) == {1} and len(applied_per_key(sandbox)) == 10


def test_ledger_is_required_unless_duplicates_allowed(
    sandbox: Any, client_for: Any, emails: list[str], tmp_path: pathlib.Path
) -> None:
    client = client_for(sandbox)
    rows = credit_rows(5, emails)
    before = sandbox.admin.stats()["total"]
    with pytest.raises(ValueError, match="ledger_path is required"):
        sync_credits(client, iter_chunks(pd.DataFrame(rows)), config(), None)
    assert sandbox.admin.stats()["total"] == before  # failed before the first request
    summary = sync_credits(
        client, iter_chunks(pd.DataFrame(rows + rows)), config(allow_duplicates=True), None
    )
    assert summary.counts["credited"] == 5
    assert summary.counts["skipped"] == 5  # duplicates within the run are still caught
    assert summary.ledger_path is None


def test_bad_configuration_fails_before_the_first_request(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path
) -> None:
    client = client_for(sandbox)
    with CreditLedger.open(tmp_path / "l.sqlite") as ledger:
        with pytest.raises(ValueError, match="max_workers"):
            sync_credits(client, [], config(max_workers=0), ledger)
        with pytest.raises(ValueError, match="activity_id 'nope' is not an active activity"):
            sync_credits(client, [], config(activity_id_column=None, activity_id="nope"), ledger)
        with pytest.raises(ValueError, match=r"no column\(s\) 'points'"):
            frame = pd.DataFrame(
                [{"email": "a@b.c", "order_id": "1", "activity": "purchase", "ordered_at": None}]
            )
            sync_credits(client, iter_chunks(frame), config(), ledger)
    assert sandbox.admin.stats()["by_route"].get("POST /v2/users/{user_id}/activities", 0) == 0
    assert credit_requests(sandbox) == 0


def test_bad_credentials_abort_and_never_leak(
    sandbox: Any, client_for: Any, emails: list[str], tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "wrong-Key-6f1c2e9a0b"
    client = client_for(sandbox, api_key=secret, api_key_in="query", max_retries=0)
    rows = credit_rows(50, emails)
    rejects = tmp_path / "rejects.jsonl"
    ledger_path = tmp_path / "l.sqlite"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SyncAbortedError) as info:
        run_sync(
            client,
            rows,
            config(validate_activities=False, max_workers=4, rejects_path=str(rejects)),
            ledger_path,
        )
    summary = info.value.summary
    assert isinstance(summary, CreditSyncSummary)
    assert summary.is_consistent()
    assert summary.counts["failed"] == 50
    assert summary.aborted
    # Far fewer than 50 requests: the sync stopped after the first 401s.
    assert credit_requests(sandbox) <= 8
    with CreditLedger.open(ledger_path) as ledger:
        counts = ledger.counts()
    assert counts["pending"] == counts["unknown"] == counts["credited"] == 0
    for text in (
        rejects.read_text(),
        json.dumps(summary.to_dict()),
        str(info.value),
        caplog.text,
        ledger_path.read_bytes().decode("latin-1"),
    ):
        assert secret not in text


class DirRemote:
    """An object-storage stand-in (only ``.open()``, not a pathlib path), like ``ObjectStoragePath``."""

    def __init__(self, target: pathlib.Path) -> None:
        self.target = target
        self.uploads = 0

    def open(self, mode: str = "rb") -> Any:
        if "w" in mode:
            self.uploads += 1
        elif not self.target.exists():
            raise FileNotFoundError(self.target)
        return open(self.target, mode)

    def __str__(self) -> str:
        return f"mem://{self.target.name}"


def test_remote_ledger_is_uploaded_per_chunk_and_rerun_skips(
    sandbox: Any, client_for: Any, emails: list[str], tmp_path: pathlib.Path
) -> None:
    client = client_for(sandbox)
    remote = DirRemote(tmp_path / "remote-ledger.sqlite")
    rows = credit_rows(300, emails)
    summary = run_sync(client, rows, config(), remote, chunksize=100)
    assert summary.counts["credited"] == 300
    assert summary.ledger_path == "mem://remote-ledger.sqlite"
    # open + (intents + after) per chunk + final
    assert remote.uploads >= 1 + 2 * 3
    before = credit_requests(sandbox)
    again = run_sync(client, rows, config(run_id="rerun"), remote, chunksize=100)
    assert again.counts["skipped"] == 300
    assert credit_requests(sandbox) == before
    assert set(applied_per_key(sandbox).values()) == {1}


def test_default_dedupe_key_and_dry_run(
    sandbox: Any, client_for: Any, emails: list[str], tmp_path: pathlib.Path
) -> None:
    client = client_for(sandbox)
    rows = credit_rows(40, emails)
    cfg = config(dedupe_key_column=None)
    dry = run_sync(client, rows, config(dedupe_key_column=None, dry_run=True), tmp_path / "l.sqlite")
    assert dry.dry_run
    assert credit_requests(sandbox) == 0
    assert dry.ledger_counts["credited"] == 0
    summary = run_sync(client, rows, cfg, tmp_path / "l.sqlite")
    assert summary.counts["credited"] == 40
    with CreditLedger.open(tmp_path / "l.sqlite") as ledger:
        keys = [e.dedupe_key for e in ledger.entries()]
    assert all(len(k) == 64 for k in keys)
    # The same rows from a CSV file (all text) give the same keys: nothing is sent again.
    csv = tmp_path / "credits.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    with CreditLedger.open(tmp_path / "l.sqlite", run_id="csv") as ledger:
        again = sync_credits(client, iter_chunks(str(csv), 15), cfg, ledger)
    assert again.counts["skipped"] == 40
    assert len(sandbox.admin.credits()) == 40


class FailingRemote(DirRemote):
    """Uploads work ``ok_uploads`` times, then object storage refuses them."""

    def __init__(self, target: pathlib.Path, ok_uploads: int) -> None:
        super().__init__(target)
        self.ok_uploads = ok_uploads

    def open(self, mode: str = "rb") -> Any:
        if "w" in mode and self.uploads >= self.ok_uploads:
            raise PermissionError("AccessDenied")
        return super().open(mode)


def test_remote_ledger_upload_failure_stops_before_sending(
    sandbox: Any, client_for: Any, emails: list[str], tmp_path: pathlib.Path
) -> None:
    """No credit goes out whose intent is not durable in object storage."""
    client = client_for(sandbox)
    remote = FailingRemote(tmp_path / "remote.sqlite", ok_uploads=3)  # open, batch 1 intents, after chunk 1
    rows = credit_rows(200, emails)
    with pytest.raises(LedgerError, match="cannot upload the credit ledger"):
        run_sync(client, rows, config(), remote, chunksize=100)
    applied = applied_per_key(sandbox)
    assert len(applied) == 100  # the first chunk only: the second chunk's intents could not be uploaded
    remote.ok_uploads = 10**6
    with CreditLedger.open(remote) as ledger:
        counts = ledger.counts()
    # The last good upload knows the first chunk as credited; nothing was left pending.
    assert counts == {"pending": 0, "credited": 100, "unknown": 0, "failed": 0}
    again = run_sync(client, rows, config(run_id="after-outage"), remote, chunksize=100)
    assert again.counts["skipped"] == 100
    assert again.counts["credited"] == 100
    assert set(applied_per_key(sandbox).values()) == {1}


def test_a_4xx_after_an_ambiguous_attempt_stays_unknown(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path
) -> None:
    """A dropped attempt for a member CrowdTwist does not know: its history cannot be read (404), so
    the key stays unknown -- never turned retryable by a later answer."""
    client = client_for(sandbox, max_retries=3)
    rows = [
        {
            "email": f"ghost{i}@example.com",
            "order_id": f"g{i}",
            "activity": "purchase",
            "points": 1,
            "ordered_at": None,
        }
        for i in range(40)
    ]
    sandbox.admin.set_faults(drop_rate=0.5, fault_routes=["credit"], seed=7)
    summary = run_sync(client, rows, config(verify_delay=0.1), tmp_path / "l.sqlite")
    sandbox.admin.set_faults(drop_rate=0.0, fault_routes=[])
    assert summary.is_consistent()
    assert summary.counts["unknown"] > 0  # some rows had a dropped attempt before their 404
    assert summary.counts["rejected"] + summary.counts["unknown"] == 40
    with CreditLedger.open(tmp_path / "l.sqlite") as ledger:
        assert ledger.counts()["unknown"] == summary.counts["unknown"]
        assert ledger.counts()["failed"] == summary.counts["rejected"]


def test_stopping_mid_run_sends_nothing_more_and_the_next_run_sends_the_rest(
    sandbox: Any, client_for: Any, emails: list[str], tmp_path: pathlib.Path
) -> None:
    """What the operator's ``on_kill`` does: credits in flight finish, the rest wait for the next run."""
    import threading

    sandbox.admin.set_faults(latency_ms=20)
    client = client_for(sandbox)
    rows = credit_rows(400, emails)
    stop = threading.Event()
    timer = threading.Timer(0.4, stop.set)
    timer.start()
    try:
        with pytest.raises(SyncAbortedError, match="stopped") as info:  # a stop aborts, as for members
            run_sync(client, rows, config(max_workers=4, stop_event=stop), tmp_path / "ledger.sqlite")
    finally:
        timer.cancel()
    first = info.value.summary
    assert isinstance(first, CreditSyncSummary)
    counts = first.counts
    assert first.rows_read == 400 == sum(counts.values())
    assert 0 < counts.get("credited", 0) < 400
    assert counts.get("failed", 0) == 400 - counts["credited"]  # "not sent", nothing unknown
    assert counts.get("unknown", 0) == 0
    assert sum(applied_per_key(sandbox).values()) == counts["credited"]

    second = run_sync(client, rows, config(max_workers=4), tmp_path / "ledger.sqlite")
    assert second.counts.get("credited", 0) == counts["failed"]
    assert second.counts.get("skipped", 0) == counts["credited"]
    applied = applied_per_key(sandbox)
    assert len(applied) == 400 and set(applied.values()) == {1}
