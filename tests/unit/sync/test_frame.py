"""The frame: SyncRun.execute calls a plug-in in one fixed order, wave by wave, and closes on every path."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from airflow_provider_crowdtwist.client import errors as ct
from airflow_provider_crowdtwist.sync.config import RunConfig
from airflow_provider_crowdtwist.sync.outcomes import Outcome, RowResult
from airflow_provider_crowdtwist.sync.protocol import SyncBase
from airflow_provider_crowdtwist.sync.run import RowRef, SyncRun
from airflow_provider_crowdtwist.sync.summary import SyncSummary, ThresholdExceededError

from .test_run import StubClient


class Recorder(SyncBase):
    """A plug-in that sends each row's ``n`` and remembers the order of the calls it got."""

    title = "test sync"

    def __init__(self, config: RunConfig, *, fail_open: bool = False, raise_on: int | None = None) -> None:
        self.config = config.resolved("email")
        self.client = StubClient()  # type: ignore[assignment]
        self.summary = SyncSummary()
        self.calls: list[str] = []
        self.fail_open = fail_open
        self.raise_on = raise_on

    def open(self, run: SyncRun) -> None:
        self.run = run
        self.calls.append("open")
        if self.fail_open:
            raise RuntimeError("state in use")

    def plan(self, chunk: pd.DataFrame) -> Iterator[list[int]]:
        numbers = [n for n, _ in self.run.rows(chunk, "n", lower=False)]
        self.calls.append(f"plan {numbers}")
        yield numbers
        self.calls.append("after the wave")  # runs only once every result of the wave is recorded

    def ref(self, item: int) -> RowRef:
        return RowRef(item, str(item))

    def work(self, item: int) -> RowResult:
        if item == self.raise_on:
            raise ct.CrowdTwistServerError("boom", status=500)
        return self.run.result(self.ref(item), Outcome.CREATED)

    def recorded(self, item: int, result: RowResult) -> RowResult:
        self.calls.append(f"recorded {item}")
        return result

    def after_source(self) -> Iterator[list[int]]:
        self.calls.append("after_source")
        return iter(())

    def close(self) -> None:
        self.calls.append("close")


def test_execute_calls_the_plug_in_in_one_order_wave_by_wave():
    sync = Recorder(RunConfig(max_workers=1))
    chunks = [pd.DataFrame({"n": [1, 2]}), pd.DataFrame({"n": [3]})]
    summary = SyncRun.execute(sync, chunks, logging.getLogger("test_frame"))
    assert sync.calls == [
        "open",
        "plan [1, 2]",
        "recorded 1",
        "recorded 2",
        "after the wave",
        "plan [3]",
        "recorded 3",
        "after the wave",
        "after_source",
        "close",
    ]
    assert summary is sync.summary and summary.count(Outcome.CREATED) == 3 and summary.is_consistent()
    assert sync.config.id_type == "email"  # resolved once, by the plug-in


def test_an_open_that_raises_is_still_closed_and_nothing_is_read():
    sync = Recorder(RunConfig(), fail_open=True)
    with pytest.raises(RuntimeError, match="state in use"):
        SyncRun.execute(sync, [pd.DataFrame({"n": [1]})])
    assert sync.calls == ["open", "close"]


def test_an_error_in_the_work_is_the_rows_outcome_and_the_threshold_decides():
    sync = Recorder(RunConfig(max_workers=2), raise_on=2)
    with pytest.raises(ThresholdExceededError) as info:
        SyncRun.execute(sync, [pd.DataFrame({"n": [1, 2, 3]})])
    summary: Any = info.value.summary
    assert summary.count(Outcome.FAILED) == 1 and summary.count(Outcome.CREATED) == 2
    assert sync.calls[-1] == "close"


def test_a_bad_setting_fails_before_the_plug_in_opens():
    sync = Recorder(RunConfig(max_workers=0))
    with pytest.raises(ValueError, match="max_workers"):
        SyncRun.execute(sync, [pd.DataFrame({"n": [1]})])
    assert sync.calls == []
