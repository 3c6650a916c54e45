"""Print the sync summaries of a DAG run, read from the Airflow metadata database after the run.

The operators return a small summary dict as their XCom (counts by outcome, rows/s, where the rejects
went). ``airflow dags test`` buries those in log lines; this reads them back from the metadata DB and
prints one clear table, so the demo can end with what actually happened to every row.

It reads the SQLite metadata DB directly (``$AIRFLOW_HOME/airflow.db``) rather than through Airflow's
ORM: the ``xcom`` and ``dag_run`` tables have the same columns on Airflow 2.11 and 3.x, the value is
JSON on both, and a plain ``sqlite3`` read takes milliseconds instead of importing Airflow.

Usage::

    python scripts/show_summaries.py --airflow-home .demo/airflow --dag-id crowdtwist_loyalty_sync
    python scripts/show_summaries.py ... --json     # machine-readable, used by the e2e tests
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

OUTCOMES = ("created", "updated", "unchanged", "credited", "skipped", "rejected", "failed", "unknown")

#: One line per outcome, printed under the table for each outcome that occurred: a first-time reader
#: should not have to look up why a row was "skipped" or what "unknown" asks of them.
MEANINGS = {
    "created": "a new member CrowdTwist did not have",
    "updated": "a member CrowdTwist had, changed to what the source says",
    "unchanged": "the same as at the last run (state_path): no request was needed",
    "credited": "CrowdTwist awarded the activity (verified where the answer was ambiguous)",
    "skipped": "not sent on purpose, with the reason in the log: a duplicate of another row of the "
    "same member or dedupe key (the last row wins), or a credit the ledger already holds",
    "rejected": "refused (by a documented rule, or by CrowdTwist): the rejects file names the row, the "
    "column and the reason; fix the source and rerun",
    "failed": "CrowdTwist certainly did not apply it (e.g. a 5xx before anything was written): a rerun "
    "sends it again",
    "unknown": "sent, but not provable yet either way: the next run looks it up before sending anything",
}


def latest_run_id(db: Path, dag_id: str) -> str | None:
    """The run id of the most recent run of ``dag_id`` (highest ``dag_run.id``)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = con.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
    finally:
        con.close()
    return row[0] if row else None


def read_summaries(db: Path, dag_id: str, run_id: str | None = None) -> dict[str, dict[str, Any]]:
    """``{task_id: summary}`` for every task of the run whose return value looks like a sync summary."""
    run_id = run_id or latest_run_id(db, dag_id)
    if run_id is None:
        return {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT task_id, value FROM xcom WHERE dag_id = ? AND run_id = ? AND key = 'return_value' "
            "ORDER BY timestamp",
            (dag_id, run_id),
        ).fetchall()
    finally:
        con.close()
    found: dict[str, dict[str, Any]] = {}
    for task_id, raw in rows:
        if isinstance(raw, bytes):  # Airflow 2 stores the JSON as a blob
            raw = raw.decode("utf-8")
        try:
            value = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("counts"), dict):
            found[task_id] = value
    return found


def format_table(summaries: dict[str, dict[str, Any]]) -> str:
    """One line per task: counts by outcome (only outcomes that occurred), rows, rows/s, rejects."""
    if not summaries:
        return "(no sync summaries found in this run)"
    used = [o for o in OUTCOMES if any(s["counts"].get(o) for s in summaries.values())] or ["created"]
    header = ["task", *used, "rows", "requests", "seconds", "rows/s"]
    lines = []
    for task_id, s in summaries.items():
        lines.append(
            [
                task_id,
                *(str(s["counts"].get(o, 0)) for o in used),
                str(s.get("rows_read", "")),
                str(s.get("requests_sent", "")),
                f"{float(s.get('duration_seconds') or 0):.2f}",
                # a rate over a run that sent nothing (all unchanged or skipped) means nothing
                f"{float(s.get('rows_per_second') or 0):.0f}" if s.get("requests_sent") else "-",
            ]
        )
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [fmt(header), fmt(["-" * w for w in widths]), *(fmt(line) for line in lines)]
    for outcome in used:
        if outcome in MEANINGS and any(s["counts"].get(outcome) for s in summaries.values()):
            out.append(f"  {outcome}: {MEANINGS[outcome]}")
    for task_id, s in summaries.items():
        if s.get("rejects_path"):
            out.append(
                f"{task_id}: {s.get('rejects_written', 0)} rejected/failed rows -> {s['rejects_path']}"
            )
        if s.get("dry_run"):
            out.append(f"{task_id}: dry run (nothing was sent)")
        if s.get("aborted"):
            out.append(f"{task_id}: aborted: {s['aborted']}")
    return "\n".join(out)


def reject_reasons(path: Path) -> list[tuple[int, str]]:
    """``(count, example message)`` per kind of problem in a rejects file, most frequent first.

    A kind is the error code plus the part of the message that names the field ("row 7: first_name:
    contains ..." -> first_name), so a thousand rows with one problem read as one line.
    """
    kinds: dict[tuple[str, str], list[Any]] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            record = json.loads(line)
            message = str(record.get("message") or "")
            body = message.split(": ", 1)[1] if message.startswith("row ") and ": " in message else message
            key = (str(record.get("error_code") or record.get("outcome")), body.split(":", 1)[0])
            entry = kinds.setdefault(key, [0, message])
            entry[0] += 1
    return sorted(((n, example) for n, example in kinds.values()), key=lambda x: -x[0])


def format_reasons(summaries: dict[str, dict[str, Any]], width: int = 160) -> str:
    """Per task, the kinds of rejected rows with a count and one example (local rejects files only)."""
    out: list[str] = []
    for task_id, s in summaries.items():
        target = s.get("rejects_path")
        if not target or "://" in str(target) or not Path(target).is_file():
            continue
        for n, example in reject_reasons(Path(target)):
            text = example if len(example) <= width else example[: width - 3] + "..."
            out.append(f"{task_id}: {n:>5} x {text}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--airflow-home", type=Path, default=Path(os.environ.get("AIRFLOW_HOME", ".")))
    parser.add_argument("--dag-id", required=True)
    parser.add_argument("--run-id")
    parser.add_argument("--json", action="store_true", help="print the summaries as JSON")
    parser.add_argument("--reasons", action="store_true", help="also group the rejected rows by reason")
    args = parser.parse_args(argv)
    db = args.airflow_home / "airflow.db"
    if not db.exists():
        print(f"no Airflow metadata DB at {db}", file=sys.stderr)
        return 2
    summaries = read_summaries(db, args.dag_id, args.run_id)
    print(json.dumps(summaries, indent=2, sort_keys=True) if args.json else format_table(summaries))
    if args.reasons and not args.json:
        reasons = format_reasons(summaries)
        if reasons:
            print("\nrejected rows by reason (count x first example):")
            print(reasons)
    return 0 if summaries else 1


if __name__ == "__main__":
    sys.exit(main())
