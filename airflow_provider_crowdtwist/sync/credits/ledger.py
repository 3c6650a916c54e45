"""The credit ledger: a SQLite file that makes activity credits exactly-once per dedupe key.

CrowdTwist has no idempotency key on ``POST /v2/users/{id}/activities``: the same credit sent twice can
award points twice. The ledger is the memory that survives task retries, DAG reruns and killed workers:

* Write-ahead intent. A key is committed as ``pending`` *before* its request is sent and updated to
  ``credited``, ``failed`` or ``unknown`` after. A worker killed with SIGKILL therefore leaves its
  in-flight keys ``pending``; the next run turns them into ``unknown`` (the request may or may not have
  landed) instead of resending them.
* ``unknown`` keys are settled by the credit sync, not by a human: it looks each one up in the member's
  activity history (``sync/credits/verify.py``) -- found: ``credited``; not there after the settle
  delay: sent again. For that the ledger keeps what verification needs: the whole request (to find the
  member and to resend it identically), when it was first and last sent, how often, when it became
  ``unknown`` and how many look-ups it had. Only what verification cannot settle stays ``unknown``.
* ``failed`` keys were definitely not applied (a 4xx, a refused connection, 429 after the retries), so a
  later run may send them again.

Durability: WAL with ``synchronous=NORMAL``. A commit is then a write into the WAL file without fsync;
the bytes sit in the OS page cache, which survives the death of the *process* (the failure this ledger
is designed for). A power loss of the whole machine may lose the last commits; that is documented.

One connection guarded by a lock serves every sender thread; a commit costs tens of microseconds, far
below the 6 ms a request may take at the program's cap of 10,000 requests a minute.

A ledger may live in object storage. The engine never imports Airflow: it receives any path-like object
with ``.open(mode)`` (Airflow's ``ObjectStoragePath``), downloads it to a local temporary file at start
and uploads a consistent copy whenever :meth:`CreditLedger.sync` is called (the credit sync calls it
after recording the intents of a chunk, before sending the chunk, after each chunk, and on every exit).

Schema (inspect it with ``sqlite3 LEDGER "select state, count(*) from credits group by state"``)::

    CREATE TABLE credits (
        dedupe_key  TEXT PRIMARY KEY,   -- the dedupe_key_column value, or sha256 of the credit
        state       TEXT NOT NULL,      -- pending | credited | unknown | failed
        user_id     TEXT,               -- the member identifier the credit was sent for
        activity_id TEXT,
        num_points  INTEGER,            -- NULL: the activity's default points
        run_id      TEXT,               -- the run that last wrote the row
        updated_at  TEXT NOT NULL,      -- ISO 8601 UTC
        message     TEXT,               -- why a key is failed/unknown; the API's answer
        id_type     TEXT,               -- (v2) how user_id identifies the member
        request     TEXT,               -- (v2) JSON of the credit as sent: resent identically if needed
        attempts    INTEGER NOT NULL DEFAULT 0,  -- (v2) how many times it was sent
        first_sent_at REAL,             -- (v2) epoch seconds of the first send (history look-back)
        last_sent_at  REAL,             -- (v2) epoch seconds of the last send
        unknown_since REAL,             -- (v2) epoch seconds it became 'unknown' (settle delay from here)
        checks      INTEGER NOT NULL DEFAULT 0   -- (v2) activity-history look-ups made for it
    );

A version-1 ledger gets the new columns when it is opened (``ALTER TABLE ... ADD COLUMN``); its old
rows have no ``request``, so an old ``unknown`` key is verified from its source row when that is read
again, and otherwise stays ``unknown``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_provider_crowdtwist.sync.partition import Partition, check_layout
from airflow_provider_crowdtwist.sync.paths import (
    FileInUseError,
    FileLock,
    WorkingCopy,
    is_local,
    transaction,
)

__all__ = [
    "LEDGER_STATES",
    "SCHEMA_VERSION",
    "CreditIntent",
    "CreditLedger",
    "LedgerEntry",
    "LedgerError",
    "LedgerInUseError",
    "ledger_location",
]

PENDING = "pending"
CREDITED = "credited"
UNKNOWN = "unknown"
FAILED = "failed"
#: Every state a key can have in the ledger.
LEDGER_STATES: tuple[str, ...] = (PENDING, CREDITED, UNKNOWN, FAILED)
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS credits (
    dedupe_key  TEXT PRIMARY KEY,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'credited', 'unknown', 'failed')),
    user_id     TEXT,
    activity_id TEXT,
    num_points  INTEGER,
    run_id      TEXT,
    updated_at  TEXT NOT NULL,
    message     TEXT,
    id_type     TEXT,
    request     TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    first_sent_at REAL,
    last_sent_at  REAL,
    unknown_since REAL,
    checks      INTEGER NOT NULL DEFAULT 0
);
"""
_INDEX = "CREATE INDEX IF NOT EXISTS credits_state ON credits (state)"

_COLUMNS = ("dedupe_key", "state", "user_id", "activity_id", "num_points", "run_id", "updated_at", "message")
#: Columns added by schema version 2 (what verifying an ``unknown`` credit needs), with their SQL types.
_V2_COLUMNS = {
    "id_type": "TEXT",
    "request": "TEXT",
    "attempts": "INTEGER NOT NULL DEFAULT 0",
    "first_sent_at": "REAL",
    "last_sent_at": "REAL",
    "unknown_since": "REAL",
    "checks": "INTEGER NOT NULL DEFAULT 0",
}
_SELECT = f"SELECT {', '.join((*_COLUMNS, *_V2_COLUMNS))} FROM credits"

_log = logging.getLogger(__name__)


class LedgerError(RuntimeError):
    """The ledger cannot be opened, read or written; crediting must not go on without it."""


class LedgerInUseError(LedgerError, FileInUseError):
    """Another running sync holds the ledger; two writers would defeat the exactly-once guarantee."""


@dataclass(frozen=True)
class CreditIntent:
    """The facts recorded with a key before its request is sent.

    ``request`` is the credit as sent (JSON text, see ``CreditRequest.to_json``): it lets a later run
    verify the key in the member's history and resend it identically without the source row.
    """

    dedupe_key: str
    user_id: str | None = None
    activity_id: str | None = None
    num_points: int | None = None
    id_type: str | None = None
    request: str | None = None


@dataclass(frozen=True)
class LedgerEntry:
    """One row of the ``credits`` table."""

    dedupe_key: str
    state: str
    user_id: str | None
    activity_id: str | None
    num_points: int | None
    run_id: str | None
    updated_at: str
    message: str | None
    id_type: str | None = None
    request: str | None = None
    attempts: int = 0
    first_sent_at: float | None = None
    last_sent_at: float | None = None
    unknown_since: float | None = None
    checks: int = 0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _epoch() -> float:
    return time.time()


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class CreditLedger:
    """A SQLite ledger of dedupe keys; safe to share between the sender threads of one sync.

    Open it with :meth:`open` (local path or object-storage path), use it as a context manager, and
    :meth:`close` it on every exit path: closing uploads a remote ledger a last time and releases the
    lock that keeps a second run off the same local file.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        *,
        run_id: str | None = None,
        remote: Any = None,
        location: str | None = None,
        lock: bool = True,
        recover: bool = True,
        log: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> None:
        """Open (creating if needed) the SQLite file at ``db_path``.

        ``remote`` is set by :meth:`open` when ``db_path`` is a local copy of an object-storage
        ledger; :meth:`sync` then uploads to it. ``recover`` turns leftover ``pending`` keys into
        ``unknown`` (see the module docstring); it is only off for read-only inspection.
        """
        self.db_path = pathlib.Path(db_path)
        self.run_id = run_id
        self.remote = remote
        self.location = location or str(db_path)
        self._log = log or _log
        self._lock = threading.RLock()
        self._file_lock: FileLock | None = None
        self._closed = False
        self._copy: WorkingCopy | None = None
        self.recovered_unknown = 0
        if lock and remote is None:
            where = f"the credit ledger {self.db_path}"
            self._file_lock = FileLock(self.db_path, LedgerInUseError, what=where, shared="a ledger")
        try:
            self._conn = sqlite3.connect(
                str(self.db_path), check_same_thread=False, isolation_level=None, timeout=30.0
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(credits)")}
            missing = sorted(set(_COLUMNS) - columns)
            if missing:
                raise sqlite3.DatabaseError(
                    f"its 'credits' table lacks the column(s) {', '.join(missing)}: not a credit ledger"
                )
            for name, kind in _V2_COLUMNS.items():  # a version-1 ledger: add what verification needs
                if name not in columns:
                    self._conn.execute(f"ALTER TABLE credits ADD COLUMN {name} {kind}")
            self._conn.execute(_INDEX)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._conn.execute("CREATE TEMP TABLE IF NOT EXISTS run_keys (dedupe_key TEXT PRIMARY KEY)")
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._release_file_lock()
            raise LedgerError(f"cannot open the credit ledger {self.location}: {exc}") from exc
        if recover:
            self.recovered_unknown = self._recover_pending()

    # ------------------------------------------------------------------ opening and closing

    @classmethod
    def open(
        cls,
        location: Any,
        *,
        run_id: str | None = None,
        log: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> CreditLedger:
        """Open a local ledger file, or download an object-storage ledger to a temporary file.

        A string with a URL scheme is refused here: the engine has no storage clients. The operator
        turns ``s3://...`` or ``file://...`` into an ``ObjectStoragePath`` before calling this.
        """
        if is_local(location):
            path = pathlib.Path(os.fspath(location)).expanduser()
            if path.exists() and path.is_dir():
                raise LedgerError(
                    f"ledger_path {path} is a directory; give a file name such as credits.sqlite"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            return cls(path, run_id=run_id, location=str(path), log=log)
        if isinstance(location, str):
            raise LedgerError(
                f"ledger_path {location!r} is a URL; pass a path object with .open() "
                "(the operator does this with ObjectStoragePath)"
            )
        if not hasattr(location, "open"):
            raise LedgerError(f"ledger_path {location!r} is neither a local path nor has .open()")
        copy = WorkingCopy(location, name="ledger.sqlite")
        try:
            if copy.downloaded:
                size = os.path.getsize(copy.path)
                (log or _log).info("Downloaded credit ledger %s (%d bytes)", location, size)
            else:
                (log or _log).info("Credit ledger %s does not exist yet; starting a new one", location)
            ledger = cls(copy.path, run_id=run_id, remote=location, location=copy.location, log=log)
        except Exception:
            copy.close()
            raise
        ledger._copy = copy
        # Make the recovery of pending keys durable remotely before anything is sent.
        ledger.sync()
        return ledger

    def close(self) -> None:
        """Upload a remote ledger a last time, close the file and release the run lock. Idempotent."""
        if self._closed:
            return
        try:
            if self.remote is not None:
                self.sync()
        finally:
            self._closed = True
            with self._lock:
                self._conn.close()
            self._release_file_lock()
            if self._copy is not None:
                self._copy.close()

    def __enter__(self) -> CreditLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_remote(self) -> bool:
        """True when the ledger is a local copy of an object-storage file (uploaded by :meth:`sync`)."""
        return self.remote is not None

    def _release_file_lock(self) -> None:
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None

    # ------------------------------------------------------------------ writing

    def _recover_pending(self) -> int:
        with self._lock:
            cur = self._conn.execute(
                "UPDATE credits SET state = ?, updated_at = ?, unknown_since = ?, "
                "message = 'left pending by run ' || COALESCE(run_id, '?') || "
                "': the worker stopped while the request was in flight; it may or may not have been "
                "credited' WHERE state = ?",
                (UNKNOWN, _now(), _epoch(), PENDING),
            )
            count = cur.rowcount
        if count:
            self._log.warning(
                "Credit ledger %s: %d key(s) were left pending by an interrupted run and are now "
                "'unknown'; the credit sync looks them up in the members' activity histories",
                self.location,
                count,
            )
        return count

    def mark_pending(self, intents: Iterable[CreditIntent], *, resend_unknown: bool = False) -> set[str]:
        """Record write-ahead intents and return the keys that may now be sent.

        A key is accepted when it is new, ``failed`` (definitely not applied), or ``unknown`` with
        ``resend_unknown``. A key that is ``credited`` — or ``pending``/``unknown`` because another run
        got there first — is refused, so even a caller that skipped the lookup cannot send twice.
        The intents are committed before this returns: only then may the requests go out.
        """
        retry_states = (FAILED, UNKNOWN) if resend_unknown else (FAILED,)
        placeholders = ", ".join("?" for _ in retry_states)
        sql = (
            "INSERT INTO credits (dedupe_key, state, user_id, activity_id, num_points, run_id, updated_at, "
            "message, id_type, request, attempts, first_sent_at, last_sent_at, unknown_since, checks) "
            "VALUES (?, 'pending', ?, ?, ?, ?, ?, NULL, ?, ?, 1, ?, ?, NULL, 0) "
            "ON CONFLICT (dedupe_key) DO UPDATE SET state = 'pending', user_id = excluded.user_id, "
            "activity_id = excluded.activity_id, num_points = excluded.num_points, run_id = excluded.run_id, "
            "updated_at = excluded.updated_at, message = NULL, id_type = excluded.id_type, "
            "request = excluded.request, attempts = credits.attempts + 1, "
            "first_sent_at = COALESCE(credits.first_sent_at, excluded.first_sent_at), "
            "last_sent_at = excluded.last_sent_at, unknown_since = NULL "
            f"WHERE credits.state IN ({placeholders})"
        )
        accepted: set[str] = set()
        now = _now()
        sent_at = _epoch()
        with self._lock:
            self._check_open()
            with transaction(self._conn, immediate=True):
                for intent in intents:
                    cur = self._conn.execute(
                        sql,
                        (
                            intent.dedupe_key,
                            intent.user_id,
                            intent.activity_id,
                            intent.num_points,
                            self.run_id,
                            now,
                            intent.id_type,
                            intent.request,
                            sent_at,
                            sent_at,
                            *retry_states,
                        ),
                    )
                    if cur.rowcount:
                        accepted.add(intent.dedupe_key)
        return accepted

    def record(
        self, dedupe_key: str, state: str, message: str | None = None, *, checked: bool = False
    ) -> None:
        """Record what became of a sent key (``credited``, ``failed`` or ``unknown``); committed at once.

        ``checked``: the state comes from a look-up in the member's activity history (counted in
        ``checks``). A key that becomes ``unknown`` keeps the time in ``unknown_since`` (the settle
        delay runs from there); one that stays ``unknown`` after a look-up keeps its first time.
        """
        self.record_many([(dedupe_key, state, message)], checked=checked)

    def record_many(self, results: Iterable[tuple[str, str, str | None]], *, checked: bool = False) -> None:
        """Record several results in one transaction."""
        rows = []
        now = _now()
        epoch = _epoch()
        for key, state, message in results:
            if state not in (CREDITED, FAILED, UNKNOWN):
                raise ValueError(f"a sent credit ends credited, failed or unknown, not {state!r}")
            rows.append((state, self.run_id, now, message, state, epoch, int(checked), key))
        if not rows:
            return
        with self._lock:
            self._check_open()
            with transaction(self._conn, immediate=True):
                self._conn.executemany(
                    "UPDATE credits SET state = ?, run_id = ?, updated_at = ?, message = ?, "
                    "unknown_since = CASE WHEN ? = 'unknown' THEN COALESCE(unknown_since, ?) END, "
                    "checks = checks + ? WHERE dedupe_key = ?",
                    rows,
                )

    def mark_resend(self, dedupe_key: str, *, checked: bool = True) -> bool:
        """Turn an ``unknown`` key back into ``pending`` before it is sent again (verified not there).

        The write-ahead rule holds for a resend too: a worker killed during it leaves the key
        ``pending``, hence ``unknown`` again, never lost. False when the key is not ``unknown`` (another
        writer settled it), and then it must not be sent. ``checked``: a history look-up found it absent
        (counted in ``checks``); False for a resend without proof (``resend_unknown``).
        """
        with self._lock:
            self._check_open()
            cur = self._conn.execute(
                "UPDATE credits SET state = 'pending', run_id = ?, updated_at = ?, message = NULL, "
                "attempts = attempts + 1, last_sent_at = ?, unknown_since = NULL, checks = checks + ?, "
                "first_sent_at = COALESCE(first_sent_at, ?) WHERE dedupe_key = ? AND state = 'unknown'",
                (self.run_id, _now(), _epoch(), int(checked), _epoch(), dedupe_key),
            )
            return bool(cur.rowcount)

    def discard_pending(self, keys: Iterable[str]) -> int:
        """Forget intents whose requests were never sent (e.g. the intent upload failed).

        Only ``pending`` rows written by this run are removed; a key that was ``failed`` or ``unknown``
        before this run loses that history, which is harmless: it was not sent by this run.
        """
        removed = 0
        with self._lock:
            self._check_open()
            with transaction(self._conn, immediate=True):
                for batch in _chunks(list(keys)):
                    marks = ", ".join("?" for _ in batch)
                    cur = self._conn.execute(
                        "DELETE FROM credits WHERE state = 'pending' AND run_id IS ? "
                        f"AND dedupe_key IN ({marks})",
                        (self.run_id, *batch),
                    )
                    removed += cur.rowcount
        return removed

    def set_state(self, dedupe_key: str, state: str, message: str | None = None) -> bool:
        """Resolve a key by hand (e.g. an ``unknown`` key checked in CrowdTwist's admin console).

        Returns False when the key is not in the ledger.
        """
        if state not in LEDGER_STATES or state == PENDING:
            raise ValueError(f"state must be one of credited, failed, unknown, not {state!r}")
        with self._lock:
            self._check_open()
            cur = self._conn.execute(
                "UPDATE credits SET state = ?, updated_at = ?, message = ? WHERE dedupe_key = ?",
                (state, _now(), message, dedupe_key),
            )
            return bool(cur.rowcount)

    def claim_for_run(self, keys: Sequence[str]) -> list[bool]:
        """Remember keys seen in this run; True for each key seen for the first time.

        A temporary table (not a Python set) keeps memory flat for runs of millions of rows.
        """
        first: list[bool] = []
        with self._lock:
            self._check_open()
            with transaction(self._conn):
                for key in keys:
                    cur = self._conn.execute(
                        "INSERT OR IGNORE INTO temp.run_keys (dedupe_key) VALUES (?)", (key,)
                    )
                    first.append(cur.rowcount == 1)
        return first

    # ------------------------------------------------------------------ reading

    def lookup(self, keys: Iterable[str]) -> dict[str, LedgerEntry]:
        """The ledger rows of the given keys (keys not in the ledger are absent from the result)."""
        found: dict[str, LedgerEntry] = {}
        key_list = list(dict.fromkeys(keys))
        with self._lock:
            self._check_open()
            for batch in _chunks(key_list):
                marks = ", ".join("?" for _ in batch)
                for row in self._conn.execute(f"{_SELECT} WHERE dedupe_key IN ({marks})", tuple(batch)):
                    found[row[0]] = LedgerEntry(*row)
        return found

    def get(self, dedupe_key: str) -> LedgerEntry | None:
        """One key's row, or None."""
        return self.lookup([dedupe_key]).get(dedupe_key)

    def counts(self) -> dict[str, int]:
        """Keys by state, every state present (zero when none)."""
        result = dict.fromkeys(LEDGER_STATES, 0)
        with self._lock:
            self._check_open()
            for state, count in self._conn.execute("SELECT state, COUNT(*) FROM credits GROUP BY state"):
                result[state] = count
        return result

    def entries(self, state: str | None = None, *, limit: int | None = None) -> list[LedgerEntry]:
        """Rows of the ledger, optionally of one state, oldest update first."""
        sql = _SELECT
        params: list[Any] = []
        if state is not None:
            sql += " WHERE state = ?"
            params.append(state)
        sql += " ORDER BY updated_at, dedupe_key"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._lock:
            self._check_open()
            return [LedgerEntry(*row) for row in self._conn.execute(sql, params)]

    def unknown_keys(self, limit: int | None = 100) -> list[LedgerEntry]:
        """The keys whose fate is not known (yet): the credit sync verifies them; else a human looks."""
        return self.entries(UNKNOWN, limit=limit)

    # ------------------------------------------------------------------ remote copies

    def sync(self) -> None:
        """Upload a consistent copy of a remote ledger; a no-op for a local one (it is always current).

        The WAL is checkpointed into the main file while the lock is held, so the bytes uploaded are
        one consistent database; writers wait for the duration of the copy.
        """
        if self.remote is None:
            return
        with self._lock:
            self._check_open()
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            try:
                assert self._copy is not None  # set by open() for every remote ledger
                self._copy.upload()
            except Exception as exc:
                raise LedgerError(f"cannot upload the credit ledger to {self.location}: {exc}") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise LedgerError(f"the credit ledger {self.location} is closed")


def ledger_location(location: Any, partition: Partition | None) -> Any:
    """Where this partition's credit ledger lives, after :func:`check_layout` (before any request)."""
    check_layout(location, partition)
    return partition.path(location) if partition is not None else location
