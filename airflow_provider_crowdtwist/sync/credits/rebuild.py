"""Rebuilding a credit ledger from the members' activity histories (``rebuild_ledger=True``).

Why it is built this way: ``docs/sync-design.md``, section ``sync/credits/rebuild.py``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_crowdtwist.client.errors import CrowdTwistError, CrowdTwistNotFoundError
from airflow_provider_crowdtwist.sync.credits.ledger import CreditIntent, CreditLedger

__all__ = ["FOUND_MESSAGE", "LedgerRebuild", "RebuildCounts"]

FOUND_MESSAGE = "ledger rebuild: found in the member's activity history (the dedupe key in extra_data)"

#: Runs member look-ups: ``(members, work) -> (member, result)`` pairs (the sync's worker pool);
#: a result that is a string is why the look-up was not made (the run was stopped).
Parallel = Callable[[Iterable[Any], Callable[[Any], Any]], Iterator[tuple[Any, Any]]]


@dataclass
class RebuildCounts:
    """What a rebuild did in this run, for the summary."""

    members_read: int = 0  # histories read to the end
    members_unreadable: int = 0  # histories that could not be read: their keys stay unknown
    found: int = 0  # keys recorded credited from the histories
    unproven: int = 0  # keys recorded unknown (their member's history could not be read)
    unreadable: dict[str, str] = field(default_factory=dict)  # a few members and why, for the log

    def to_dict(self) -> dict[str, Any]:
        return {
            "members_read": self.members_read,
            "members_unreadable": self.members_unreadable,
            "found": self.found,
            "unproven": self.unproven,
        }


def _sequential(items: Iterable[Any], work: Callable[[Any], Any]) -> Iterator[tuple[Any, Any]]:
    for item in items:
        yield item, work(item)


class LedgerRebuild:
    """Refills a ledger from activity histories, a chunk at a time, before the chunk is sent.

    ``key_field`` is the ``extra_data`` key carrying the dedupe key. ``parallel`` runs the history
    reads (default: one after the other); ``stop`` ends waiting early.
    """

    def __init__(
        self,
        ledger: CreditLedger,
        client: Any,
        key_field: str,
        *,
        parallel: Parallel | None = None,
        not_before: float | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self.client = client
        self.key_field = key_field
        self.counts = RebuildCounts()
        self._parallel = parallel or _sequential
        self._not_before = not_before
        self._stop = stop or threading.Event()
        self._clock = clock
        self._db = sqlite3.connect("", check_same_thread=False, isolation_level=None)  # a private temp file
        self._db.executescript(
            "CREATE TABLE members (member TEXT PRIMARY KEY, readable INTEGER NOT NULL);"
            "CREATE TABLE found (member TEXT NOT NULL, dedupe_key TEXT NOT NULL, "
            "PRIMARY KEY (member, dedupe_key)) WITHOUT ROWID;"
        )
        self._write = threading.Lock()

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    def __enter__(self) -> LedgerRebuild:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ one chunk

    def run(self, intents: Sequence[CreditIntent]) -> None:
        """Look the keys the ledger does not know up in their members' histories; record the verdicts."""
        known = self.ledger.lookup(i.dedupe_key for i in intents)
        todo = [i for i in intents if i.dedupe_key not in known and i.user_id]
        if not todo:
            return
        members = {_member(i): (i.user_id, i.id_type) for i in todo}
        new = [
            m
            for m in members
            if not self._db.execute("SELECT 1 FROM members WHERE member = ?", (m,)).fetchone()
        ]
        if new:
            self._wait()
            for member, verdict in self._parallel([members[m] for m in new], self._read):
                self._remember(_member_key(*member), verdict)
        found: list[CreditIntent] = []
        unproven: list[CreditIntent] = []
        for intent in todo:
            member = _member(intent)
            row = self._db.execute("SELECT readable FROM members WHERE member = ?", (member,)).fetchone()
            if row is None or not row[0]:  # unreadable, or not read (the run was stopped): never sent blind
                unproven.append(intent)
            elif self._db.execute(
                "SELECT 1 FROM found WHERE member = ? AND dedupe_key = ?", (member, intent.dedupe_key)
            ).fetchone():
                found.append(intent)
        if found or unproven:
            why = "ledger rebuild: the member's activity history could not be read; looked up again first"
            credited, unknown = self.ledger.record_rebuilt(found, unproven, FOUND_MESSAGE, why)
            self.counts.found += credited
            self.counts.unproven += unknown

    # ------------------------------------------------------------------ one member (worker threads)

    def _read(self, member: tuple[str, str | None]) -> set[str] | str:
        """The dedupe keys in the member's whole history (none for a member CrowdTwist does not know:
        nothing can have been credited to it); a string: why the history could not be read."""
        user_id, id_type = member
        keys: set[str] = set()
        try:
            for item in self.client.activity_history(user_id, id_type, since=None):
                value = (item.extra_data or {}).get(self.key_field)
                if value is not None and not isinstance(value, (dict, list)):
                    keys.add(str(value))
        except CrowdTwistNotFoundError:
            return set()
        except CrowdTwistError as exc:
            return f"activity history could not be read: {exc}"
        return keys

    def _remember(self, member: str, verdict: Any) -> None:
        if isinstance(verdict, set):
            with self._write:
                self._db.execute("BEGIN")
                self._db.execute("INSERT OR REPLACE INTO members VALUES (?, 1)", (member,))
                self._db.executemany(
                    "INSERT OR IGNORE INTO found VALUES (?, ?)", ((member, k) for k in verdict)
                )
                self._db.execute("COMMIT")
            self.counts.members_read += 1
        elif not self._stop.is_set():  # why it could not be read (or an unexpected error)
            self._db.execute("INSERT OR REPLACE INTO members VALUES (?, 0)", (member,))
            self.counts.members_unreadable += 1
            if len(self.counts.unreadable) < 5:
                self.counts.unreadable[member] = str(verdict)
        # else: the look-up was not made (stopped): the member stays unread, its keys unproven

    def _wait(self) -> None:
        """Before the first look-up: until credits sent just before the ledger broke can show."""
        if self._not_before is None:
            return
        delay = self._not_before - self._clock()
        self._not_before = None
        if delay > 0:
            self._stop.wait(delay)


def _member_key(user_id: str, id_type: str | None) -> str:
    return f"{id_type or ''}:{user_id}"


def _member(intent: CreditIntent) -> str:
    return _member_key(intent.user_id or "", intent.id_type)
