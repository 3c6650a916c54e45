"""The run skeleton: the one error -> outcome place, typed settings, extra outcomes, not-sent rows."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from enum import Enum
from typing import Literal

import pytest

from airflow_provider_crowdtwist.client import errors as ct
from airflow_provider_crowdtwist.sync.config import RunConfig
from airflow_provider_crowdtwist.sync.outcomes import Outcome
from airflow_provider_crowdtwist.sync.run import NOT_SENT, RowRef, SyncRun
from airflow_provider_crowdtwist.sync.summary import SyncAbortedError, SyncConfigError, SyncSummary

LOG = logging.getLogger("test_run")
ROW = RowRef(7, "a@b.co", {"email": "a@b.co", "password": "s3cret-pw"})


class StubClient:
    """What the frame reads of a client (``SyncClient``): nothing sent, no secrets, no limiter."""

    config = None
    requests_sent = 0
    rate_limiter = None

    @staticmethod
    def redact(text: object) -> str:
        return str(text)


def new_run(**settings: object) -> SyncRun[int]:
    return SyncRun(StubClient(), RunConfig(**settings), SyncSummary(), LOG, title="test")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "ambiguous", "outcome", "aborts"),
    [
        (ct.CrowdTwistAuthError("Unauthorized", status=401), Outcome.FAILED, "failed", True),
        (ct.CrowdTwistForbiddenError("Invalid API key", status=403), Outcome.FAILED, "failed", True),
        (ct.CrowdTwistForbiddenError("User is inactive.", status=403), Outcome.FAILED, "rejected", False),
        (ct.CrowdTwistNotFoundError("User does not exist.", status=404), Outcome.FAILED, "rejected", False),
        (ct.CrowdTwistValidationError("bad s3cret-pw", status=400), Outcome.FAILED, "rejected", False),
        (ct.CrowdTwistServerError("down", status=503, ambiguous=True), Outcome.FAILED, "failed", False),
        (ct.CrowdTwistServerError("down", status=503, ambiguous=True), Outcome.UNKNOWN, "unknown", False),
        (ct.CrowdTwistConnectionError("refused"), Outcome.UNKNOWN, "failed", False),
        (RuntimeError("bug"), Outcome.UNKNOWN, "unknown", False),
        (RuntimeError("bug"), Outcome.FAILED, "failed", False),
    ],
)
def test_one_place_turns_an_error_into_an_outcome(error, ambiguous, outcome, aborts):
    run = new_run()
    result = run.error_result(ROW, error, ambiguous=ambiguous, dedupe_key="k1")
    assert str(result.outcome) == outcome
    assert result.message.startswith("row 7: ") and "s3cret-pw" not in result.message
    assert result.extra == {"dedupe_key": "k1"}
    assert run.stop.is_set() is aborts and (run.abort_reason is not None) is aborts


@pytest.mark.parametrize(
    ("password", "minimum", "message"),
    [
        ("c", 5, "row 7: check the host c"),  # shorter than the minimum: left, the message is whole
        ("s3cret-pw", 5, "row 7: check the host ***"),
        ("c", 1, "row 7: ***he***k the host ***"),  # what every length masked did
    ],
)
def test_member_passwords_are_masked_from_airflows_minimum_length(password, minimum, message):
    @dataclass
    class Settings:  # the client's config, as the hook builds it from Airflow's [logging] setting
        min_length_masked_secret: int

    client = StubClient()
    client.config = Settings(minimum)  # type: ignore[assignment]
    run = SyncRun(client, RunConfig(), SyncSummary(), LOG, title="test")  # type: ignore[arg-type]
    row = RowRef(7, "a@b.co", {"email": "a@b.co", "password": password})
    error = ct.CrowdTwistValidationError(f"check the host {password}", status=400)
    assert run.error_result(row, error).message == message


def test_send_yields_every_item_and_marks_the_rest_not_sent_after_an_abort():
    run = new_run(max_workers=1)

    def work(n: int):
        if n == 3:
            return run.error_result(RowRef(n, None), ct.CrowdTwistAuthError("Unauthorized", status=401))
        return run.result(RowRef(n, None), Outcome.CREATED)

    results = dict(run.send(range(1, 101), work, lambda n: RowRef(n, None)))
    assert sorted(results) == list(range(1, 101))
    not_sent = [n for n, r in results.items() if r.code == NOT_SENT]
    assert len(not_sent) >= 90 and all("not sent" in results[n].message for n in not_sent)
    for r in results.values():
        run.record(r)
    run.summary.rows_read = 100
    run.close()
    with pytest.raises(SyncAbortedError, match="401"):
        run.finish()


def test_rows_are_numbered_across_chunks_and_extra_outcomes_are_counted():
    class Lifecycle(str, Enum):
        DEACTIVATED = "deactivated"

    run = SyncRun(StubClient(), RunConfig(), SyncSummary(), LOG, title="t", outcomes=[Lifecycle.DEACTIVATED])  # type: ignore[arg-type]
    assert [run.read_row() for _ in range(3)] == [1, 2, 3]
    run.summary.rows_removed = 1
    for n in (1, 2, 3):
        run.record(run.result(RowRef(n, None), Outcome.UPDATED))
    run.record(run.result(RowRef(0, "gone"), Lifecycle.DEACTIVATED, "removed from the source"))
    run.summary.count_requests("history")
    run.close()
    run.finish()
    run.summary.duration_seconds = 2.0
    data = run.summary.to_dict()
    assert data["counts"]["deactivated"] == 1 and data["rows_removed"] == 1
    assert data["request_counts"] == {"history": 1}
    assert run.summary.is_consistent()
    assert SyncSummary.from_dict(data).to_dict() == data


@dataclass(kw_only=True)
class _Config(RunConfig):
    colour: Literal["red", "blue"] = "red"
    limit: int | None = None


@pytest.mark.parametrize(
    ("settings", "field", "fragment"),
    [
        ({"colour": "green"}, "colour", "colour 'green' is not one of red, blue"),
        ({"limit": "3"}, "limit", "limit must be an integer or None"),
        ({"dry_run": "yes"}, "dry_run", "dry_run must be True or False"),
        ({"max_workers": 0}, "max_workers", "max_workers must be an integer from 1 to 256"),
        ({"max_failed_ratio": 2.0}, "max_failed_ratio", "max_failed_ratio"),
        ({"progress_interval": 0}, "progress_interval", "progress_interval must be > 0"),
    ],
)
def test_settings_are_checked_from_their_types_naming_the_field(settings, field, fragment):
    with pytest.raises(SyncConfigError, match=fragment) as info:
        _Config(**settings).validate()
    assert info.value.field == field


def test_a_stop_event_set_from_outside_ends_the_run_as_aborted():
    stop = threading.Event()
    stop.set()
    run = new_run(stop_event=stop)
    results = list(
        run.send([1, 2], lambda n: run.result(RowRef(n, None), Outcome.CREATED), lambda n: RowRef(n, None))
    )
    assert [r.code for _, r in results] == [NOT_SENT, NOT_SENT]
    for _, r in results:
        run.record(r)
    run.summary.rows_read = 2
    run.close()
    with pytest.raises(SyncAbortedError, match="stopped"):
        run.finish()
