"""The member state (``state_path``): which members earlier runs synced, and what their rows said.

What it is for:

* **unchanged rows cost nothing**: a row whose fingerprint (:mod:`.row_hash`) equals the one recorded
  when CrowdTwist last accepted the member is ``unchanged`` and is not mapped, validated or sent;
* **members who left the source**: the state knows every member earlier successful syncs wrote, so the
  members a complete read of the source did not mention can be deactivated or deleted (``on_removed``);
* **one request a row**: a member the state has never seen is created first, a known one updated.

Built for a million members (``benchmarks/member_state_scale.py``): the keys, fingerprints and
statuses live in four sorted numpy arrays (25 bytes a member), stored as ONE blob (the snapshot) so
that opening a state of a million members is one read, not a million rows through Python; looking up
a 10,000-row chunk is one vectorised ``searchsorted``; identifiers are read from the file only for
the members about to be removed.

The file is SQLite (inspect it with ``sqlite3 STATE "select count(*) from members"``)::

    CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);  -- schema, id_type, salt, key check
    CREATE TABLE members (                 -- who: what a removal is sent for
        key         INTEGER PRIMARY KEY,   -- first 64 bits of the member's key (row_hash.member_keys)
        identifier  TEXT NOT NULL          -- as last sent
    );
    CREATE TABLE snapshot (id INTEGER PRIMARY KEY, data BLOB NOT NULL);  -- the arrays at the last close
    CREATE TABLE journal (                 -- every result recorded since the snapshot
        seq INTEGER PRIMARY KEY, key INTEGER, key2 INTEGER, fingerprint INTEGER,
        status INTEGER                     -- 0 active, 1 deactivated by this sync, -1 forgotten (deleted)
    );

The state is the snapshot with the journal replayed over it. A run appends its results to the
journal; its close folds the journal into a new snapshot, in one transaction.

Durability: WAL with ``synchronous=NORMAL``; results are committed in small transactions (every 1,000
results or 0.1 s, whichever comes first). A killed run keeps every committed result (the bytes are in
the OS page cache, which outlives the process), so a rerun resends the rows that were in flight plus
at most the answers of the last 0.1 s; a transaction is atomic, so the file is always the old or the
new state of each member, never a torn one. At close the WAL is folded back, leaving one file.
Object storage is read and written whole (:class:`~.paths.WorkingCopy`): the upload on close
replaces the object at once, but a run killed before it resends what it sent.

No secret in the file: fingerprints are keyed with ``secret`` (the operator passes the connection's API
key or HMAC private key) combined with a random per-state salt; the file holds the salt and a short
check value of the derived key, never the key. A new secret (a rotated API key) is noticed through the
check value: every row is then sent once and re-recorded under the new key. Old states (one unsalted
SHA-256 of the whole payload per member, password included) are converted on first open and the
old hashes are erased (``VACUUM``).

A local state file is locked like the credit ledger (:class:`~.paths.FileLock`, on the file itself and
on its resolved real path): a second sync on the same file -- by the same path, a symlink, a hard
link or another spelling -- fails at once.

A state file that exists but lost its content (empty, truncated, corrupt, no tables) is refused before
the first request (:class:`StateBrokenError`, naming the file and the way out), never taken for a new
state; a new state is created whole, so a first run's kill never leaves an empty file behind
(:mod:`.file_guard`). ``full_refresh`` (``rebuild_broken``) sets a broken state aside and starts anew.
"""

from __future__ import annotations

import contextlib
import os
import secrets as _secrets
import sqlite3
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from airflow_provider_crowdtwist.sync.file_guard import (
    BrokenFileError,
    GuardedFile,
    inspect_file,
    is_corruption,
    missing_problem,
    quick_check,
)
from airflow_provider_crowdtwist.sync.lazy import LazyModule
from airflow_provider_crowdtwist.sync.members.row_hash import derive_key, member_keys
from airflow_provider_crowdtwist.sync.paths import BatchedWrites, FileInUseError, WorkingCopy, transaction

if TYPE_CHECKING:
    import numpy as np
else:  # imported on first use: parsing a DAG must not pay for numpy/pandas (see sync/lazy.py)
    np = LazyModule("numpy", globals(), "np")


SCHEMA_VERSION = "2"
ACTIVE = 0
DEACTIVATED = 1

FORGOTTEN = -1

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS members (key INTEGER PRIMARY KEY, identifier TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS snapshot (id INTEGER PRIMARY KEY CHECK (id = 1), data BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY, key INTEGER NOT NULL, "
    "key2 INTEGER NOT NULL, fingerprint INTEGER NOT NULL, status INTEGER NOT NULL)",
)
#: One member in the snapshot blob (little-endian, packed: 25 bytes).
#: A record spec numpy reads as a structured dtype (a plain list: no numpy at import time).
_ARRAY_DTYPE = [("key", "<i8"), ("key2", "<i8"), ("fingerprint", "<i8"), ("status", "i1")]
_LOOKUP_BATCH = 500
#: Results are committed in small transactions: after this many, or this long after the first one.
#: A killed run thus resends the rows in flight plus the answers of the last 0.1 s (about 17 rows at
#: the 10,000/min cap; never more than 1,000).
FLUSH_ROWS = 1000
FLUSH_SECONDS = 0.1

_JOURNAL = "INSERT INTO journal (key, key2, fingerprint, status) VALUES (?, ?, ?, ?)"
_WHO = (
    "INSERT INTO members (key, identifier) VALUES (?, ?) "
    "ON CONFLICT(key) DO UPDATE SET identifier = excluded.identifier"
)
_FORGET = "DELETE FROM members WHERE key = ?"


class StateInUseError(FileInUseError):
    """Another running member sync holds this ``state_path``."""


class StateError(ValueError):
    """The state file cannot serve this sync (another ``id_type``, a newer schema); names the fix."""


class StateBrokenError(BrokenFileError, StateError):
    """The state file exists but lost its content (empty, truncated, corrupt): refused, not taken as new.

    Taking it for a new state would send every member again and forget who left the source. The
    message names the file, what is wrong and the two ways out: restore it, or ``full_refresh``.
    """


class _Broken(Exception):
    """Raised inside :class:`MemberState` while reading a file whose content is not a sound state."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def broken_message(location: str, reason: str) -> str:
    """The refusal of a broken state: the file, what is wrong, why it is not taken as new, the way out."""
    return (
        f"the member state {location} {reason}. A state that lost its content is not taken for a new one "
        "(that would send every member again and forget who left the source): nothing was sent. Restore "
        "the file from a backup, or run once with full_refresh=True: the broken file is kept beside it as "
        f"{location}.broken-<UTC time> and a new state is built from this run (every row is sent once; "
        "members who left the source before this run are not removed)"
    )


def _init_state(db: sqlite3.Connection) -> None:
    """The schema of a new state file, written before the file is put in place (file_guard)."""
    db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # before the first table: a folded journal's space goes back
    for statement in _SCHEMA:
        db.execute(statement)
    db.execute("INSERT INTO meta (name, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
    db.commit()


class MemberState:
    """The member state of one sync; used from the sync's calling thread only.

    ``read_only=True`` (a dry run) reads the state into memory and never writes, locks or creates
    the file. ``secret`` keys the fingerprints (see the module docstring).
    """

    def __init__(
        self,
        target: Any,
        *,
        id_type: str,
        secret: bytes,
        read_only: bool = False,
        rebuild_broken: bool = False,
    ) -> None:
        """Open (or create) the state; refuse one that lost its content (:class:`StateBrokenError`).

        ``rebuild_broken`` (the sync's ``full_refresh``) sets a broken state aside and starts a new
        one instead; ``broken`` then says what was wrong and ``set_aside`` where the old file went
        (None in a dry run, which touches nothing, or when it could not be kept).
        """
        self.read_only = read_only
        self.id_type = id_type
        self.key_changed = False
        self.broken: str | None = None
        self.set_aside: str | None = None
        self._journaled = False
        self._copy = WorkingCopy(target, name="state.sqlite")
        self.location = self._copy.location
        self._guard: GuardedFile | None = None
        self._db_open = False  # self._db is set by _connect
        self._writes = BatchedWrites((_JOURNAL, _WHO, _FORGET), rows=FLUSH_ROWS, seconds=FLUSH_SECONDS)
        try:
            self._open(secret, rebuild_broken)
        except BaseException:
            self._release()
            raise

    # ------------------------------------------------------------------ opening

    def _open(self, secret: bytes, rebuild_broken: bool) -> None:
        """Claim and check the file, then read it; a broken file is refused or, if asked, replaced."""
        fresh = False  # no file yet (a first run): nothing to check
        if not self.read_only:
            where = f"the member state {self.location}"
            lock = None if self._copy.is_remote else (StateInUseError, where, "a state_path")
            self._guard = GuardedFile(self._copy.path, _init_state, lock=lock)
            problem, fresh = self._guard.problem, self._guard.created
        elif os.path.exists(self._copy.path):
            problem = inspect_file(self._copy.path)
        else:
            problem = missing_problem(self._copy.path, os.path.realpath(self._copy.path))
            fresh = problem is None
        if problem is None:
            try:
                self._connect(empty=fresh)
                problem = None if fresh else self._check_content()
                if problem is None:
                    self._start_writing()
                    self._open_schema(secret)
                    self._load_arrays()
                    return
            except _Broken as exc:
                problem = exc.reason
            except sqlite3.DatabaseError as exc:
                if not is_corruption(exc):
                    raise StateError(f"cannot open the member state {self.location}: {exc}") from exc
                problem = f"is corrupt (SQLite: {exc})"
            self._close_db()
        if not rebuild_broken:
            raise StateBrokenError(broken_message(self.location, problem), path=self.location, reason=problem)
        self.broken = problem
        if self._guard is not None:  # a dry run touches nothing: it reads an empty state
            kept = self._copy.keep_aside() if self._copy.is_remote else None
            aside = self._guard.replace()
            self.set_aside = kept if self._copy.is_remote else aside
        self._connect(empty=self.read_only)
        self._start_writing()
        self._open_schema(secret)
        self._load_arrays()

    def _connect(self, *, empty: bool = False) -> None:
        if self.read_only:
            memory = sqlite3.connect(":memory:", isolation_level=None)
            self._db = memory if empty else _read_into_memory(self._copy.path, memory)
            self._db_open = True
            return
        self._db = sqlite3.connect(self._copy.path, isolation_level=None)
        self._db_open = True

    def _start_writing(self) -> None:
        """WAL from here on: after the checks, so that a refused file is left exactly as it was."""
        if not self.read_only:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")

    def _check_content(self) -> str | None:
        """What is wrong with the opened file's pages and tables, or None (a foreign file is refused)."""
        db = self._db
        problem = quick_check(db)
        if problem is not None:
            return problem
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return "holds no tables"
        if "member_state" in tables:
            return None  # a schema-1 state: converted by _open_schema
        if "meta" not in tables:
            raise StateError(
                f"{self.location} is not a member state (it holds the tables {', '.join(sorted(tables))}); "
                "give state_path a file of its own"
            )
        meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
        if "schema_version" not in meta:
            return "has no schema version in its meta table"
        has_members = "members" in tables and db.execute("SELECT 1 FROM members LIMIT 1").fetchone()
        if "salt" not in meta and has_members:
            return "has members but no salt in its meta table (its fingerprints cannot be checked)"
        return None

    def _close_db(self) -> None:
        if self._db_open:
            self._db_open = False
            with contextlib.suppress(sqlite3.Error):
                self._db.close()

    def _open_schema(self, secret: bytes) -> None:
        db = self._db
        with transaction(db, immediate=True):
            for statement in _SCHEMA:
                db.execute(statement)
            meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
            version = meta.get("schema_version", SCHEMA_VERSION)
            if version != SCHEMA_VERSION:
                raise StateError(
                    f"the member state {self.location} has schema {version!r}, this provider writes "
                    f"{SCHEMA_VERSION!r}; upgrade the provider or use a new state_path"
                )
            stored_id_type = meta.get("id_type")
            if stored_id_type is not None and stored_id_type != self.id_type:
                raise StateError(
                    f"the member state {self.location} was written for id_type {stored_id_type!r}, this sync "
                    f"uses {self.id_type!r}; give each id_type its own state_path"
                )
            salt = meta.get("salt") or _secrets.token_hex(16)
            self.fingerprint_key = derive_key(secret, "member-state fingerprint " + salt)
            check = derive_key(self.fingerprint_key, "check").hex()[:16]
            self.key_changed = meta.get("key_check", check) != check
            migrated = self._migrate_v1(db)
            db.executemany(
                "INSERT INTO meta (name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                [
                    ("schema_version", SCHEMA_VERSION),
                    ("id_type", self.id_type),
                    ("salt", salt),
                    ("key_check", check),
                ],
            )
        if migrated and not self.read_only:
            db.execute("VACUUM")  # the old unsalted hashes must not linger in free pages

    def _migrate_v1(self, db: sqlite3.Connection) -> bool:
        """Convert a schema-1 state (``member_state``: ``id_type:key`` -> SHA-256 of the payload).

        Its members become known (a create is not tried first; a removal can find them) with no
        fingerprint, so each is sent once; the old hashes are dropped.
        """
        exists = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'member_state'"
        ).fetchone()
        if not exists:
            return False
        prefix = f"{self.id_type}:"
        keys = [
            k[len(prefix) :] if k.startswith(prefix) else k
            for (k,) in db.execute("SELECT key FROM member_state")
        ]
        for start in range(0, len(keys), 10_000):
            batch = keys[start : start + 10_000]
            k1, k2 = member_keys(batch)
            db.executemany(_WHO, zip(k1.tolist(), batch, strict=True))
            db.executemany(
                _JOURNAL, ((a, b, 0, ACTIVE) for a, b in zip(k1.tolist(), k2.tolist(), strict=True))
            )
        db.execute("DROP TABLE member_state")
        return True

    def _load_arrays(self) -> None:
        db = self._db
        row = db.execute("SELECT data FROM snapshot WHERE id = 1").fetchone()
        members = _snapshot(row[0]) if row else np.zeros(0, dtype=_ARRAY_DTYPE)
        journal = db.execute("SELECT key, key2, fingerprint, status FROM journal ORDER BY seq")
        try:
            entries = np.fromiter(journal, dtype=_ARRAY_DTYPE)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _Broken(f"is corrupt: its journal holds an entry that is not a member's ({exc})") from None
        members = _replay(members, entries)
        self._journaled = len(entries) > 0  # a killed run's (or a converted file's): folded at close
        self._keys = np.ascontiguousarray(members["key"], dtype=np.int64)
        self._keys2 = np.ascontiguousarray(members["key2"], dtype=np.int64)
        self.fingerprints = np.ascontiguousarray(members["fingerprint"], dtype=np.int64)
        self.statuses = np.ascontiguousarray(members["status"], dtype=np.int8)
        #: Which members this run's source mentioned (set by :meth:`mark_seen`).
        self.seen = np.zeros(len(members), dtype=bool)

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self._keys)

    def lookup(self, k1: np.ndarray, k2: np.ndarray) -> np.ndarray:
        """Position of each key in the state's arrays, ``-1`` for a member the state does not know."""
        if len(self._keys) == 0:
            return np.full(len(k1), -1, dtype=np.int64)
        pos = np.searchsorted(self._keys, k1)
        pos = np.minimum(pos, len(self._keys) - 1)
        found = (self._keys[pos] == k1) & (self._keys2[pos] == k2)
        return np.where(found, pos, -1).astype(np.int64)

    def mark_seen(self, positions: np.ndarray) -> None:
        """Remember that the source mentioned the members at ``positions`` (``-1`` entries ignored)."""
        self.seen[positions[positions >= 0]] = True

    def unseen(self, *, include_deactivated: bool) -> np.ndarray:
        """Positions of members the source did not mention: active ones (and deactivated, if asked)."""
        mask = ~self.seen
        if not include_deactivated:
            mask &= self.statuses == ACTIVE
        return np.flatnonzero(mask)

    def members_at(self, positions: np.ndarray) -> Iterator[tuple[int, int, str, int]]:
        """``(key, key2, identifier, status)`` of the members at ``positions``, in key order."""
        positions = np.sort(positions)
        for start in range(0, len(positions), _LOOKUP_BATCH):
            batch = positions[start : start + _LOOKUP_BATCH]
            keys = self._keys[batch].tolist()
            marks = ",".join("?" * len(keys))
            found = dict(
                self._db.execute(f"SELECT key, identifier FROM members WHERE key IN ({marks})", keys)
            )
            for pos, key in zip(batch.tolist(), keys, strict=True):
                if key in found:
                    yield key, int(self._keys2[pos]), found[key], int(self.statuses[pos])

    # ------------------------------------------------------------------ writing (small transactions)

    def record_sent(self, key: int, key2: int, identifier: str, fingerprint: int) -> None:
        """CrowdTwist accepted this member's row: remember it as active with this fingerprint."""
        self._queue((_JOURNAL, (key, key2, fingerprint, ACTIVE)), (_WHO, (key, identifier)))

    def record_deactivated(self, key: int, key2: int) -> None:
        """The member was deactivated: keep it, so that its return to the source reactivates it."""
        pos = self.lookup(np.array([key], dtype=np.int64), np.array([key2], dtype=np.int64))[0]
        fingerprint = int(self.fingerprints[pos]) if pos >= 0 else 0
        self._queue((_JOURNAL, (key, key2, fingerprint, DEACTIVATED)))

    def forget(self, key: int, key2: int) -> None:
        """The member is gone from CrowdTwist (deleted): a return to the source creates it anew."""
        self._queue((_JOURNAL, (key, key2, 0, FORGOTTEN)), (_FORGET, (key,)))

    def _queue(self, *writes: tuple[str, tuple[Any, ...]]) -> None:
        if self.read_only:
            raise RuntimeError("a read-only member state (dry run) is never written")
        if self._writes.add(*writes):
            self.flush()

    def flush(self) -> None:
        """Commit the queued results in one transaction (``paths.BatchedWrites``)."""
        if self._writes.flush(self._db):
            self._journaled = True

    def _fold(self) -> None:
        """Replace snapshot + journal by the new snapshot (one transaction); give the space back."""
        db = self._db
        with transaction(db):
            old = db.execute("SELECT data FROM snapshot WHERE id = 1").fetchone()
            base = np.frombuffer(old[0], dtype=_ARRAY_DTYPE) if old else np.zeros(0, dtype=_ARRAY_DTYPE)
            journal = db.execute("SELECT key, key2, fingerprint, status FROM journal ORDER BY seq")
            members = _replay(base, np.fromiter(journal, dtype=_ARRAY_DTYPE))
            # the array itself is the blob (no second copy in memory)
            db.execute("INSERT OR REPLACE INTO snapshot (id, data) VALUES (1, ?)", (members,))
            del members, base, old
            db.execute("DELETE FROM journal")
        db.executescript("PRAGMA incremental_vacuum")  # executescript steps it to the end (all pages)

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Fold the WAL back into one file, upload a remote state, release the lock."""
        try:
            try:
                if not self.read_only:
                    self.flush()
                    if self._journaled:
                        self._fold()
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    self._db.execute("PRAGMA journal_mode=DELETE")
            finally:
                self._db_open = False
                self._db.close()
            if not self.read_only:
                self._copy.upload()
        finally:
            self._release()

    def _release(self) -> None:
        self._close_db()  # before the lock: closing the lock's descriptor would drop SQLite's own locks
        if self._guard is not None:
            self._guard.release()
            self._guard = None
        self._copy.close()

    def __enter__(self) -> MemberState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _snapshot(blob: Any) -> np.ndarray:
    """The snapshot blob as the members array, refused (:class:`_Broken`) when it cannot be one."""
    if not isinstance(blob, bytes):
        raise _Broken(f"is corrupt: its snapshot is a {type(blob).__name__}, not the members' bytes")
    size = np.dtype(_ARRAY_DTYPE).itemsize
    if len(blob) % size:
        raise _Broken(
            f"is corrupt: its snapshot holds {len(blob)} bytes, not a whole number of {size}-byte members"
        )
    members = np.frombuffer(blob, dtype=_ARRAY_DTYPE)
    keys = members["key"]
    if len(keys) > 1 and not bool(np.all(keys[1:] > keys[:-1])):
        raise _Broken("is corrupt: the members of its snapshot are not in key order")
    statuses = members["status"]
    if len(statuses) and not bool(np.all((statuses == ACTIVE) | (statuses == DEACTIVATED))):
        raise _Broken("is corrupt: its snapshot holds a member status that is neither active nor deactivated")
    return members


def _replay(members: np.ndarray, journal: np.ndarray) -> np.ndarray:
    """``members`` (sorted by key) with ``journal`` applied: the last entry per key wins, forgotten
    members leave; the result is sorted by key. A journal entry whose key matches a member's first 64
    bits but not the other 64 (about 1 in 4e7 for a million members) replaces it: the earlier member
    is then simply new again. Scratch memory: one copy of the members, plus the journal's."""
    if len(journal) == 0:
        return members
    _, last = np.unique(journal["key"][::-1], return_index=True)
    latest = journal[::-1][last]  # one entry per key, the most recent, sorted by key
    del last
    alive = latest[latest["status"] != FORGOTTEN]
    if len(members) == 0:
        return alive
    kept = members[~np.isin(members["key"], latest["key"], assume_unique=True)]
    return np.insert(kept, np.searchsorted(kept["key"], alive["key"]), alive)


def _read_into_memory(path: str, memory: sqlite3.Connection) -> sqlite3.Connection:
    """The state at ``path`` copied into ``memory`` (empty without a file): a dry run touches nothing."""
    try:
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.OperationalError:  # no file yet
        return memory
    try:
        source.backup(memory)
    finally:
        source.close()
    return memory
