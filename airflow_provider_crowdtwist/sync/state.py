"""Optional member state: identifier -> hash of the last payload CrowdTwist accepted.

With ``state_path`` set, a row whose payload is byte-for-byte the one last sent successfully for the
same member is ``unchanged`` and not sent at all -- a nightly full export then costs requests only for
the members that changed. The trade-off (documented for users): a change made to a member directly in
CrowdTwist is not seen, so delete the state file to force a full resend.

The state file is SQLite, reached through a :class:`~.paths.WorkingCopy` (a local path is used in
place; an object-storage path is downloaded at start and uploaded on close). A local state file is
locked like the credit ledger (:class:`~.paths.FileLock`, on the resolved real path): a second sync on
the same ``state_path`` fails at once instead of both overwriting each other's hashes.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from typing import Any

from airflow_provider_crowdtwist.sync.paths import FileInUseError, FileLock, WorkingCopy, transaction


class StateInUseError(FileInUseError):
    """Another running member sync holds this ``state_path``."""


def payload_hash(payload_json: str) -> str:
    """Stable hash of a payload's canonical JSON (the spool stores payloads with sorted keys)."""
    return hashlib.sha256(payload_json.encode("utf-8")).hexdigest()


class MemberState:
    """Identifier -> payload hash, in a SQLite file; used from one thread."""

    def __init__(self, target: Any, *, namespace: str = "") -> None:
        self.namespace = namespace
        self._copy = WorkingCopy(target, name="state.sqlite")
        self.path = self._copy.path
        self._lock: FileLock | None = None
        try:
            if not self._copy.is_remote:
                where = f"the member state {self._copy.location}"
                self._lock = FileLock(self.path, StateInUseError, what=where, shared="a state_path")
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS member_state (key TEXT PRIMARY KEY, hash TEXT NOT NULL, "
                "updated_at INTEGER NOT NULL)"
            )
        except BaseException:
            self._release()
            raise
        self._pending: list[tuple[str, str, int]] = []

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
        self._copy.close()

    def _key(self, key: str) -> str:
        return f"{self.namespace}:{key}" if self.namespace else key

    def get(self, key: str) -> str | None:
        """The hash last recorded for ``key``, or ``None``."""
        row = self._db.execute("SELECT hash FROM member_state WHERE key = ?", (self._key(key),)).fetchone()
        return row[0] if row else None

    def is_unchanged(self, key: str, payload_json: str) -> bool:
        """True when ``payload_json`` is what was last sent successfully for ``key``."""
        return self.get(key) == payload_hash(payload_json)

    def record(self, key: str, payload_json: str) -> None:
        """Remember a successful send (flushed in batches)."""
        self._pending.append((self._key(key), payload_hash(payload_json), int(time.time())))
        if len(self._pending) >= 1000:
            self.flush()

    def flush(self) -> None:
        """Write pending records."""
        if not self._pending:
            return
        with transaction(self._db):
            self._db.executemany(
                "INSERT INTO member_state (key, hash, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET hash = excluded.hash, updated_at = excluded.updated_at",
                self._pending,
            )
        self._pending = []

    def close(self) -> None:
        """Flush, close, upload a remote state file, release the lock."""
        try:
            try:
                self.flush()
            finally:
                self._db.close()
            self._copy.upload()
        finally:
            self._release()

    def __enter__(self) -> MemberState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
