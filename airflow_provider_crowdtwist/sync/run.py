"""The frame: ``SyncRun.execute``, the one loop every sync plug-in runs in, and what it does for them.

Why it is built this way: ``docs/sync-design.md``, section ``sync/run.py``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_crowdtwist.client.config import DEFAULT_MIN_LENGTH_MASKED_SECRET
from airflow_provider_crowdtwist.client.errors import (
    CrowdTwistError,
    CrowdTwistForbiddenError,
    CrowdTwistNotFoundError,
    CrowdTwistValidationError,
)
from airflow_provider_crowdtwist.client.redact import maskable
from airflow_provider_crowdtwist.sync.calls import CallSampler
from airflow_provider_crowdtwist.sync.lazy import LazyModule
from airflow_provider_crowdtwist.sync.outcomes import IDENTIFIER, Answer, Outcome, OutcomeLike, RowResult
from airflow_provider_crowdtwist.sync.partition import member_key
from airflow_provider_crowdtwist.sync.paths import WorkingCopy, describe
from airflow_provider_crowdtwist.sync.rejects import open_rejects
from airflow_provider_crowdtwist.sync.sender import SendFailure, send_all
from airflow_provider_crowdtwist.sync.sources import (
    BadLine,
    SourceError,
    chunk_records,
    duplicate_columns,
)
from airflow_provider_crowdtwist.sync.summary import (
    ProgressReporter,
    SyncAbortedError,
    SyncConfigError,
    SyncLogIncompleteError,
    SyncSummary,
    ThresholdExceededError,
    judge_run,
    summary_table,
    threshold_violation,
)
from airflow_provider_crowdtwist.sync.synclog import LogRow, SyncLog, SyncLogError

if TYPE_CHECKING:
    import numpy as np

    from airflow_provider_crowdtwist.sync.config import RunConfig
    from airflow_provider_crowdtwist.sync.protocol import Sync, SyncClient
else:  # imported on first use: parsing a DAG must not pay for numpy/pandas (see sync/lazy.py)
    np = LazyModule("numpy", globals(), "np")


#: Error code of a row that was never sent because the run stopped (abort or ``on_kill``).
NOT_SENT = "not_sent"
#: Error code of a row whose work raised something that is not a client error (a bug).
INTERNAL = "internal"
#: Error code of a line of a source file that could not be read as a row (``on_bad_lines="reject"``).
BAD_LINE = "bad_line"
#: How many problems are logged one by one; the rest are only in the rejects file.
MAX_LOGGED_PROBLEMS = 20

T = TypeVar("T")
W = TypeVar("W")
S = TypeVar("S", bound=SyncSummary)
R = TypeVar("R")


@dataclass(frozen=True)
class RowRef:
    """What the run needs to know about a row to give it an outcome: where it is and what it sends."""

    row_number: int
    identifier: str | None
    payload: dict[str, Any] | None = None
    #: How messages name it when it is not a source row (a member who left the source): "row N" else.
    label: str | None = None


#: CrowdTwist's refusals of a custom attribute name no key: every custom key the row sent is a suspect.
_UNNAMED_ATTRIBUTE_REFUSALS = ("Unrecognized attribute name", "No custom attributes setup for client")
_OBJECT_FIELDS = ("custom_data", "extra_data")


#: The operation a result's outcome stands for in the sync log; other outcomes take the sync's own.
OPERATIONS = {
    "created": "create",
    "updated": "update",
    "reactivated": "reactivate",
    "deactivated": "deactivate",
    "deleted": "delete",
    "credited": "credit",
    "entered": "enter",
    "exited": "exit",
    "voided": "void",
}
_COLUMN_NAMED = re.compile(r"\(columns? ((?:'[^']*'(?:, )?)+)\)")


def _names(name: str, text: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", text) is not None


def refused_attributes(message: str | None, payload: Mapping[str, Any] | None) -> list[str]:
    """The attributes of ``payload`` that CrowdTwist's refusal ``message`` is about."""
    if not message or not payload:
        return []
    found: list[str] = []
    text = message
    for phrase in _UNNAMED_ATTRIBUTE_REFUSALS:
        text = text.replace(phrase, " ")
    custom: list[str] = []
    for name, value in payload.items():
        if not (name in _OBJECT_FIELDS and isinstance(value, Mapping)):
            if _names(name, text):
                found.append(name)
            continue
        keys = [f"{name}.{key}" for key in value]
        custom.extend(k for k in keys if name == "custom_data")
        named = [k for k in keys if _names(k, text) or _names(k.split(".", 1)[1], text)]
        found.extend(named or (keys if _names(name, text) else []))  # the whole object: all its keys
    if not found and text != message:
        found = custom
    return found


class SyncRun:
    """One run of a sync. Results are handed to :meth:`record` on the calling thread only."""

    def __init__(
        self,
        client: SyncClient,
        config: RunConfig,
        summary: SyncSummary,
        log: logging.Logger | logging.LoggerAdapter,
        *,
        title: str,
        label: str = "rows",
        outcomes: Iterable[OutcomeLike] = (),
    ) -> None:
        self.client = client
        self.config = config
        self.summary = summary
        self.log = log
        self.title = title + (" (dry run)" if config.dry_run else "")
        self.redact = client.redact
        summary.dry_run = config.dry_run
        for outcome in outcomes:
            summary.declare(outcome)
        self.progress = ProgressReporter(log, interval=config.progress_interval, label=label)
        self.stop = config.stop_event if config.stop_event is not None else threading.Event()
        self.abort_reason: str | None = None
        self._abort_lock = threading.Lock()
        self._problems_logged = 0
        self._started = time.monotonic()
        self._requests_before = self._requests()
        self._source_rows = 0
        self.part = config.part
        summary.partition = (self.part.index, self.part.count) if self.part is not None else None
        self.rejects = open_rejects(config.partition_path(config.rejects_path), redact=self.redact)
        summary.rejects_path = getattr(self.rejects, "location", None)
        #: The sync's attribute -> source column rule (its mapping's ``column_of``), so that a refusal
        #: naming an attribute names the column to fix.
        self.column_of: Callable[[str], str | None] | None = None
        #: The sync log (docs/sync-log.md): every result with an outcome goes there too.
        self.sync_log: SyncLog | None = config.sync_log
        self.operation = "write"
        self.calls: CallSampler | None = None
        if config.calls_path:
            self.calls = CallSampler(
                per_class=config.calls_per_class, pii=config.calls_pii, redact=self.redact
            )
            client.observer = self.calls

    def open_log(self, operation: str) -> None:
        """Open the sync log before the first request: a table it cannot use stops the run here."""
        self.operation = operation
        if self.sync_log is None:
            return
        try:
            self.sync_log.open()
        except SyncLogError as exc:
            raise SyncConfigError(self.redact(str(exc)), "log_conn_id") from None
        self.summary.log_table = self.sync_log.runs_table

    # ------------------------------------------------------------------ rows in, outcomes out

    def chunks(self, items: Iterable[Any]) -> Iterator[Any]:
        """The source's DataFrame chunks; its unreadable lines (:class:`BadLine`) become rows here."""
        for item in items:
            if isinstance(item, BadLine):
                if self.config.on_bad_lines != "reject":
                    raise SourceError(f"{item.describe()} (on_bad_lines='reject' would skip the line)")
                if self.part is not None and self.part.index != 0:
                    self._source_rows += 1
                    continue
                row = RowRef(self.read_row(), None)
                self.record(self.result(row, Outcome.REJECTED, item.describe(), code=BAD_LINE))
                continue
            repeated = duplicate_columns(item.columns)
            if repeated:
                raise SyncConfigError(
                    f"the source has repeated column names: {', '.join(repeated)}; a row would carry "
                    "two values for one field and one would be lost -- rename or drop the columns",
                    "columns",
                )
            yield item

    def read_row(self) -> int:
        """Count one row read from the source; return its 1-based row number in the source."""
        self.summary.rows_read += 1
        self._source_rows += 1
        return self._source_rows

    def rows(self, chunk: Any, id_column: str, *, lower: bool) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(row number, record)`` for the rows of ``chunk`` this run syncs (its partition's members)."""
        part = self.part
        for record in chunk_records(chunk):
            if part is not None and not part.owns(member_key(record.get(id_column), lower=lower)):
                self._source_rows += 1
                continue
            yield self.read_row(), record

    def take(self, chunk: Any, id_column: str, *, lower: bool) -> tuple[Any, np.ndarray]:
        """The rows of ``chunk`` this run syncs, and their row numbers in the source: :meth:`rows` for
        a sync that works on whole chunks (the member state hashes them column-wise)."""
        first = self._source_rows + 1
        numbers = np.arange(first, first + len(chunk), dtype=np.int64)
        self._source_rows += len(chunk)
        part = self.part
        if part is not None:
            ids = chunk[id_column].to_numpy(dtype=object)
            owned = np.fromiter(
                (part.owns(member_key(v, lower=lower)) for v in ids), dtype=bool, count=len(ids)
            )
            chunk, numbers = chunk[owned], numbers[owned]
        self.summary.rows_read += len(chunk)
        return chunk, numbers

    def result(
        self, row: RowRef, outcome: OutcomeLike, message: str | None = None, **fields: Any
    ) -> RowResult:
        """A :class:`RowResult` for ``row``; ``message`` gets the ``row N: `` prefix every message has
        (a row that is not from the source, a member who left it, is named by its ``label``)."""
        if row.label is not None:
            text = f"{row.label}: {message}" if message is not None else None
            return RowResult(
                row.row_number, row.identifier, outcome, message=text, payload=row.payload, **fields
            )
        return RowResult.at(row.row_number, row.identifier, outcome, message, payload=row.payload, **fields)

    def record(self, result: RowResult) -> None:
        """Count ``result``, write it to the rejects file if it is a problem, log a few, feed progress."""
        self.summary.add(result.outcome)
        if self.sync_log is not None:
            self.sync_log.add(
                LogRow(
                    result.row_number,
                    result.identifier,
                    OPERATIONS.get(str(result.outcome), self.operation),
                    str(result.outcome),
                    result.status,
                    result.code,
                    result.message,
                    self.columns_of(result),
                )
            )
        if result.is_problem:
            self.rejects.write(result)
            key = result.extra.get("dedupe_key")
            if self._problems_logged < MAX_LOGGED_PROBLEMS:
                where = f" (dedupe key {key})" if key else ""
                self.log.warning("%s [%s] %s%s", result.outcome, result.code or "", result.message, where)
            elif self._problems_logged == MAX_LOGGED_PROBLEMS:
                self.log.warning("More rejected/failed/unknown rows are not logged; see the rejects file.")
            self._problems_logged += 1
        self.progress.record(result.outcome)

    # ------------------------------------------------------------------ errors -> outcomes

    def error_result(
        self, row: RowRef, exc: BaseException, *, ambiguous: Outcome = Outcome.FAILED, **extra: Any
    ) -> RowResult:
        """The row's result for the error ``exc`` (:meth:`answer`), its message prefixed ``row N: ``."""
        answer = self.answer(row, exc, ambiguous=ambiguous)
        return self.result(
            row, answer.outcome, answer.message, code=answer.code, status=answer.status, extra=extra
        )

    def answer(self, row: RowRef, exc: BaseException, *, ambiguous: Outcome = Outcome.FAILED) -> Answer:
        """THE one place where an error becomes an outcome (safe on worker threads)."""
        if not isinstance(exc, CrowdTwistError):  # a bug or an unexpected library error
            return self._answer(row, ambiguous, INTERNAL, f"{type(exc).__name__}: {exc}", None)
        if exc.credential_failure:
            self.abort(
                self.redact(
                    f"CrowdTwist answered {exc.status or 401} ({exc.message}): the API key or HMAC keys of "
                    "the connection are wrong"
                )
            )
        # ``ambiguous`` first: even a final 400 after an earlier dropped attempt may have been applied.
        if exc.ambiguous and ambiguous is not Outcome.FAILED:
            return self._answer(row, ambiguous, exc.code or "ambiguous", f"unresolved: {exc}", exc)
        if exc.credential_failure:
            return self._answer(row, Outcome.FAILED, exc.code or "unauthorized", exc.message, exc)
        if isinstance(exc, CrowdTwistNotFoundError):
            message = f"member not found ({exc.message}){self.columns_named([IDENTIFIER])}"
            return self._answer(row, Outcome.REJECTED, exc.code or "not_found", message, exc)
        if isinstance(exc, (CrowdTwistForbiddenError, CrowdTwistValidationError)):
            # Refused for its content or the member's status (e.g. "User is inactive."): not applied.
            return self._answer(row, Outcome.REJECTED, exc.code, exc.message, exc)
        return self._answer(row, Outcome.FAILED, exc.code, str(exc), exc)

    def _answer(
        self, row: RowRef, outcome: Outcome, code: str | None, message: str, exc: CrowdTwistError | None
    ) -> Answer:
        password = (row.payload or {}).get("password")
        # Airflow's minimum length, passed in the client's config (client/redact.maskable)
        minimum = getattr(self.client.config, "min_length_masked_secret", DEFAULT_MIN_LENGTH_MASKED_SECRET)
        if isinstance(password, str) and maskable(password, minimum):
            message = message.replace(password, "***")
        if exc is not None and outcome is Outcome.REJECTED and not isinstance(exc, CrowdTwistNotFoundError):
            message += self.columns_named(refused_attributes(message, row.payload))
        status = exc.status if exc is not None else None
        return Answer(outcome, self.redact(message), code, status)

    def columns_named(self, attributes: Iterable[str]) -> str:
        """`` (column 'x')`` for the source columns behind ``attributes`` (a refusal's), or ``""``."""
        if self.column_of is None:
            return ""
        columns: list[str] = []
        for attribute in attributes:
            column = self.column_of(attribute)
            if column is not None and column not in columns:
                columns.append(column)
        if not columns:
            return ""
        listed = ", ".join(repr(c) for c in columns)
        return f" (column {listed})" if len(columns) == 1 else f" (columns {listed})"

    def columns_of(self, result: RowResult) -> str | None:
        """The source column(s) a refusal is about, as its message names them (``column 'x'``)."""
        found = _COLUMN_NAMED.search(result.message or "")
        return found.group(1) if found else None

    def not_sent(self, row: RowRef, reason: str | None = None) -> RowResult:
        """The ``failed`` result of a row the run never sent (stopped, aborted, or ``reason``)."""
        return self.result(row, Outcome.FAILED, f"not sent: {reason or self.stop_reason()}", code=NOT_SENT)

    def abort(self, reason: str) -> None:
        """Stop the run for ``reason`` (first reason wins); rows not sent yet end as not sent."""
        with self._abort_lock:
            if self.abort_reason is not None:
                return
            self.abort_reason = reason
            self.summary.aborted = reason
        self.stop.set()
        self.log.error("Aborting the sync: %s.", reason)

    def stop_reason(self) -> str:
        """Why rows are not sent: the abort, or the task being stopped (``on_kill``)."""
        if self.abort_reason:
            return f"the sync was aborted ({self.abort_reason})"
        return "the sync was stopped before every row was sent (task killed)"

    # ------------------------------------------------------------------ the frame

    @classmethod
    def execute(
        cls,
        sync: Sync[W, S],
        chunks: Iterable[Any],
        log: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> S:
        """THE loop of every sync: ``sync`` is a plug-in (:class:`~.protocol.Sync`), this is the order.

        ``sync.config`` (its ``id_type`` resolved once, by the plug-in) is validated before anything
        opens; the rejects file opens; ``sync.open(run)``; per chunk ``sync.plan(chunk)`` and its waves
        sent and recorded (a stop ends the reading); ``sync.after_source()`` and its waves;
        ``sync.close()`` then the run's files, on every exit path; the summary table, then
        :class:`SyncAbortedError` or :class:`ThresholdExceededError` (``sync.violation``).
        """
        config = sync.config
        config.validate()
        client = sync.client
        run = cls(
            client,
            config,
            sync.summary,
            log or logging.getLogger(type(sync).__module__),
            title=sync.title,
            label=sync.label,
            outcomes=sync.outcomes,
        )
        run.log.info("%s: id_type=%s", run.title, config.id_type)
        try:
            try:
                run.open_log(sync.operation)
                sync.open(run)
                for chunk in run.chunks(chunks):
                    run.deliver(sync, sync.plan(chunk))
                    if run.stop.is_set():
                        break
                run.deliver(sync, sync.after_source())
            finally:
                sync.close()
        finally:
            run.close()
        run.finish(sync.violation, sync.notes())
        return sync.summary

    def deliver(self, sync: Sync[W, Any], waves: Iterable[Iterable[W]]) -> None:
        """Send each wave (``sync.work`` on the workers) and record every result (``sync.recorded``)."""
        try:
            for wave in waves:
                for item, result in self.send(wave, sync.work, sync.ref, ambiguous=sync.ambiguous):
                    kept = sync.recorded(item, result)
                    if kept is not None:
                        self.record(kept)
        finally:
            if isinstance(waves, Generator):  # its ``finally``/``with`` blocks run now, not at GC
                waves.close()

    # ------------------------------------------------------------------ sending

    def map(
        self, items: Iterable[W], work: Callable[[W], R]
    ) -> Iterator[tuple[W, R | SendFailure[W] | None]]:
        """Run ``work`` on ``max_workers`` threads; ``(item, result)`` for EVERY item: a
        :class:`SendFailure` when it raised, ``None`` when it never started (the run was stopped)."""
        pending = iter(items)
        if not self.stop.is_set():
            yield from send_all(
                pending,
                work,
                max_workers=self.config.max_workers,
                stop=self.stop,
                heartbeat=self.progress.maybe_log,
            )
        for item in pending:
            yield item, None

    def send(
        self,
        items: Iterable[W],
        work: Callable[[W], RowResult],
        row_of: Callable[[W], RowRef],
        *,
        ambiguous: Outcome = Outcome.FAILED,
    ) -> Iterator[tuple[W, RowResult]]:
        """Run ``work`` on ``max_workers`` threads; yield ``(item, result)`` for EVERY item."""

        def guarded(item: W) -> RowResult:  # queued before a stop, started after it: not sent
            return self.not_sent(row_of(item)) if self.stop.is_set() else work(item)

        for item, outcome in self.map(items, guarded):
            if outcome is None:
                outcome = self.not_sent(row_of(item))
            elif isinstance(outcome, SendFailure):
                outcome = self.error_result(row_of(item), outcome.error, ambiguous=ambiguous)
            yield item, outcome

    # ------------------------------------------------------------------ the end

    def _requests(self) -> int:
        return self.client.requests_sent

    def close(self) -> None:
        """Close the rejects file and write the calls sample; fix the duration and request count.
        Called on every exit path."""
        try:
            try:
                self.rejects.close()
            finally:
                self._write_calls()
        finally:
            self.summary.rejects_written = self.rejects.written
            self.summary.requests_sent = self._requests() - self._requests_before
            self.summary.duration_seconds = time.monotonic() - self._started
            self.summary.rate_limit = self._rate_limit()

    def _write_calls(self) -> None:
        """The calls sample to ``calls_path`` (local or object storage), named in the summary."""
        if self.calls is None:
            return
        target = self.config.partition_path(self.config.calls_path)
        copy = WorkingCopy(target, name="calls.jsonl", download=False)
        try:
            with open(copy.path, "w", encoding="utf-8") as fh:
                self.calls.write(fh)
            copy.upload()
        finally:
            copy.close()
        self.summary.calls_path = describe(target)
        self.summary.calls = self.calls.classes()

    def _rate_limit(self) -> dict[str, Any] | None:
        """The client's limiter figures (configured, learned, 429s), logged when it learned anything."""
        limiter = self.client.rate_limiter
        if limiter is None:
            return None
        figures = dict(limiter.stats())
        if figures.get("shared_limiter_fallback"):
            self.log.warning("Shared rate limit not used to the end: %s", figures["shared_limiter_fallback"])
        if figures.get("rate_limited"):
            self.log.warning(
                "CrowdTwist answered 429 to %d request(s); the real limit was measured at %s requests/min "
                "(configured %s); paced at %s requests/min at the end.",
                figures["rate_limited"],
                figures.get("learned_requests_per_minute") or "?",
                figures.get("configured_requests_per_minute") or "no limit",
                figures.get("paced_requests_per_minute") or "?",
            )
        return figures

    def finish(self, violation: Callable[[SyncSummary], str | None] | None = None, notes: str = "") -> None:
        """Judge the status (``summary.judge_run``: ok / degraded / failed), log the summary table (and
        ``notes``); raise on abort, a threshold violation or a run in which nothing landed."""
        if self.stop.is_set() and self.abort_reason is None:
            self.summary.aborted = self.abort_reason = (
                "the sync was stopped before every row was sent (task killed)"
            )
        summary = self.summary
        if not summary.is_consistent():  # pragma: no cover - would be a bug in a sync
            self.log.error(
                "Row accounting mismatch: %d rows, %d outcomes", summary.rows_expected, summary.total_outcomes
            )
        config = self.config
        rule = violation or (
            lambda s: threshold_violation(s, config.max_failed_rows, config.max_failed_ratio)
        )
        # The status (ok / degraded / failed) is judged here, for every plug-in (summary.judge_run).
        problem = judge_run(
            summary,
            self.abort_reason or rule(summary),
            degraded_rejected_ratio=config.degraded_rejected_ratio,
            fail_when_nothing_landed=config.fail_when_nothing_landed,
        )
        table = summary_table(self.summary, self.title)
        self.log.info("%s", f"{table}\n{notes}" if notes else table)
        missing = self._finish_log(summary.status, self.abort_reason or problem)
        if self.abort_reason:
            raise SyncAbortedError(self.abort_reason, self.summary)
        if problem:
            raise ThresholdExceededError(problem, self.summary)
        if missing:
            raise SyncLogIncompleteError(missing, self.summary)
        if summary.status == "degraded":
            self.log.warning("%s: status degraded: %s", self.title, summary.status_reason)

    def _finish_log(self, status: str, error: str | None) -> str | None:
        """Complete the run's row in the sync log; what it could not record goes into the summary."""
        if self.sync_log is None:
            return None
        missing = self.sync_log.finish(self.summary.to_dict(), status=status, error=error)
        if missing:
            self.summary.log_missing = missing
            self.log.error("The sync log is incomplete: %s", missing)
        return missing
