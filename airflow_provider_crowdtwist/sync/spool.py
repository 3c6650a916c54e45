"""A temporary SQLite spool between reading and sending.

Why spool instead of sending while reading:

* duplicates resolve *last wins* without holding the source in memory: the spool keeps, per dedupe
  key, the latest row, and the earlier ones are reported as ``skipped`` -- so one member is never
  written twice in one run, whatever the source's order;
* the source is read exactly once (a SQL query is not re-run), and the total is known before sending
  starts, which makes progress and ETA meaningful;
* memory stays flat: payloads live on disk in a temp directory, removed on close.

The spool is used from one thread (the sync's calling thread); the sender's workers only get the
rows it yields.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from airflow_provider_crowdtwist.sync.paths import transaction


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
    """SQLite file in a private temp directory; a context manager that deletes it on exit."""

    def __init__(self, directory: str | None = None) -> None:
        self._dir = tempfile.mkdtemp(prefix="crowdtwist-spool-", dir=directory)
        self.path = os.path.join(self._dir, "spool.sqlite")
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("PRAGMA temp_store=MEMORY")
        self._db.execute(
            "CREATE TABLE rows (row_number INTEGER PRIMARY KEY, dedupe_key TEXT NOT NULL, "
            "identifier TEXT NOT NULL, payload TEXT NOT NULL)"
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
                "INSERT INTO rows (row_number, dedupe_key, identifier, payload) VALUES (?, ?, ?, ?)", batch
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
            yield SupersededRow(row_number, identifier, winner, payload)

    def survivors(self) -> Iterator[SpooledRow]:
        """The rows to send, in source order, read lazily from disk."""
        cursor = self._db.execute(
            "SELECT r.row_number, r.identifier, r.payload FROM latest l "
            "JOIN rows r ON r.row_number = l.row_number ORDER BY r.row_number"
        )
        for row_number, identifier, payload in cursor:
            yield SpooledRow(row_number, identifier, payload)

    def close(self) -> None:
        """Close and delete the spool."""
        try:
            self._db.close()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
