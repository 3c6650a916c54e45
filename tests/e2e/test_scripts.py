"""The helper scripts behind the demo and the e2e tests, and the promises the README makes about them.

Fast (no Airflow run): the sample warehouse is deterministic and plants exactly the defects the e2e
tests count on; the summary reader understands both Airflow lines' XCom storage; the README's test
command is the one CI runs.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from tests.e2e.conftest import REPO, WAREHOUSE_END, make_warehouse, show_summaries


def test_warehouse_is_deterministic_and_plants_each_defect() -> None:
    members = make_warehouse.generate_members(1000, seed=3, end=WAREHOUSE_END)
    again = make_warehouse.generate_members(1000, seed=3, end=WAREHOUSE_END)
    assert members == again
    assert members != make_warehouse.generate_members(1000, seed=4, end=WAREHOUSE_END)

    broken_email = [m for m in members if not re.fullmatch(r"[^@]+@[^@]+\.[a-z]+", m["user_id"])]
    no_postal = [m for m in members if m["country_code"] == "US" and not m["postal_code"]]
    bad_name = [m for m in members if "!" in m["first_name"]]
    assert broken_email and no_postal and bad_name
    dirty = {id(m) for m in broken_email + no_postal + bad_name}
    assert [m for m in members if not make_warehouse._is_clean(m)] == [m for m in members if id(m) in dirty]
    # Exactly one member is listed twice, and the later row is the more recent one.
    emails = [m["user_id"] for m in members]
    (twice,) = {e for e in emails if emails.count(e) == 2}
    first, last = [m for m in members if m["user_id"] == twice]
    assert last["updated_at"] > first["updated_at"]


def test_events_fall_in_the_window_and_belong_to_clean_members() -> None:
    members = make_warehouse.generate_members(500, seed=5, end=WAREHOUSE_END)
    events = make_warehouse.generate_events(members, 2000, seed=5, end=WAREHOUSE_END, days=3)
    assert events == make_warehouse.generate_events(members, 2000, seed=5, end=WAREHOUSE_END, days=3)
    clean = {m["user_id"] for m in members if make_warehouse._is_clean(m)}
    assert {e["user_email"] for e in events} <= clean
    assert len({e["event_id"] for e in events}) == len(events)
    assert all("2026-11-19 00:00:00" <= e["event_time"] < "2026-11-22 00:00:00" for e in events)
    unknown = [e for e in events if e["activity_id"] not in make_warehouse.ACTIVITIES]
    assert unknown and {e["activity_id"] for e in unknown} == {make_warehouse.UNKNOWN_ACTIVITY}
    assert all(e["points"] is None for e in events if e["activity_id"] in ("signup", "review", "birthday"))


def test_make_warehouse_cli_writes_sqlite_and_csv(tmp_path: Path) -> None:
    db, csv_file = tmp_path / "w.db", tmp_path / "m.csv"
    assert make_warehouse.main(["--db", str(db), "--members-csv", str(csv_file), "--members", "50",
                                "--events", "80", "--end-date", "2026-11-22"]) == 0  # fmt: skip
    con = sqlite3.connect(db)
    try:
        assert con.execute("SELECT count(*) FROM members").fetchone()[0] == 51  # 50 + one listed twice
        assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 80
        assert con.execute("SELECT max(event_time) FROM events").fetchone()[0] < "2026-11-22"
    finally:
        con.close()
    lines = csv_file.read_text().splitlines()
    assert lines[0].split(",") == list(make_warehouse.MEMBER_COLUMNS)
    assert len(lines) == 52


def _xcom_db(path: Path, value: object, *, as_blob: bool) -> None:
    con = sqlite3.connect(path)
    con.executescript(
        "CREATE TABLE dag_run (id INTEGER PRIMARY KEY, dag_id TEXT, run_id TEXT);"
        "CREATE TABLE xcom (dag_id TEXT, task_id TEXT, run_id TEXT, key TEXT, value, timestamp TEXT);"
    )
    con.execute("INSERT INTO dag_run (dag_id, run_id) VALUES ('d', 'old')")
    con.execute("INSERT INTO dag_run (dag_id, run_id) VALUES ('d', 'new')")
    raw = json.dumps(value)
    stored = raw.encode() if as_blob else raw
    for run_id, task in (("old", "stale"), ("new", "sync"), ("new", "other")):
        payload = stored if task != "other" else json.dumps([1, 2])
        con.execute("INSERT INTO xcom VALUES ('d', ?, ?, 'return_value', ?, '2026')", (task, run_id, payload))
    con.commit()
    con.close()


def test_show_summaries_reads_both_airflow_lines_and_formats_a_table(tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.jsonl"
    rejects.write_text(
        "\n".join(
            json.dumps({"row_number": n, "error_code": code, "message": f"row {n}: {field}: bad"})
            for n, code, field in (
                (1, "invalid_value", "first_name"),
                (4, "invalid_value", "first_name"),
                (9, "create_requirements", "location"),
            )
        )
    )
    summary = {
        "counts": {"created": 7, "rejected": 3, "failed": 0},
        "rows_read": 10,
        "requests_sent": 12,
        "duration_seconds": 0.5,
        "rows_per_second": 20.0,
        "rejects_path": str(rejects),
        "rejects_written": 3,
    }
    for as_blob in (False, True):  # Airflow 3 stores JSON text, Airflow 2 a blob
        db = tmp_path / f"airflow-{as_blob}.db"
        _xcom_db(db, summary, as_blob=as_blob)
        found = show_summaries.read_summaries(db, "d")
        assert found == {"sync": summary}  # latest run only; non-summary XComs ignored
    table = show_summaries.format_table(found)
    header, _, row = table.splitlines()[:3]
    assert header.split() == ["task", "created", "rejected", "rows", "requests", "seconds", "rows/s"]
    assert row.split() == ["sync", "7", "3", "10", "12", "0.50", "20"]
    assert f"3 rejected/failed rows -> {rejects}" in table
    # each outcome that occurred is explained once, under the table; the others are not
    assert "  created: a new member" in table and "  rejected: refused" in table
    assert "skipped:" not in table and "failed:" not in table
    nothing_sent = {**summary, "counts": {"unchanged": 10}, "requests_sent": 0}
    quiet = show_summaries.format_table({"again": nothing_sent})
    assert quiet.splitlines()[2].split()[-1] == "-"  # no rate for a run that sent nothing
    reasons = show_summaries.format_reasons(found)
    assert reasons.splitlines() == [
        "sync:     2 x row 1: first_name: bad",
        "sync:     1 x row 9: location: bad",
    ]


def test_readme_test_command_is_what_ci_runs() -> None:
    """The first code line of the README that mentions "test" is run verbatim by .ci/run."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```[a-z]*\n(.*?)```", readme, flags=re.S)
    assert blocks and blocks[0].strip() == "bash scripts/demo", "the README's first command is the demo"
    code_lines = [line.strip() for block in blocks for line in block.splitlines()]
    first_test = next(line for line in code_lines if "test" in line)
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert first_test in ci_lines
    # the Airflow 2.11 line runs the same command, leaving out the tests marked slow (docs in .ci/run)
    assert f'AIRFLOW_LINE=2 {first_test} -m "not slow"' in ci_lines
    assert "set -euo pipefail" in ci_lines
