"""The CrowdTwist pages as plain functions: what the tab and the syncs page show, escaped, and fast."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_crowdtwist.plugins.charts import HistoryPoint, history_chart, outcome_bars
from airflow_provider_crowdtwist.plugins.files import FileRead, read_jsonl, top_reasons
from airflow_provider_crowdtwist.plugins.render import (
    TaskRun,
    render_syncs_page,
    render_tab_for,
    render_task_tab,
    tab_href,
)

T0 = datetime(2026, 11, 22, 1, 0, tzinfo=timezone.utc)


def summary(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "counts": {"created": 7, "updated": 2, "unchanged": 0, "skipped": 0, "rejected": 2, "failed": 1},
        "rows_read": 12,
        "requests_sent": 21,
        "duration_seconds": 3.25,
        "rows_per_second": 3.69,
        "rejects_path": None,
        "rejects_written": 3,
        "rate_limit": {
            "configured_requests_per_minute": 10000,
            "learned_requests_per_minute": 600,
            "rate_limited": 4,
        },
        "text": "sync: ok: 12 rows read",
    }
    data.update(over)
    return data


def run(summary_: dict[str, Any] | None = None, **over: Any) -> TaskRun:
    fields: dict[str, Any] = {
        "dag_id": "members_nightly",
        "run_id": "manual__2026-11-22T01:00:00+00:00",
        "task_id": "sync_members",
        "map_index": -1,
        "state": "success",
        "operator": "CrowdTwistUserSyncOperator",
        "try_number": 1,
        "start_date": T0,
        "end_date": T0,
        "summary": summary_,
    }
    fields.update(over)
    return TaskRun(**fields)


def cells(html: str, table: str) -> dict[str, str]:
    """outcome -> count cell of the tab's counts table."""
    part = html.split(f"<table class='{table}'>", 1)[1].split("</table>", 1)[0]
    return dict(re.findall(r"data-outcome='([^']+)'><t[dh]>[^<]*</t[dh]><t[dh] class='n'>([^<]+)<", part))


def write_rejects(path: Path, n: int) -> None:
    lines = []
    for i in range(1, n + 1):
        if i % 3:
            rec = {"row_number": i, "outcome": "rejected", "error_code": None, "message": f"row {i}: column "
                   f"'email': 'x{i}@' is not an email address"}  # fmt: skip
        else:
            rec = {"row_number": i, "outcome": "failed", "error_code": "server_error", "status": 503,
                   "message": "CrowdTwist answered 503"}  # fmt: skip
        lines.append(json.dumps(rec))
    path.write_text("\n".join(lines) + "\n")


def test_tab_shows_the_summary_counts_figures_and_text() -> None:
    html = render_task_tab(run(summary()), FileRead(None), [], FileRead(None))
    assert cells(html, "counts") == {
        "created": "7", "updated": "2", "unchanged": "0", "skipped": "0", "rejected": "2", "failed": "1",
        "total": "12",
    }  # fmt: skip
    for figure in ("3.7</b><span>rows/s", "21</b><span>requests", "4</b><span>429s",
                   "600</b><span>learned rate /min", "3.2 s</b><span>duration"):  # fmt: skip
        assert figure in html
    assert '<svg class="chart bars"' in html and "<title>created: 7</title>" in html
    assert "<title>unchanged: 0</title>" not in html  # the chart draws the outcomes that happened
    assert "No calls recorded" in html


def test_tab_shows_the_summarys_status_and_the_previous_one() -> None:
    degraded = summary(status="degraded", previous_status="ok", text="sync: DEGRADED (2 of 12 rejected)")
    html = render_task_tab(run(degraded), FileRead(None), [], FileRead(None))
    assert "<span class='status degraded'>degraded</span>" in html
    assert "Status of the previous run: ok" in html and "DEGRADED (2 of 12 rejected)" in html
    failed = run(summary(status="failed"), state="failed")
    assert failed.status == "failed"
    assert run(summary(), state="success").status == "success"  # an older summary without a status


def test_tab_lists_top_reject_reasons_with_an_example_row(tmp_path: Path) -> None:
    path = tmp_path / "rejects.jsonl"
    write_rejects(path, 9)
    rejects = read_jsonl(str(path), 100)
    reasons = top_reasons(rejects.records)
    # rows 1,2,4,5,7,8 share one reason although each message names its own value
    assert [(r.count, r.outcome, r.example_row) for r in reasons] == [(6, "rejected", 1), (3, "failed", 3)]
    assert reasons[0].message == "row 1: column 'email': 'x1@' is not an email address"
    html = render_task_tab(run(summary(rejects_path=str(path))), rejects, reasons, FileRead(None))
    assert "&#x27;x1@&#x27; is not an email address" in html and "server_error" in html


def test_a_rejects_file_on_another_disk_or_in_a_bucket_is_named_not_read() -> None:
    remote = read_jsonl("s3://bucket/rejects.jsonl", 10)
    assert remote.problem and "local" in remote.problem and not remote.records
    missing = read_jsonl("/nonexistent/rejects.jsonl", 10)
    assert missing.problem and "not found" in missing.problem
    html = render_task_tab(run(summary(rejects_path="s3://bucket/rejects.jsonl")), remote, [], FileRead(None))
    assert "s3://bucket/rejects.jsonl" in html


def test_calls_file_is_rendered_when_the_summary_names_one(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    call = {"method": "PUT", "path": "/v2/users/h:9f2c", "request_body": {"first_name": "h:1a2b"},
            "status": 429, "response_body": {"error": "rate_limited"}, "latency_ms": 12.5, "attempt": 2,
            "ambiguous": False}  # fmt: skip
    path.write_text(
        json.dumps(call) + "\nnot json\n" + json.dumps({**call, "status": 500, "ambiguous": True})
    )
    calls = read_jsonl(path.as_uri(), 200)
    assert len(calls.records) == 2 and not calls.truncated
    html = render_task_tab(run(summary(calls_path=path.as_uri())), FileRead(None), [], calls)
    assert "/v2/users/h:9f2c" in html and "rate_limited" in html and ">429<" in html and ">yes<" in html
    assert "No calls recorded" not in html


def test_everything_from_a_summary_or_a_file_is_escaped() -> None:
    evil = "<script>alert(1)</script>"
    html = render_task_tab(
        run(summary(text=evil, counts={evil: 1}), task_id=evil, run_id=evil),
        FileRead(None),
        [],
        FileRead("x", records=[{"method": evil, "path": evil, "response_body": evil}]),
    )
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_a_task_without_summary_says_so() -> None:
    html = render_task_tab(run(None, state="running"), FileRead(None), [], FileRead(None))
    assert "No summary yet: the task is running" in html


def test_tab_links_are_relative_and_encoded() -> None:
    r = run(summary(), run_id="scheduled__2026-11-22T00:00:00+00:00", map_index=3)
    assert tab_href(r) == (
        "../dags/members_nightly/runs/scheduled__2026-11-22T00%3A00%3A00%2B00%3A00/tasks/sync_members"
        "/mapped/3/plugin/crowdtwist-run"
    )


def test_syncs_page_groups_runs_per_sync_with_a_history_chart() -> None:
    runs = [
        run(summary(rows_read=12), run_id="r3"),
        run(summary(rows_read=10, counts={"created": 8, "rejected": 2}), run_id="r2"),
        run(None, run_id="r1", state="failed"),
        run(
            summary(),
            dag_id="credits",
            task_id="credit_points",
            run_id="c1",
            operator="CrowdTwistActivityCreditOperator",
        ),
    ]
    html = render_syncs_page(runs)
    assert html.count("<section class='sync'") == 2
    assert re.findall(r"data-run-id='([^']+)'", html) == ["r3", "r2", "r1", "c1"]
    assert "href='../dags/members_nightly/runs/r3/tasks/sync_members/plugin/crowdtwist-run'" in html
    assert "target='_top'" in html and "no summary" in html
    assert html.count('<svg class="chart history"') == 1  # members_nightly has 3 runs, credits 1
    assert "No CrowdTwist task has run" in render_syncs_page([])


def test_charts_scale_and_tolerate_zeros() -> None:
    svg = outcome_bars([("created", 0), ("rejected", 0)])
    assert 'width="0"' in svg and "<title>rejected: 0</title>" in svg
    assert history_chart([]) == ""
    one = history_chart([HistoryPoint("a", 5, 1)])
    assert one.count("<circle") == 2 and "<polyline" not in one
    many = history_chart([HistoryPoint(str(i), i * 10, i) for i in range(5)])
    assert many.count("<polyline") == 2


def test_dark_mode_and_no_external_resources() -> None:
    html = render_syncs_page([run(summary())])
    assert "prefers-color-scheme:dark" in html
    assert "<script" not in html and "http://" not in html and "https://" not in html


@pytest.mark.slow
def test_the_tab_of_a_million_row_run_renders_in_under_a_second(tmp_path: Path) -> None:
    """A million rows, all rejected: the rejects file has a million lines; the tab reads only its head."""
    path = tmp_path / "rejects.jsonl"
    line = '{"row_number": %d, "outcome": "rejected", "error_code": null, "message": "bad email"}\n'
    with path.open("w") as handle:
        for start in range(1, 1_000_001, 100_000):
            handle.write("".join(line % i for i in range(start, start + 100_000)))
    big = summary(
        counts={"created": 0, "rejected": 1_000_000}, rows_read=1_000_000, rejects_path=str(path),
        rejects_written=1_000_000,
    )  # fmt: skip
    began = time.perf_counter()
    html = render_tab_for(run(big))
    elapsed = time.perf_counter() - began
    print(f"tab of a 1,000,000-row run rendered in {elapsed * 1000:.0f} ms")
    assert elapsed < 1.0, f"{elapsed:.2f} s"
    assert "1,000,000" in html and "the first 5,000 of 1,000,000 rows written" in html
