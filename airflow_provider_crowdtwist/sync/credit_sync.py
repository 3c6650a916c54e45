"""The activity-credit sync: every row credited at most once per dedupe key, and never silently lost.

A sync on the run skeleton (``sync/run.py``): its mapping is :class:`CreditMapping`, its per-row work
:meth:`_CreditSync.send_one` (write-ahead ``pending`` intent in the ledger, the request, then
``credited`` / ``failed`` / ``unknown``), its state the :class:`CreditLedger`. Per chunk: ``plan``
(map; skip duplicates and keys already credited; report keys left ``unknown``), ``reconcile`` (the
slot for looking up what CrowdTwist already shows), ``send``. Outcomes by answer, the ledger states
and what a later run does are tabled in ``docs/activity-credits.md``; the error -> outcome rule is
:meth:`SyncRun.error_result` with ``ambiguous=unknown``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

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
from airflow_provider_crowdtwist.sync.outcomes import Outcome, RowResult, outcome_key
from airflow_provider_crowdtwist.sync.run import NOT_SENT, RowRef, RunConfig, SyncRun
from airflow_provider_crowdtwist.sync.sources import chunk_records
from airflow_provider_crowdtwist.sync.summary import SyncConfigError, SyncSummary, threshold_violation

__all__ = [
    "CreditSyncConfig",
    "CreditSyncSummary",
    "credit_threshold_violation",
    "sync_credits",
]

_UNKNOWN_KEYS_IN_SUMMARY = 20


@dataclass(kw_only=True)
class CreditSyncConfig(RunConfig):
    """Everything a credit sync needs besides the client, the rows and the ledger.

    Column arguments are those of :class:`CreditMapping`. ``allow_duplicates`` runs without a ledger
    (an in-memory one stands in, so duplicates *within* the run are still skipped); it must be asked
    for explicitly because a retried task may then credit twice. The shared settings (workers,
    thresholds, rejects, dry run, stop event) are those of :class:`~.run.RunConfig`.
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
    fail_on_unknown: bool = True
    run_id: str | None = None
    #: With an object-storage ledger: credits whose intents are uploaded together before they are sent
    #: (the most a killed worker can leave 'unknown'; each batch costs one upload of the ledger file).
    remote_ledger_batch: int = 1000

    def validate_sync(self) -> None:
        if self.remote_ledger_batch < 1:
            raise SyncConfigError(
                f"remote_ledger_batch must be a positive integer, got {self.remote_ledger_batch!r}",
                "remote_ledger_batch",
            )
        self.build_mapping()  # its constructor raises SyncConfigError naming the argument

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
        return {**super().to_dict(), "unknown": self.count(Outcome.UNKNOWN)}


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


class _CreditSync:
    """A credit sync on the run skeleton: its mapping, its per-row work (:meth:`send_one`), its ledger."""

    def __init__(self, run: SyncRun[CreditRequest], config: CreditSyncConfig, ledger: CreditLedger) -> None:
        self.run = run
        self.client = run.client
        self.config = config
        self.ledger = ledger
        self.mapping = config.build_mapping()
        self.summary: CreditSyncSummary = run.summary  # type: ignore[assignment]
        self.summary.ledger_path = None if config.allow_duplicates else ledger.location
        self.summary.recovered_unknown = ledger.recovered_unknown

    def finish(self, req: CreditRequest, outcome: Outcome, message: str | None, **kw: Any) -> None:
        self.run.record(
            self.run.result(_ref(req), outcome, message, extra={"dedupe_key": req.dedupe_key}, **kw)
        )

    # ------------------------------------------------------------------ one request (worker threads)

    def send_one(self, req: CreditRequest) -> RowResult:
        """The per-row work: intent, request, outcome, ledger state."""
        ref = _ref(req)
        extra: dict[str, Any] = {"dedupe_key": req.dedupe_key}
        if not self.ledger.is_remote:
            accepted = self.ledger.mark_pending([_intent(req)], resend_unknown=self.config.resend_unknown)
            if req.dedupe_key not in accepted:
                why = "already in the ledger (written by another run)"
                return self.run.result(ref, Outcome.SKIPPED, why, extra=extra)
        try:
            answer = self.client.credit_activity(
                req.user_id,
                req.activity_id,
                id_type=req.id_type,
                num_points=req.num_points,
                activity_date=req.activity_date,
                extra_data=req.extra_data,
            )
        except Exception as exc:  # an unexpected error may have gone out too: unknown, never resent
            result = self.run.error_result(ref, exc, ambiguous=Outcome.UNKNOWN, **extra)
        else:
            answer = answer if isinstance(answer, Mapping) else {}
            message = None
            if answer.get("already_processed"):
                message = "credited (CrowdTwist answered 'Event already processed' to the identical resend)"
                extra["already_processed"] = True
            elif answer.get("awarded") is False:
                message = "accepted, but CrowdTwist answered awarded=false (a frequency cap?)"
                extra["not_awarded"] = True
            result = self.run.result(ref, Outcome.CREDITED, message, extra=extra)
        state = {"credited": CREDITED, "unknown": UNKNOWN}.get(outcome_key(result.outcome), FAILED)
        self.ledger.record(req.dedupe_key, state, result.message)
        return result

    # ------------------------------------------------------------------ one chunk (calling thread)

    def plan(self, chunk: pd.DataFrame) -> list[CreditRequest]:
        """Map the chunk, finish rejected / duplicate / already-known rows, return what must be sent."""
        requests: list[CreditRequest] = []
        for record in chunk_records(chunk):
            mapped = self.mapping.map_row(self.run.read_row(), record)
            if isinstance(mapped, RowResult):
                self.run.record(mapped)
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
                self.finish(req, Outcome.SKIPPED, "duplicate in this run (same dedupe key as an earlier row)")
            elif entry is None or entry.state == FAILED:
                to_send.append(req)
            elif entry.state == CREDITED:
                self.finish(
                    req, Outcome.SKIPPED, f"already credited (ledger: run {entry.run_id}, {entry.updated_at})"
                )
            elif self.config.resend_unknown and entry.state in (UNKNOWN, PENDING):
                to_send.append(req)
            else:
                self.finish(
                    req,
                    Outcome.UNKNOWN,
                    f"unresolved since run {entry.run_id} ({entry.message or entry.state}); not resent "
                    "(resend_unknown=False)",
                    code="unknown_in_ledger",
                )
        return to_send

    def reconcile(self, to_send: list[CreditRequest]) -> list[CreditRequest]:
        """The phase between planning and sending: nothing to look up yet, every planned key is sent."""
        return to_send

    def send(self, to_send: list[CreditRequest]) -> None:
        if self.config.dry_run:
            for req in to_send:
                self.finish(req, Outcome.CREDITED, "dry run: not sent")
            return
        if not self.ledger.is_remote:
            self._send_batch(to_send)
            return
        # A remote copy cannot be uploaded per key: intents go up per batch, before the batch is sent,
        # so a killed worker leaves at most one batch 'unknown'.
        size = self.config.remote_ledger_batch
        for start in range(0, len(to_send), size):
            batch = to_send[start : start + size]
            if self.run.stop.is_set():
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
                    self.finish(req, Outcome.SKIPPED, "already in the ledger (written by another run)")
            self._send_batch([r for r in batch if r.dedupe_key in accepted])

    def _not_sent(self, batch: Sequence[CreditRequest], reason: str | None = None) -> None:
        for req in batch:
            result = self.run.not_sent(_ref(req), reason)
            result.extra["dedupe_key"] = req.dedupe_key
            self.run.record(result)

    def _send_batch(self, to_send: list[CreditRequest]) -> None:
        unsent: list[str] = []
        for req, result in self.run.send(to_send, self.send_one, _ref, ambiguous=Outcome.UNKNOWN):
            if result.code == NOT_SENT:
                unsent.append(req.dedupe_key)
            result.extra.setdefault("dedupe_key", req.dedupe_key)
            self.summary.already_processed += bool(result.extra.pop("already_processed", False))
            self.summary.not_awarded += bool(result.extra.pop("not_awarded", False))
            self.run.record(result)
        if unsent and self.ledger.is_remote:  # their batch intent was recorded, but they were not sent
            self.ledger.discard_pending(unsent)


def _ref(req: CreditRequest) -> RowRef:
    return RowRef(req.row_number, req.user_id, req.payload())


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
    function uploads a remote ledger after each chunk and on every exit path. A credential failure or
    a stop aborts the run (:class:`SyncAbortedError`, carrying the summary); a run over the
    thresholds, or with ``unknown`` credits while ``fail_on_unknown``, raises
    :class:`ThresholdExceededError` carrying the summary (see :func:`credit_threshold_violation`).
    """
    log = log or logging.getLogger(__name__)
    config.validate()
    own_ledger = False
    if ledger is None:
        if not config.allow_duplicates:
            raise SyncConfigError(
                "ledger_path is required to credit activities exactly once; set allow_duplicates=True "
                "explicitly to credit without a ledger (a retried task may then credit twice)",
                "ledger_path",
            )
        ledger = CreditLedger(":memory:", run_id=config.run_id or uuid.uuid4().hex, lock=False, log=log)
        own_ledger = True
    run: SyncRun[CreditRequest] = SyncRun(
        client, config, CreditSyncSummary(), log, title="CrowdTwist activity credits", label="credits"
    )
    sync = _CreditSync(run, config, ledger)
    run.column_of = sync.mapping.column_of
    summary = sync.summary
    try:
        if config.validate_activities:
            activities = client.list_activities()
            sync.mapping.set_known_activities([a.id for a in activities if getattr(a, "active", True)])
        first = True
        for chunk in run.chunks(chunks):
            if first:
                sync.mapping.check_columns([str(c) for c in chunk.columns])
                first = False
            sync.send(sync.reconcile(sync.plan(chunk)))
            ledger.sync()
            if run.stop.is_set():
                break
    finally:
        try:
            run.close()
        finally:
            try:
                ledger.sync()
                summary.ledger_counts = ledger.counts()
                summary.unknown_keys = [e.dedupe_key for e in ledger.unknown_keys(_UNKNOWN_KEYS_IN_SUMMARY)]
            finally:
                if own_ledger:
                    ledger.close()
    run.finish(
        lambda s: credit_threshold_violation(
            s,
            max_failed_rows=config.max_failed_rows,
            max_failed_ratio=config.max_failed_ratio,
            fail_on_unknown=config.fail_on_unknown,
        ),
        notes=_notes(summary, config),
    )
    return summary


def _notes(summary: CreditSyncSummary, config: CreditSyncConfig) -> str:
    """What the summary table does not show: resend confirmations, awarded=false, the ledger."""
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
    return "\n".join(extra)
