"""Verifying a credit by looking, not by believing: is its dedupe key in the member's activity history?

Why it is built this way: ``docs/sync-design.md``, section ``sync/credits/verify.py``.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar

from airflow_provider_crowdtwist.client.errors import CrowdTwistError, CrowdTwistNotFoundError
from airflow_provider_crowdtwist.client.models import ActivityHistoryItem

__all__ = [
    "CLOCK_MARGIN",
    "Check",
    "CreditVerifier",
    "SettleQueue",
    "Verdict",
    "look_back_start",
]

#: Seconds subtracted from the first send time before reading the history: CrowdTwist's clock may be
#: behind ours (its HMAC check tolerates 15 minutes of difference, so clocks that far apart still work).
CLOCK_MARGIN = 15 * 60.0

T = TypeVar("T")


class HistoryClient(Protocol):
    """The one call verification makes (``CrowdTwistClient.activity_history``; a stand-in in tests)."""

    def activity_history(
        self, user_id: str, id_type: str | None = None, *, since: float | None = None
    ) -> Iterator[ActivityHistoryItem]: ...


class Verdict(str, Enum):
    """What one look-up in the activity history proved."""

    FOUND = "found"  # the key is in the history: the credit landed
    NOT_FOUND = "not_found"  # the history was read back to the credit's send time: it is not there
    UNREACHABLE = "unreachable"  # the history could not be read: nothing is proven


@dataclass(frozen=True)
class Check:
    """The verdict of one look-up and a message for the ledger and the rejects file."""

    verdict: Verdict
    message: str


def look_back_start(
    first_sent_at: float | None, activity_date: int | None = None, margin: float = CLOCK_MARGIN
) -> float | None:
    """How far back the history must be read to see a credit first sent at ``first_sent_at``."""
    if first_sent_at is None:
        return None
    start = first_sent_at if activity_date is None else min(first_sent_at, float(activity_date))
    return max(0.0, start - margin)


class CreditVerifier:
    """Looks a credit's dedupe key up in its member's activity history (thread-safe: no own state)."""

    def __init__(self, client: HistoryClient, *, margin: float = CLOCK_MARGIN) -> None:
        self.client = client
        self.margin = margin

    def check(
        self,
        user_id: str,
        id_type: str | None,
        key_field: str,
        dedupe_key: str,
        *,
        first_sent_at: float | None,
        activity_date: int | None = None,
    ) -> Check:
        """Read the history until the key shows up, or back to the credit's first send."""
        since = look_back_start(first_sent_at, activity_date, self.margin)
        pages_note = "the whole history" if since is None else "the history back to its first send"
        try:
            for item in self.client.activity_history(user_id, id_type, since=since):
                if _matches(item.extra_data.get(key_field), dedupe_key):
                    return Check(
                        Verdict.FOUND, "verified: the dedupe key is in the member's activity history"
                    )
        except CrowdTwistNotFoundError as exc:
            # The member was credited (or at least known) before; gone now (deleted?). Not a proof.
            return Check(Verdict.UNREACHABLE, f"activity history: member not found ({exc.message})")
        except CrowdTwistError as exc:
            return Check(Verdict.UNREACHABLE, f"activity history could not be read: {exc}")
        return Check(Verdict.NOT_FOUND, f"not in the member's activity history ({pages_note} was read)")


def _matches(value: Any, dedupe_key: str) -> bool:
    """The key as CrowdTwist returns it: the string we sent, or (JSON round trip) a number."""
    return value is not None and not isinstance(value, (dict, list)) and str(value) == dedupe_key


@dataclass(order=True)
class _Due(Generic[T]):
    due: float
    order: int
    item: T = field(compare=False)


class SettleQueue(Generic[T]):
    """Items waiting for their settle delay, handed out in batches once due."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        sleep_until: Callable[[threading.Event, float], bool] | None = None,
    ) -> None:
        self._heap: list[_Due[T]] = []
        self._order = itertools.count()
        self._clock = clock
        self._sleep_until = sleep_until or _wait_on_event

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, item: T, due: float) -> None:
        heapq.heappush(self._heap, _Due(due, next(self._order), item))

    def due_in(self) -> float:
        """Seconds until the earliest item is due (0 when one is due now, inf when empty)."""
        return max(0.0, self._heap[0].due - self._clock()) if self._heap else float("inf")

    def drain(self) -> list[T]:
        """Everything still waiting, due or not (the run ends: they stay ``unknown``)."""
        items = [entry.item for entry in sorted(self._heap)]
        self._heap.clear()
        return items

    def next_batch(self, stop: threading.Event) -> list[T]:
        """Wait until the earliest item is due; return all items due then ([] if stopped or empty)."""
        if not self._heap:
            return []
        wait = self._heap[0].due - self._clock()
        if wait > 0 and self._sleep_until(stop, wait):
            return []
        now = self._clock()
        batch: list[T] = []
        while self._heap and self._heap[0].due <= now:
            batch.append(heapq.heappop(self._heap).item)
        return batch


def _wait_on_event(stop: threading.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True when stopped."""
    return stop.wait(seconds)
