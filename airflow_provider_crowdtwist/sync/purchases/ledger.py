"""The POS ledger (``ledger_path``): which receipts, returns and voids CrowdTwist has, across runs.

Exactly-once does not depend on it: CrowdTwist refuses a repeated ``receipt_id``/``return_id`` (or
replays its first answer, OPEN 1), and the sync reads that answer as proof. The ledger makes a rerun
over a wide window cost nothing: a document it holds as ``recorded`` (or ``voided``) is counted
``skipped`` without a request. It also remembers ``unknown`` documents (every resend in a run was
ambiguous): the next run resends them knowing that a "not unique" answer then proves they landed.

Unlike the credit ledger no intent is written before a request: resending a document is safe, so a
run killed mid-request loses nothing -- the next run resends and reads CrowdTwist's answer.

The file is SQLite in WAL mode, locked against a second run (``FileLock``), and may live in object
storage (a ``WorkingCopy``, uploaded after each wave and on close), like the credit ledger::

    CREATE TABLE documents (kind TEXT, key TEXT, state TEXT, run_id TEXT, updated_at TEXT,
                            message TEXT, PRIMARY KEY (kind, key));
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import sqlite3
import threading
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from airflow_provider_crowdtwist.sync.paths import FileInUseError, FileLock, WorkingCopy, is_local

RECORDED, VOIDED, UNKNOWN = "recorded", "voided", "unknown"
#: States that mean CrowdTwist has the document: a rerun sends nothing for it.
DONE_STATES = frozenset({RECORDED, VOIDED})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    kind TEXT NOT NULL, key TEXT NOT NULL, state TEXT NOT NULL, run_id TEXT,
    updated_at TEXT NOT NULL, message TEXT, PRIMARY KEY (kind, key)
) WITHOUT ROWID;
"""
_log = logging.getLogger(__name__)


class PosLedgerError(RuntimeError):
    """The ledger cannot be opened, read or uploaded."""


class PosLedgerInUseError(PosLedgerError, FileInUseError):
    """Another running sync holds this ledger."""


class PosLedger:
    """A SQLite file of documents CrowdTwist has (or may have); one connection, guarded by a lock."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        run_id: str | None = None,
        location: str | None = None,
        copy: WorkingCopy | None = None,
    ) -> None:
        self.path = pathlib.Path(path)
        self.location = location or str(path)
        self.run_id = run_id
        self._copy = copy
        self._lock = threading.RLock()
        self._file_lock: FileLock | None = None
        if copy is None:
            self._file_lock = FileLock(
                self.path, PosLedgerInUseError, what=f"the POS ledger {self.path}", shared="a ledger"
            )
        try:
            self._db = sqlite3.connect(
                str(self.path), check_same_thread=False, isolation_level=None, timeout=30
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._release()
            raise PosLedgerError(f"cannot open the POS ledger {self.location}: {exc}") from None
        self._closed = False

    @classmethod
    def open(
        cls,
        location: Any,
        *,
        run_id: str | None = None,
        log: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> PosLedger:
        """A local file, or an object-storage path (anything with ``.open()``) through a working copy."""
        if is_local(location):
            path = pathlib.Path(os.fspath(location)).expanduser()
            if path.is_dir():
                raise PosLedgerError(
                    f"ledger_path {path} is a directory; give a file name such as receipts.sqlite"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            return cls(path, run_id=run_id)
        if isinstance(location, str) or not hasattr(location, "open"):
            raise PosLedgerError(
                f"ledger_path {location!r} is a URL; pass a path object with .open() "
                "(the operator does this with ObjectStoragePath)"
            )
        copy = WorkingCopy(location, name="pos-ledger.sqlite")
        try:
            (log or _log).info(
                "POS ledger %s %s",
                location,
                "downloaded" if copy.downloaded else "does not exist yet; starting one",
            )
            return cls(copy.path, run_id=run_id, location=copy.location, copy=copy)
        except Exception:
            copy.close()
            raise

    def states(self, kind: str, keys: Iterable[str]) -> dict[str, str]:
        """The known state of each of ``keys`` (missing: never recorded by a run with this ledger)."""
        wanted = list(keys)
        out: dict[str, str] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):
                part = wanted[start : start + 500]
                marks = ",".join("?" * len(part))
                rows = self._db.execute(
                    f"SELECT key, state FROM documents WHERE kind = ? AND key IN ({marks})", (kind, *part)
                )
                out.update({key: state for key, state in rows})
        return out

    def record(self, kind: str, key: str, state: str, message: str | None = None) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._lock:
            self._db.execute(
                "INSERT INTO documents (kind, key, state, run_id, updated_at, message) "
                "VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (kind, key) DO UPDATE SET state = excluded.state, run_id = excluded.run_id, "
                "updated_at = excluded.updated_at, message = excluded.message",
                (kind, key, state, self.run_id, now, message),
            )

    def forget(self, kind: str, key: str) -> None:
        """Drop a key whose document is certainly not in CrowdTwist (refused, or certainly not sent)."""
        with self._lock:
            self._db.execute("DELETE FROM documents WHERE kind = ? AND key = ?", (kind, key))

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT kind || ':' || state, COUNT(*) FROM documents GROUP BY 1")
            return {name: int(n) for name, n in rows}

    def sync(self) -> None:
        """Upload an object-storage ledger (a consistent copy); a local file is always current."""
        if self._copy is None:
            return
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            try:
                self._copy.upload()
            except Exception as exc:
                raise PosLedgerError(f"cannot upload the POS ledger to {self.location}: {exc}") from None

    def close(self) -> None:
        """Upload a last time, close, release the lock; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.sync()
        finally:
            with self._lock:
                self._db.close()
            self._release()

    def _release(self) -> None:
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None
        if self._copy is not None:
            with contextlib.suppress(Exception):
                self._copy.close()

    def __enter__(self) -> PosLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
