"""Progress in the task log, and the final summary table.

A sync of a million rows at the program's cap takes well over an hour; the person watching the task
log needs to see that it moves, how fast, and when it will end. The reporter logs at most every
``interval`` seconds (10 by default) from the calling thread, and always logs a final table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from airflow_provider_crowdtwist.sync.outcomes import OutcomeLike, outcome_key
from airflow_provider_crowdtwist.sync.summary import SyncSummary, ordered_counts


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
    """Counts finished rows and logs ``done/total, rows/s, ETA, counts`` at most every ``interval`` s.

    ``total`` may be set later (:meth:`set_total`) when it becomes known, e.g. once a source has been
    spooled. Not thread-safe by design: the sender hands results to one thread.
    """

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
    width = max(len(k) for k, _ in rows)
    vwidth = max(len(v) for _, v in rows)
    rule = "+" + "-" * (width + 2) + "+" + "-" * (vwidth + 2) + "+"
    lines = [title, rule]
    lines += [f"| {k.ljust(width)} | {v.rjust(vwidth)} |" for k, v in rows]
    lines.append(rule)
    return "\n".join(lines)
