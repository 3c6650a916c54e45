"""The spool between reading and sending: payloads on disk, "last row wins" in numpy.

Why it is built this way: ``docs/sync-design.md``, section ``sync/members/spool.py``.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_crowdtwist.sync.lazy import LazyModule
from airflow_provider_crowdtwist.sync.members.row_hash import member_keys
from airflow_provider_crowdtwist.sync.paths import fcntl, transaction

if TYPE_CHECKING:
    import numpy as np
else:  # imported on first use: parsing a DAG must not pay for numpy/pandas (see sync/lazy.py)
    np = LazyModule("numpy", globals(), "np")


@dataclass(frozen=True)
class SpooledRow:
    """A row waiting to be sent."""

    row_number: int
    identifier: str
    payload_json: str
    key: int = 0
    key2: int = 0
    fingerprint: int = 0
    known: bool | None = None
    reactivate: bool = False

    @property
    def payload(self) -> dict[str, Any]:
        """The payload, parsed."""
        return json.loads(self.payload_json)


@dataclass(frozen=True)
class SupersededRow:
    """A row replaced by a later row for the same member (reported as ``skipped``)."""

    row_number: int
    identifier: str | None
    winner_row_number: int
    payload_json: str | None


@dataclass(frozen=True)
class RowState:
    """What the member state said about the rows of one :meth:`Spool.add_many` batch (aligned)."""

    keys: np.ndarray
    keys2: np.ndarray
    fingerprints: np.ndarray
    known: np.ndarray
    reactivate: np.ndarray


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
    """Remove the spool directories in ``directory`` (default: the temp dir) whose owner is gone."""
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


class Spool:
    """SQLite file of encrypted payloads (AES-GCM, the key only in this process's memory: a spool a
    killed task leaves behind is unreadable) in a private temp directory; a context manager that
    deletes it on exit. Creating one first removes the spools dead runs left in the same directory."""

    def __init__(self, directory: str | None = None) -> None:
        self.removed_dead = remove_dead_spools(directory)
        self._dir = tempfile.mkdtemp(prefix=PREFIX, dir=directory)
        self._owner: IO[Any] | None = None
        if fcntl is not None:  # locked under a temporary name, then put in place: never seen unlocked
            self._owner = _take_lock(os.path.join(self._dir, OWNER_LOCK + ".new"))
            os.replace(os.path.join(self._dir, OWNER_LOCK + ".new"), os.path.join(self._dir, OWNER_LOCK))
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # on first use, not at DAG parse

        self._cipher = AESGCM(AESGCM.generate_key(bit_length=128))  # in memory only, never written
        self.path = os.path.join(self._dir, "spool.sqlite")
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("PRAGMA temp_store=MEMORY")
        self._db.execute(
            "CREATE TABLE rows (row_number INTEGER PRIMARY KEY, identifier TEXT NOT NULL, "
            "payload BLOB NOT NULL, key INTEGER NOT NULL, key2 INTEGER NOT NULL, "
            "fingerprint INTEGER NOT NULL, known INTEGER, reactivate INTEGER NOT NULL)"
        )
        self.rows_added = 0
        self._numbers: list[np.ndarray] = []
        self._keys: list[np.ndarray] = []
        self._keys2: list[np.ndarray] = []
        self._spooled: list[np.ndarray] = []
        self._resolved: _Resolution | None = None

    def add_many(self, rows: Iterable[tuple[int, str, str, str]], state: RowState | None = None) -> int:
        """Add ``(row_number, dedupe_key, identifier, payload_json)`` tuples in source order."""
        batch = list(rows)
        if not batch:
            return 0
        numbers = np.fromiter((r[0] for r in batch), dtype=np.int64, count=len(batch))
        if state is None:
            keys, keys2 = member_keys([r[1] for r in batch])
            known: Sequence[Any] = [None] * len(batch)
            fingerprints = np.zeros(len(batch), dtype=np.int64)
            reactivate = np.zeros(len(batch), dtype=bool)
        else:
            keys, keys2, fingerprints = state.keys, state.keys2, state.fingerprints
            known, reactivate = state.known.tolist(), state.reactivate
        with transaction(self._db):
            self._db.executemany(
                "INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                zip(
                    numbers.tolist(),
                    (r[2] for r in batch),
                    (self._seal(r[3]) for r in batch),
                    keys.tolist(),
                    keys2.tolist(),
                    fingerprints.tolist(),
                    known,
                    reactivate.tolist(),
                    strict=True,
                ),
            )
        self._append(numbers, keys, keys2, spooled=True)
        return len(batch)

    def add_unchanged(self, row_numbers: np.ndarray, keys: np.ndarray, keys2: np.ndarray) -> int:
        """Add rows the member state found unchanged: they compete in "last wins", are never sent."""
        if len(row_numbers):
            self._append(np.asarray(row_numbers, dtype=np.int64), keys, keys2, spooled=False)
        return len(row_numbers)

    def _append(self, numbers: np.ndarray, keys: np.ndarray, keys2: np.ndarray, *, spooled: bool) -> None:
        self._resolved = None
        self._numbers.append(numbers)
        self._keys.append(np.asarray(keys, dtype=np.int64))
        self._keys2.append(np.asarray(keys2, dtype=np.int64))
        self._spooled.append(np.full(len(numbers), spooled, dtype=bool))
        self.rows_added += len(numbers)

    def _resolution(self) -> _Resolution:
        if self._resolved is None:
            # One array per column from here on (the per-batch pieces are dropped, not kept twice).
            self._numbers = [_concat(self._numbers, np.int64)]
            self._keys = [_concat(self._keys, np.int64)]
            self._keys2 = [_concat(self._keys2, np.int64)]
            self._spooled = [_concat(self._spooled, bool)]
            self._resolved = _Resolution.of(self._numbers[0], self._keys[0], self._keys2[0], self._spooled[0])
        return self._resolved

    def count_survivors(self) -> int:
        """Rows that will be sent (one per member, unchanged winners excluded)."""
        return self._resolution().to_send

    def count_unchanged(self) -> int:
        """Members whose winning row is unchanged (not sent)."""
        return self._resolution().unchanged

    def superseded(self) -> Iterator[SupersededRow]:
        """Rows that lost to a later row for the same member, in source order."""
        resolution = self._resolution()
        for number, winner, spooled in zip(
            resolution.loser_numbers.tolist(),
            resolution.loser_winners.tolist(),
            resolution.loser_spooled.tolist(),
            strict=True,
        ):
            identifier = payload = None
            if spooled:
                identifier, payload = self._db.execute(
                    "SELECT identifier, payload FROM rows WHERE row_number = ?", (number,)
                ).fetchone()
            yield SupersededRow(number, identifier, winner, None if payload is None else self._open(payload))

    def survivors(self) -> Iterator[SpooledRow]:
        """The rows to send, in source order, read lazily from disk."""
        send = self._resolution().send_mask
        cursor = self._db.execute(
            "SELECT row_number, identifier, payload, key, key2, fingerprint, known, reactivate "
            "FROM rows ORDER BY row_number"
        )
        # Batches: every SQLite step releases the GIL, and with busy worker threads each release
        # can cost a thread switch; one fetchmany per 1,000 rows keeps the reader from starving.
        while batch := cursor.fetchmany(1000):
            for number, identifier, payload, key, key2, fingerprint, known, reactivate in batch:
                if send[number]:
                    yield SpooledRow(
                        number,
                        identifier,
                        self._open(payload),
                        key,
                        key2,
                        fingerprint,
                        None if known is None else bool(known),
                        bool(reactivate),
                    )

    def _seal(self, payload_json: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._cipher.encrypt(nonce, payload_json.encode("utf-8"), None)

    def _open(self, sealed: bytes) -> str:
        return self._cipher.decrypt(sealed[:_NONCE], sealed[_NONCE:], None).decode("utf-8")

    def close(self) -> None:
        """Close and delete the spool; its arrays go too (a sync's state closes after it); then let go
        of its owner lock."""
        self._numbers, self._keys, self._keys2, self._spooled = [], [], [], []
        self._resolved = None
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


@dataclass(frozen=True)
class _Resolution:
    """ "Last wins" over every row added: which rows are sent, which lost and to whom."""

    send_mask: np.ndarray  # indexed by row number
    to_send: int
    unchanged: int
    loser_numbers: np.ndarray
    loser_winners: np.ndarray
    loser_spooled: np.ndarray

    @classmethod
    def of(cls, numbers: np.ndarray, keys: np.ndarray, keys2: np.ndarray, spooled: np.ndarray) -> _Resolution:
        # Most members have one row: sort by the first 64 bits of the key only (8 bytes a row of
        # scratch), and resolve the few rows whose neighbour shares them exactly, on their own.
        winners = np.ones(len(numbers), dtype=bool)
        winner_numbers = numbers
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        shared = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
        del sorted_keys
        if len(shared):
            rows = np.unique(np.concatenate([order[shared], order[shared + 1]]))
            group_order = np.lexsort((numbers[rows], keys2[rows], keys[rows]))  # by member, then row number
            rows = rows[group_order]
            k1, k2 = keys[rows], keys2[rows]
            last = np.ones(len(rows), dtype=bool)  # the last row of each member's group wins
            last[:-1] = (k1[1:] != k1[:-1]) | (k2[1:] != k2[:-1])
            group = np.concatenate(([0], np.cumsum(last[:-1])))
            winners[rows] = last
            winner_numbers = numbers.copy()
            winner_numbers[rows] = numbers[rows][last][group]
        del order
        send_mask = np.zeros(int(numbers.max()) + 1 if len(numbers) else 1, dtype=bool)
        send_mask[numbers[winners & spooled]] = True
        losers = np.flatnonzero(~winners)
        losers = losers[np.argsort(numbers[losers], kind="stable")]
        return cls(
            send_mask=send_mask,
            to_send=int(np.count_nonzero(winners & spooled)),
            unchanged=int(np.count_nonzero(winners & ~spooled)),
            loser_numbers=numbers[losers],
            loser_winners=winner_numbers[losers],
            loser_spooled=spooled[losers],
        )


def _concat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
