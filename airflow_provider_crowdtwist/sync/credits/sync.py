"""The activity-credit sync: every row credited at most once per dedupe key, and never silently lost.

A sync on the run skeleton (``sync/run.py``): its mapping is :class:`CreditMapping`, its per-row work
:meth:`_CreditSync.send_one` (write-ahead ``pending`` intent in the ledger, the request, then
``credited`` / ``failed`` / ``unknown``), its state the :class:`CreditLedger`.

Ambiguous credits are settled by looking, not by believing (``credit_settle.py``, ``credit_verify.py``):
an ``unknown`` credit that carries its dedupe key in ``extra_data`` gets no outcome yet; after
``verify_delay`` its member's activity history is read -- found: ``credited``; absent: sent again
(same key), a bounded number of times. A run goes:

1. reconcile first: the ``unknown`` keys earlier runs left are settled before anything new is sent;
2. per chunk: ``plan`` (map; skip duplicates and keys already credited; queue keys left ``unknown``
   for verification), ``reconcile`` (settle the queued credits whose settle delay is over), ``send``;
3. at the end, wait for and settle the rest.

Outcomes by answer, the ledger states and what a later run does are tabled in
``docs/activity-credits.md``; the error -> outcome rule is :meth:`SyncRun.error_result` with
``ambiguous=unknown``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_crowdtwist.client.errors import CrowdTwistAlreadyProcessedError
from airflow_provider_crowdtwist.sync.credits.ledger import (
    CREDITED,
    FAILED,
    PENDING,
    UNKNOWN,
    CreditIntent,
    CreditLedger,
    LedgerError,
)
from airflow_provider_crowdtwist.sync.credits.mapping import (
    DEFAULT_DEDUPE_EXTRA_KEY,
    CreditMapping,
    CreditRequest,
)
from airflow_provider_crowdtwist.sync.credits.settle import (
    DEFAULT_VERIFY_DELAY,
    DEFAULT_VERIFY_RESENDS,
    CreditSettler,
    SendAnswer,
    Unsettled,
    check_verify_settings,
)
from airflow_provider_crowdtwist.sync.credits.verify import CreditVerifier
from airflow_provider_crowdtwist.sync.outcomes import Outcome, RowResult, outcome_key
from airflow_provider_crowdtwist.sync.run import NOT_SENT, RowRef, RunConfig, SyncRun
from airflow_provider_crowdtwist.sync.sender import SendFailure, send_all
from airflow_provider_crowdtwist.sync.summary import SyncConfigError, SyncSummary, threshold_violation

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CreditSyncConfig",
    "CreditSyncSummary",
    "credit_threshold_violation",
    "sync_credits",
]

_UNKNOWN_KEYS_IN_SUMMARY = 20
#: The request counter of activity-history reads (``summary.request_counts``).
HISTORY_REQUESTS = "history"


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
    #: Seconds after an ambiguous answer before the credit is looked up in the member's activity
    #: history (Oracle: awards are applied "generally within seconds"). Not found then: sent again.
    verify_delay: float = DEFAULT_VERIFY_DELAY
    #: How many times one credit verified absent is sent again in one run (each resend waits for
    #: ``verify_delay`` and is verified again); what is still open after that stays ``unknown``.
    verify_resends: int = DEFAULT_VERIFY_RESENDS
    #: The ``extra_data`` key that carries each credit's dedupe key; None turns it off explicitly
    #: (exactly-once then rests on CrowdTwist's undocumented duplicate window).
    dedupe_extra_key: str | None = DEFAULT_DEDUPE_EXTRA_KEY

    def validate_sync(self) -> None:
        if self.remote_ledger_batch < 1:
            raise SyncConfigError(
                f"remote_ledger_batch must be a positive integer, got {self.remote_ledger_batch!r}",
                "remote_ledger_batch",
            )
        try:
            check_verify_settings(self.verify_delay, self.verify_resends)
        except ValueError as exc:
            field_name = "verify_delay" if "verify_delay" in str(exc) else "verify_resends"
            raise SyncConfigError(str(exc), field_name) from None
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
            dedupe_extra_key=self.dedupe_extra_key,
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
    #: Credits proven by their key in the member's activity history (after an ambiguous answer).
    verified: int = 0
    #: Sends of credits verified absent after the settle delay (the same key, the same body).
    resent: int = 0
    #: ``unknown`` keys of earlier runs settled before this run sent anything, by final state.
    reconciled: dict[str, int] = field(default_factory=dict)

    @property
    def history_requests(self) -> int:
        """Requests that read activity histories: the cost of verification, part of ``requests_sent``."""
        return self.request_counts.get(HISTORY_REQUESTS, 0)

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

    ``unknown`` credits (rows of this run, and earlier runs' keys the reconcile phase could not settle)
    are judged on their own: by default any of them fails the task -- an ordinary failure, so a retry
    looks them up again first. The thresholds then apply to ``rejected`` + ``failed`` as for members.
    """
    unknown = summary.count(Outcome.UNKNOWN)
    if isinstance(summary, CreditSyncSummary):
        unknown += summary.reconciled.get(Outcome.UNKNOWN.value, 0)
    if fail_on_unknown and unknown:
        return (
            f"{unknown} credit(s) are 'unknown': verification in the members' activity histories could not "
            "settle them (see their messages in the rejects file and the ledger, state 'unknown'). The "
            "next run (or a retry of this task) looks them up again first; set fail_on_unknown=False to "
            "tolerate them meanwhile"
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
        self.settler = CreditSettler(
            ledger,
            CreditVerifier(self.client),
            self.send_now,
            self.parallel,
            verify_delay=config.verify_delay,
            verify_resends=config.verify_resends,
            resend_unknown=config.resend_unknown,
            stop=run.stop,
            log=run.log,
        )
        #: Keys the reconcile phase could not settle: not looked up a second time in this run.
        self.unsettled_earlier: set[str] = set()
        self.sent_already_processed = 0

    def finish(self, req: CreditRequest, outcome: Outcome, message: str | None, **kw: Any) -> None:
        self.run.record(
            self.run.result(_ref(req), outcome, message, extra={"dedupe_key": req.dedupe_key}, **kw)
        )

    # ------------------------------------------------------------------ one request (worker threads)

    def send_one(self, req: CreditRequest) -> RowResult:
        """The per-row work: intent, request, outcome, ledger state.

        An ``unknown`` result of a credit that carries its key is marked ``settle``: it gets its outcome
        from the settler (look-up after the settle delay), not now.
        """
        if not self.ledger.is_remote:
            accepted = self.ledger.mark_pending([_intent(req)], resend_unknown=self.config.resend_unknown)
            if req.dedupe_key not in accepted:
                why = "already in the ledger (written by another run)"
                return self.run.result(_ref(req), Outcome.SKIPPED, why, extra={"dedupe_key": req.dedupe_key})
        result = self._send_and_record(req)
        if result.outcome is Outcome.UNKNOWN and req.verifiable and not self.run.abort_reason:
            result.extra["settle"] = True
        return result

    def send_now(self, req: CreditRequest) -> SendAnswer:
        """Send one credit again (the settler turned its key ``pending``) and record its state."""
        result = self._send_and_record(req)
        return SendAnswer(
            Outcome(outcome_key(result.outcome)),
            _unprefixed(result),
            result.code,
            result.status,
            bool(result.extra.get("already_processed")),
        )

    def parallel(self, items: Iterable[Any], work: Callable[[Any], Any]) -> Iterator[tuple[Any, Any]]:
        """Run ``work`` on the sync's workers (the settler's look-ups and resends); every item comes back,
        those never started (the run was stopped) with the reason instead of a result."""
        pending = iter(items)
        for item, result in send_all(
            pending,
            work,
            max_workers=self.config.max_workers,
            stop=self.run.stop,
            heartbeat=self.run.progress.maybe_log,
        ):
            yield item, (result.error if isinstance(result, SendFailure) else result)
        for item in pending:
            yield item, self.run.stop_reason()

    def _send_and_record(self, req: CreditRequest) -> RowResult:
        """The request, the outcome its answer means, the key's ledger state -- for sends and resends."""
        ref = _ref(req)
        extra: dict[str, Any] = {"dedupe_key": req.dedupe_key}
        try:
            answer = self.client.credit_activity(
                req.user_id,
                req.activity_id,
                id_type=req.id_type,
                num_points=req.num_points,
                activity_date=req.activity_date,
                extra_data=req.extra_data,
            )
        except Exception as exc:  # an unexpected error may have gone out too: unknown, never resent blind
            if isinstance(exc, CrowdTwistAlreadyProcessedError):  # an identical credit, maybe not this one
                extra["already_processed"] = True
            result = self.run.error_result(ref, exc, ambiguous=Outcome.UNKNOWN, **extra)
        else:
            answer = answer if isinstance(answer, Mapping) else {}
            message = None
            if answer.get("awarded") is False:
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

    def reconcile(self, to_send: list[CreditRequest]) -> list[CreditRequest]:
        """The phase between planning and sending: settle the queued credits already due, then send."""
        self.settle(wait=False)
        return to_send

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
            self.sent_already_processed += bool(result.extra.pop("already_processed", False))
            self.summary.not_awarded += bool(result.extra.pop("not_awarded", False))
            if result.extra.pop("settle", False):
                self.settler.add(Unsettled(req, row=req.row_number, message=_unprefixed(result)))
                continue
            self.run.record(result)
        if unsent and self.ledger.is_remote:  # their batch intent was recorded, but they were not sent
            self.ledger.discard_pending(unsent)


def _ref(req: CreditRequest) -> RowRef:
    return RowRef(req.row_number, req.user_id, req.payload())


def _unprefixed(result: RowResult) -> str:
    """A result's message without its ``row N: `` prefix (it is added again when the row is recorded)."""
    message = result.message or "unresolved"
    prefix = f"row {result.row_number}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


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
    if config.dedupe_extra_key is None:
        log.warning(
            "dedupe_extra_key=None: credits do not carry their dedupe key, so an ambiguous credit cannot "
            "be verified in the activity history. Exactly-once then rests on CrowdTwist's duplicate "
            "window, which no Oracle page documents; such credits stay 'unknown' unless resend_unknown=True"
        )
    run: SyncRun[CreditRequest] = SyncRun(
        client, config, CreditSyncSummary(), log, title="CrowdTwist activity credits", label="credits"
    )
    sync = _CreditSync(run, config, ledger)
    run.column_of = sync.mapping.column_of
    summary = sync.summary
    history_before = int(getattr(client, "history_requests_sent", 0) or 0)
    try:
        sync.reconcile_earlier()
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
        sync.settle(wait=True)
    finally:
        history = int(getattr(client, "history_requests_sent", 0) or 0) - history_before
        if history:
            summary.count_requests(HISTORY_REQUESTS, history)
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
    """What the summary table does not show: verification, awarded=false, the ledger."""
    extra = []
    if summary.verified or summary.resent or summary.history_requests:
        extra.append(
            f"verification: {summary.verified} credit(s) proven in the activity history, {summary.resent} "
            f"sent again after being verified absent, {summary.history_requests} history request(s)"
        )
    if summary.already_processed:
        extra.append(
            f"{summary.already_processed} 'Event already processed' answer(s), each verified, not believed"
        )
    if summary.reconciled:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(summary.reconciled.items()))
        extra.append(f"unknown credits of earlier runs reconciled first: {counts}")
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
