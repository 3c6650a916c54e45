"""How a run ends: ok, degraded or failed, judged once by the frame for every sync plug-in."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from airflow_provider_crowdtwist.sync.config import RunConfig
from airflow_provider_crowdtwist.sync.outcomes import Outcome, RowResult
from airflow_provider_crowdtwist.sync.partition import combine_summaries
from airflow_provider_crowdtwist.sync.run import RowRef, SyncRun
from airflow_provider_crowdtwist.sync.summary import (
    SyncConfigError,
    SyncSummary,
    ThresholdExceededError,
    judge_run,
    summary_table,
    summary_text,
    worst_status,
)

from .test_frame import Recorder


def made(**counts: int) -> SyncSummary:
    summary = SyncSummary()
    for outcome, n in counts.items():
        summary.add(outcome, n)
    summary.rows_read = sum(counts.values())
    return summary


class Rejecting(Recorder):
    """Rejects the rows whose ``n`` is in ``bad``, creates the others."""

    def __init__(self, config: RunConfig, bad: set[int]) -> None:
        super().__init__(config)
        self.bad = bad

    def work(self, item: int) -> RowResult:
        outcome = Outcome.REJECTED if item in self.bad else Outcome.CREATED
        return self.run.result(RowRef(item, str(item)), outcome, "refused" if item in self.bad else None)


def execute(config: RunConfig, rows: int, bad: set[int]) -> SyncSummary:
    sync = Rejecting(config, bad)
    return SyncRun.execute(sync, [pd.DataFrame({"n": list(range(1, rows + 1))})], logging.getLogger("t"))


def test_a_run_where_every_row_was_rejected_fails_by_default():
    with pytest.raises(ThresholdExceededError, match="every row was rejected or failed") as info:
        execute(RunConfig(max_workers=1), 3, {1, 2, 3})
    summary = info.value.summary
    assert summary is not None and summary.status == "failed"
    assert "nothing landed" in (summary.status_reason or "")
    assert summary.to_dict()["status"] == "failed"


def test_fail_when_nothing_landed_false_tolerates_it_as_degraded():
    summary = execute(RunConfig(max_workers=1, fail_when_nothing_landed=False), 3, {1, 2, 3})
    assert summary.count("rejected") == 3
    assert summary.status == "degraded"


def test_above_the_degraded_ratio_succeeds_degraded_below_it_is_ok(caplog):
    with caplog.at_level(logging.WARNING, logger="t"):
        summary = execute(RunConfig(max_workers=1), 10, {1, 2})  # 20 % rejected
    assert summary.status == "degraded"
    assert summary.status_reason == (
        "2 of 10 row(s) were rejected (20.0%), more than degraded_rejected_ratio=0.1"
    )
    assert "status degraded" in caplog.text
    assert execute(RunConfig(max_workers=1), 10, {1}).status == "ok"  # 10 %: not more than 0.1
    assert execute(RunConfig(max_workers=1, degraded_rejected_ratio=0.5), 10, {1, 2}).status == "ok"
    assert execute(RunConfig(max_workers=1, degraded_rejected_ratio=None), 10, {1, 2, 3}).status == "ok"


def test_the_summary_table_shows_the_status():
    summary = made(created=1)
    judge_run(summary, None)
    assert "| status" in summary_table(summary) and summary_table(summary).count("ok") >= 1


def test_judge_run_rules():
    # the sync's own threshold verdict wins
    summary = made(created=5, failed=1)
    assert judge_run(summary, "1 row(s) failed") == "1 row(s) failed"
    assert (summary.status, summary.status_reason) == ("failed", "1 row(s) failed")
    # failed rows tolerated by the thresholds: degraded, they did not land
    summary = made(created=99, failed=1)
    assert judge_run(summary, None) is None and summary.status == "degraded"
    assert "tolerated" in (summary.status_reason or "")
    # skipped / unchanged rows landed nothing new, and that is fine
    summary = made(unchanged=4, skipped=1)
    assert judge_run(summary, None) is None and summary.status == "ok"
    # unknown rows may have been applied: not "nothing landed"
    summary = made(unknown=2)
    assert judge_run(summary, None) is None and summary.status == "degraded"
    # an empty run is not "every row rejected"
    summary = made()
    assert judge_run(summary, None) is None and summary.status == "ok"
    # a failed + rejected mix with nothing else
    summary = made(rejected=1, failed=2)
    problem = judge_run(summary, None)
    assert problem is not None and "1 rejected, 2 failed of 3" in problem


def test_a_bad_degraded_ratio_fails_before_anything_opens():
    sync = Rejecting(RunConfig(max_workers=1, degraded_rejected_ratio=1.5), set())
    with pytest.raises(SyncConfigError, match="degraded_rejected_ratio") as info:
        SyncRun.execute(sync, [pd.DataFrame({"n": [1]})], logging.getLogger("t"))
    assert info.value.field == "degraded_rejected_ratio" and sync.calls == []
    with pytest.raises(SyncConfigError, match="fail_when_nothing_landed"):
        RunConfig(fail_when_nothing_landed="yes").validate()  # type: ignore[arg-type]


def test_summary_text_says_degraded():
    summary = made(created=8, rejected=2)
    judge_run(summary, None)
    text = summary_text("sync_members", summary.to_dict())
    assert text.startswith("sync_members: DEGRADED (2 of 10 row(s) were rejected (20.0%)")


def test_status_round_trips_and_partitions_combine_to_the_worst():
    summary = made(created=1)
    judge_run(summary, None)
    assert SyncSummary.from_dict(summary.to_dict()).status == "ok"
    assert worst_status(["ok", "degraded"]) == "degraded"
    assert worst_status(["ok", "failed", "degraded"]) == "failed"
    assert worst_status([None]) == "ok"
    combined = combine_summaries(
        [
            {"counts": {"created": 1}, "rows_read": 1, "status": "ok", "status_reason": None},
            {"counts": {"rejected": 1}, "rows_read": 1, "status": "failed", "status_reason": "why"},
        ]
    )
    assert combined["status"] == "failed" and combined["status_reason"] == "why"
    assert "statuses" not in combined
