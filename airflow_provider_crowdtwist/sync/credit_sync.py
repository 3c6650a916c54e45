"""The activity-credit sync: every row credited at most once per dedupe key, and never silently lost.

How one run goes (see also ``docs/activity-credits.md``):

1. Configuration is checked, and the program's active activities are fetched once
   (``validate_activities``), before the first credit is sent.
2. Each chunk of the source is mapped (``CreditMapping``): bad rows are ``rejected`` with a reason.
3. Keys seen earlier in this run are ``skipped`` ("duplicate in this run"); keys the ledger knows as
   ``credited`` are ``skipped`` ("already credited"); keys the ledger knows as ``unknown`` are reported
   ``unknown`` again and not resent, unless ``resend_unknown``.
4. The rest is sent by the concurrent sender. Before each request its key is committed ``pending`` in
   the ledger (write-ahead intent); after it, ``credited``, ``failed`` (definitely not applied) or
   ``unknown`` (ambiguous even after the client's immediate identical resend).
   A remote ledger cannot be uploaded per key, so there the intents of a whole chunk are recorded and
   uploaded before the chunk is sent.
5. The ledger is uploaded after each chunk and on every exit path; the rejects file and the summary
   are written as for the member sync.

The outcome of a sent credit follows the client's typed errors, never their text:

============================================  ==========  ================  ======================
answer                                        outcome     ledger            a later run
============================================  ==========  ================  ======================
200 (or "Event already processed" on resend)  credited    credited          skips it
404 member, 400/422, 403 (inactive member)    rejected    failed            sends it again
429 after retries, connection refused         failed      failed            sends it again
timeout, dropped connection, 5xx (ambiguous)  unknown     unknown           skips it (reported)
============================================  ==========  ================  ======================
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_crowdtwist.client.errors import (
    CrowdTwistAuthError,
    CrowdTwistError,
    CrowdTwistForbiddenError,
    CrowdTwistNotFoundError,
    CrowdTwistValidationError,
)
from airflow_provider_crowdtwist.sync.credit_mapping import CreditMapping, CreditRequest
from airflow_provider_crowdtwist.sync.ledger import (
    CREDITED,
    FAILED,
    PENDING,
    UNKNOWN,
    CreditIntent,
    CreditLedger,
    LedgerError,
)
from airflow_provider_crowdtwist.sync.outcomes import Outcome, RowResult
from airflow_provider_crowdtwist.sync.progress import ProgressReporter, summary_table
from airflow_provider_crowdtwist.sync.rejects import open_rejects
from airflow_provider_crowdtwist.sync.sender import SendFailure, check_max_workers, send_all
from airflow_provider_crowdtwist.sync.sources import chunk_records
from airflow_provider_crowdtwist.sync.summary import (
    SyncAbortedError,
    SyncSummary,
    ThresholdExceededError,
    threshold_violation,
    validate_thresholds,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CreditSyncConfig",
    "CreditSyncSummary",
    "credit_threshold_violation",
    "sync_credits",
]

_UNKNOWN_KEYS_IN_SUMMARY = 20
_MAX_LOGGED_PROBLEMS = 20


@dataclass
class CreditSyncConfig:
    """Everything a credit sync needs besides the client, the rows and the ledger.

    Column arguments are those of :class:`CreditMapping`. ``allow_duplicates`` runs without a ledger
    (an in-memory one stands in, so duplicates *within* the run are still skipped); it must be asked
    for explicitly because a retried task may then credit twice.
    """

    id_column: str
    id_type: str = "email"
    activity_id: str | None = None
    activity_id_column: str | None = None
    points_column: str | None = None
    activity_date_column: str | None = None
    extra_data_columns: str | Sequence[str] | Mapping[str, str] | None = None
    dedupe_key_column: str | None = None
    validate_activities: bool = True
    resend_unknown: bool = False
    allow_duplicates: bool = False
    max_workers: int = 16
    max_failed_rows: int | None = None
    max_failed_ratio: float | None = None
    fail_on_unknown: bool = True
    rejects_path: Any = None
    dry_run: bool = False
    run_id: str | None = None
    progress_interval: float = 10.0
    #: With an object-storage ledger: credits whose intents are uploaded together before they are sent
    #: (the most a killed worker can leave 'unknown'; each batch costs one upload of the ledger file).
    remote_ledger_batch: int = 1000
    #: Set from outside (the operator's ``on_kill``) to stop sending: credits in flight finish and are
    #: recorded; the rest are reported ``failed`` ("not sent") and stay sendable by the next run.
    stop_event: threading.Event | None = None

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field; called before anything is read or sent."""
        check_max_workers(self.max_workers)
        validate_thresholds(self.max_failed_rows, self.max_failed_ratio)
        batch = self.remote_ledger_batch
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"remote_ledger_batch must be a positive integer, got {batch!r}")
        for name in (
            "validate_activities",
            "resend_unknown",
            "allow_duplicates",
            "fail_on_unknown",
            "dry_run",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        self.build_mapping()

    def build_mapping(self) -> CreditMapping:
        """The row mapping (its constructor checks the column arguments)."""
        return CreditMapping(
            id_column=self.id_column,
            id_type=self.id_type,
            activity_id=self.activity_id,
            activity_id_column=self.activity_id_column,
            points_column=self.points_column,
            activity_date_column=self.activity_date_column,
            extra_data_columns=self.extra_data_columns,
            dedupe_key_column=self.dedupe_key_column,
        )


@dataclass
class CreditSyncSummary(SyncSummary):
    """The sync summary plus what the ledger says: where it is, its counts, the keys to look at."""

    ledger_path: str | None = None
    ledger_counts: dict[str, int] = field(default_factory=dict)
    unknown_keys: list[str] = field(default_factory=list)
    recovered_unknown: int = 0
    already_processed: int = 0
    not_awarded: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The XCom: counts, ``unknown`` count and keys, the ledger's location. Never rows or secrets."""
        data = super().to_dict()
        data.update(
            {
                "unknown": int(self.count(Outcome.UNKNOWN)),
                "ledger_path": self.ledger_path,
                "ledger_counts": {k: int(v) for k, v in self.ledger_counts.items()},
                "unknown_keys": list(self.unknown_keys),
                "recovered_unknown": int(self.recovered_unknown),
                "already_processed": int(self.already_processed),
                "not_awarded": int(self.not_awarded),
            }
        )
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CreditSyncSummary:
        """Rebuild from :meth:`to_dict` output."""
        base = SyncSummary.from_dict(data)
        summary = cls(**{f: getattr(base, f) for f in SyncSummary.__dataclass_fields__})
        summary.ledger_path = data.get("ledger_path")
        summary.ledger_counts = {str(k): int(v) for k, v in dict(data.get("ledger_counts") or {}).items()}
        summary.unknown_keys = [str(k) for k in data.get("unknown_keys") or []]
        summary.recovered_unknown = int(data.get("recovered_unknown", 0))
        summary.already_processed = int(data.get("already_processed", 0))
        summary.not_awarded = int(data.get("not_awarded", 0))
        return summary


def credit_threshold_violation(
    summary: SyncSummary,
    *,
    max_failed_rows: int | None = None,
    max_failed_ratio: float | None = None,
    fail_on_unknown: bool = True,
) -> str | None:
    """Why the task should fail, or None.

    ``unknown`` credits are judged on their own: by default any of them fails the task, because only a
    human can tell whether the points landed (CrowdTwist's console, then ``CreditLedger.set_state`` or
    ``resend_unknown=True``). The thresholds then apply to ``rejected`` + ``failed`` as for members.
    """
    unknown = summary.count(Outcome.UNKNOWN)
    if fail_on_unknown and unknown:
        return (
            f"{unknown} credit(s) are 'unknown': the request may or may not have been applied. They are "
            "listed in the rejects file and the ledger (state 'unknown'); check them in CrowdTwist, then "
            "mark them in the ledger or rerun with resend_unknown=True (set fail_on_unknown=False to "
            "tolerate them)"
        )
    shadow = SyncSummary(counts=dict(summary.counts), rows_read=summary.rows_read)
    shadow.counts[Outcome.UNKNOWN.value] = 0
    return threshold_violation(shadow, max_failed_rows, max_failed_ratio)


@dataclass
class _Sent:
    """What a worker thread reports back for one request."""

    outcome: Outcome
    message: str | None = None
    code: str | None = None
    status: int | None = None
    already_processed: bool = False
    not_awarded: bool = False
    abort: str | None = None


class _CreditRun:
    """State of one :func:`sync_credits` call (kept in one object so the steps stay short)."""

    def __init__(
        self,
        client: Any,
        config: CreditSyncConfig,
        ledger: CreditLedger,
        log: logging.Logger | logging.LoggerAdapter,
    ) -> None:
        self.client = client
        self.config = config
        self.ledger = ledger
        self.log = log
        self.mapping = config.build_mapping()
        self.summary = CreditSyncSummary(dry_run=config.dry_run)
        self.summary.ledger_path = None if config.allow_duplicates else ledger.location
        self.summary.recovered_unknown = ledger.recovered_unknown
        redact: Callable[[str], str] | None = getattr(client, "redact", None)
        self.rejects = open_rejects(config.rejects_path, redact=redact)
        self.summary.rejects_path = getattr(self.rejects, "location", None)
        self.progress = ProgressReporter(log, interval=config.progress_interval, label="credits")
        self.stop = config.stop_event if config.stop_event is not None else threading.Event()
        self.abort_reason: str | None = None
        self.problems_logged = 0

    # ------------------------------------------------------------------ outcomes

    def finish(self, result: RowResult) -> None:
        self.summary.add(result.outcome)
        self.progress.record(result.outcome)
        if result.is_problem:
            self.rejects.write(result)
            if self.problems_logged < _MAX_LOGGED_PROBLEMS:
                key = result.extra.get("dedupe_key")
                self.log.warning(
                    "%s: row %d%s [%s] %s",
                    result.outcome,
                    result.row_number,
                    f" (dedupe key {key})" if key else "",
                    result.code or "",
                    result.message,
                )
            elif self.problems_logged == _MAX_LOGGED_PROBLEMS:
                self.log.warning("More rejected/failed/unknown credits are not logged; see the rejects file.")
            self.problems_logged += 1

    def finish_request(self, req: CreditRequest, outcome: Outcome, message: str | None, **kw: Any) -> None:
        extra = {"dedupe_key": req.dedupe_key}
        extra.update(kw.pop("extra", {}))
        self.finish(
            RowResult(
                row_number=req.row_number,
                identifier=req.user_id,
                outcome=outcome,
                message=message,
                payload=req.payload(),
                extra=extra,
                **kw,
            )
        )

    # ------------------------------------------------------------------ one request (worker threads)

    def send_one(self, req: CreditRequest) -> _Sent:
        if self.stop.is_set():
            if self.ledger.is_remote:  # its chunk intent was recorded, but it is not sent after all
                self.ledger.discard_pending([req.dedupe_key])
            return _Sent(Outcome.FAILED, f"not sent: {self._stop_reason()}", "not_sent")
        if not self.ledger.is_remote:
            accepted = self.ledger.mark_pending([_intent(req)], resend_unknown=self.config.resend_unknown)
            if req.dedupe_key not in accepted:
                return _Sent(Outcome.SKIPPED, "already in the ledger (written by another run)")
        try:
            answer = self.client.credit_activity(
                req.user_id,
                req.activity_id,
                id_type=req.id_type,
                num_points=req.num_points,
                activity_date=req.activity_date,
                extra_data=req.extra_data,
            )
        except CrowdTwistError as exc:
            sent, state = self._classify(exc)
        except Exception as exc:  # a bug or an unexpected library error: the request may have gone out
            sent = _Sent(Outcome.UNKNOWN, f"unresolved: unexpected {type(exc).__name__}", "unexpected_error")
            state = UNKNOWN
        else:
            answer = answer if isinstance(answer, Mapping) else {}
            if answer.get("already_processed"):
                sent = _Sent(
                    Outcome.CREDITED,
                    "credited (CrowdTwist answered 'Event already processed' to the identical resend)",
                    already_processed=True,
                )
            elif answer.get("awarded") is False:
                sent = _Sent(
                    Outcome.CREDITED,
                    "accepted, but CrowdTwist answered awarded=false (a frequency cap?)",
                    not_awarded=True,
                )
            else:
                sent = _Sent(Outcome.CREDITED)
            state = CREDITED
        self.ledger.record(req.dedupe_key, state, sent.message)
        return sent

    @staticmethod
    def _classify(exc: CrowdTwistError) -> tuple[_Sent, str]:
        """A client error -> the row's outcome and the key's ledger state.

        ``ambiguous`` comes first: the client sets it when *any* attempt may have been applied, so
        even a final 400 or 404 after an earlier dropped attempt is ``unknown``, never retried later.
        """
        abort = str(exc) if isinstance(exc, CrowdTwistAuthError) else None
        if exc.ambiguous:
            return _Sent(
                Outcome.UNKNOWN, f"unresolved: {exc}", exc.code or "ambiguous", exc.status, abort=abort
            ), UNKNOWN
        if isinstance(exc, CrowdTwistNotFoundError):
            return _Sent(
                Outcome.REJECTED, f"member not found ({exc.message})", exc.code or "not_found", exc.status
            ), FAILED
        if isinstance(exc, (CrowdTwistForbiddenError, CrowdTwistValidationError)):
            # Refused for its content or the member's status (e.g. "User is inactive."): not applied.
            return _Sent(Outcome.REJECTED, str(exc), exc.code or type(exc).__name__, exc.status), FAILED
        if abort is not None:
            # Credentials are wrong: every further request would fail the same way.
            return _Sent(
                Outcome.FAILED, str(exc), exc.code or "unauthorized", exc.status, abort=abort
            ), FAILED
        return _Sent(Outcome.FAILED, str(exc), exc.code or type(exc).__name__, exc.status), FAILED

    # ------------------------------------------------------------------ one chunk (calling thread)

    def plan(self, chunk: pd.DataFrame, first_row: int) -> list[CreditRequest]:
        """Map the chunk, finish rejected / duplicate / already-known rows, return what must be sent."""
        requests: list[CreditRequest] = []
        for offset, record in enumerate(chunk_records(chunk)):
            self.summary.rows_read += 1
            mapped = self.mapping.map_row(first_row + offset, record)
            if isinstance(mapped, RowResult):
                self.finish(mapped)
            else:
                requests.append(mapped)
        if not requests:
            return []
        first_seen = self.ledger.claim_for_run([r.dedupe_key for r in requests])
        known = self.ledger.lookup(r.dedupe_key for r in requests)
        to_send: list[CreditRequest] = []
        for req, is_first in zip(requests, first_seen, strict=True):
            entry = known.get(req.dedupe_key)
            if not is_first:
                self.finish_request(
                    req, Outcome.SKIPPED, "duplicate in this run (same dedupe key as an earlier row)"
                )
            elif entry is None or entry.state == FAILED:
                to_send.append(req)
            elif entry.state == CREDITED:
                self.finish_request(
                    req, Outcome.SKIPPED, f"already credited (ledger: run {entry.run_id}, {entry.updated_at})"
                )
            elif self.config.resend_unknown and entry.state in (UNKNOWN, PENDING):
                to_send.append(req)
            else:
                self.finish_request(
                    req,
                    Outcome.UNKNOWN,
                    f"unresolved since run {entry.run_id} ({entry.message or entry.state}); not resent "
                    "(resend_unknown=False)",
                    code="unknown_in_ledger",
                )
        return to_send

    def send(self, to_send: list[CreditRequest]) -> None:
        if self.config.dry_run:
            for req in to_send:
                self.finish_request(req, Outcome.CREDITED, "dry run: not sent")
            return
        if not self.ledger.is_remote:
            self._send_batch(to_send)
            return
        # A remote copy cannot be uploaded per key: intents go up per batch, before the batch is sent,
        # so a killed worker leaves at most one batch 'unknown'.
        size = self.config.remote_ledger_batch
        for start in range(0, len(to_send), size):
            batch = to_send[start : start + size]
            if self.stop.is_set():
                self._not_sent(batch)
                continue
            accepted = self.ledger.mark_pending(
                (_intent(r) for r in batch), resend_unknown=self.config.resend_unknown
            )
            try:
                self.ledger.sync()
            except LedgerError:
                self.ledger.discard_pending(accepted)
                self._not_sent(batch, "the ledger could not be uploaded")
                raise
            for req in batch:
                if req.dedupe_key not in accepted:
                    self.finish_request(
                        req, Outcome.SKIPPED, "already in the ledger (written by another run)"
                    )
            self._send_batch([r for r in batch if r.dedupe_key in accepted])

    def _stop_reason(self) -> str:
        if self.abort_reason:
            return f"the sync was aborted ({self.abort_reason})"
        return "the task was stopped before this credit was sent"

    def _not_sent(self, batch: Sequence[CreditRequest], reason: str | None = None) -> None:
        why = reason or self._stop_reason()
        for req in batch:
            self.finish_request(req, Outcome.FAILED, f"not sent: {why}", code="not_sent")

    def _send_batch(self, to_send: list[CreditRequest]) -> None:
        pending = iter(to_send)
        for req, result in send_all(
            pending,
            self.send_one,
            max_workers=self.config.max_workers,
            stop=self.stop,
            heartbeat=self.progress.maybe_log,
        ):
            if isinstance(result, SendFailure):
                # Only the ledger itself can raise in send_one; the request may have gone out.
                self.finish_request(
                    req,
                    Outcome.UNKNOWN,
                    f"unresolved: ledger write failed ({result.error})",
                    code="ledger_error",
                )
                continue
            if result.abort and not self.stop.is_set():
                self.abort_reason = result.abort
                self.summary.aborted = result.abort
                self.stop.set()
                self.log.error("Aborting the credit sync: %s", result.abort)
            self.summary.already_processed += result.already_processed
            self.summary.not_awarded += result.not_awarded
            self.finish_request(req, result.outcome, result.message, code=result.code, status=result.status)
        unsent = list(pending)  # left in the iterator after an abort: never sent
        if unsent and self.ledger.is_remote:
            self.ledger.discard_pending(r.dedupe_key for r in unsent)
        self._not_sent(unsent)


def _intent(req: CreditRequest) -> CreditIntent:
    return CreditIntent(
        dedupe_key=req.dedupe_key, user_id=req.user_id, activity_id=req.activity_id, num_points=req.num_points
    )


def sync_credits(
    client: Any,
    chunks: Iterable[pd.DataFrame],
    config: CreditSyncConfig,
    ledger: CreditLedger | None,
    log: logging.Logger | logging.LoggerAdapter | None = None,
) -> CreditSyncSummary:
    """Credit every row of ``chunks`` at most once per dedupe key; return the summary.

    ``ledger`` is required unless ``config.allow_duplicates``. The caller owns it (and closes it); this
    function uploads a remote ledger after each chunk and on every exit path. A 401 aborts the run
    (:class:`SyncAbortedError`, carrying the summary); a run over the thresholds, or with ``unknown``
    credits while ``fail_on_unknown``, raises :class:`ThresholdExceededError` carrying the summary
    (see :func:`credit_threshold_violation`).
    """
    log = log or logging.getLogger(__name__)
    config.validate()
    own_ledger = False
    if ledger is None:
        if not config.allow_duplicates:
            raise ValueError(
                "ledger_path is required to credit activities exactly once; set allow_duplicates=True "
                "explicitly to credit without a ledger (a retried task may then credit twice)"
            )
        ledger = CreditLedger(":memory:", run_id=config.run_id or uuid.uuid4().hex, lock=False, log=log)
        own_ledger = True
    run = _CreditRun(client, config, ledger, log)
    summary = run.summary
    started = time.monotonic()
    requests_before = int(getattr(client, "requests_sent", 0))
    try:
        if config.validate_activities:
            activities = client.list_activities()
            run.mapping.set_known_activities([a.id for a in activities if getattr(a, "active", True)])
        row_number = 1
        first = True
        for chunk in chunks:
            if first:
                run.mapping.check_columns([str(c) for c in chunk.columns])
                first = False
            to_send = run.plan(chunk, row_number)
            row_number += len(chunk)
            run.send(to_send)
            ledger.sync()
            if run.stop.is_set():
                break
    finally:
        summary.duration_seconds = time.monotonic() - started
        summary.requests_sent = int(getattr(client, "requests_sent", 0)) - requests_before
        try:
            run.rejects.close()
        finally:
            summary.rejects_written = run.rejects.written
            try:
                ledger.sync()
                summary.ledger_counts = ledger.counts()
                summary.unknown_keys = [e.dedupe_key for e in ledger.unknown_keys(_UNKNOWN_KEYS_IN_SUMMARY)]
            finally:
                if own_ledger:
                    ledger.close()
    _log_end(log, summary, config)
    if run.abort_reason:
        raise SyncAbortedError(f"credit sync aborted: {run.abort_reason}", summary)
    violation = credit_threshold_violation(
        summary,
        max_failed_rows=config.max_failed_rows,
        max_failed_ratio=config.max_failed_ratio,
        fail_on_unknown=config.fail_on_unknown,
    )
    if violation:
        raise ThresholdExceededError(violation, summary)
    return summary


def _log_end(
    log: logging.Logger | logging.LoggerAdapter, summary: CreditSyncSummary, config: CreditSyncConfig
) -> None:
    table = summary_table(summary, title="CrowdTwist activity credits")
    extra = []
    if summary.already_processed:
        extra.append(
            f"{summary.already_processed} credit(s) confirmed by 'Event already processed' on resend"
        )
    if summary.not_awarded:
        extra.append(f"{summary.not_awarded} credit(s) accepted with awarded=false")
    if config.allow_duplicates:
        extra.append("no ledger (allow_duplicates=True): a rerun may credit these rows again")
    else:
        counts = ", ".join(f"{k}={v}" for k, v in summary.ledger_counts.items())
        extra.append(f"ledger {summary.ledger_path}: {counts}")
    if summary.unknown_keys:
        extra.append(
            f"unknown dedupe keys (first {len(summary.unknown_keys)}): {', '.join(summary.unknown_keys)}"
            " -- inspect with: sqlite3 LEDGER \"select * from credits where state='unknown'\""
        )
    log.info("%s\n%s", table, "\n".join(extra))
