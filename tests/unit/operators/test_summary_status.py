"""The summary XCom's ``status`` and ``previous_status``: what CrowdTwistAlertNotifier reads.

``execute`` runs for real against the in-process sandbox; the task instance is a stand-in that keeps
XComs by run, as Airflow does, and answers ``include_prior_dates`` pulls the way Airflow's query does
(the newest summary of the task and map index in this run or an earlier one). The real Airflow path is
``tests/e2e/test_assets_and_alerts.py`` (fails, fails again, recovers).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_crowdtwist._compat import AirflowFailException
from airflow_provider_crowdtwist.operators._common import previous_status, push_summary
from airflow_provider_crowdtwist.operators.activity_credit import CrowdTwistActivityCreditOperator
from airflow_provider_crowdtwist.operators.user_sync import CrowdTwistUserSyncOperator
from tests.unit.operators.test_outcome import CONN_ID, RecordingOutletEvents, members


@pytest.fixture
def conn(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    payload = {"conn_type": "crowdtwist", "host": sandbox.base_url, "password": sandbox.api_key}
    payload["extra"] = {"requests_per_minute": 0}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(payload))
    return sandbox


class XComStore:
    """XComs of one task across runs: ``(run number, map index, key) -> value``."""

    def __init__(self) -> None:
        self.values: dict[tuple[int, int, str], Any] = {}
        self.pulls: list[dict[str, Any]] = []


class RunTaskInstance:
    def __init__(self, store: XComStore, run: int, map_index: int = -1) -> None:
        self.store, self.run, self.task_id, self.map_index = store, run, "sync_members", map_index
        self.dag_id, self.run_id, self.try_number = "status", f"scheduled__{run}", 1

    def xcom_push(self, key: str, value: Any) -> None:
        self.store.values[(self.run, self.map_index, key)] = json.loads(json.dumps(value))

    def xcom_pull(self, *, task_ids: str, key: str, include_prior_dates: bool, map_indexes: int) -> Any:
        self.store.pulls.append({"task_ids": task_ids, "include_prior_dates": include_prior_dates})
        assert task_ids == self.task_id
        runs = [
            r
            for (r, m, k) in self.store.values
            if k == key and m == map_indexes and (r <= self.run if include_prior_dates else r == self.run)
        ]
        return self.store.values[(max(runs), map_indexes, key)] if runs else None


def run_op(store: XComStore, run: int, rows: list[dict[str, Any]], map_index: int = -1, **kwargs: Any) -> Any:
    ti = RunTaskInstance(store, run, map_index=map_index)
    op = CrowdTwistUserSyncOperator(
        task_id="sync_members", crowdtwist_conn_id=CONN_ID, rows=rows, max_failed_ratio=1.0, **kwargs
    )
    try:
        op.execute({"ti": ti, "outlet_events": RecordingOutletEvents()})
    except AirflowFailException:
        pass
    except Exception as exc:  # ordinary failures (thresholds) too
        if "AirflowException" not in type(exc).__name__:
            raise
    return store.values[(run, map_index, "summary")]


BROKEN = [{"user_id": "broken1"}, {"user_id": "broken2"}]


def test_previous_status_follows_the_runs_failed_failed_ok(conn: Any) -> None:
    store = XComStore()
    first = run_op(store, 1, BROKEN)
    assert (first["status"], first["previous_status"]) == ("failed", None)
    assert "every row was rejected or failed" in first["text"]
    second = run_op(store, 2, BROKEN)
    assert (second["status"], second["previous_status"]) == ("failed", "failed")
    third = run_op(store, 3, members(2))
    assert (third["status"], third["previous_status"]) == ("ok", "failed")
    fourth = run_op(store, 4, [*members(2), *BROKEN[:1]])  # 1 of 3 rejected: above 10 %
    assert (fourth["status"], fourth["previous_status"]) == ("degraded", "ok")
    assert all(p["include_prior_dates"] for p in store.pulls)


def test_a_mapped_task_reads_its_own_map_index(conn: Any) -> None:
    store = XComStore()
    run_op(store, 1, BROKEN, map_index=0)
    run_op(store, 1, members(1), map_index=1)
    assert run_op(store, 2, members(1), map_index=0)["previous_status"] == "failed"
    assert run_op(store, 2, members(1), map_index=1)["previous_status"] == "ok"


def test_a_failure_before_the_sync_pushes_a_failed_summary(conn: Any) -> None:
    store = XComStore()
    run_op(store, 1, members(1))
    ti = RunTaskInstance(store, 2)
    op = CrowdTwistUserSyncOperator(
        task_id="sync_members", crowdtwist_conn_id=CONN_ID, rows=members(1), field_mapping={"x": "nope"}
    )
    with pytest.raises(AirflowFailException):
        op.execute({"ti": ti})
    pushed = store.values[(2, -1, "summary")]
    assert pushed["status"] == "failed" and pushed["previous_status"] == "ok"
    assert pushed["rows_read"] == 0 and pushed["text"].startswith("sync_members: FAILED (")
    # and the run after it sees that failure, not the older success
    assert run_op(store, 3, members(1))["previous_status"] == "failed"


def test_fail_when_nothing_landed_and_the_degraded_ratio_are_operator_arguments(conn: Any) -> None:
    store = XComStore()
    tolerated = run_op(store, 1, BROKEN, fail_when_nothing_landed=False)
    assert tolerated["status"] == "degraded"
    relaxed = run_op(store, 2, [*members(2), *BROKEN[:1]], degraded_rejected_ratio=0.5)
    assert relaxed["status"] == "ok"
    with pytest.raises(ValueError, match="degraded_rejected_ratio"):
        CrowdTwistUserSyncOperator(task_id="t", rows=[], degraded_rejected_ratio=-0.1)
    with pytest.raises(ValueError, match="fail_when_nothing_landed"):
        CrowdTwistActivityCreditOperator(
            task_id="c", rows=[], activity_id="purchase", allow_duplicates=True, fail_when_nothing_landed=1
        )


def test_previous_status_is_none_without_a_readable_xcom() -> None:
    class Broken:
        task_id, map_index = "t", -1

        def xcom_pull(self, **kwargs: Any) -> Any:
            raise RuntimeError("no API server")

    class Odd(Broken):
        def xcom_pull(self, **kwargs: Any) -> Any:
            return [{"status": "weird"}]

    class Listed(Broken):
        def xcom_pull(self, **kwargs: Any) -> Any:
            return [{"status": "degraded"}]

    assert previous_status(Broken()) is None
    assert previous_status(Odd()) is None
    assert previous_status(Listed()) == "degraded"
    assert previous_status(object()) is None
    summary: dict[str, Any] = {"counts": {}}
    push_summary({"ti": None}, summary)
    assert summary["status"] == "ok" and "previous_status" not in summary
