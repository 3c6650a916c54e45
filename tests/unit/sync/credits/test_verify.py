"""Unit tests of the verification logic: the look-up verdicts, the look-back bound, the settle queue."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from airflow_provider_crowdtwist.client.errors import (
    CrowdTwistError,
    CrowdTwistNotFoundError,
    CrowdTwistServerError,
)
from airflow_provider_crowdtwist.client.models import ActivityHistoryItem
from airflow_provider_crowdtwist.sync.credits.verify import (
    CLOCK_MARGIN,
    CreditVerifier,
    SettleQueue,
    Verdict,
    look_back_start,
)


class FakeHistory:
    """Stands in for the client: a fixed history, or an error after some items."""

    def __init__(self, items: list[ActivityHistoryItem], error: CrowdTwistError | None = None) -> None:
        self.items = items
        self.error = error
        self.calls: list[tuple[str, str | None, float | None]] = []
        self.consumed = 0

    def activity_history(
        self, user_id: str, id_type: str | None = None, *, since: float | None = None
    ) -> Iterator[ActivityHistoryItem]:
        self.calls.append((user_id, id_type, since))
        for item in self.items:
            self.consumed += 1
            yield item
        if self.error is not None:
            raise self.error


def entry(extra: dict[str, Any]) -> ActivityHistoryItem:
    return ActivityHistoryItem(activity_id="purchase", extra_data=extra)


def check(client: FakeHistory, key: str = "k-1", **kw: Any) -> Any:
    return CreditVerifier(client).check(
        "a@b.c", "email", "ct_dedupe_key", key, first_sent_at=kw.pop("first", 10_000.0), **kw
    )


def test_found_stops_reading_at_the_key() -> None:
    client = FakeHistory([entry({"ct_dedupe_key": "k-0"}), entry({"ct_dedupe_key": "k-1"}), entry({})])
    result = check(client)
    assert result.verdict is Verdict.FOUND
    assert client.consumed == 2  # no further pages asked for


def test_not_found_after_reading_back_to_the_send_time() -> None:
    client = FakeHistory([entry({"ct_dedupe_key": "k-0"}), entry({"other": "k-1"}), entry({})])
    result = check(client)
    assert result.verdict is Verdict.NOT_FOUND
    assert client.calls == [("a@b.c", "email", 10_000.0 - CLOCK_MARGIN)]


def test_identical_content_without_the_key_is_not_proof() -> None:
    """A credit of identical content (same activity and points) is another credit unless its key matches."""
    client = FakeHistory(
        [ActivityHistoryItem(activity_id="purchase", num_points=10, extra_data={"ct_dedupe_key": "k-2"})]
    )
    assert check(client).verdict is Verdict.NOT_FOUND


def test_key_returned_as_a_number_still_matches() -> None:
    assert check(FakeHistory([entry({"ct_dedupe_key": 12345})]), key="12345").verdict is Verdict.FOUND
    assert (
        check(FakeHistory([entry({"ct_dedupe_key": {"k": 1}})]), key="{'k': 1}").verdict is Verdict.NOT_FOUND
    )


def test_unreadable_history_proves_nothing() -> None:
    broken = FakeHistory([entry({})], CrowdTwistServerError("down", status=503))
    result = check(broken)
    assert result.verdict is Verdict.UNREACHABLE and "could not be read" in result.message
    gone = FakeHistory([], CrowdTwistNotFoundError("User does not exist.", status=404))
    assert check(gone).verdict is Verdict.UNREACHABLE


def test_an_error_after_the_key_was_seen_is_still_found() -> None:
    client = FakeHistory([entry({"ct_dedupe_key": "k-1"})], CrowdTwistServerError("down", status=503))
    assert check(client).verdict is Verdict.FOUND


def test_look_back_covers_a_back_dated_activity_and_the_clock_margin() -> None:
    assert look_back_start(10_000.0, None, 60.0) == 9_940.0
    assert look_back_start(10_000.0, 5_000, 60.0) == 4_940.0  # dated earlier than it was sent
    assert look_back_start(10_000.0, 20_000, 60.0) == 9_940.0
    assert look_back_start(None, 5_000) is None  # send time unknown: read it all
    assert look_back_start(30.0, None, 60.0) == 0.0


def test_back_dated_credit_is_looked_up_from_its_activity_date() -> None:
    client = FakeHistory([])
    check(client, activity_date=1_000)
    assert client.calls[0][2] == 1_000 - CLOCK_MARGIN


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep_until(self, stop: threading.Event, seconds: float) -> bool:
        if stop.is_set():
            return True
        self.waits.append(seconds)
        self.now += seconds
        return False


def test_settle_queue_waits_for_the_earliest_and_hands_out_what_is_due() -> None:
    t = FakeTime()
    queue: SettleQueue[str] = SettleQueue(clock=t.clock, sleep_until=t.sleep_until)
    queue.add("late", 130.0)
    queue.add("early", 105.0)
    queue.add("also-early", 105.0)
    stop = threading.Event()
    assert queue.next_batch(stop) == ["early", "also-early"]
    assert t.waits == [5.0]
    assert queue.next_batch(stop) == ["late"] and t.waits == [5.0, 25.0]
    assert queue.next_batch(stop) == [] and len(queue) == 0


def test_settle_queue_due_items_need_no_wait() -> None:
    t = FakeTime()
    queue: SettleQueue[str] = SettleQueue(clock=t.clock, sleep_until=t.sleep_until)
    queue.add("overdue", 50.0)
    assert queue.next_batch(threading.Event()) == ["overdue"] and t.waits == []


def test_settle_queue_stops_and_drains() -> None:
    t = FakeTime()
    queue: SettleQueue[str] = SettleQueue(clock=t.clock, sleep_until=t.sleep_until)
    queue.add("b", 200.0)
    queue.add("a", 150.0)
    stop = threading.Event()
    stop.set()
    assert queue.next_batch(stop) == []
    assert queue.drain() == ["a", "b"] and len(queue) == 0


def test_settle_queue_real_wait_wakes_on_stop() -> None:
    queue: SettleQueue[str] = SettleQueue()
    queue.add("x", time.time() + 30)
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    started = time.monotonic()
    assert queue.next_batch(stop) == []
    assert time.monotonic() - started < 5
