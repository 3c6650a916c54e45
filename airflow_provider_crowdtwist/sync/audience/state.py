"""The audience state (``state_path``): the audience as last synced, a set of member identifiers.

What it is for: an audience sync sends only the members whose membership changed (Segment Engage
sends a trait the same way). Entering and leaving are decided against this set, so a member who stays
costs no request, and a member who left can be sent the "out" value even though the source no longer
names it -- the state keeps each member's identifier as last sent.

Built for a million members and more, as the member state (:mod:`..state`) is: the 128-bit keys of
the members (:func:`..row_hash.member_keys`) live in two sorted ``int64`` arrays (16 bytes a member),
stored as ONE blob (the snapshot), so opening the state is one read and looking a chunk up is one
``searchsorted``; identifiers are read from the file only for the members who leave.

The file is SQLite::

    CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);  -- schema, id_type, attribute, values
    CREATE TABLE members (key INTEGER PRIMARY KEY, key2 INTEGER NOT NULL, identifier TEXT NOT NULL);
    CREATE TABLE snapshot (id INTEGER PRIMARY KEY, data BLOB NOT NULL);  -- the keys at the last close
    CREATE TABLE journal (seq INTEGER PRIMARY KEY, key INTEGER, key2 INTEGER, status INTEGER);
                                           -- 1 entered, -1 left, since the snapshot

A run journals each result in small transactions (every 1,000 results or 0.1 s): a killed run keeps
what CrowdTwist answered, and its rerun resends only what was in flight (setting a trait twice is
harmless). Close folds the journal into a new snapshot. The file holds identifiers and nothing secret.
A local state is locked (:class:`~..paths.FileLock`): a second sync on it fails at once.

The attribute and the values are part of the state: members were sent *this* attribute with *these*
values, so a state is refused for another attribute (or id_type, or values), naming the fix.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_crowdtwist.sync.lazy import LazyModule
from airflow_provider_crowdtwist.sync.paths import (
    BatchedWrites,
    FileInUseError,
    FileLock,
    WorkingCopy,
    transaction,
)

if TYPE_CHECKING:
    import numpy as np
else:  # imported on first use: parsing a DAG must not pay for numpy (see sync/lazy.py)
    np = LazyModule("numpy", globals(), "np")

SCHEMA_VERSION = "1"
ENTERED = 1
LEFT = -1
FLUSH_ROWS = 1000
FLUSH_SECONDS = 0.1
_LOOKUP_BATCH = 500
#: One member of the snapshot blob (little-endian, 16 bytes); a plain list: no numpy at import time.
_KEYS_DTYPE = [("key", "<i8"), ("key2", "<i8")]
_JOURNAL_DTYPE = [("key", "<i8"), ("key2", "<i8"), ("status", "i1")]
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS members (key INTEGER PRIMARY KEY, key2 INTEGER NOT NULL, "
    "identifier TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS snapshot (id INTEGER PRIMARY KEY CHECK (id = 1), data BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY, key INTEGER NOT NULL, "
    "key2 INTEGER NOT NULL, status INTEGER NOT NULL)",
)
_JOURNAL = "INSERT INTO journal (key, key2, status) VALUES (?, ?, ?)"
_ENTER = (
    "INSERT INTO members (key, key2, identifier) VALUES (?, ?, ?) "
    "ON CONFLICT(key) DO UPDATE SET key2 = excluded.key2, identifier = excluded.identifier"
)
_LEAVE = "DELETE FROM members WHERE key = ?"


class AudienceStateInUseError(FileInUseError):
    """Another running audience sync holds this ``state_path``."""


class AudienceStateError(ValueError):
    """The state file belongs to another audience (attribute, values, id_type) or schema; names the fix."""


class AudienceState:
    """The audience as last synced; used from the sync's calling thread only.

    ``identity`` is what the members were sent (``id_type``, ``attribute``, ``values``): a state is
    only ever used for the same. ``read_only=True`` (a dry run) never writes, locks or creates the file.
    """

    def __init__(self, target: Any, *, identity: dict[str, Any], read_only: bool = False) -> None:
        self.read_only = read_only
        self.identity = {k: _plain(v) for k, v in identity.items()}
        self._copy = WorkingCopy(target, name="audience.sqlite")
        self.location = self._copy.location
        self._lock: FileLock | None = None
        self._writes = BatchedWrites((_JOURNAL, _ENTER, _LEAVE), rows=FLUSH_ROWS, seconds=FLUSH_SECONDS)
        self._journaled = False
        try:
            if read_only:
                self._db = _read_into_memory(self._copy.path)
            else:
                if not self._copy.is_remote:
                    where = f"the audience state {self.location}"
                    self._lock = FileLock(
                        self._copy.path, AudienceStateInUseError, what=where, shared="a state_path"
                    )
                self._db = sqlite3.connect(self._copy.path, isolation_level=None)
                self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._open_schema()
            self._load()
        except BaseException:
            db = getattr(self, "_db", None)
            if db is not None:
                db.close()  # an open connection would keep the file locked for the next run
            self._release()
            raise

    def _open_schema(self) -> None:
        db = self._db
        with transaction(db, immediate=True):
            for statement in _SCHEMA:
                db.execute(statement)
            meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
            version = meta.get("schema_version", SCHEMA_VERSION)
            if version != SCHEMA_VERSION:
                raise AudienceStateError(
                    f"the audience state {self.location} has schema {version!r}, this provider writes "
                    f"{SCHEMA_VERSION!r}; upgrade the provider or use a new state_path"
                )
            stored = json.loads(meta["identity"]) if "identity" in meta else None
            if stored is not None and _json(stored) != _json(self.identity):
                # compared as JSON: True and 1 are equal in Python, not to CrowdTwist
                keys = sorted(set(stored) | set(self.identity))
                differ = [k for k in keys if _json(stored.get(k)) != _json(self.identity.get(k))]
                was = ", ".join(f"{k}={stored.get(k)!r}" for k in differ)
                now = ", ".join(f"{k}={self.identity.get(k)!r}" for k in differ)
                raise AudienceStateError(
                    f"the audience state {self.location} was written for {was}, this sync uses {now}; "
                    "give each audience its own state_path (a new one sends every member once)"
                )
            db.executemany(
                "INSERT INTO meta (name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                [("schema_version", SCHEMA_VERSION), ("identity", json.dumps(self.identity, sort_keys=True))],
            )

    def _load(self) -> None:
        row = self._db.execute("SELECT data FROM snapshot WHERE id = 1").fetchone()
        keys = np.frombuffer(row[0], dtype=_KEYS_DTYPE) if row else np.zeros(0, dtype=_KEYS_DTYPE)
        journal = np.fromiter(
            self._db.execute("SELECT key, key2, status FROM journal ORDER BY seq"), dtype=_JOURNAL_DTYPE
        )
        self._journaled = len(journal) > 0  # a killed run's results: folded at close
        keys = _replay(keys, journal)
        self._keys = np.ascontiguousarray(keys["key"], dtype=np.int64)
        self._keys2 = np.ascontiguousarray(keys["key2"], dtype=np.int64)
        #: Which members this run's source named (set by :meth:`mark_seen`).
        self.seen = np.zeros(len(self._keys), dtype=bool)

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self._keys)

    def lookup(self, k1: np.ndarray, k2: np.ndarray) -> np.ndarray:
        """Position of each key in the state, ``-1`` for a member not in the audience as last synced."""
        if len(self._keys) == 0:
            return np.full(len(k1), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._keys, k1), len(self._keys) - 1)
        found = (self._keys[pos] == k1) & (self._keys2[pos] == k2)
        return np.where(found, pos, -1).astype(np.int64)

    def mark_seen(self, positions: np.ndarray) -> None:
        self.seen[positions[positions >= 0]] = True

    def unseen(self) -> np.ndarray:
        """Positions of the members the source no longer names (call after a complete read)."""
        return np.flatnonzero(~self.seen)

    def members_at(self, positions: Sequence[int] | np.ndarray) -> Iterator[tuple[int, int, str]]:
        """``(key, key2, identifier)`` of the members at ``positions``, in key order."""
        positions = np.sort(np.asarray(positions, dtype=np.int64))
        for start in range(0, len(positions), _LOOKUP_BATCH):
            batch = positions[start : start + _LOOKUP_BATCH]
            keys = self._keys[batch].tolist()
            marks = ",".join("?" * len(keys))
            found = dict(
                self._db.execute(f"SELECT key, identifier FROM members WHERE key IN ({marks})", keys)
            )
            for pos, key in zip(batch.tolist(), keys, strict=True):
                if key in found:
                    yield key, int(self._keys2[pos]), found[key]

    # ------------------------------------------------------------------ writing

    def record_entered(self, key: int, key2: int, identifier: str) -> None:
        """CrowdTwist holds the "in" value for this member: it is in the audience as synced."""
        self._queue((_JOURNAL, (key, key2, ENTERED)), (_ENTER, (key, key2, identifier)))

    def record_left(self, key: int, key2: int) -> None:
        """The member no longer belongs to the synced audience (sent "out", or gone from CrowdTwist)."""
        self._queue((_JOURNAL, (key, key2, LEFT)), (_LEAVE, (key,)))

    def _queue(self, *writes: tuple[str, tuple[Any, ...]]) -> None:
        if self.read_only:
            raise RuntimeError("a read-only audience state (dry run) is never written")
        if self._writes.add(*writes):
            self.flush()

    def flush(self) -> None:
        """Commit the queued results in one transaction (``paths.BatchedWrites``)."""
        if self._writes.flush(self._db):
            self._journaled = True

    def _fold(self) -> None:
        db = self._db
        with transaction(db):
            old = db.execute("SELECT data FROM snapshot WHERE id = 1").fetchone()
            base = np.frombuffer(old[0], dtype=_KEYS_DTYPE) if old else np.zeros(0, dtype=_KEYS_DTYPE)
            journal = np.fromiter(
                db.execute("SELECT key, key2, status FROM journal ORDER BY seq"), dtype=_JOURNAL_DTYPE
            )
            keys = _replay(base, journal)
            db.execute("INSERT OR REPLACE INTO snapshot (id, data) VALUES (1, ?)", (keys,))
            del keys, base, old
            db.execute("DELETE FROM journal")
        db.executescript("PRAGMA incremental_vacuum")

    def close(self) -> None:
        """Fold the journal, write the file back whole when remote, release the lock."""
        try:
            try:
                if not self.read_only:
                    self.flush()
                    if self._journaled:
                        self._fold()
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    self._db.execute("PRAGMA journal_mode=DELETE")
            finally:
                self._db.close()
            if not self.read_only:
                self._copy.upload()
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self._copy.close()

    def __enter__(self) -> AudienceState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _plain(value: Any) -> Any:
    """JSON-comparable form of an identity value (a tuple of values becomes a list)."""
    return list(value) if isinstance(value, tuple) else value


def _replay(keys: np.ndarray, journal: np.ndarray) -> np.ndarray:
    """``keys`` (sorted) with ``journal`` applied: the last entry per key wins; sorted by key.

    Scratch memory: one copy of the keys plus the journal's (a run's churn, not the audience).
    """
    if len(journal) == 0:
        return keys
    _, last = np.unique(journal["key"][::-1], return_index=True)
    latest = journal[::-1][last]  # one entry per key, the most recent, sorted by key
    entered = np.empty(int(np.count_nonzero(latest["status"] == ENTERED)), dtype=_KEYS_DTYPE)
    inside = latest[latest["status"] == ENTERED]
    entered["key"], entered["key2"] = inside["key"], inside["key2"]
    if len(keys) == 0:
        return entered
    kept = keys[~np.isin(keys["key"], latest["key"], assume_unique=True)]
    return np.insert(kept, np.searchsorted(kept["key"], entered["key"]), entered)


def _read_into_memory(path: str) -> sqlite3.Connection:
    """The state at ``path`` copied into memory (empty when there is no file): a dry run touches nothing."""
    memory = sqlite3.connect(":memory:", isolation_level=None)
    try:
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.OperationalError:
        return memory
    try:
        source.backup(memory)
    finally:
        source.close()
    return memory
