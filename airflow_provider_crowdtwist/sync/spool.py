"""A temporary SQLite spool between reading and sending.

Why spool instead of sending while reading:

* duplicates resolve *last wins* without holding the source in memory: the spool keeps, per dedupe
  key, the latest row, and the earlier ones are reported as ``skipped`` -- so one member is never
  written twice in one run, whatever the source's order;
* the source is read exactly once (a SQL query is not re-run), and the total is known before sending
  starts, which makes progress and ETA meaningful;
* memory stays flat: payloads live on disk in a temp directory, removed on close.

Payloads carry passwords and tokens, and a killed task (SIGKILL, an OOM kill) never runs ``close``:
so nothing secret is ever on disk in clear. Every payload is encrypted (AES-GCM) with a key that
lives only in this process's memory; a spool left behind is unreadable ciphertext. Each spool
directory holds an ``owner.lock`` that its process keeps locked (``flock``) while it lives; the kernel
drops the lock when the process dies however it dies, so the next spool created in the same place
removes the directories whose lock it can take (:func:`remove_dead_spools`) -- never a live run's.

The spool is used from one thread (the sync's calling thread); the sender's workers only get the
rows it yields.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from airflow_provider_crowdtwist.sync.paths import fcntl, transaction

PREFIX = "crowdtwist-spool-"
OWNER_LOCK = "owner.lock"
_NONCE = 12


def _take_lock(path: str) -> IO[Any] | None:
    """An exclusive non-blocking ``flock`` on ``path`` (created if missing), or None if it is held."""
    handle = open(path, "a+")  # noqa: SIM115 - held open for the life of the lock
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def remove_dead_spools(directory: str | None = None) -> list[str]:
    """Remove the spool directories in ``directory`` (default: the temp dir) whose owner is gone.

    Only a directory whose ``owner.lock`` exists and can be locked is removed: its process died
    without cleaning up (the lock file is put in place already locked, so a spool being created right
    now is never taken for a dead one). Returns the removed paths.
    """
    if fcntl is None:  # pragma: no cover - Windows: no flock, nothing is removed
        return []
    removed = []
    for lock_path in glob.glob(os.path.join(directory or tempfile.gettempdir(), PREFIX + "*", OWNER_LOCK)):
        handle = _take_lock(lock_path)
        if handle is None:
            continue  # a live run owns it
        try:
            shutil.rmtree(os.path.dirname(lock_path), ignore_errors=True)
            removed.append(os.path.dirname(lock_path))
        finally:
            handle.close()
    return removed


@dataclass(frozen=True)
class SpooledRow:
    """A row waiting to be sent."""

    row_number: int
    identifier: str
    payload_json: str

    @property
    def payload(self) -> dict[str, Any]:
        """The payload, parsed."""
        return json.loads(self.payload_json)


@dataclass(frozen=True)
class SupersededRow:
    """A row replaced by a later row with the same identifier (reported as ``skipped``)."""

    row_number: int
    identifier: str
    winner_row_number: int
    payload_json: str


class Spool:
    """SQLite file of encrypted payloads in a private temp directory; a context manager that deletes
    it on exit. Creating one first removes the spools that dead runs left in the same directory."""

    def __init__(self, directory: str | None = None) -> None:
        self.removed_dead = remove_dead_spools(directory)
        self._dir = tempfile.mkdtemp(prefix=PREFIX, dir=directory)
        self._owner: IO[Any] | None = None
        if fcntl is not None:  # locked under a temporary name, then put in place: never seen unlocked
            self._owner = _take_lock(os.path.join(self._dir, OWNER_LOCK + ".new"))
            os.replace(os.path.join(self._dir, OWNER_LOCK + ".new"), os.path.join(self._dir, OWNER_LOCK))
        self._cipher = AESGCM(AESGCM.generate_key(bit_length=128))  # in memory only, never written
        self.path = os.path.join(self._dir, "spool.sqlite")
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("PRAGMA temp_store=MEMORY")
        self._db.execute(
            "CREATE TABLE rows (row_number INTEGER PRIMARY KEY, dedupe_key TEXT NOT NULL, "
            "identifier TEXT NOT NULL, payload BLOB NOT NULL)"
        )
        self._db.execute("CREATE TABLE latest (dedupe_key TEXT PRIMARY KEY, row_number INTEGER NOT NULL)")
        self.rows_added = 0

    def add_many(self, rows: Iterable[tuple[int, str, str, str]]) -> int:
        """Add ``(row_number, dedupe_key, identifier, payload_json)`` tuples in source order.

        Row numbers must increase across calls: "last wins" means the highest row number wins.
        """
        batch = list(rows)
        if not batch:
            return 0
        with transaction(self._db):
            self._db.executemany(
                "INSERT INTO rows (row_number, dedupe_key, identifier, payload) VALUES (?, ?, ?, ?)",
                [(n, key, identifier, self._seal(payload)) for n, key, identifier, payload in batch],
            )
            self._db.executemany(
                "INSERT INTO latest (dedupe_key, row_number) VALUES (?, ?) "
                "ON CONFLICT(dedupe_key) DO UPDATE SET row_number = MAX(row_number, excluded.row_number)",
                [(key, n) for n, key, _, _ in batch],
            )
        self.rows_added += len(batch)
        return len(batch)

    def count_survivors(self) -> int:
        """Rows that will be sent (one per dedupe key)."""
        return int(self._db.execute("SELECT COUNT(*) FROM latest").fetchone()[0])

    def superseded(self) -> Iterator[SupersededRow]:
        """Rows that lost to a later row with the same dedupe key, in source order."""
        cursor = self._db.execute(
            "SELECT r.row_number, r.identifier, l.row_number, r.payload FROM rows r "
            "JOIN latest l ON l.dedupe_key = r.dedupe_key WHERE r.row_number <> l.row_number "
            "ORDER BY r.row_number"
        )
        for row_number, identifier, winner, payload in cursor:
            yield SupersededRow(row_number, identifier, winner, self._open(payload))

    def survivors(self) -> Iterator[SpooledRow]:
        """The rows to send, in source order, read lazily from disk."""
        cursor = self._db.execute(
            "SELECT r.row_number, r.identifier, r.payload FROM latest l "
            "JOIN rows r ON r.row_number = l.row_number ORDER BY r.row_number"
        )
        for row_number, identifier, payload in cursor:
            yield SpooledRow(row_number, identifier, self._open(payload))

    def _seal(self, payload_json: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._cipher.encrypt(nonce, payload_json.encode("utf-8"), None)

    def _open(self, sealed: bytes) -> str:
        return self._cipher.decrypt(sealed[:_NONCE], sealed[_NONCE:], None).decode("utf-8")

    def close(self) -> None:
        """Close and delete the spool, then let go of its owner lock."""
        try:
            self._db.close()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
            if self._owner is not None:
                with contextlib.suppress(OSError):
                    self._owner.close()
                self._owner = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
