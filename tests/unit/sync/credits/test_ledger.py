"""Unit tests of the credit ledger (a real SQLite file in a temporary folder, no mocks needed)."""

from __future__ import annotations

import io
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

from airflow_provider_crowdtwist.sync.credits.ledger import (
    LEDGER_STATES,
    CreditIntent,
    CreditLedger,
    LedgerError,
    LedgerInUseError,
)


def _intent(key: str, points: int | None = 10) -> CreditIntent:
    return CreditIntent(
        dedupe_key=key, user_id=f"{key}@example.com", activity_id="purchase", num_points=points
    )


def test_new_ledger_has_schema_and_wal(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "sub" / "ledger.sqlite"
    with CreditLedger.open(path, run_id="r1") as ledger:
        assert ledger.counts() == dict.fromkeys(LEDGER_STATES, 0)
        assert not ledger.is_remote
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cols = [row[1] for row in conn.execute("PRAGMA table_info(credits)")]
    assert cols == [
        "dedupe_key",
        "state",
        "user_id",
        "activity_id",
        "num_points",
        "run_id",
        "updated_at",
        "message",
        "id_type",
        "request",
        "attempts",
        "first_sent_at",
        "last_sent_at",
        "unknown_since",
        "checks",
    ]
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2


def test_version_1_ledger_gets_the_new_columns_and_keeps_its_rows(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE credits (dedupe_key TEXT PRIMARY KEY, state TEXT NOT NULL, user_id TEXT, "
        "activity_id TEXT, num_points INTEGER, run_id TEXT, updated_at TEXT NOT NULL, message TEXT)"
    )
    conn.execute(
        "INSERT INTO credits VALUES ('old', 'unknown', 'u@x.y', 'purchase', 5, 'r0', 't', 'timeout')"
    )
    conn.execute("INSERT INTO credits VALUES ('done', 'credited', 'u@x.y', 'purchase', 5, 'r0', 't', NULL)")
    conn.commit()
    conn.close()
    with CreditLedger.open(path, run_id="r1") as ledger:
        old = ledger.get("old")
        assert (old.state, old.request, old.attempts, old.checks, old.unknown_since) == (
            "unknown",
            None,
            0,
            0,
            None,
        )
        assert ledger.get("done").state == "credited"
        assert ledger.mark_resend("old")
        assert ledger.get("old").attempts == 1


def test_what_verification_needs_is_recorded(tmp_path: pathlib.Path) -> None:
    """Send times, attempts, the request itself, when a key became unknown, and the look-ups."""
    with CreditLedger.open(tmp_path / "l.sqlite", run_id="r1") as ledger:
        intent = CreditIntent(
            "k", "a@b.c", "purchase", 5, id_type="email", request='{"activity_id": "purchase"}'
        )
        assert ledger.mark_pending([intent]) == {"k"}
        first = ledger.get("k")
        assert first.attempts == 1 and first.id_type == "email" and first.request == intent.request
        assert first.first_sent_at == first.last_sent_at and first.first_sent_at is not None
        ledger.record("k", "unknown", "503")
        unknown = ledger.get("k")
        assert unknown.unknown_since is not None and unknown.unknown_since >= first.last_sent_at
        ledger.record("k", "unknown", "not in the history yet", checked=True)
        again = ledger.get("k")
        assert again.unknown_since == unknown.unknown_since and again.checks == 1  # the first time is kept
        assert ledger.mark_resend("k")
        resent = ledger.get("k")
        assert (resent.state, resent.attempts, resent.unknown_since) == ("pending", 2, None)
        assert resent.first_sent_at == first.first_sent_at and resent.last_sent_at >= first.last_sent_at
        assert not ledger.mark_resend("k")  # only an unknown key may be resent
        ledger.record("k", "credited", "verified", checked=True)
        done = ledger.get("k")
        assert (done.state, done.checks, done.unknown_since) == ("credited", 3, None)


def test_recovered_pending_keys_get_their_unknown_time(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "l.sqlite"
    with CreditLedger.open(path, run_id="r1") as ledger:
        ledger.mark_pending([_intent("in-flight")])
    with CreditLedger.open(path, run_id="r2") as ledger:
        entry = ledger.get("in-flight")
        assert entry.state == "unknown" and entry.unknown_since is not None
        assert entry.unknown_since >= entry.last_sent_at


def test_pending_then_credited_round_trip(tmp_path: pathlib.Path) -> None:
    with CreditLedger.open(tmp_path / "l.sqlite", run_id="run-1") as ledger:
        accepted = ledger.mark_pending([_intent("a"), _intent("b", None)])
        assert accepted == {"a", "b"}
        assert ledger.get("a").state == "pending"
        ledger.record("a", "credited")
        ledger.record("b", "failed", "HTTP 400 input_error")
        entry_a, entry_b = ledger.get("a"), ledger.get("b")
        assert entry_a.state == "credited"
        assert entry_a.user_id == "a@example.com"
        assert entry_a.num_points == 10
        assert entry_a.run_id == "run-1"
        assert entry_b.state == "failed"
        assert entry_b.num_points is None
        assert entry_b.message == "HTTP 400 input_error"
        assert ledger.counts() == {"pending": 0, "credited": 1, "unknown": 0, "failed": 1}


def test_mark_pending_refuses_credited_and_unknown_but_retries_failed(tmp_path: pathlib.Path) -> None:
    with CreditLedger.open(tmp_path / "l.sqlite", run_id="r1") as ledger:
        ledger.mark_pending([_intent("credited"), _intent("failed"), _intent("unknown")])
        ledger.record_many(
            [("credited", "credited", None), ("failed", "failed", "x"), ("unknown", "unknown", "y")]
        )
    with CreditLedger.open(tmp_path / "l.sqlite", run_id="r2") as ledger:
        accepted = ledger.mark_pending(
            [_intent("credited"), _intent("failed"), _intent("unknown"), _intent("new")]
        )
        assert accepted == {"failed", "new"}
        assert ledger.get("credited").state == "credited"
        assert ledger.get("unknown").state == "unknown"
        assert ledger.get("failed").state == "pending"
        assert ledger.get("failed").run_id == "r2"
        # A pending key (in flight in this run) is not accepted twice either.
        assert ledger.mark_pending([_intent("new")]) == set()
        assert ledger.mark_pending([_intent("unknown")], resend_unknown=True) == {"unknown"}


def test_leftover_pending_becomes_unknown_on_open(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "l.sqlite"
    ledger = CreditLedger.open(path, run_id="killed-run")
    ledger.mark_pending([_intent("in-flight"), _intent("done")])
    ledger.record("done", "credited")
    ledger.close()
    with CreditLedger.open(path, run_id="next") as again:
        assert again.recovered_unknown == 1
        entry = again.get("in-flight")
        assert entry.state == "unknown"
        assert "killed-run" in entry.message
        assert [e.dedupe_key for e in again.unknown_keys()] == ["in-flight"]
        assert again.get("done").state == "credited"


def test_sigkill_after_commit_loses_nothing(tmp_path: pathlib.Path) -> None:
    """A process killed right after its commits leaves them readable (WAL, synchronous=NORMAL)."""
    path = tmp_path / "l.sqlite"
    script = textwrap.dedent(
        f"""
        import os, signal
        from airflow_provider_crowdtwist.sync.credits.ledger import CreditLedger, CreditIntent
        ledger = CreditLedger.open({str(path)!r}, run_id="victim")
        ledger.mark_pending([CreditIntent(f"k{{i}}") for i in range(100)])
        for i in range(60):
            ledger.record(f"k{{i}}", "credited")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    with CreditLedger.open(path, run_id="after") as ledger:
        assert ledger.counts() == {"pending": 0, "credited": 60, "unknown": 40, "failed": 0}


def test_second_open_of_local_ledger_is_refused_while_held(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "l.sqlite"
    with (
        CreditLedger.open(path, run_id="a"),
        pytest.raises(LedgerInUseError, match="in use by another running sync"),
    ):
        CreditLedger.open(path, run_id="b")
    # released on close
    with CreditLedger.open(path, run_id="c") as ledger:
        assert ledger.counts()["credited"] == 0


def test_claim_for_run_detects_duplicates(tmp_path: pathlib.Path) -> None:
    with CreditLedger.open(tmp_path / "l.sqlite") as ledger:
        assert ledger.claim_for_run(["a", "b", "a"]) == [True, True, False]
        assert ledger.claim_for_run(["b", "c"]) == [False, True]
    # run keys are per connection (per run): a new run starts afresh
    with CreditLedger.open(tmp_path / "l.sqlite") as ledger:
        assert ledger.claim_for_run(["a"]) == [True]


def test_discard_pending_only_removes_this_runs_intents(tmp_path: pathlib.Path) -> None:
    with CreditLedger.open(tmp_path / "l.sqlite", run_id="r1") as ledger:
        ledger.mark_pending([_intent("x"), _intent("y")])
        ledger.record("y", "credited")
        assert ledger.discard_pending(["x", "y"]) == 1
        assert ledger.get("x") is None
        assert ledger.get("y").state == "credited"


def test_set_state_resolves_unknown(tmp_path: pathlib.Path) -> None:
    with CreditLedger.open(tmp_path / "l.sqlite", run_id="r1") as ledger:
        ledger.mark_pending([_intent("u")])
        ledger.record("u", "unknown", "timeout")
        assert ledger.set_state("u", "credited", "checked in the console")
        assert ledger.get("u").state == "credited"
        assert not ledger.set_state("missing", "credited")
        with pytest.raises(ValueError):
            ledger.set_state("u", "pending")
        with pytest.raises(ValueError):
            ledger.record("u", "pending")


def test_concurrent_writers_are_consistent(tmp_path: pathlib.Path) -> None:
    with CreditLedger.open(tmp_path / "l.sqlite", run_id="r") as ledger:
        errors: list[BaseException] = []

        def work(worker: int) -> None:
            try:
                for i in range(200):
                    key = f"w{worker}-{i}"
                    assert ledger.mark_pending([_intent(key)]) == {key}
                    ledger.record(key, "credited" if i % 4 else "unknown")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert ledger.counts() == {"pending": 0, "credited": 1200, "unknown": 400, "failed": 0}


def test_closed_ledger_refuses_use(tmp_path: pathlib.Path) -> None:
    ledger = CreditLedger.open(tmp_path / "l.sqlite")
    ledger.close()
    ledger.close()  # idempotent
    with pytest.raises(LedgerError, match="closed"):
        ledger.counts()


def test_directory_and_url_locations_are_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(LedgerError, match="is a directory"):
        CreditLedger.open(tmp_path)
    with pytest.raises(LedgerError, match="is a URL"):
        CreditLedger.open("s3://bucket/ledger.sqlite")


def test_corrupt_file_gives_clear_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "l.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match="cannot open the credit ledger"):
        CreditLedger.open(path)
    # the lock was released: a repaired file opens
    path.unlink()
    CreditLedger.open(path).close()


class FakeRemote:
    """An object-storage path stand-in: not a pathlib path, only ``.open()`` (like ObjectStoragePath)."""

    def __init__(self, target: pathlib.Path, *, fail_writes: bool = False) -> None:
        self.target = target
        self.fail_writes = fail_writes
        self.uploads = 0

    def open(self, mode: str = "rb") -> Any:
        if "w" in mode:
            if self.fail_writes:
                raise PermissionError("access denied")
            self.uploads += 1
            return open(self.target, mode)
        if not self.target.exists():
            raise FileNotFoundError(str(self.target))
        return io.BytesIO(self.target.read_bytes())

    def __str__(self) -> str:
        return f"fake://{self.target.name}"


def test_remote_ledger_downloads_syncs_and_recovers(tmp_path: pathlib.Path) -> None:
    remote = FakeRemote(tmp_path / "remote.sqlite")
    ledger = CreditLedger.open(remote, run_id="r1")
    assert ledger.is_remote
    assert ledger.location == "fake://remote.sqlite"
    local_copy = ledger.db_path
    ledger.mark_pending([_intent("a"), _intent("b")])
    ledger.sync()
    ledger.record("a", "credited")
    # Simulate a killed worker: the remote copy holds the intents uploaded before sending.
    ledger._conn.close()
    ledger._closed = True
    assert local_copy != remote.target
    with CreditLedger.open(remote, run_id="r2") as again:
        assert again.recovered_unknown == 2  # both were pending in the last upload
        assert again.counts()["unknown"] == 2
        again.set_state("a", "credited")
    with CreditLedger.open(remote, run_id="r3") as third:
        assert third.get("a").state == "credited"
        assert third.get("b").state == "unknown"
        third_copy = third.db_path
    assert not os.path.exists(third_copy)  # the temporary local copy is removed on close


def test_remote_upload_failure_is_a_ledger_error(tmp_path: pathlib.Path) -> None:
    remote = FakeRemote(tmp_path / "remote.sqlite", fail_writes=True)
    with pytest.raises(LedgerError, match="cannot upload the credit ledger"):
        CreditLedger.open(remote)


def test_foreign_sqlite_file_is_not_taken_for_a_ledger(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "member-state.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE credits (id INTEGER PRIMARY KEY, amount REAL)")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError, match=r"lacks the column\(s\) .*dedupe_key.*not a credit ledger"):
        CreditLedger.open(path)
