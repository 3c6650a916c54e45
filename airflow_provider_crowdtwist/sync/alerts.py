"""What a sync's summary says to a human, and the volume checks that turn a quiet disaster into an alert.

Two runs that "succeed" can still be an incident: a source that suddenly returns no rows (a broken
upstream job, a wrong date filter) and a run whose rows were nearly all rejected (a renamed column).
``min_rows`` and ``max_rejected_ratio`` catch them. The one-line :func:`summary_text` goes beside the
counts in the summary, so a notifier template (``{{ ti.xcom_pull(key="summary")["text"] }}``) gets a
ready sentence on success and failure alike. Plain Python, no Airflow import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_crowdtwist.sync.summary import check_ratio

MIN_ROWS_ACTIONS = ("warn", "fail")


def validate_volume_checks(min_rows: Any, min_rows_action: Any, max_rejected_ratio: Any) -> None:
    """Raise ``ValueError`` naming the argument when a volume check is set up wrong."""
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 0:
        raise ValueError(f"min_rows must be an integer >= 0, got {min_rows!r}")
    if min_rows_action not in MIN_ROWS_ACTIONS:
        raise ValueError(
            f"min_rows_action must be one of {', '.join(MIN_ROWS_ACTIONS)}, got {min_rows_action!r}"
        )
    check_ratio("max_rejected_ratio", max_rejected_ratio)


def too_few_rows(summary: Mapping[str, Any], min_rows: int) -> str | None:
    """Why the source gave too few rows, or ``None``."""
    rows = int(summary.get("rows_read", 0))
    if rows >= min_rows:
        return None
    return f"the source gave {rows} row(s), fewer than min_rows={min_rows}"


def too_many_rejected(summary: Mapping[str, Any], max_rejected_ratio: float | None) -> str | None:
    """Why too large a share of the rows was rejected, or ``None``."""
    rows = int(summary.get("rows_read", 0))
    if max_rejected_ratio is None or rows == 0:
        return None
    rejected = int(dict(summary.get("counts", {})).get("rejected", 0))
    if rejected / rows <= max_rejected_ratio:
        return None
    return (
        f"{rejected} of {rows} row(s) were rejected ({rejected / rows:.1%}), "
        f"more than max_rejected_ratio={max_rejected_ratio}"
    )


def summary_text(
    label: str, summary: Mapping[str, Any], problem: str | None = None, warning: str | None = None
) -> str:
    """One line for a human: what ran, how it ended, the counts, and where the rejected rows went.

    ``problem`` is why the run failed; without one the run succeeded, possibly with a ``warning``.
    """
    counts = {k: int(v) for k, v in dict(summary.get("counts", {})).items() if int(v)}
    parts = ", ".join(f"{n} {k}" for k, n in counts.items()) or "nothing to do"
    status = f"FAILED ({problem})" if problem else (f"ok, WARNING ({warning})" if warning else "ok")
    text = f"{label}: {status}: {int(summary.get('rows_read', 0))} rows read: {parts}"
    if summary.get("dry_run"):
        text += " (dry run)"
    written = int(summary.get("rejects_written", 0))
    if written and summary.get("rejects_path"):
        text += f"; {written} row(s) to look at in {summary['rejects_path']}"
    return text
