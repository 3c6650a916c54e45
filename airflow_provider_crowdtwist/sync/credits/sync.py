"""The activity-credit sync: every row credited at most once per dedupe key, and never silently lost.

Why it is built this way: ``docs/sync-design.md``, section ``sync/credits/sync.py``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_crowdtwist.client.errors import CrowdTwistAlreadyProcessedError
from airflow_provider_crowdtwist.sync.credits.config import (
    HISTORY_REQUESTS,
    CreditResult,
    CreditSyncConfig,
    CreditSyncSummary,
    credit_notes,
    credit_threshold_violation,
    ledger_problem,
)
from airflow_provider_crowdtwist.sync.credits.ledger import (
    CREDITED,
    FAILED,
    PENDING,
    UNKNOWN,
    CreditIntent,
    CreditLedger,
    LedgerError,
    ledger_location,
)
from airflow_provider_crowdtwist.sync.credits.mapping import CreditRequest
from airflow_provider_crowdtwist.sync.credits.settle import CreditSettler, SendAnswer, Unsettled
from airflow_provider_crowdtwist.sync.credits.verify import CreditVerifier, HistoryClient
from airflow_provider_crowdtwist.sync.outcomes import Outcome, RowResult
from airflow_provider_crowdtwist.sync.protocol import SyncBase, SyncClient
from airflow_provider_crowdtwist.sync.run import NOT_SENT, RowRef, SyncRun
from airflow_provider_crowdtwist.sync.sender import SendFailure
from airflow_provider_crowdtwist.sync.summary import SyncConfigError, SyncSummary

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CreditSync",
    "CreditSyncConfig",
    "CreditSyncSummary",
    "credit_threshold_violation",
    "sync_credits",
]

_UNKNOWN_KEYS_IN_SUMMARY = 20


class CreditClient(HistoryClient, SyncClient, Protocol):
    """What the credit sync calls on the client (``CrowdTwistClient`` is one)."""

    @property
    def history_requests_sent(self) -> int: ...
    def list_activities(self) -> list[Any]: ...
    def credit_activity(
        self,
        user_id: str,
        activity_id: str,
        id_type: str | None = None,
        *,
        num_points: int | None = None,
        activity_date: int | None = None,
        extra_data: Mapping[str, Any] | None = None,
    ) -> Any: ...


class CreditSync(SyncBase):
    """The credit sync as a plug-in: its mapping, its per-row work (:meth:`work`), its ledger."""

    title = "CrowdTwist activity credits"
    label = "credits"
    ambiguous = Outcome.UNKNOWN
    config: CreditSyncConfig
    client: CreditClient
    summary: CreditSyncSummary

    def __init__(
        self, config: CreditSyncConfig, client: CreditClient, ledger: CreditLedger | None = None
    ) -> None:
        if ledger is None:  # this sync opens config.ledger_path: are the settings right for that?
            problem = ledger_problem(config.ledger_path, config.allow_duplicates)
            if problem:
                raise SyncConfigError(problem, "ledger_path")
        #: This partition's ledger file, its layout checked before any request (None: in memory).
        self.location = ledger_location(config.ledger_path or None, config.part) if ledger is None else None
        self.config = config.resolved(client.config.id_type)
        self.client = client
        self.summary = CreditSyncSummary()
        #: A ledger the caller opened (and closes); None: this sync opens ``config.ledger_path``.
        self.given = ledger
        self._ledger: CreditLedger | None = None
        #: Keys the reconcile phase could not settle: not looked up a second time in this run.
        self.unsettled_earlier: set[str] = set()
        self.sent_already_processed = 0
        self._unsent: list[str] = []
        self._first_chunk = True
        self._history_before = client.history_requests_sent

    def open(self, run: SyncRun) -> None:
        config = self.config
        self.run = run
        self.mapping = config.build_mapping()
        run.column_of = self.mapping.column_of
        self._ledger = ledger = self._open_ledger(run.log)
        self.summary.ledger_path = None if config.allow_duplicates else ledger.location
        self.summary.recovered_unknown = ledger.recovered_unknown
        if config.dedupe_extra_key is None:
            run.log.warning(
                "dedupe_extra_key=None: credits do not carry their dedupe key, so an ambiguous credit "
                "cannot be verified in the activity history. Exactly-once then rests on CrowdTwist's "
                "duplicate window, which no Oracle page documents; such credits stay 'unknown' unless "
                "resend_unknown=True"
            )
        self.settler = CreditSettler(
            ledger,
            CreditVerifier(self.client),
            self._resend,
            self._parallel,
            verify_delay=config.verify_delay,
            verify_resends=config.verify_resends,
            resend_unknown=config.resend_unknown,
            stop=run.stop,
            log=run.log,
        )
        self.reconcile_earlier()
        if config.validate_activities:
            activities = self.client.list_activities()
            self.mapping.set_known_activities([a.id for a in activities if a.active])

    @property
    def ledger(self) -> CreditLedger:
        assert self._ledger is not None, "opened by open()"
        return self._ledger

    def _open_ledger(self, log: logging.Logger | logging.LoggerAdapter) -> CreditLedger:
        """The caller's ledger; this partition's file of ``ledger_path`` (its layout checked before any
        request); or, with ``allow_duplicates``, one in memory (duplicates within the run are skipped)."""
        config = self.config
        if self.given is not None:
            return self.given
        if self.location is None:
            run_id = config.run_id or uuid.uuid4().hex
            return CreditLedger(":memory:", run_id=run_id, lock=False, log=log)
        return CreditLedger.open(self.location, run_id=config.run_id, log=log)

    def _parallel(self, items: Iterable[Any], work: Any) -> Iterator[tuple[Any, Any]]:
        """The settler's look-ups and resends on the run's workers: a failure gives its error, an item
        never started the reason why."""
        for item, result in self.run.map(items, work):
            if isinstance(result, SendFailure):
                yield item, result.error
            else:
                yield item, self.run.stop_reason() if result is None else result

    # ------------------------------------------------------------------ one credit (worker threads)

    def ref(self, req: CreditRequest) -> RowRef:
        return RowRef(req.row_number, req.user_id, req.payload())

    def work(self, req: CreditRequest) -> RowResult:
        """Intent, request, outcome, ledger state. An ``unknown`` credit that carries its key is marked
        ``settle``: it gets its outcome from the settler (look-up after the settle delay), not now."""
        if not self.ledger.is_remote:
            accepted = self.ledger.mark_pending([_intent(req)], resend_unknown=self.config.resend_unknown)
            if req.dedupe_key not in accepted:
                why = "already in the ledger (written by another run)"
                return self._result(req, SendAnswer(Outcome.SKIPPED, why))
        answer, result = self._send(req)
        result.settle = answer.outcome is Outcome.UNKNOWN and req.verifiable and not self.run.abort_reason
        return result

    def _resend(self, req: CreditRequest) -> SendAnswer:
        """Send one credit again (the settler turned its key ``pending``) and record its state."""
        return self._send(req)[0]

    def _send(self, req: CreditRequest) -> tuple[SendAnswer, CreditResult]:
        """The request, the outcome its answer means, the key's ledger state -- for sends and resends."""
        try:
            reply = self.client.credit_activity(
                req.user_id,
                req.activity_id,
                id_type=req.id_type,
                num_points=req.num_points,
                activity_date=req.activity_date,
                extra_data=req.extra_data,
            )
        except Exception as exc:  # an unexpected error may have gone out too: unknown, never resent blind
            told = self.run.answer(self.ref(req), exc, ambiguous=Outcome.UNKNOWN)
            # "Event already processed": an identical credit, maybe not this one
            processed = isinstance(exc, CrowdTwistAlreadyProcessedError)
            answer = SendAnswer(
                told.outcome, told.message, told.code, told.status, already_processed=processed
            )
        else:
            not_awarded = isinstance(reply, Mapping) and reply.get("awarded") is False
            why = "accepted, but CrowdTwist answered awarded=false (a frequency cap?)"
            answer = SendAnswer(Outcome.CREDITED, why if not_awarded else None, not_awarded=not_awarded)
        result = self._result(req, answer)
        state = {Outcome.CREDITED: CREDITED, Outcome.UNKNOWN: UNKNOWN}.get(answer.outcome, FAILED)
        self.ledger.record(req.dedupe_key, state, result.message)
        return answer, result

    def _result(self, req: CreditRequest, answer: SendAnswer) -> CreditResult:
        ref = self.ref(req)
        return CreditResult.at(
            ref.row_number,
            ref.identifier,
            answer.outcome,
            answer.message,
            code=answer.code,
            status=answer.status,
            payload=ref.payload,
            extra={"dedupe_key": req.dedupe_key},
            answer=answer,
        )

    # ------------------------------------------------------------------ one chunk (calling thread)

    def plan(self, chunk: pd.DataFrame) -> Iterator[list[CreditRequest]]:
        """Map and look up the chunk; settle what is due; send the rest (in intent batches when the
        ledger is remote: a killed worker then leaves at most one batch 'unknown')."""
        ledger, config = self.ledger, self.config
        if self._first_chunk:
            self.mapping.check_columns([str(c) for c in chunk.columns])
            self._first_chunk = False
        to_send = self._planned(chunk)
        self.settle(wait=False)
        if config.dry_run:
            for req in to_send:
                self.finish(req, Outcome.CREDITED, "dry run: not sent")
        elif not ledger.is_remote:
            yield to_send
        else:
            size = config.remote_ledger_batch
            for start in range(0, len(to_send), size):
                batch = to_send[start : start + size]
                if self.run.stop.is_set():  # the frame reports them not sent
                    yield batch
                    continue
                intents = (_intent(r) for r in batch)
                accepted = ledger.mark_pending(intents, resend_unknown=config.resend_unknown)
                try:
                    ledger.sync()
                except LedgerError:
                    ledger.discard_pending(accepted)
                    why = "the ledger could not be uploaded"
                    for req in batch:
                        self._record(req, self.run.not_sent(self.ref(req), why))
                    raise
                for req in batch:
                    if req.dedupe_key not in accepted:
                        self.finish(req, Outcome.SKIPPED, "already in the ledger (written by another run)")
                yield [r for r in batch if r.dedupe_key in accepted]
                if self._unsent:  # their batch intent was recorded, but they were not sent
                    ledger.discard_pending(self._unsent)
                    self._unsent = []
        ledger.sync()

    def _planned(self, chunk: pd.DataFrame) -> list[CreditRequest]:
        """Map the chunk, finish rejected / duplicate / already-known rows, return what must be sent."""
        requests: list[CreditRequest] = []
        mapping = self.mapping
        for row_number, record in self.run.rows(chunk, mapping.id_column, lower=mapping.id_type == "email"):
            mapped = mapping.map_row(row_number, record)
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
            elif req.dedupe_key in self.unsettled_earlier:
                self.finish(
                    req,
                    Outcome.UNKNOWN,
                    f"still unresolved: {entry.message or entry.state} (settled first in this run, in vain)",
                    code="unknown_in_ledger",
                )
            elif req.verifiable and not self.config.dry_run:
                # An unknown key the reconcile phase could not take up (no request in an old ledger):
                # verified now, from its source row.
                message = f"unresolved since run {entry.run_id} ({entry.message or entry.state})"
                self.settler.add(Unsettled(req, row=req.row_number, message=message), entry.unknown_since)
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

    def recorded(self, req: CreditRequest, result: RowResult) -> RowResult | None:
        """Count what the answer said; an ambiguous credit that carries its key waits for the settler."""
        result.extra.setdefault("dedupe_key", req.dedupe_key)
        if result.code == NOT_SENT:
            self._unsent.append(req.dedupe_key)
        if isinstance(result, CreditResult) and result.answer is not None:
            self.sent_already_processed += result.answer.already_processed
            self.summary.not_awarded += result.answer.not_awarded
            if result.settle:
                message = result.answer.message or "unresolved"
                self.settler.add(Unsettled(req, row=req.row_number, message=message))
                return None
        return result

    def finish(self, req: CreditRequest, outcome: Outcome, message: str | None, **kw: Any) -> None:
        """Record a credit's outcome decided on the calling thread (planning, settling)."""
        self._record(req, self.run.result(self.ref(req), outcome, message, **kw))

    def _record(self, req: CreditRequest, result: RowResult) -> None:
        result.extra["dedupe_key"] = req.dedupe_key
        self.run.record(result)

    # ------------------------------------------------------------------ settling unknown credits

    def reconcile_earlier(self) -> None:
        """Settle the ``unknown`` keys earlier runs left, before this run sends anything new."""
        if self.config.dry_run:
            return
        for entry in self.ledger.entries(UNKNOWN):
            if entry.request is None:
                continue  # an old ledger row: settled when its source row comes (see plan)
            try:
                req = CreditRequest.from_json(entry.request)
            except (ValueError, TypeError):
                continue
            message = f"unresolved since run {entry.run_id} ({entry.message or entry.state})"
            self.settler.add(Unsettled(req, row=0, message=message), entry.unknown_since)
        if not len(self.settler):
            return
        self.run.log.info(
            "Reconciling %d unknown credit(s) of earlier runs first (activity history, settle delay %g s)",
            len(self.settler),
            self.config.verify_delay,
        )
        self.settle(wait=True)

    def settle(self, *, wait: bool) -> None:
        """Give settled credits their outcome: rows of this run are recorded; earlier runs' keys apart."""
        for done in self.settler.settle(wait=wait):
            if done.item.row == 0:
                state = done.outcome.value
                self.summary.reconciled[state] = self.summary.reconciled.get(state, 0) + 1
                if done.outcome is Outcome.UNKNOWN:
                    self.unsettled_earlier.add(done.item.req.dedupe_key)
                continue
            self.finish(done.item.req, done.outcome, done.message, code=done.code, status=done.status)
        self.summary.verified = self.settler.verified
        self.summary.resent = self.settler.resent
        self.summary.already_processed = self.sent_already_processed + self.settler.already_processed

    def after_source(self) -> Iterable[Iterable[CreditRequest]]:
        """Wait for and settle the credits still queued."""
        self.settle(wait=True)
        return ()

    # ------------------------------------------------------------------ the end

    def close(self) -> None:
        """History requests counted; the ledger uploaded, its counts read, closed if this sync opened it."""
        history = self.client.history_requests_sent - self._history_before
        if history:
            self.summary.count_requests(HISTORY_REQUESTS, history)
        ledger = self._ledger
        if ledger is None:
            return
        try:
            ledger.sync()
            self.summary.ledger_counts = ledger.counts()
            self.summary.unknown_keys = [e.dedupe_key for e in ledger.unknown_keys(_UNKNOWN_KEYS_IN_SUMMARY)]
        finally:
            if ledger is not self.given:
                ledger.close()

    def violation(self, summary: SyncSummary) -> str | None:
        config = self.config
        return credit_threshold_violation(
            summary,
            max_failed_rows=config.max_failed_rows,
            max_failed_ratio=config.max_failed_ratio,
            fail_on_unknown=config.fail_on_unknown,
        )

    def notes(self) -> str:
        return credit_notes(self.summary, self.config)


def _intent(req: CreditRequest) -> CreditIntent:
    return CreditIntent(
        dedupe_key=req.dedupe_key,
        user_id=req.user_id,
        activity_id=req.activity_id,
        num_points=req.num_points,
        id_type=req.id_type,
        request=req.to_json(),
    )


def sync_credits(
    client: CreditClient,
    chunks: Iterable[pd.DataFrame],
    config: CreditSyncConfig,
    ledger: CreditLedger | None = None,
    log: logging.Logger | logging.LoggerAdapter | None = None,
) -> CreditSyncSummary:
    """Credit every row of ``chunks`` at most once per dedupe key; return the summary.

    The sync opens ``config.ledger_path`` (required unless ``config.allow_duplicates``) and closes it;
    a caller that holds an open ``ledger`` may pass it instead (it then stays the caller's to close).
    A remote ledger is uploaded after each chunk and on every exit path. A credential failure or a
    stop aborts the run (:class:`SyncAbortedError`, carrying the summary); a run over the thresholds,
    or with ``unknown`` credits while ``fail_on_unknown``, raises :class:`ThresholdExceededError`
    carrying the summary (see :func:`credit_threshold_violation`).
    """
    return SyncRun.execute(CreditSync(config, client, ledger), chunks, log)
