"""The purchase/return plug-in with a scripted POS client: what each answer proves, outcome by outcome."""

from __future__ import annotations

import pathlib
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from airflow_provider_crowdtwist.client.errors import (
    CrowdTwistAuthError,
    CrowdTwistConnectionError,
    CrowdTwistError,
    CrowdTwistNotFoundError,
    CrowdTwistRateLimitError,
    CrowdTwistServerError,
    CrowdTwistValidationError,
)
from airflow_provider_crowdtwist.sync.purchases import (
    PurchaseSyncConfig,
    ReturnSyncConfig,
    sync_purchases,
    sync_returns,
)
from airflow_provider_crowdtwist.sync.summary import SyncAbortedError

Answer = dict[str, Any] | CrowdTwistError


class ScriptedClient:
    """Answers each call from a per-id script (last answer repeats); records every call."""

    def __init__(self, script: dict[str, list[Answer]] | None = None) -> None:
        self.script = script or {}
        self.calls: list[tuple[str, str]] = []
        self.requests_sent = 0
        self.rate_limiter = None
        self.config = SimpleNamespace(id_type="email", api_key="scripted-key", hmac_private_key=None)

    def _answer(self, kind: str, key: str) -> dict[str, Any]:
        self.calls.append((kind, key))
        self.requests_sent += 1
        answers = self.script.get(key, [{}])
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, CrowdTwistError):
            raise answer
        return answer

    def purchase(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._answer("purchase", body["receipt_id"])

    def create_return(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._answer("return", body["return_id"])

    def void_return(self, return_id: str) -> dict[str, Any]:
        return self._answer("void", return_id)

    def redact(self, text: object) -> str:
        return str(text)


def lines(*ids: str) -> list[pd.DataFrame]:
    rows = [
        {
            "receipt_id": i,
            "date_purchased": "2026-12-07T10:00:00Z",
            "total": 5,
            "sku": "A",
            "price": 5,
            "quantity": 1,
        }
        for i in ids
    ]
    return [pd.DataFrame(rows)]


def duplicate(*, ambiguous: bool = False, status: int = 400) -> CrowdTwistValidationError:
    return CrowdTwistValidationError(
        "Receipt id [x] is not unique.", status=status, code="not_unique", ambiguous=ambiguous
    )


def dropped() -> CrowdTwistConnectionError:
    return CrowdTwistConnectionError("connection closed", ambiguous=True, problem="closed")


def unavailable() -> CrowdTwistServerError:
    return CrowdTwistServerError("Service temporarily unavailable.", status=503, ambiguous=True)


#: These tests look at a row's outcome, not at the run's status (a run where nothing landed fails).
ONE_ROW_OUTCOMES = {"max_failed_ratio": 1.0, "fail_when_nothing_landed": False}


def run(client: ScriptedClient, *ids: str, **config: Any) -> Any:
    return sync_purchases(
        client, lines(*ids), PurchaseSyncConfig(max_workers=2, **{**ONE_ROW_OUTCOMES, **config})
    )


def counts(summary: Any) -> dict[str, int]:
    return {k: v for k, v in summary.counts.items() if v}


@pytest.mark.parametrize(
    ("script", "outcome"),
    [
        ([{}], "recorded"),
        ([duplicate()], "skipped"),  # first attempt: an earlier run recorded it
        ([duplicate(ambiguous=True)], "recorded"),  # after an ambiguous attempt in the client: it landed
        ([duplicate(status=409)], "skipped"),
        ([unavailable(), duplicate()], "recorded"),  # resent by the sync, answered "not unique": it landed
        ([dropped(), {}], "recorded"),  # resent, accepted (the drop came before it was applied)
        ([dropped()], "unknown"),  # every resend ambiguous: never "failed"
        (
            [CrowdTwistValidationError("Date purchased is in incorrect format.", status=400, code="invalid")],
            "rejected",
        ),
        ([unavailable(), CrowdTwistValidationError("bad", status=400, code="invalid")], "rejected"),
        ([CrowdTwistRateLimitError("slow down", status=429)], "failed"),  # certainly not applied
    ],
)
def test_what_each_answer_proves(script: list[Answer], outcome: str) -> None:
    client = ScriptedClient({"R1": script})
    summary = run(client, "R1")
    assert counts(summary) == {outcome: 1}
    assert summary.is_consistent()


def test_resends_are_bounded_and_counted() -> None:
    client = ScriptedClient({"R1": [dropped()]})
    summary = run(client, "R1", max_resends=2)
    assert len(client.calls) == 3 and summary.resent == 2


def test_a_credential_failure_aborts() -> None:
    client = ScriptedClient({"R1": [CrowdTwistAuthError("Invalid API key", status=401)]})
    with pytest.raises(SyncAbortedError):
        run(client, "R1", "R2")


def test_lines_of_one_receipt_make_one_request_and_rows_count_receipts() -> None:
    frame = pd.DataFrame(
        [
            {
                "receipt_id": r,
                "date_purchased": "2026-12-07T10:00:00Z",
                "total": 9,
                "sku": s,
                "price": 3,
                "quantity": 1,
            }
            for r, s in [("B", "1"), ("A", "1"), ("B", "2"), ("A", "2"), ("B", "3")]
        ]
    )
    client = ScriptedClient()
    summary = sync_purchases(client, [frame.iloc[:2], frame.iloc[2:]], PurchaseSyncConfig())
    assert sorted(client.calls) == [("purchase", "A"), ("purchase", "B")]
    assert summary.rows_read == 2 and summary.lines_read == 5 and counts(summary) == {"recorded": 2}


def test_ledger_skips_recorded_and_marks_unknown_for_the_next_run(tmp_path: pathlib.Path) -> None:
    ledger = tmp_path / "pos.sqlite"
    client = ScriptedClient({"R1": [{}], "R2": [dropped()]})
    first = run(client, "R1", "R2", ledger_path=ledger, max_resends=0)
    assert counts(first) == {"recorded": 1, "unknown": 1}
    # next run: R1 skipped without a request; R2's "not unique" now proves the earlier attempt landed
    client = ScriptedClient({"R2": [duplicate()]})
    second = run(client, "R1", "R2", ledger_path=ledger)
    assert client.calls == [("purchase", "R2")]
    assert counts(second) == {"skipped": 1, "recorded": 1}
    third_client = ScriptedClient()
    third = run(third_client, "R1", "R2", ledger_path=ledger)
    assert third_client.calls == [] and counts(third) == {"skipped": 2}


def test_dry_run_sends_nothing_and_writes_no_ledger(tmp_path: pathlib.Path) -> None:
    client = ScriptedClient()
    summary = run(client, "R1", dry_run=True, ledger_path=tmp_path / "l.sqlite")
    assert client.calls == [] and counts(summary) == {"recorded": 1}
    assert not (tmp_path / "l.sqlite").exists()


def returns(rows: list[dict[str, Any]]) -> list[pd.DataFrame]:
    base = {
        "original_receipt_id": "R1",
        "date_returned": "2026-12-08T10:00:00Z",
        "sku": "A",
        "price": 5,
        "quantity": 1,
    }
    return [pd.DataFrame([{**base, **row} for row in rows])]


RETURNS = ReturnSyncConfig(
    original_receipt_id_column="original_receipt_id",
    void_column="void",
    max_failed_ratio=1.0,
    fail_when_nothing_landed=False,  # these tests look at one row's outcome, not at the run's status
)


@pytest.mark.parametrize(
    ("script", "outcome"),
    [
        ([{}], "voided"),
        ([CrowdTwistNotFoundError("Return not found", status=404, code="return not found")], "skipped"),
        ([CrowdTwistValidationError("Return not found", status=400, code="return not found")], "skipped"),
        ([unavailable(), CrowdTwistNotFoundError("Return not found", status=404)], "voided"),
    ],
)
def test_voids(script: list[Answer], outcome: str) -> None:
    client = ScriptedClient({"X1": script})
    summary = sync_returns(client, returns([{"return_id": "X1", "void": True}]), RETURNS)
    assert counts(summary) == {outcome: 1} and client.calls[0] == ("void", "X1")


def test_voids_go_after_every_return() -> None:
    order: list[str] = []

    class Ordered(ScriptedClient):
        def _answer(self, kind: str, key: str) -> dict[str, Any]:
            order.append(kind)
            return super()._answer(kind, key)

    rows = [{"return_id": f"X{n}", "void": n % 2 == 0} for n in range(40)]
    summary = sync_returns(Ordered(), returns(rows), RETURNS)
    assert order == ["return"] * 20 + ["void"] * 20
    assert counts(summary) == {"recorded": 20, "voided": 20}


def test_a_refused_return_names_the_receipt_column(tmp_path: pathlib.Path) -> None:
    import dataclasses
    import json

    missing = CrowdTwistNotFoundError("Receipt [R1] cannot be found", status=404, code="receipt_not_found")
    client = ScriptedClient({"X1": [missing]})
    config = dataclasses.replace(RETURNS, rejects_path=tmp_path / "rejects.jsonl")
    summary = sync_returns(client, returns([{"return_id": "X1", "void": False}]), config)
    assert counts(summary) == {"rejected": 1}
    (reject,) = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert (
        reject["message"]
        == "return 'X1' (row 1): Receipt [R1] cannot be found (column 'original_receipt_id')"
    )


def test_partitions_split_receipts_by_id_with_a_ledger_each(tmp_path: pathlib.Path) -> None:
    ids = [f"R{n}" for n in range(40)]
    sent: list[list[str]] = []
    for index in range(2):
        client = ScriptedClient()
        summary = run(client, *ids, partition=(index, 2), ledger_path=tmp_path / "pos.sqlite")
        assert counts(summary) == {"recorded": len(client.calls)} and summary.is_consistent()
        sent.append([key for _, key in client.calls])
    assert all(sent) and sorted(sent[0] + sent[1]) == sorted(ids)  # each receipt in one partition
    assert sorted(p.name for p in tmp_path.glob("pos.part-*.sqlite")) == [
        "pos.part-0-of-2.sqlite",
        "pos.part-1-of-2.sqlite",
    ]
