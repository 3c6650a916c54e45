"""Member sync against the sandbox over real HTTP (loopback): 10,000 members from SQLite, with and
without injected faults, and the row-level outcomes CrowdTwist's answers lead to.

The big tests use a sandbox in a child process (its own GIL, so the numbers are not distorted by
sharing a CPU with the engine); the small ones use the in-process ``sandbox`` fixture.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from airflow_provider_crowdtwist.client.client import CrowdTwistClient
from airflow_provider_crowdtwist.client.config import ClientConfig
from airflow_provider_crowdtwist.client.ratelimit import RateLimiter
from airflow_provider_crowdtwist.sync.members.sync import MemberSyncConfig, sync_members
from airflow_provider_crowdtwist.sync.outcomes import OUTCOME_ORDER
from airflow_provider_crowdtwist.sync.summary import SyncAbortedError, ThresholdExceededError

pytestmark = pytest.mark.integration

N = 10_000
LOG = logging.getLogger("test.member_sync")
FAST = {"backoff_base": 0.01, "backoff_max": 0.05}
STORES = ("Boston", "Austin", "Paris", None)
SEGMENTS = ("gold", "silver", None)


def source_row(i: int, generation: int = 0) -> dict[str, Any]:
    """A varied member: US, Canadian and other-country locations, NULLs, dates, flags, custom data."""
    kind = i % 10
    row: dict[str, Any] = {
        "user_id": f"Member.{i}@Example.com",
        "first_name": f"First{i}" if kind != 3 else f"Anne-Marie {i}",
        "last_name": f"Last{generation}",
        "middle_name": None if i % 3 else "Q.",
        "postal_code": f"{i % 100000:05d}",
        "country_code": None,
        "city_name": None,
        "date_of_birth": (dt.date(1950, 1, 1) + dt.timedelta(days=i * 7 % 25_000)).isoformat(),
        "receive_email_updates": i % 2,
        "favorite_store": STORES[i % 4],
        # NULLs stay where they were across generations: a NULL leaves the field out of the payload, so
        # CrowdTwist keeps its old value (the contract has no way to clear a field; null is refused).
        "loyalty_segment": SEGMENTS[(i + generation) % 2] if i % 3 else None,
    }
    if kind == 7:
        row.update(country_code="ca", postal_code=f"K{i % 10}A {i % 10}B{(i + 1) % 10}")
    elif kind == 8:
        row.update(country_code="GB", postal_code=None, city_name="London")
    elif kind == 9:
        row["postal_code"] = f"{i % 100000:05d}-{i % 10000:04d}"
    return row


def write_sqlite(path: Path, n: int, generation: int = 0) -> None:
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE IF EXISTS members")
        db.execute(
            "CREATE TABLE members (user_id TEXT, first_name TEXT, last_name TEXT, middle_name TEXT, "
            "postal_code TEXT, country_code TEXT, city_name TEXT, date_of_birth TEXT, "
            "receive_email_updates INTEGER, favorite_store TEXT, loyalty_segment TEXT)"
        )
        rows = [source_row(i, generation) for i in range(n)]
        db.executemany(
            "INSERT INTO members VALUES (:user_id, :first_name, :last_name, :middle_name, :postal_code, "
            ":country_code, :city_name, :date_of_birth, :receive_email_updates, :favorite_store, "
            ":loyalty_segment)",
            rows,
        )


def sqlite_chunks(path: Path, chunksize: int = 2_000) -> Iterator[pd.DataFrame]:
    """What common.sql's get_df_by_chunks does for SQLite, without Airflow: a chunked query."""
    db = sqlite3.connect(path)
    try:
        yield from pd.read_sql_query("SELECT * FROM members ORDER BY rowid", db, chunksize=chunksize)
    finally:
        db.close()


def expected_member(row: dict[str, Any]) -> dict[str, Any]:
    """The stored member a source row must produce, field by field."""
    dob = dt.datetime.fromisoformat(row["date_of_birth"]).replace(tzinfo=dt.timezone.utc)
    expected = {
        "email_address": row["user_id"],
        "first_name": row["first_name"],
        "last_name": row["last_name"],
        "date_of_birth": int(dob.timestamp()),
        "receive_email_updates": row["receive_email_updates"],
    }
    for name in ("middle_name", "postal_code", "city_name"):
        if row[name] is not None:
            expected[name] = row[name]
    if row["country_code"]:
        expected["country_code"] = row["country_code"].upper()
    custom = {k: row[k] for k in ("favorite_store", "loyalty_segment") if row[k] is not None}
    if custom:
        expected["custom_data"] = custom
    return expected


def assert_end_state_equals_source(admin: Any, n: int, generation: int) -> None:
    stored = {m["email_address"].lower(): m for m in admin.members()}
    assert len(stored) == n
    mismatches = []
    for i in range(n):
        row = source_row(i, generation)
        member = stored.get(row["user_id"].lower())
        want = expected_member(row)
        got = {k: member.get(k) for k in want} if member else None
        if got != want:
            mismatches.append((i, want, got))
    assert mismatches == [], f"{len(mismatches)} members differ, first: {mismatches[:2]}"


def make_client(sandbox: Any, requests_per_minute: int = 0, **overrides: Any) -> CrowdTwistClient:
    config = ClientConfig(
        base_url=sandbox.base_url,
        api_key=sandbox.api_key,
        requests_per_minute=requests_per_minute,
        **{**FAST, **overrides},
    )
    return CrowdTwistClient(config, rate_limiter=RateLimiter(requests_per_minute))


def counts(summary: Any) -> dict[str, int]:
    return {o.value: summary.count(o) for o in OUTCOME_ORDER if summary.count(o)}


def test_10000_members_created_then_updated_one_request_per_row(sandbox_process, tmp_path):
    db = tmp_path / "warehouse.sqlite"
    write_sqlite(db, N)
    admin = sandbox_process.admin
    config = MemberSyncConfig(max_workers=16, rejects_path=str(tmp_path / "rejects.jsonl"))
    with make_client(sandbox_process) as client:
        first = sync_members(client, sqlite_chunks(db), config, LOG)
        assert counts(first) == {"created": N}
        assert first.rows_read == N and first.is_consistent()
        # A new program: the upsert learns to POST first, so ~1 request a row instead of 2.
        assert first.requests_sent <= N * 1.01
        assert_end_state_equals_source(admin, N, generation=0)

        write_sqlite(db, N, generation=1)  # every member changes (last_name, loyalty_segment)
        before = admin.stats()
        second = sync_members(client, sqlite_chunks(db), config, LOG)
        after = admin.stats()
    assert counts(second) == {"updated": N}
    assert after["total"] - before["total"] == N  # exactly one request per row, counted by the sandbox
    assert second.requests_sent == N
    puts_before = before["by_route"].get("PUT /v2/users/{user_id}", 0)
    assert after["by_route"]["PUT /v2/users/{user_id}"] - puts_before == N
    assert_end_state_equals_source(admin, N, generation=1)
    assert (tmp_path / "rejects.jsonl").read_text() == ""


def test_10000_members_with_503s_429s_and_dropped_connections(sandbox_process, tmp_path):
    """5% 503, ~2% 429 (a leaky bucket just under the client's pace, no Retry-After), 1% dropped,
    and 1% applied-then-503 (the ambiguous case: the retried create finds the member already there)."""
    db = tmp_path / "warehouse.sqlite"
    write_sqlite(db, N)
    admin = sandbox_process.admin
    admin.set_faults(
        error_rate=0.05,
        error_status=503,
        drop_rate=0.01,
        applied_then_503_rate=0.01,  # applied, then 503: a retried POST meets "already taken"
        rate_limit_per_minute=28_200,
        rate_limit_burst=20,
        retry_after=False,
        seed=20261123,
    )
    config = MemberSyncConfig(max_workers=16, rejects_path=str(tmp_path / "rejects.jsonl"))
    with make_client(
        sandbox_process, requests_per_minute=30_000, max_retries=10, max_retry_wait=60.0
    ) as client:
        summary = sync_members(client, sqlite_chunks(db), config, LOG)
    stats = admin.stats()
    by_status = stats["by_status"]
    total = stats["total"]
    LOG.warning("fault mix: %s of %d requests", {k: round(v / total, 4) for k, v in by_status.items()}, total)
    assert by_status.get("503", 0) > 0.03 * total
    assert by_status.get("429", 0) > 0
    assert by_status.get("dropped", 0) > 0.005 * total
    # no row lost: every row is created, or updated when a dropped answer hid a create that landed
    assert summary.rows_read == N and summary.is_consistent()
    assert summary.count("created") + summary.count("updated") == N, counts(summary)
    assert summary.count("updated") > 0  # the applied-then-503 creates were recovered by a PUT
    admin.set_faults(error_rate=0.0, drop_rate=0.0, applied_then_503_rate=0.0, rate_limit_per_minute=0)
    assert_end_state_equals_source(admin, N, generation=0)


def small_rows() -> list[dict[str, Any]]:
    return [
        {"user_id": "ok1@example.com", "first_name": "Ok", "last_name": "One", "postal_code": "02134"},
        {"user_id": "not-an-email", "first_name": "Bad", "last_name": "Email", "postal_code": "02134"},
        {
            "user_id": "ca@example.com",
            "first_name": "Ca",
            "last_name": "Nada",
            "country_code": "CA",
            "postal_code": "12345",
        },
        {
            "user_id": "custom@example.com",
            "first_name": "Cu",
            "last_name": "Stom",
            "postal_code": "02134",
            "shoe_size": 43,
        },
        {"user_id": "nolocation@example.com", "first_name": "No", "last_name": "Where"},
        {"user_id": None, "first_name": "No", "last_name": "Id"},
        {"user_id": "ok1@example.com", "first_name": "Ok", "last_name": "Again", "postal_code": "02134"},
        {
            "user_id": "pw@example.com",
            "first_name": "Pass",
            "last_name": "Word",
            "postal_code": "02134",
            "password": "Sup3r-Secret-Pw",
        },
    ]


def test_row_outcomes_and_rejects_file_against_the_sandbox(sandbox, tmp_path, caplog):
    rejects = tmp_path / "rejects.jsonl"
    config = MemberSyncConfig(max_workers=4, rejects_path=str(rejects))
    with make_client(sandbox) as client, caplog.at_level(logging.INFO):
        summary = sync_members(client, [pd.DataFrame(small_rows())], config, LOG)
    assert counts(summary) == {"created": 2, "skipped": 1, "rejected": 5}
    # (under the default reading; with a location optional the row without one is created)
    lines = {r["row_number"]: r for r in map(json.loads, rejects.read_text().splitlines())}
    assert sorted(lines) == [2, 3, 4, 5, 6]
    # Sent (no documented email rule, so no pre-send rejection): the refusal is CrowdTwist's own answer.
    assert lines[2]["message"] == "row 2: email_address is not a valid email address (column 'user_id')"
    assert lines[2]["status"] == 400
    assert "Canadian postal code" in lines[3]["message"]
    # CrowdTwist's own message, and the source column it is about
    assert lines[4]["message"] == "row 4: Unrecognized attribute name (column 'shoe_size')"
    assert lines[4]["error_code"] == "input_error" and lines[4]["status"] == 400
    # A location on create is OPEN: the row is sent, and the refusal is CrowdTwist's own answer.
    assert lines[5]["message"] == "row 5: US zip code or country/city combo is required"
    assert (lines[5]["error_code"], lines[5]["status"]) == ("input_error", 400)
    assert lines[6]["error_code"] == "missing_identifier"
    stored = sandbox.admin.member("ok1@example.com")
    assert stored["last_name"] == "Again"  # the last duplicate won
    assert sandbox.admin.member("pw@example.com")["password_set"] is True
    assert "Sup3r-Secret-Pw" not in caplog.text and "Sup3r-Secret-Pw" not in rejects.read_text()


def test_insert_twice_rejects_taken_emails_and_update_rejects_unknown(sandbox):
    rows = [
        {"user_id": f"i{i}@example.com", "first_name": "I", "last_name": "N", "postal_code": "02134"}
        for i in range(20)
    ]
    with make_client(sandbox) as client:
        assert counts(sync_members(client, [pd.DataFrame(rows)], MemberSyncConfig(mode="insert"), LOG)) == {
            "created": 20
        }
        # every row rejected: the run fails by default (nothing landed), with the counts in its summary
        with pytest.raises(ThresholdExceededError, match="nothing landed") as again:
            sync_members(client, [pd.DataFrame(rows)], MemberSyncConfig(mode="insert"), LOG)
        assert again.value.summary is not None and counts(again.value.summary) == {"rejected": 20}
        unknown = [{"user_id": "nobody@example.com", "first_name": "X"}]
        tolerant = MemberSyncConfig(mode="update", fail_when_nothing_landed=False)
        upd = sync_members(client, [pd.DataFrame(unknown)], tolerant, LOG)
        assert counts(upd) == {"rejected": 1} and upd.status == "degraded"
    assert len(sandbox.admin.members()) == 20


def test_bad_api_key_aborts_early_without_leaking_it(sandbox, tmp_path, caplog):
    wrong_key = "wrong-key-7c1d2e3f4a5b"
    rows = [
        {"user_id": f"k{i}@example.com", "first_name": "K", "last_name": "L", "postal_code": "02134"}
        for i in range(2_000)
    ]
    rejects = tmp_path / "rejects.jsonl"
    config = MemberSyncConfig(max_workers=8, rejects_path=str(rejects))
    client = CrowdTwistClient(
        ClientConfig(base_url=sandbox.base_url, api_key=wrong_key, api_key_in="query", **FAST)
    )
    with client, caplog.at_level(logging.DEBUG), pytest.raises(SyncAbortedError, match="401") as info:
        sync_members(client, [pd.DataFrame(rows)], config, LOG)
    summary = info.value.summary
    assert summary.rows_read == 2_000 and summary.count("failed") == 2_000
    assert sandbox.admin.stats()["total"] <= 2 * 8 + 8  # stopped after the first answers
    text = rejects.read_text()
    assert len(text.splitlines()) == 2_000
    assert wrong_key not in text and wrong_key not in caplog.text and wrong_key not in str(info.value)


def test_retry_after_429_slows_everyone_and_loses_nothing(sandbox):
    # The server allows 100/s; the client is configured 20% above it, so 429s with Retry-After come and
    # pause the shared limiter (every worker), and every row still lands.
    sandbox.admin.set_faults(rate_limit_per_minute=6_000, rate_limit_burst=5, retry_after=True)
    rows = [
        {"user_id": f"r{i}@example.com", "first_name": "R", "last_name": "L", "postal_code": "02134"}
        for i in range(50)
    ]
    with make_client(sandbox, requests_per_minute=7_200, max_retries=10, max_retry_wait=60.0) as client:
        summary = sync_members(client, [pd.DataFrame(rows)], MemberSyncConfig(max_workers=16), LOG)
    assert counts(summary) == {"created": 50}
    assert sandbox.admin.stats()["by_status"].get("429", 0) > 0
    assert len(sandbox.admin.members()) == 50


def test_dry_run_sends_no_writes(sandbox):
    with make_client(sandbox) as client:
        sync_members(client, [pd.DataFrame(small_rows()[:1])], MemberSyncConfig(), LOG)
        before = sandbox.admin.stats()["by_route"]
        summary = sync_members(client, [pd.DataFrame(small_rows())], MemberSyncConfig(dry_run=True), LOG)
        after = sandbox.admin.stats()["by_route"]
    # A dry run cannot know CrowdTwist's own verdicts (the unknown custom attribute, the identifier that
    # is not an email address, the member without a location -- OPEN --, none proven wrong by a
    # documented rule): it would create all three.
    assert counts(summary) == {"created": 4, "updated": 1, "skipped": 1, "rejected": 2}
    writes = ("POST /v2/users", "PUT /v2/users/{user_id}")
    assert all(after.get(w, 0) == before.get(w, 0) for w in writes)
    assert after["GET /v2/users/{user_id}"] > before.get("GET /v2/users/{user_id}", 0)
    assert len(sandbox.admin.members()) == 1


def test_hmac_authentication_sync(sandbox):
    rows = [
        {"user_id": f"h{i}@example.com", "first_name": "H", "last_name": "M", "postal_code": "02134"}
        for i in range(30)
    ]
    config = ClientConfig(
        base_url=sandbox.base_url,
        auth_type="hmac",
        hmac_public_key=sandbox.hmac_public_key,
        hmac_private_key=sandbox.hmac_private_key,
        **FAST,
    )
    with CrowdTwistClient(config) as client:
        summary = sync_members(client, [pd.DataFrame(rows)], MemberSyncConfig(max_workers=4), LOG)
    assert counts(summary) == {"created": 30}
