"""Unit tests of the verify-then-resend cycles (a real ledger file; the client and the send stand in)."""

from __future__ import annotations

import logging
import pathlib
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from airflow_provider_crowdtwist.client.errors import CrowdTwistServerError
from airflow_provider_crowdtwist.client.models import ActivityHistoryItem
from airflow_provider_crowdtwist.sync.credits.ledger import CreditIntent, CreditLedger
from airflow_provider_crowdtwist.sync.credits.mapping import CreditRequest
from airflow_provider_crowdtwist.sync.credits.settle import CreditSettler, SendAnswer, Unsettled
from airflow_provider_crowdtwist.sync.credits.verify import CreditVerifier
from airflow_provider_crowdtwist.sync.outcomes import Outcome
from tests.unit.sync.credits.test_verify import FakeTime

KEY_FIELD = "ct_dedupe_key"


class FakeCrowdTwist:
    """Holds a member's history; a send appends to it when told to 'land'."""

    def __init__(self) -> None:
        self.history: list[ActivityHistoryItem] = []
        self.lookups = 0
        self.down = False

    def land(self, key: str) -> None:
        self.history.insert(0, ActivityHistoryItem("purchase", extra_data={KEY_FIELD: key}))

    def activity_history(
        self, user_id: str, id_type: str | None = None, *, since: float | None = None
    ) -> Iterator[ActivityHistoryItem]:
        self.lookups += 1
        if self.down:
            raise CrowdTwistServerError("maintenance", status=503)
        yield from list(self.history)


def serial(items: Iterable[Any], work: Callable[[Any], Any]) -> Iterator[tuple[Any, Any]]:
    for item in items:
        yield item, work(item)


def request(key: str = "k-1", extra_key: str | None = KEY_FIELD) -> CreditRequest:
    extra = {KEY_FIELD: key} if extra_key else None
    return CreditRequest(1, key, "a@b.c", "email", "purchase", 10, None, extra, extra_key)


@pytest.fixture
def ledger(tmp_path: pathlib.Path) -> Iterator[CreditLedger]:
    with CreditLedger.open(tmp_path / "l.sqlite", run_id="r1") as led:
        yield led


def unknown_in(ledger: CreditLedger, req: CreditRequest) -> None:
    ledger.mark_pending(
        [
            CreditIntent(
                req.dedupe_key, req.user_id, req.activity_id, req.num_points, req.id_type, req.to_json()
            )
        ]
    )
    ledger.record(req.dedupe_key, "unknown", "503 after the request left")


def make(
    ledger: CreditLedger, ct: FakeCrowdTwist, answers: list[SendAnswer], clock: FakeTime, **kw: Any
) -> tuple[CreditSettler, list[CreditRequest]]:
    sent: list[CreditRequest] = []

    def send(req: CreditRequest) -> SendAnswer:
        sent.append(req)
        answer = answers.pop(0)
        if answer.message == "lands":
            ct.land(req.dedupe_key)
        state = {Outcome.CREDITED: "credited", Outcome.UNKNOWN: "unknown"}.get(answer.outcome, "failed")
        ledger.record(req.dedupe_key, state, answer.message)
        return answer

    options: dict[str, Any] = {"verify_delay": 30.0, "verify_resends": 3, "resend_unknown": False}
    options.update(kw)
    settler = CreditSettler(
        ledger,
        CreditVerifier(ct),
        send,
        serial,
        stop=kw.pop("stop", threading.Event()),
        log=logging.getLogger("t"),
        clock=clock.clock,
        sleep_until=clock.sleep_until,
        **{k: v for k, v in options.items() if k != "stop"},
    )
    return settler, sent


def test_found_after_the_settle_delay_is_credited_without_a_resend(ledger: CreditLedger) -> None:
    ct, clock, req = FakeCrowdTwist(), FakeTime(), request()
    unknown_in(ledger, req)
    ct.land("k-1")  # the ambiguous attempt did land
    settler, sent = make(ledger, ct, [], clock)
    settler.add(Unsettled(req, row=1))
    (done,) = list(settler.settle(wait=True))
    assert (done.outcome, done.verified) == (Outcome.CREDITED, True)
    assert sent == [] and clock.waits == [30.0] and ct.lookups == 1
    entry = ledger.get("k-1")
    assert (entry.state, entry.checks) == ("credited", 1)
    assert settler.verified == 1 and settler.resent == 0


def test_absent_is_sent_again_with_the_same_key(ledger: CreditLedger) -> None:
    ct, clock, req = FakeCrowdTwist(), FakeTime(), request()
    unknown_in(ledger, req)
    settler, sent = make(ledger, ct, [SendAnswer(Outcome.CREDITED, "lands")], clock)
    settler.add(Unsettled(req, row=1))
    (done,) = list(settler.settle(wait=True))
    assert done.outcome is Outcome.CREDITED and not done.verified
    assert sent == [req]  # identical: same key, same body
    assert ledger.get("k-1").attempts == 2 and settler.resent == 1


def test_ambiguous_resend_starts_another_cycle_until_found(ledger: CreditLedger) -> None:
    ct, clock, req = FakeCrowdTwist(), FakeTime(), request()
    unknown_in(ledger, req)
    answers = [
        SendAnswer(Outcome.UNKNOWN, "503 again"),
        SendAnswer(Outcome.UNKNOWN, "lands", already_processed=True),
    ]
    settler, sent = make(ledger, ct, answers, clock)
    settler.add(Unsettled(req, row=1))
    (done,) = list(settler.settle(wait=True))
    assert (done.outcome, done.verified) == (Outcome.CREDITED, True)
    assert len(sent) == 2 and clock.waits == [30.0, 30.0, 30.0] and ct.lookups == 3
    assert settler.already_processed == 1 and ledger.get("k-1").attempts == 3


def test_resends_are_bounded_then_unknown_stays_in_the_ledger(ledger: CreditLedger) -> None:
    ct, clock, req = FakeCrowdTwist(), FakeTime(), request()
    unknown_in(ledger, req)
    settler, sent = make(ledger, ct, [SendAnswer(Outcome.UNKNOWN, "timeout")] * 2, clock, verify_resends=2)
    settler.add(Unsettled(req, row=1))
    (done,) = list(settler.settle(wait=True))
    assert done.outcome is Outcome.UNKNOWN and "verify_resends=2" in done.message
    assert len(sent) == 2 and ct.lookups == 3
    entry = ledger.get("k-1")
    assert (entry.state, entry.attempts, entry.checks) == ("unknown", 3, 3)


def test_a_definite_answer_to_the_resend_is_final(ledger: CreditLedger) -> None:
    ct, clock, req = FakeCrowdTwist(), FakeTime(), request()
    unknown_in(ledger, req)
    settler, _ = make(ledger, ct, [SendAnswer(Outcome.REJECTED, "member not found", "not_found", 404)], clock)
    settler.add(Unsettled(req, row=1))
    (done,) = list(settler.settle(wait=True))
    assert (done.outcome, done.status) == (Outcome.REJECTED, 404)
    assert ledger.get("k-1").state == "failed"


def test_unreadable_history_keeps_it_unknown_unless_resend_unknown(ledger: CreditLedger) -> None:
    ct, clock, req = FakeCrowdTwist(), FakeTime(), request()
    ct.down = True
    unknown_in(ledger, req)
    settler, sent = make(ledger, ct, [], clock)
    settler.add(Unsettled(req, row=1))
    (done,) = list(settler.settle(wait=True))
    assert done.outcome is Outcome.UNKNOWN and "could not be read" in done.message and sent == []
    settler, sent = make(ledger, ct, [SendAnswer(Outcome.CREDITED)], clock, resend_unknown=True)
    settler.add(Unsettled(req, row=1))
    (done,) = list(settler.settle(wait=True))
    assert done.outcome is Outcome.CREDITED and "without proof" in done.message and sent == [req]


def test_without_the_key_nothing_is_looked_up(ledger: CreditLedger) -> None:
    ct, clock, req = FakeCrowdTwist(), FakeTime(), request(extra_key=None)
    unknown_in(ledger, req)
    settler, sent = make(ledger, ct, [], clock)
    settler.add(Unsettled(req, row=1))
    (done,) = list(settler.settle(wait=True))
    assert done.outcome is Outcome.UNKNOWN and "does not carry its key" in done.message
    assert ct.lookups == 0 and sent == []


def test_not_waiting_settles_only_what_is_due(ledger: CreditLedger) -> None:
    ct, clock = FakeCrowdTwist(), FakeTime()
    early, late = request("k-early"), request("k-late")
    for req in (early, late):
        unknown_in(ledger, req)
        ct.land(req.dedupe_key)
    settler, _ = make(ledger, ct, [], clock)
    settler.add(Unsettled(early), unknown_since=clock.now - 40)
    settler.add(Unsettled(late), unknown_since=clock.now)
    assert [s.item.req.dedupe_key for s in settler.settle(wait=False)] == ["k-early"]
    assert clock.waits == [] and len(settler) == 1


def test_a_stop_leaves_the_rest_unknown(ledger: CreditLedger) -> None:
    ct, clock, req = FakeCrowdTwist(), FakeTime(), request()
    unknown_in(ledger, req)
    stop = threading.Event()
    stop.set()
    settler, _ = make(ledger, ct, [], clock, stop=stop)
    settler.add(Unsettled(req, row=1))
    (done,) = list(settler.settle(wait=True))
    assert done.outcome is Outcome.UNKNOWN and "stopped" in done.message
    assert ct.lookups == 0 and ledger.get("k-1").state == "unknown"
