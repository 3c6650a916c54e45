"""Optional sync state: identifier -> hash of the last payload CrowdTwist accepted.

With ``state_path`` set, a row whose payload is byte-for-byte the one last sent successfully for the
same member is ``unchanged`` and not sent at all -- a nightly full export then costs requests only for
the members that changed. The trade-off (documented for users): a change made to a member directly in
CrowdTwist is not seen, so delete the state file to force a full resend.

The state file is SQLite. A local path is used in place; a path-like object with ``.open()``
(``ObjectStoragePath``) is copied to a temporary file at start and uploaded back on close.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterable
from typing import Any

from airflow_provider_crowdtwist.sync.paths import is_local
from airflow_provider_crowdtwist.sync.rejects import make_parent


def payload_hash(payload_json: str) -> str:
    """Stable hash of a payload's canonical JSON (the spool stores payloads with sorted keys)."""
    return hashlib.sha256(payload_json.encode("utf-8")).hexdigest()


class SyncState:
    """Identifier -> payload hash, in a SQLite file; used from one thread."""

    def __init__(self, target: Any, *, namespace: str = "") -> None:
        self.target = target
        self.namespace = namespace
        self._remote = not is_local(target)
        self._tmp_dir: str | None = None
        if self._remote:
            self._tmp_dir = tempfile.mkdtemp(prefix="crowdtwist-state-")
            self.path = os.path.join(self._tmp_dir, "state.sqlite")
            try:
                exists = target.exists()
            except Exception:  # a store that cannot tell: start empty
                exists = False
            if exists:
                with target.open("rb") as src, open(self.path, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        else:
            self.path = os.fspath(target)
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS member_state (key TEXT PRIMARY KEY, hash TEXT NOT NULL, "
            "updated_at INTEGER NOT NULL)"
        )
        self._pending: list[tuple[str, str, int]] = []

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

    def record_many(self, items: Iterable[tuple[str, str]]) -> None:
        """Remember several successful sends."""
        for key, payload_json in items:
            self.record(key, payload_json)

    def flush(self) -> None:
        """Write pending records."""
        if not self._pending:
            return
        self._db.execute("BEGIN")
        self._db.executemany(
            "INSERT INTO member_state (key, hash, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET hash = excluded.hash, updated_at = excluded.updated_at",
            self._pending,
        )
        self._db.execute("COMMIT")
        self._pending = []

    def close(self) -> None:
        """Flush, close, and upload a remote state file."""
        try:
            self.flush()
        finally:
            self._db.close()
        if self._remote and self._tmp_dir is not None:
            try:
                make_parent(self.target)
                with open(self.path, "rb") as src, self.target.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
            finally:
                shutil.rmtree(self._tmp_dir, ignore_errors=True)

    def __enter__(self) -> SyncState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
