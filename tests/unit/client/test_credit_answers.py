"""The answer table of docs/activity-credits.md, one test per row: the answer -> the credit's outcome.

Each row runs a real credit sync (real ledger file) with a real client whose transport is the fake at
the seam. A credit is ``failed`` only when CrowdTwist certainly did not apply it; any other answer is
``credited`` on its face, or ``unknown`` and settled by looking for its key in the member's activity
history -- here the history holds the key, so a looked-up credit ends ``credited`` with ``verified=1``.
"""

from __future__ import annotations

import http.client
import json
import pathlib
import ssl
from typing import Any

import pandas as pd
import pytest

from airflow_provider_crowdtwist.client.transport import AnswerTooLarge, DeadlinePassed
from airflow_provider_crowdtwist.sync.credits.ledger import CreditLedger
from airflow_provider_crowdtwist.sync.credits.sync import CreditSyncConfig, sync_credits
from airflow_provider_crowdtwist.sync.sources import iter_chunks
from airflow_provider_crowdtwist.sync.summary import SyncAbortedError, ThresholdExceededError

from .conftest import failed

CREDIT = "https://api.test/v2/users/a%40b.com/activities"
HISTORY = "https://api.test/v2/users/a%40b.com/activity_history"
HISTORY_21 = "https://api.test/v2.1/users/a%40b.com/activity_history"
KEY = "order-1"

# (row of the table, the answer, the outcome, looked up in the history?)
CERTAIN = [
    ("400 input_error", {"status_code": 400, "json": {"message": "bad"}}, "rejected"),
    ("403 user is inactive", {"status_code": 403, "json": {"message": "User is inactive."}}, "rejected"),
    ("404 user does not exist", {"status_code": 404, "json": {"message": "No such user."}}, "rejected"),
    ("429 after the retries", {"status_code": 429, "json": {"message": "Rate limit"}}, "failed"),
    ("nothing sent: refused", {"exc": failed(ConnectionRefusedError(), sent=False)}, "failed"),
    ("nothing sent: TLS", {"exc": failed(ssl.SSLError("bad"), sent=False)}, "failed"),
]
LOOKED_UP = [
    ("2xx HTML", {"text": "<html>OK</html>", "headers": {"Content-Type": "text/html"}}),
    ("2xx empty body", {"content": b""}),
    ("202 accepted", {"status_code": 202, "json": {"awarded": True}}),
    ("204 no content", {"status_code": 204}),
    ("1xx as final answer (101)", {"status_code": 101}),
    ("3xx redirect", {"status_code": 303, "headers": {"Location": "https://api.test/elsewhere"}}),
    ("other 4xx (409)", {"status_code": 409, "json": {"message": "conflict"}}),
    ("other 4xx (408)", {"status_code": 408}),
    ("5xx", {"status_code": 503, "text": "<html>maintenance</html>"}),
    ("already processed", {"status_code": 400, "json": {"message": "Event already processed"}}),
    ("sent: read timeout", {"exc": failed(TimeoutError(), sent=True)}),
    ("sent: reset", {"exc": failed(ConnectionResetError(), sent=True)}),
    ("sent: closed, no answer", {"exc": failed(http.client.RemoteDisconnected(), sent=True)}),
    ("size cap", {"exc": failed(AnswerTooLarge(), sent=True)}),
    ("deadline", {"exc": failed(DeadlinePassed(), sent=True)}),
]


def _sync(wire: Any, tmp_path: pathlib.Path, make_client: Any) -> Any:
    client = make_client(max_retries=1)
    rows = pd.DataFrame([{"email": "a@b.com", "order_id": KEY, "activity": "purchase"}])
    config = CreditSyncConfig(
        id_column="email",
        activity_id_column="activity",
        dedupe_key_column="order_id",
        max_workers=1,
        verify_delay=0.0,
        run_id="table",
    )
    with CreditLedger.open(tmp_path / "ledger.sqlite", run_id="table") as ledger:
        try:
            summary = sync_credits(client, iter_chunks(rows, 10), config, ledger)
        except ThresholdExceededError as exc:
            summary = exc.summary
        states = {e.dedupe_key: e.state for e in ledger.entries()}
    return summary, states


@pytest.fixture
def history(wire: Any) -> None:
    """The member's history holds the credit's key (CrowdTwist applied it)."""
    item = {"activity_id": "purchase", "extra_data": {"ct_dedupe_key": KEY, "order_id": KEY}}
    for url in (HISTORY, HISTORY_21):
        wire.get(url, json=[item])
    wire.get("https://api.test/v2/activities", json=[{"id": "purchase", "name": "Purchase"}])


def test_2xx_with_json_is_credited_on_its_face(
    wire: Any, history: None, tmp_path: Any, make_client: Any
) -> None:
    wire.post(CREDIT, json={"awarded": True})
    summary, states = _sync(wire, tmp_path, make_client)
    assert summary.count("credited") == 1 and summary.verified == 0 and states == {KEY: "credited"}
    assert not [r for r in wire.request_history if "activity_history" in r.url]


@pytest.mark.parametrize(
    ("answer", "outcome"), [(a, o) for _, a, o in CERTAIN], ids=[r for r, _, _ in CERTAIN]
)
def test_a_certain_refusal_is_failed_or_rejected_and_never_looked_up(
    wire: Any, history: None, tmp_path: Any, make_client: Any, answer: dict, outcome: str
) -> None:
    wire.post(CREDIT, [answer])
    summary, states = _sync(wire, tmp_path, make_client)
    assert summary.count(outcome) == 1 and summary.count("credited") == 0
    assert states == {KEY: "failed"}  # resendable: CrowdTwist certainly did not apply it
    assert not [r for r in wire.request_history if "activity_history" in r.url]


@pytest.mark.parametrize("answer", [a for _, a in LOOKED_UP], ids=[r for r, _ in LOOKED_UP])
def test_any_other_answer_is_looked_up_in_the_history_never_failed(
    wire: Any, history: None, tmp_path: Any, make_client: Any, answer: dict
) -> None:
    wire.post(CREDIT, [answer, {"json": {"awarded": True}}])
    summary, states = _sync(wire, tmp_path, make_client)
    assert summary.count("failed") == 0 and summary.count("rejected") == 0
    assert summary.count("credited") == 1 and summary.verified == 1 and states == {KEY: "credited"}
    posts = [r for r in wire.request_history if r.method == "POST"]
    assert len(posts) == 1, "sent once: found in the history, never resent"
    assert json.loads(posts[0].body)["extra_data"]["ct_dedupe_key"] == KEY


def test_401_is_failed_and_stops_the_run(wire: Any, history: None, tmp_path: Any, make_client: Any) -> None:
    wire.post(CREDIT, status_code=401, json={"message": "Unauthorized"})
    with pytest.raises(SyncAbortedError, match="401"):
        _sync(wire, tmp_path, make_client)
    with CreditLedger.open(tmp_path / "ledger.sqlite", run_id="check") as ledger:
        assert {e.dedupe_key: e.state for e in ledger.entries()} == {KEY: "failed"}
    assert not [r for r in wire.request_history if "activity_history" in r.url]
