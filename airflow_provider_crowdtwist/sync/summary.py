"""The report of one sync run: its summary, the thresholds, progress in the log, the volume checks.

Why it is built this way: ``docs/sync-design.md``, section ``sync/summary.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from airflow_provider_crowdtwist.sync.outcomes import OUTCOME_ORDER, Outcome, OutcomeLike, outcome_key

_REQUEST_COUNTS_LOCK = threading.Lock()
_S = TypeVar("_S", bound="SyncSummary")

#: How a run ended, in the summary (``status``), the log, the sync log and the alerts: ``ok``; ``degraded``
#: (it succeeded, but above the ``degraded_rejected_ratio`` threshold or with failed rows tolerated);
#: ``failed`` (the task failed). The live-push load uses the same words.
RunStatus = Literal["ok", "degraded", "failed"]
STATUSES: tuple[RunStatus, ...] = ("ok", "degraded", "failed")
#: The default share of rejected rows above which a run that succeeds is ``degraded``.
DEFAULT_DEGRADED_REJECTED_RATIO = 0.1


def ordered_counts(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """``counts`` in table order: the :class:`Outcome` order, then a sync's extra outcomes."""
    known = [o.value for o in OUTCOME_ORDER]
    return [(k, counts[k]) for k in known if k in counts] + [
        (k, v) for k, v in counts.items() if k not in known
    ]


class SyncConfigError(ValueError):
    """A sync setting is wrong; raised before the first request. ``field`` names the setting."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SyncError(Exception):
    """A sync could not finish as asked (aborted, or too many bad rows)."""

    def __init__(self, message: str, summary: SyncSummary | None = None) -> None:
        super().__init__(message)
        self.summary = summary


class SyncAbortedError(SyncError):
    """The sync stopped early, e.g. CrowdTwist answered 401 (bad credentials)."""


class ThresholdExceededError(SyncError):
    """More rows failed or were rejected than ``max_failed_rows`` / ``max_failed_ratio`` allow."""


class SyncLogIncompleteError(SyncError):
    """The sync did its work, but the sync log could not record all of it (names the table)."""


@dataclass
class SyncSummary:
    """Counts by outcome and a few figures about one sync run.

    ``rows_read`` is maintained independently of the counts (it is the number of rows the source
    gave), so :meth:`is_consistent` really checks the promise that every row got one outcome.
    ``rows_removed`` counts rows a sync accounts for that the source did NOT give (members gone from
    the source); they get outcomes too. ``request_counts`` holds request counters of a sync's own
    (e.g. history look-ups), added with :meth:`count_requests` from any thread.
    """

    counts: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in OUTCOME_ORDER})
    rows_read: int = 0
    requests_sent: int = 0
    duration_seconds: float = 0.0
    rejects_path: str | None = None
    rejects_written: int = 0
    dry_run: bool = False
    aborted: str | None = None
    rows_removed: int = 0
    request_counts: dict[str, int] = field(default_factory=dict)
    #: ``(index, count)`` when the run was one partition of a sync (docs/scale-out.md).
    partition: tuple[int, int] | None = None
    #: The rate limiter's figures: configured cap, the rate learned from 429s, the 429s (RateLimiter.stats).
    rate_limit: dict[str, Any] | None = None
    #: The calls sample (``calls_path``, docs/sync-log.md): where it went, and calls seen per class.
    calls_path: str | None = None
    calls: dict[str, int] | None = None
    #: The sync log's runs table when ``log_conn_id`` is set, and what it could not record.
    log_table: str | None = None
    log_missing: str | None = None
    #: How the run ended (:data:`STATUSES`), set by the frame's finish (:func:`judge_run`).
    status: str = "ok"
    #: Why the status is not ``ok`` (the degraded threshold crossed, the rule that failed the run).
    status_reason: str | None = None

    def declare(self, outcome: OutcomeLike) -> None:
        """Make an extra outcome of a sync known (counted from 0, listed in the table)."""
        self.counts.setdefault(outcome_key(outcome), 0)

    def add(self, outcome: OutcomeLike, n: int = 1) -> None:
        """Count ``n`` rows as ``outcome``."""
        key = outcome_key(outcome)
        self.counts[key] = self.counts.get(key, 0) + n

    def count(self, outcome: OutcomeLike) -> int:
        """Rows that ended as ``outcome``."""
        return self.counts.get(outcome_key(outcome), 0)

    def count_requests(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the request counter ``name`` (thread-safe: worker threads call it)."""
        with _REQUEST_COUNTS_LOCK:
            self.request_counts[name] = self.request_counts.get(name, 0) + n

    @property
    def rows_expected(self) -> int:
        """Rows that must each have one outcome: read from the source plus removed from it."""
        return self.rows_read + self.rows_removed

    @property
    def total_outcomes(self) -> int:
        """Sum of all counts; equals ``rows_read`` when every row got exactly one outcome."""
        return sum(self.counts.values())

    def is_consistent(self) -> bool:
        """True when the counts add up to the rows read (plus the rows removed)."""
        return self.total_outcomes == self.rows_expected

    @property
    def bad_rows(self) -> int:
        """Rows that did not make it: rejected + failed + unknown."""
        return self.count(Outcome.REJECTED) + self.count(Outcome.FAILED) + self.count(Outcome.UNKNOWN)

    @property
    def rows_per_second(self) -> float:
        """Rows finished per second of wall time (0 when nothing ran)."""
        if self.duration_seconds <= 0:
            return 0.0
        return self.total_outcomes / self.duration_seconds

    @property
    def requests_per_row(self) -> float:
        """HTTP attempts per row read (retries included); 1.0 is the ideal for members."""
        if self.rows_read == 0:
            return 0.0
        return self.requests_sent / self.rows_read

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict: the operator's XCom. Every field (a subclass's too), plus rows/s."""
        data: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            data[f.name] = (
                dict(value)
                if isinstance(value, dict)
                else list(value)
                if isinstance(value, (list, tuple))
                else value
            )
        data["duration_seconds"] = round(float(self.duration_seconds), 3)
        data["rows_per_second"] = round(self.rows_per_second, 2)
        return data

    @classmethod
    def from_dict(cls: type[_S], data: Mapping[str, Any]) -> _S:
        """Rebuild a summary from :meth:`to_dict` output (e.g. an XCom read downstream)."""
        summary = cls()
        for f in dataclasses.fields(summary):
            if f.name in data and f.name != "counts":
                setattr(summary, f.name, copy.deepcopy(data[f.name]))
        summary.counts.update({str(k): int(v) for k, v in dict(data.get("counts", {})).items()})
        return summary


def validate_thresholds(max_failed_rows: int | None, max_failed_ratio: float | None) -> None:
    """Check threshold settings before any work, naming the bad field."""
    if max_failed_rows is not None and (
        isinstance(max_failed_rows, bool) or not isinstance(max_failed_rows, int) or max_failed_rows < 0
    ):
        raise ValueError(f"max_failed_rows must be an integer >= 0 or None, got {max_failed_rows!r}")
    check_ratio("max_failed_ratio", max_failed_ratio)


def check_ratio(name: str, value: Any) -> None:
    """A ratio setting is ``None`` or a number between 0 and 1; ``ValueError`` naming ``name`` otherwise."""
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isnan(value)
        or not 0.0 <= float(value) <= 1.0
    ):
        raise ValueError(f"{name} must be a number between 0 and 1 or None, got {value!r}")


def threshold_violation(
    summary: SyncSummary, max_failed_rows: int | None = None, max_failed_ratio: float | None = None
) -> str | None:
    """Return why the run should fail, or ``None`` when it is within the thresholds."""
    failed = summary.count(Outcome.FAILED) + summary.count(Outcome.UNKNOWN)
    bad = summary.bad_rows
    if max_failed_rows is None and max_failed_ratio is None:
        if failed > 0:
            return (
                f"{failed} row(s) failed (default: any failed row fails the task; "
                "set max_failed_rows or max_failed_ratio to tolerate some)"
            )
        return None
    if max_failed_rows is not None and bad > max_failed_rows:
        return f"{bad} row(s) failed or were rejected, more than max_failed_rows={max_failed_rows}"
    if max_failed_ratio is not None and summary.rows_read > 0:
        ratio = bad / summary.rows_read
        if ratio > max_failed_ratio:
            return (
                f"{bad} of {summary.rows_read} row(s) failed or were rejected ({ratio:.2%}), "
                f"more than max_failed_ratio={max_failed_ratio}"
            )
    return None


def nothing_landed(summary: SyncSummary) -> str | None:
    """Why nothing of the run landed: every row (at least one) was rejected or failed; else ``None``.

    ``unknown`` rows are not counted as not landed: they may have been applied (credits judge them
    with ``fail_on_unknown``). Rows the run skipped or found unchanged are fine, so a run of only
    those landed everything it had to.
    """
    total = summary.total_outcomes
    bad = summary.count(Outcome.REJECTED) + summary.count(Outcome.FAILED)
    if total == 0 or bad < total:
        return None
    return (
        f"every row was rejected or failed ({summary.count(Outcome.REJECTED)} rejected, "
        f"{summary.count(Outcome.FAILED)} failed of {total}): nothing landed in CrowdTwist "
        "(fail_when_nothing_landed=False tolerates it)"
    )


def degraded_reason(summary: SyncSummary, degraded_rejected_ratio: float | None) -> str | None:
    """Why a run that succeeded is ``degraded``, or ``None`` (it is ``ok``).

    Degraded: more than ``degraded_rejected_ratio`` of the rows read were rejected (``None`` turns
    this off), or rows failed / stayed unknown and a threshold tolerated them (they did not land).
    """
    rows = summary.rows_read
    rejected = summary.count(Outcome.REJECTED)
    if degraded_rejected_ratio is not None and rows > 0 and rejected / rows > degraded_rejected_ratio:
        return (
            f"{rejected} of {rows} row(s) were rejected ({rejected / rows:.1%}), "
            f"more than degraded_rejected_ratio={degraded_rejected_ratio}"
        )
    tolerated = summary.count(Outcome.FAILED) + summary.count(Outcome.UNKNOWN)
    if tolerated:
        return f"{tolerated} row(s) failed or are unknown (tolerated by the thresholds)"
    return None


def judge_run(
    summary: SyncSummary,
    problem: str | None,
    *,
    degraded_rejected_ratio: float | None = DEFAULT_DEGRADED_REJECTED_RATIO,
    fail_when_nothing_landed: bool = True,
) -> str | None:
    """Set ``summary.status`` (and ``status_reason``); return why the run fails, or ``None``.

    ``problem`` is the sync's own threshold verdict. Then, with ``fail_when_nothing_landed``, a run in
    which every row was rejected or failed fails; a run that passes is ``degraded`` above
    ``degraded_rejected_ratio`` (:func:`degraded_reason`), else ``ok``. THE rule every sync's end
    goes through (``SyncRun.finish``), so every plug-in reports the same three statuses.
    """
    if problem is None and fail_when_nothing_landed:
        problem = nothing_landed(summary)
    if problem is not None:
        summary.status, summary.status_reason = "failed", problem
        return problem
    reason = degraded_reason(summary, degraded_rejected_ratio)
    summary.status, summary.status_reason = ("degraded", reason) if reason else ("ok", None)
    return None


def worst_status(statuses: Iterable[Any]) -> RunStatus:
    """The worst of several runs' statuses (partitions of one sync): ``failed`` > ``degraded`` > ``ok``."""
    known = [s for s in statuses if s in STATUSES]
    return max(known, key=STATUSES.index) if known else "ok"


# ------------------------------------------------------------------ progress and the final table


def format_duration(seconds: float) -> str:
    """``3725`` -> ``1h02m05s``; short and unambiguous in a log line."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class ProgressReporter:
    """Counts finished rows and logs ``done/total, rows/s, ETA, counts`` at most every ``interval`` s."""

    def __init__(
        self,
        log: logging.Logger | logging.LoggerAdapter,
        *,
        total: int | None = None,
        interval: float = 10.0,
        label: str = "rows",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.total = total
        self.interval = interval
        self.label = label
        self.clock = clock
        self.started = clock()
        self.last_logged = self.started
        self.done = 0
        self.counts: dict[str, int] = {}

    def set_total(self, total: int | None) -> None:
        """Set the number of rows expected (for ``done/total`` and the ETA)."""
        self.total = total

    def record(self, outcome: OutcomeLike, n: int = 1) -> None:
        """Count ``n`` finished rows and log if the interval has passed."""
        key = outcome_key(outcome)
        self.counts[key] = self.counts.get(key, 0) + n
        self.done += n
        self.maybe_log()

    def maybe_log(self) -> bool:
        """Log a progress line if ``interval`` seconds passed since the last one; return whether it did."""
        now = self.clock()
        if now - self.last_logged < self.interval:
            return False
        self.last_logged = now
        self.log.info("%s", self.line(now))
        return True

    def rate(self, now: float | None = None) -> float:
        """Rows finished per second since the start."""
        elapsed = (self.clock() if now is None else now) - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self, now: float | None = None) -> str:
        """One progress line: ``Progress: 1200/10000 rows (12.0%), 160.2 rows/s, ETA 55s; created=...``."""
        now = self.clock() if now is None else now
        rate = self.rate(now)
        if self.total:
            pct = 100.0 * self.done / self.total
            eta = format_duration((self.total - self.done) / rate) if rate > 0 else "unknown"
            head = (
                f"Progress: {self.done}/{self.total} {self.label} ({pct:.1f}%), "
                f"{rate:.1f} {self.label}/s, ETA {eta}"
            )
        else:
            head = f"Progress: {self.done} {self.label}, {rate:.1f} {self.label}/s"
        counts = ", ".join(f"{k}={v}" for k, v in ordered_counts(self.counts) if v)
        return f"{head}; {counts}" if counts else head


def summary_table(summary: SyncSummary, title: str = "CrowdTwist sync summary") -> str:
    """A plain-text table of the summary for the end of the task log."""
    rows: list[tuple[str, str]] = [(k, str(v)) for k, v in ordered_counts(summary.counts) if v]
    rows.append(("rows read", str(summary.rows_read)))
    if summary.rows_removed:
        rows.append(("rows removed from the source", str(summary.rows_removed)))
    rows += [(f"{name} requests", str(n)) for name, n in summary.request_counts.items()]
    rows.append(("requests sent", str(summary.requests_sent)))
    rows.append(("requests / row", f"{summary.requests_per_row:.3f}"))
    rows.append(("duration", format_duration(summary.duration_seconds)))
    rows.append(("rows / s", f"{summary.rows_per_second:.1f}"))
    if summary.dry_run:
        rows.append(("dry run", "yes (no writes sent)"))
    if summary.rejects_path:
        rows.append(("rejects", f"{summary.rejects_written} row(s) in {summary.rejects_path}"))
    if summary.aborted:
        rows.append(("aborted", summary.aborted))
    rows.append(("status", summary.status))
    width = max(len(k) for k, _ in rows)
    vwidth = max(len(v) for _, v in rows)
    rule = "+" + "-" * (width + 2) + "+" + "-" * (vwidth + 2) + "+"
    lines = [title, rule]
    lines += [f"| {k.ljust(width)} | {v.rjust(vwidth)} |" for k, v in rows]
    lines.append(rule)
    return "\n".join(lines)


# ------------------------------------------------------------------ volume checks and the one line

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
    """One line for a human: what ran, how it ended, the counts, and where the rejected rows went."""
    counts = {k: int(v) for k, v in dict(summary.get("counts", {})).items() if int(v)}
    parts = ", ".join(f"{n} {k}" for k, n in counts.items()) or "nothing to do"
    if problem:
        status = f"FAILED ({problem})"
    elif summary.get("status") == "degraded":
        status = f"DEGRADED ({summary.get('status_reason') or 'see the summary'})"
        status += f", WARNING ({warning})" if warning else ""
    else:
        status = f"ok, WARNING ({warning})" if warning else "ok"
    text = f"{label}: {status}: {int(summary.get('rows_read', 0))} rows read: {parts}"
    if summary.get("dry_run"):
        text += " (dry run)"
    written = int(summary.get("rejects_written", 0))
    if written and summary.get("rejects_path"):
        text += f"; {written} row(s) to look at in {summary['rejects_path']}"
    return text
