"""The line spool: receipt lines on disk until the source is read, then back grouped by id.

A receipt's lines may be anywhere in the source (a warehouse query sorted by time, a file appended to
all day), and a document can be sent only once all its lines are known. Holding the source in memory
would not scale; so lines go to an SQLite file in a private temp directory, and after the last chunk an
index on ``(phase, key, row)`` is built on disk and read in order: one document at a time is in
memory, whatever the source's size. Lines carry member e-mails and phone numbers, so they are sealed
like the member spool's payloads (AES-GCM, the key only in this process's memory) and the directory
is locked and removed the same way (a dead run's spool is removed by the next one).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any

from airflow_provider_crowdtwist.sync.members.spool import OWNER_LOCK, PREFIX, _take_lock, remove_dead_spools
from airflow_provider_crowdtwist.sync.purchases.mapping import Line

_NONCE = 12
_BATCH = 2_000


class LineSpool:
    """Lines in, ``(key, phase, lines)`` groups out; a context manager that deletes its files."""

    def __init__(self, directory: str | None = None) -> None:
        remove_dead_spools(directory)
        self._dir = tempfile.mkdtemp(prefix=PREFIX, dir=directory)
        self._owner: IO[Any] | None = _take_lock(os.path.join(self._dir, OWNER_LOCK + ".new"))
        if self._owner is not None:  # locked under a temporary name, then put in place
            os.replace(os.path.join(self._dir, OWNER_LOCK + ".new"), os.path.join(self._dir, OWNER_LOCK))
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # on first use, not at DAG parse

        self._cipher = AESGCM(AESGCM.generate_key(bit_length=128))
        self.path = os.path.join(self._dir, "lines.sqlite")
        self._db = sqlite3.connect(self.path, isolation_level=None)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "temp_store=FILE", "cache_size=-16000"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute(
            "CREATE TABLE lines (phase INTEGER NOT NULL, key TEXT NOT NULL, row INTEGER NOT NULL, "
            "line BLOB NOT NULL)"
        )
        self._pending: list[tuple[int, str, int, bytes]] = []
        self.lines = 0

    def add(self, line: Line) -> None:
        data = json.dumps([line.header, line.item, line.problem], separators=(",", ":"))
        self._pending.append((line.phase, line.key, line.row_number, self._seal(data)))
        self.lines += 1
        if len(self._pending) >= _BATCH:
            self.flush()

    def add_many(self, lines: Iterable[Line]) -> None:
        for line in lines:
            self.add(line)

    def flush(self) -> None:
        if not self._pending:
            return
        self._db.execute("BEGIN")
        self._db.executemany("INSERT INTO lines VALUES (?, ?, ?, ?)", self._pending)
        self._db.execute("COMMIT")
        self._pending = []

    def documents(self, phase: int) -> Iterator[tuple[str, list[Line]]]:
        """``(key, lines in source order)`` of one phase, by key; one group in memory at a time."""
        self.flush()
        self._db.execute("CREATE INDEX IF NOT EXISTS by_key ON lines (phase, key, row)")
        cursor = self._db.execute(
            "SELECT key, row, line FROM lines WHERE phase = ? ORDER BY phase, key, row", (phase,)
        )
        key: str | None = None
        group: list[Line] = []
        for row_key, row_number, sealed in cursor:
            if row_key != key:
                if key is not None:
                    yield key, group
                key, group = row_key, []
            header, item, problem = json.loads(self._open(sealed))
            group.append(Line(row_key, phase, row_number, header, item, problem))
        if key is not None:
            yield key, group

    def count_documents(self) -> int:
        self.flush()
        row = self._db.execute("SELECT COUNT(*) FROM (SELECT DISTINCT phase, key FROM lines)").fetchone()
        return int(row[0])

    def _seal(self, text: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._cipher.encrypt(nonce, text.encode("utf-8"), None)

    def _open(self, sealed: bytes) -> str:
        return str(self._cipher.decrypt(sealed[:_NONCE], sealed[_NONCE:], None).decode("utf-8"))

    def close(self) -> None:
        try:
            self._db.close()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
            if self._owner is not None:
                with contextlib.suppress(OSError):
                    self._owner.close()
                self._owner = None

    def __enter__(self) -> LineSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
