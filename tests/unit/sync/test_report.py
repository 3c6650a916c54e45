"""Summary and thresholds, progress lines, the rejects file (secrets masked)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from airflow_provider_crowdtwist.sync.outcomes import Outcome, RowResult
from airflow_provider_crowdtwist.sync.rejects import (
    MASK,
    NullRejectsWriter,
    RejectsWriter,
    is_secret_field,
    mask_secrets,
    open_rejects,
)
from airflow_provider_crowdtwist.sync.summary import (
    ProgressReporter,
    SyncSummary,
    format_duration,
    summary_table,
    threshold_violation,
    validate_thresholds,
)


def summary_with(**counts: int) -> SyncSummary:
    summary = SyncSummary()
    for name, n in counts.items():
        summary.add(name, n)
    summary.rows_read = sum(counts.values())
    return summary


def test_summary_counts_add_up_and_serialise():
    summary = summary_with(created=5, updated=3, rejected=2)
    summary.requests_sent = 13
    summary.duration_seconds = 2.0
    assert summary.is_consistent()
    data = summary.to_dict()
    assert data["counts"]["created"] == 5 and data["rows_read"] == 10
    assert data["rows_per_second"] == 5.0
    assert json.loads(json.dumps(data)) == data
    assert SyncSummary.from_dict(data).to_dict() == data
    summary.rows_read = 11
    assert not summary.is_consistent()


def test_default_threshold_fails_on_failed_tolerates_rejected():
    assert threshold_violation(summary_with(created=5, rejected=5)) is None
    reason = threshold_violation(summary_with(created=5, failed=1))
    assert reason is not None and "1 row(s) failed" in reason
    assert threshold_violation(summary_with(created=5, unknown=1)) is not None


def test_explicit_thresholds_count_failed_and_rejected_together():
    s = summary_with(created=90, rejected=6, failed=4)
    assert threshold_violation(s, max_failed_rows=10) is None
    assert "max_failed_rows=9" in threshold_violation(s, max_failed_rows=9)
    assert threshold_violation(s, max_failed_ratio=0.1) is None
    assert "max_failed_ratio=0.09" in threshold_violation(s, max_failed_ratio=0.09)
    assert threshold_violation(summary_with(), max_failed_ratio=0.0) is None


@pytest.mark.parametrize(
    ("rows", "ratio", "field"),
    [
        (-1, None, "max_failed_rows"),
        (1.5, None, "max_failed_rows"),
        (None, 2, "max_failed_ratio"),
        (None, float("nan"), "max_failed_ratio"),
        (True, None, "max_failed_rows"),
    ],
)
def test_bad_thresholds_name_the_field(rows, ratio, field):
    with pytest.raises(ValueError, match=field):
        validate_thresholds(rows, ratio)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_progress_logs_at_most_every_interval_with_rate_eta_and_counts(caplog):
    clock = FakeClock()
    log = logging.getLogger("test.progress")
    reporter = ProgressReporter(log, total=100, interval=10.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.progress"):
        for _ in range(20):
            clock.now += 0.25
            reporter.record(Outcome.CREATED)
        assert caplog.records == []  # 5 s: not yet
        for _ in range(20):
            clock.now += 0.25
            reporter.record(Outcome.REJECTED if _ % 2 else Outcome.UPDATED)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert (
        lines[0] == "Progress: 40/100 rows (40.0%), 4.0 rows/s, ETA 15s; created=20, updated=10, rejected=10"
    )


def test_progress_without_total_and_heartbeat(caplog):
    clock = FakeClock()
    reporter = ProgressReporter(logging.getLogger("test.progress2"), interval=10.0, clock=clock)
    reporter.record("created")
    clock.now += 11
    with caplog.at_level(logging.INFO, logger="test.progress2"):
        assert reporter.maybe_log()
        assert not reporter.maybe_log()
    assert caplog.records[0].getMessage().startswith("Progress: 1 rows, 0.1 rows/s")


def test_format_duration():
    assert format_duration(5) == "5s"
    assert format_duration(65) == "1m05s"
    assert format_duration(3725) == "1h02m05s"


def test_summary_table_lists_outcomes_and_figures():
    s = summary_with(created=3, rejected=1)
    s.requests_sent = 7
    s.duration_seconds = 2
    s.rejects_path = "/tmp/r.jsonl"
    s.rejects_written = 1
    table = summary_table(s)
    assert "| created" in table and "| rejected" in table and "updated" not in table
    assert "1 row(s) in /tmp/r.jsonl" in table
    assert "1.750" in table  # requests / row


def test_secret_fields_are_masked_recursively():
    assert is_secret_field("password") and is_secret_field("facebook_access_token")
    assert is_secret_field("twitter_access_token_secret") and not is_secret_field("first_name")
    payload = {"password": "hunter2", "first_name": "A", "custom_data": {"api_key": "k", "x": 1}, "n": None}
    assert mask_secrets(payload) == {
        "password": MASK,
        "first_name": "A",
        "custom_data": {"api_key": MASK, "x": 1},
        "n": None,
    }
    assert payload["password"] == "hunter2"  # a copy


def test_rejects_file_has_every_field_and_no_secret(tmp_path):
    path = tmp_path / "sub" / "rejects.jsonl"
    secret = "S3cret-Passw0rd"
    with RejectsWriter(str(path), redact=lambda t: t.replace("KEY123", "***")) as writer:
        writer.write(
            RowResult(
                7,
                "a@b.co",
                Outcome.REJECTED,
                code="input_error",
                status=400,
                message="row 7: bad KEY123",
                payload={"password": secret, "first_name": "A"},
            )
        )
        writer.write(RowResult(9, None, Outcome.FAILED, code=None, message="row 9: timeout"))
    text = path.read_text()
    assert secret not in text and "KEY123" not in text
    lines = [json.loads(x) for x in text.splitlines()]
    assert lines[0] == {
        "row_number": 7,
        "identifier": "a@b.co",
        "outcome": "rejected",
        "error_code": "input_error",
        "status": 400,
        "message": "row 7: bad ***",
        "payload": {"password": MASK, "first_name": "A"},
    }
    assert lines[1]["outcome"] == "failed" and lines[1]["payload"] is None
    assert writer.written == 2


class FakeRemote:
    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.modes: list[str] = []

    def open(self, mode: str):
        self.modes.append(mode)
        buffer = self.buffer

        class _W(io.BytesIO):
            def close(self_inner) -> None:
                buffer.write(self_inner.getvalue())
                super().close()

        return _W()

    def __str__(self) -> str:
        return "s3://bucket/rejects.jsonl"


def test_remote_rejects_are_uploaded_once_on_close():
    remote = FakeRemote()
    writer = RejectsWriter(remote)
    writer.write(RowResult(1, "x", Outcome.REJECTED, message="m", payload={"password": "p"}))
    assert remote.modes == []
    writer.close()
    writer.close()
    assert remote.modes == ["wb"]
    record = json.loads(remote.buffer.getvalue().decode())
    assert record["payload"] == {"password": MASK}
    assert writer.location == "s3://bucket/rejects.jsonl"


def test_no_target_means_no_file():
    writer = open_rejects(None)
    assert isinstance(writer, NullRejectsWriter)
    writer.write(RowResult(1, "x", Outcome.REJECTED))
    assert writer.written == 0
    assert isinstance(open_rejects("  "), NullRejectsWriter)
