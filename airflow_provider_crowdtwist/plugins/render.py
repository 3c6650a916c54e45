"""The HTML of the CrowdTwist pages: the task-instance tab and the syncs page, as plain strings.

Server-rendered on purpose: no front-end build in the repository, nothing to keep in step with the
Airflow UI's React version, and a page that is complete in its first answer (the tab of a
million-row run is a summary, a reasons table and a few calls). Every value from a summary, a file
or a run id is escaped here. Links are relative, so the pages work under any ``[api] base_url``
prefix: the pages live at ``<root>/crowdtwist/...`` and reach the Airflow UI through ``../``.
Colours are CSS variables with a ``prefers-color-scheme: dark`` set.

No Airflow import: the API-server glue (``plugins/app.py``) gathers :class:`TaskRun` values and the
file reads, these functions only turn them into HTML.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

from airflow_provider_crowdtwist.plugins.charts import HistoryPoint, history_chart, outcome_bars
from airflow_provider_crowdtwist.plugins.files import (
    CALLS_SHOWN,
    REJECTS_SCANNED,
    FileRead,
    RejectReason,
    read_jsonl,
    top_reasons,
)

#: The ``url_route`` of the task-instance tab and of the Browse page in the Airflow UI.
TAB_ROUTE = "crowdtwist-run"
SYNCS_ROUTE = "crowdtwist-syncs"
#: Outcomes listed first, in this order (the engine's table order); others follow as found.
OUTCOME_ORDER = (
    "created", "updated", "credited", "unchanged", "skipped",
    "deactivated", "deleted", "reactivated", "rejected", "failed", "unknown",
)  # fmt: skip
BAD = frozenset({"rejected", "failed", "unknown"})
#: Runs drawn on a sync's history chart.
HISTORY_POINTS = 30

STYLE = """
:root{--bg:#fff;--fg:#1a202c;--muted:#5a6475;--line:#d9dee7;--card:#f6f8fb;--good:#2f855a;
--bad:#c53030;--accent:#2b6cb0;--rows:#3182ce;--rejects:#dd6b20;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#141821;--fg:#e6e9ef;--muted:#9aa4b5;--line:#2c3340;
--card:#1c222d;--good:#48bb78;--bad:#fc8181;--accent:#63b3ed;--rows:#63b3ed;--rejects:#f6ad55}}
body{margin:0;padding:16px 20px;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
h1{font-size:18px;margin:0 0 4px}h2{font-size:15px;margin:22px 0 8px}
a{color:var(--accent)}.muted{color:var(--muted)}.mono{font-family:ui-monospace,Menlo,monospace}
table{border-collapse:collapse;margin:4px 0}td,th{border-bottom:1px solid var(--line);
padding:4px 10px 4px 0;text-align:left;vertical-align:top}th{color:var(--muted);font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:8px 12px;min-width:96px}
.card b{display:block;font-size:18px}.card span{color:var(--muted);font-size:12px}
.status{font-weight:600}.status.success,.status.ok{color:var(--good)}
.status.failed,.status.upstream_failed,.status.aborted{color:var(--bad)}
.status.degraded,.status.up_for_retry{color:var(--rejects)}
.row{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
svg.chart text{fill:var(--fg);font-size:12px}svg.chart text.label{fill:var(--muted)}
svg.chart .bar.good{fill:var(--good)}svg.chart .bar.bad{fill:var(--bad)}
svg.chart .axis{stroke:var(--line)}svg.chart .line{fill:none;stroke-width:2}
svg.chart .line.rows{stroke:var(--rows)}svg.chart .line.rejects{stroke:var(--rejects)}
svg.chart .dot.rows,svg.chart .key.rows{fill:var(--rows)}
svg.chart .dot.rejects,svg.chart .key.rejects{fill:var(--rejects)}
details pre{white-space:pre-wrap;word-break:break-all;max-width:70ch;margin:4px 0;
background:var(--card);padding:6px;border-radius:4px}
section.sync{border-top:1px solid var(--line);margin-top:18px}
"""


@dataclass(frozen=True)
class TaskRun:
    """One try of a CrowdTwist task as Airflow keeps it, with the summary it pushed (if any)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    state: str | None
    operator: str | None
    try_number: int | None
    start_date: datetime | None
    end_date: datetime | None
    summary: Mapping[str, Any] | None

    @property
    def counts(self) -> list[tuple[str, int]]:
        """The summary's counts in table order (empty without a summary)."""
        raw = dict((self.summary or {}).get("counts") or {})
        counts = {str(k): _int(v) for k, v in raw.items()}
        known = [(k, counts[k]) for k in OUTCOME_ORDER if k in counts]
        return known + [(k, v) for k, v in counts.items() if k not in OUTCOME_ORDER]

    @property
    def rejects(self) -> int:
        """Rows that did not make it: rejected + failed + unknown."""
        return sum(n for k, n in self.counts if k in BAD)

    @property
    def rows(self) -> int:
        """Rows the run accounted for (read from the source, plus members removed from it)."""
        s = self.summary or {}
        return _int(s.get("rows_read")) + _int(s.get("rows_removed"))

    @property
    def duration(self) -> float | None:
        """The sync's own duration from the summary, else the task's wall time."""
        s = self.summary or {}
        if isinstance(s.get("duration_seconds"), (int, float)):
            return float(s["duration_seconds"])
        if self.start_date and self.end_date:
            return (self.end_date - self.start_date).total_seconds()
        return None

    @property
    def status(self) -> str:
        """How the run ended in the sync's words (aborted, degraded...) or else Airflow's state."""
        s = self.summary or {}
        if s.get("aborted"):
            return "aborted"
        if isinstance(s.get("status"), str) and s["status"]:
            return str(s["status"])
        return self.state or "no status"


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def tab_href(run: TaskRun, ui_root: str = "..") -> str:
    """The Airflow UI's URL of ``run``'s CrowdTwist tab, relative to a page under ``/crowdtwist/``."""
    path = f"{ui_root}/dags/{quote(run.dag_id, safe='')}/runs/{quote(run.run_id, safe='')}"
    path += f"/tasks/{quote(run.task_id, safe='')}"
    if run.map_index >= 0:
        path += f"/mapped/{run.map_index}"
    return f"{path}/plugin/{TAB_ROUTE}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {sec:02d} s"


def fmt_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if value else "-"


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{_int(value):,}"


def page(title: str, body: str) -> str:
    """A complete HTML document with the pages' style."""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


def render_message(title: str, text: str) -> str:
    """A page that only says something (no access, not found, not a CrowdTwist task)."""
    return page(title, f'<h1>{escape(title)}</h1><p class="muted">{escape(text)}</p>')


def _cards(items: Iterable[tuple[str, str]]) -> str:
    cells = "".join(f"<div class='card'><b>{escape(v)}</b><span>{escape(k)}</span></div>" for k, v in items)
    return f"<div class='cards'>{cells}</div>"


def _counts_table(counts: Sequence[tuple[str, int]]) -> str:
    rows = "".join(
        f"<tr data-outcome='{escape(k)}'><td>{escape(k)}</td><td class='n'>{n:,}</td></tr>" for k, n in counts
    )
    total = sum(n for _, n in counts)
    return (
        "<table class='counts'><tr><th>outcome</th><th class='n'>rows</th></tr>"
        f"{rows}<tr data-outcome='total'><th>total</th><th class='n'>{total:,}</th></tr></table>"
    )


def _summary_section(run: TaskRun) -> str:
    s = run.summary or {}
    rate = s.get("rate_limit") if isinstance(s.get("rate_limit"), Mapping) else {}
    learned = rate.get("learned_requests_per_minute")
    cap = rate.get("configured_requests_per_minute")
    rps = s.get("rows_per_second")
    cards = [
        ("rows", _num(run.rows)),
        ("rows/s", _num(float(rps)) if isinstance(rps, (int, float)) and run.rows else "-"),
        ("requests", _num(s.get("requests_sent"))),
        ("429s", _num(rate.get("rate_limited", 0))),
        ("learned rate /min", _num(learned) if learned is not None else "none"),
        ("cap /min", _num(cap) if cap is not None else "none"),
        ("duration", fmt_duration(run.duration)),
    ]
    counts = run.counts
    notes = []
    if s.get("dry_run"):
        notes.append("Dry run: nothing was sent.")
    if s.get("aborted"):
        notes.append(f"Aborted: {s['aborted']}")
    notes.extend(str(w) for w in s.get("warnings") or [])
    if s.get("previous_status"):  # what CrowdTwistAlertNotifier compared this run's status with
        notes.append(f"Status of the previous run: {s['previous_status']}")
    text = f"<p class='mono'>{escape(str(s['text']))}</p>" if s.get("text") else ""
    note_html = "".join(f"<p class='muted'>{escape(n)}</p>" for n in notes)
    return (
        f"{text}{note_html}{_cards(cards)}<h2>Rows by outcome</h2>"
        f"<div class='row'>{_counts_table(counts)}{outcome_bars([c for c in counts if c[1]] or counts)}</div>"
    )


def _reasons_section(run: TaskRun, rejects: FileRead, reasons: Sequence[RejectReason]) -> str:
    s = run.summary or {}
    written = _int(s.get("rejects_written"))
    head = "<h2>Top reject reasons</h2>"
    where = f"<p class='muted'>From <span class='mono'>{escape(str(rejects.location))}</span>"
    if not run.rejects:
        return f"{head}<p class='muted'>No row was rejected or failed.</p>"
    if rejects.problem:
        loc = f" at <span class='mono'>{escape(str(rejects.location))}</span>" if rejects.location else ""
        return f"{head}<p class='muted'>The rejects file{loc} is {escape(rejects.problem)}.</p>"
    scope = f" (the first {len(rejects.records):,} of {written:,} rows written)" if rejects.truncated else ""
    rows = "".join(
        f"<tr><td class='n'>{r.count:,}</td><td>{escape(r.outcome)}</td>"
        f"<td class='mono'>{escape(r.code)}</td>"
        f"<td>{escape(r.message)}</td><td class='n'>{'-' if r.example_row is None else f'{r.example_row:,}'}"
        "</td></tr>"
        for r in reasons
    )
    table = (
        "<table class='reasons'><tr><th class='n'>rows</th><th>outcome</th><th>code</th><th>message "
        f"(first of its kind)</th><th class='n'>example row</th></tr>{rows}</table>"
    )
    return f"{head}{where}{escape(scope)}.</p>{table}"


def _body(value: Any, limit: int = 4000) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=1, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + " …"


def _calls_section(run: TaskRun, calls: FileRead) -> str:
    head = "<h2>Sampled API calls</h2>"
    if not calls.location:
        return f"{head}<p class='muted calls-none'>No calls recorded (the sync had no calls_path).</p>"
    if calls.problem:
        return (
            f"{head}<p class='muted calls-none'>No calls shown: the calls file "
            f"<span class='mono'>{escape(calls.location)}</span> is {escape(calls.problem)}.</p>"
        )
    if not calls.records:
        return f"{head}<p class='muted calls-none'>No calls recorded in {escape(calls.location)}.</p>"
    rows = []
    for i, c in enumerate(calls.records, 1):
        latency = c.get("latency_ms", c.get("latency"))
        detail = (
            f"<details><summary>request / answer</summary><pre>{escape(_body(c.get('request_body')))}</pre>"
            f"<pre>{escape(_body(c.get('response_body')))}</pre></details>"
        )
        rows.append(
            f"<tr><td class='n'>{i}</td><td class='mono'>{escape(str(c.get('method') or ''))}</td>"
            f"<td class='mono'>{escape(str(c.get('path') or ''))}</td>"
            f"<td class='n'>{escape(str(c.get('status') if c.get('status') is not None else '-'))}</td>"
            f"<td class='n'>{escape(_num(latency))}</td>"
            f"<td class='n'>{escape(str(c.get('attempt') or ''))}</td>"
            f"<td>{'yes' if c.get('ambiguous') else ''}</td><td>{detail}</td></tr>"
        )
    more = f" (the first {len(calls.records):,})" if calls.truncated else ""
    return (
        f"{head}<p class='muted'>From <span class='mono'>{escape(calls.location)}</span>{escape(more)}; "
        "secrets and member PII masked as in the file.</p><table class='calls'><tr><th class='n'>#</th>"
        "<th>method</th><th>path</th><th class='n'>status</th><th class='n'>latency ms</th>"
        f"<th class='n'>attempt</th><th>ambiguous</th><th></th></tr>{''.join(rows)}</table>"
    )


def render_task_tab(run: TaskRun, rejects: FileRead, reasons: Sequence[RejectReason], calls: FileRead) -> str:
    """The CrowdTwist tab of one task instance."""
    title = f"{run.task_id} · CrowdTwist run"
    mapped = f" [{run.map_index}]" if run.map_index >= 0 else ""
    status = escape(run.status)
    head = (
        f"<h1>{escape(run.task_id)}{mapped} <span class='status {status}'>{status}</span></h1>"
        f"<p class='muted'>{escape(run.dag_id)} · <span class='mono'>{escape(run.run_id)}</span>"
        f" · try {escape(str(run.try_number or '-'))} · started {escape(fmt_time(run.start_date))}"
        f" · <a href='../plugin/{SYNCS_ROUTE}' target='_top'>all CrowdTwist syncs</a></p>"
    )
    if not run.summary:
        state = run.state or "not started"
        body = (
            f"{head}<p class='muted'>No summary yet: the task is {escape(state)}. A CrowdTwist sync "
            "pushes its summary (XCom <span class='mono'>summary</span>) when it ends, on success and "
            "on failure.</p>"
        )
        return page(title, body)
    body = head + _summary_section(run) + _reasons_section(run, rejects, reasons) + _calls_section(run, calls)
    return page(title, body)


def _sync_section(runs: Sequence[TaskRun], ui_root: str) -> str:
    latest = runs[0]
    chronological = list(reversed(runs[:HISTORY_POINTS]))
    # One run is no history: the chart starts with the second.
    chart = (
        history_chart(
            [
                HistoryPoint(label=fmt_time(r.start_date), rows=r.rows, rejects=r.rejects)
                for r in chronological
            ]
        )
        if len(chronological) > 1
        else ""
    )
    lines = []
    for r in runs:
        nonzero = ", ".join(f"{n:,} {k}" for k, n in r.counts if n) or ("-" if r.summary else "no summary")
        status = escape(r.status)
        mapped = f" [{r.map_index}]" if r.map_index >= 0 else ""
        lines.append(
            f"<tr class='run' data-run-id='{escape(r.run_id)}'><td>{escape(fmt_time(r.start_date))}</td>"
            f"<td class='mono'>{escape(r.run_id)}{mapped}</td><td class='status {status}'>{status}</td>"
            f"<td class='n'>{r.rows:,}</td><td>{escape(nonzero)}</td><td class='n'>{r.rejects:,}</td>"
            f"<td class='n'>{escape(fmt_duration(r.duration))}</td>"
            f"<td><a href='{escape(tab_href(r, ui_root))}' target='_top'>open</a></td></tr>"
        )
    table = (
        "<table class='runs'><tr><th>started</th><th>run</th><th>status</th><th class='n'>rows</th>"
        "<th>outcomes</th><th class='n'>rejected + failed</th><th class='n'>duration</th><th></th></tr>"
        f"{''.join(lines)}</table>"
    )
    return (
        f"<section class='sync' data-dag-id='{escape(latest.dag_id)}' "
        f"data-task-id='{escape(latest.task_id)}'>"
        f"<h2>{escape(latest.dag_id)} · {escape(latest.task_id)} <span class='muted'>"
        f"({escape(latest.operator or '')})</span></h2>{chart}{table}</section>"
    )


def render_syncs_page(runs: Sequence[TaskRun], *, ui_root: str = "..", limit: int | None = None) -> str:
    """The CrowdTwist syncs page: per sync (DAG and task), its recent runs, newest first."""
    groups: dict[tuple[str, str], list[TaskRun]] = {}
    for run in runs:
        groups.setdefault((run.dag_id, run.task_id), []).append(run)
    head = (
        "<h1>CrowdTwist syncs</h1><p class='muted'>Recent runs of CrowdTwist tasks in the DAGs you can "
        "read, newest first"
        + (f" (the latest {limit:,} task runs)" if limit else "")
        + ". Open a run for its summary, reject reasons and sampled calls.</p>"
    )
    if not groups:
        none = "<p class='muted none'>No CrowdTwist task has run in a DAG you can read.</p>"
        return page("CrowdTwist syncs", head + none)
    sections = "".join(_sync_section(group, ui_root) for group in groups.values())
    return page("CrowdTwist syncs", head + sections)


def render_tab_for(run: TaskRun) -> str:
    """The tab of ``run`` with the head of its rejects file (when rows were bad) and of its calls file."""
    summary = run.summary or {}
    rejects = read_jsonl(summary.get("rejects_path"), REJECTS_SCANNED) if run.rejects else FileRead(None)
    calls = read_jsonl(summary.get("calls_path"), CALLS_SHOWN)
    return render_task_tab(run, rejects, top_reasons(rejects.records), calls)
