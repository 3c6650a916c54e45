"""The ledger rebuild (``rebuild_ledger=True``): keys found in the members' histories become credited.

A stand-in client serves each member's activity history (the class under test is the rebuild; the
ledger is a real file). Real HTTP against the sandbox is in tests/integration/test_broken_files.py.
"""

from __future__ import annotations

import pathlib
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_crowdtwist.client.errors import CrowdTwistError, CrowdTwistNotFoundError
from airflow_provider_crowdtwist.client.models import ActivityHistoryItem
from airflow_provider_crowdtwist.sync.credits.ledger import CreditIntent, CreditLedger
from airflow_provider_crowdtwist.sync.credits.rebuild import FOUND_MESSAGE, LedgerRebuild


class Histories:
    """``activity_history`` of a few members; counts the reads per member."""

    def __init__(self, keys: dict[str, list[Any]], *, unreadable: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.keys = keys
        self.unreadable = unreadable
        self.reads: Counter[str] = Counter()

    def activity_history(
        self, user_id: str, id_type: str | None = None, *, since: Any = None
    ) -> Iterator[Any]:
        assert since is None  # a rebuild reads the whole history
        self.reads[user_id] += 1
        if user_id in self.unreadable:
            raise CrowdTwistError("500 after the retries")
        if user_id not in self.keys:
            raise CrowdTwistNotFoundError("member not found")
        for key in self.keys[user_id]:
            yield ActivityHistoryItem("purchase", extra_data={"ct_dedupe_key": key, "order_id": "x"})
        yield ActivityHistoryItem("signup", extra_data={})  # no key: credited by someone else


def intent(key: str, user: str) -> CreditIntent:
    return CreditIntent(key, user, "purchase", 5, "email", f'{{"key": "{key}"}}')


@pytest.fixture
def ledger(tmp_path: pathlib.Path) -> Iterator[CreditLedger]:
    with CreditLedger.open(tmp_path / "ledger.sqlite", run_id="rebuild") as opened:
        yield opened


def test_keys_in_the_history_become_credited_the_rest_is_left_to_send(ledger: CreditLedger) -> None:
    client = Histories({"a@x.com": ["k1", 2, {"nested": "k3"}], "b@x.com": []})
    with LedgerRebuild(ledger, client, "ct_dedupe_key") as rebuild:
        rebuild.run(
            [
                intent("k1", "a@x.com"),
                intent("2", "a@x.com"),
                intent("k3", "a@x.com"),
                intent("k4", "b@x.com"),
            ]
        )
        assert rebuild.counts.to_dict() == {
            "members_read": 2,
            "members_unreadable": 0,
            "found": 2,
            "unproven": 0,
        }
    assert ledger.get("k1").state == "credited" and ledger.get("k1").message == FOUND_MESSAGE
    assert ledger.get("2").state == "credited"  # a number in the history (JSON round trip) is the key
    assert ledger.get("k3") is None  # a dict is not a key
    assert ledger.get("k4") is None  # read, not there: sent as a new key
    assert ledger.get("k1").attempts == 0  # recorded, never sent


def test_an_unreadable_history_leaves_its_keys_unknown_unsent_and_a_missing_member_leaves_them_alone(
    ledger: CreditLedger,
) -> None:
    client = Histories({"a@x.com": ["k1"]}, unreadable={"down@x.com"})
    with LedgerRebuild(ledger, client, "ct_dedupe_key") as rebuild:
        rebuild.run([intent("k1", "a@x.com"), intent("k2", "down@x.com"), intent("k3", "gone@x.com")])
        assert rebuild.counts.members_unreadable == 1
        assert rebuild.counts.unproven == 1
        assert "500 after the retries" in next(iter(rebuild.counts.unreadable.values()))
    entry = ledger.get("k2")
    assert entry.state == "unknown" and entry.attempts == 0 and entry.first_sent_at is None
    assert entry.request == '{"key": "k2"}'  # what verification needs to settle (or resend) it
    assert ledger.mark_pending([intent("k2", "down@x.com")]) == set()  # never sent blind
    assert ledger.get("k3") is None  # no such member: nothing can have been credited to it


def test_each_history_is_read_once_and_known_keys_are_not_looked_up(ledger: CreditLedger) -> None:
    ledger.mark_pending([intent("old", "c@x.com")])
    ledger.record("old", "failed", "400")  # a sound ledger's verdict stays
    client = Histories({"a@x.com": ["k1", "k2"], "c@x.com": ["old"]})
    with LedgerRebuild(ledger, client, "ct_dedupe_key") as rebuild:
        rebuild.run([intent("k1", "a@x.com")])
        rebuild.run([intent("k2", "a@x.com"), intent("old", "c@x.com")])
    assert client.reads == Counter({"a@x.com": 1})
    assert ledger.get("k2").state == "credited"
    assert ledger.get("old").state == "failed"


def test_the_first_look_up_waits_until_credits_sent_before_the_break_can_show(ledger: CreditLedger) -> None:
    client = Histories({"a@x.com": []})
    started = time.monotonic()
    with LedgerRebuild(ledger, client, "ct_dedupe_key", not_before=time.time() + 0.3) as rebuild:
        rebuild.run([intent("k1", "a@x.com")])
        waited = time.monotonic() - started
        rebuild.run([intent("k2", "b@x.com")])  # only the first look-up waits
    assert waited >= 0.29
    assert time.monotonic() - started < waited + 0.25
