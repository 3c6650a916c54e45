"""The purchase and return syncs: a plug-in of the frame (``SyncRun.execute``), exactly once by id.

``plan`` maps each source line and spools it (a document can be sent only once all its lines are read);
``after_source`` assembles the documents, id by id, in two waves -- receipts or returns, then voids, so
that a void never overtakes the return it deletes -- and ``work`` sends one document.

Exactly once comes from CrowdTwist's own key, the ``receipt_id`` ("a unique identifier of this
request", O:Purchase) or the ``return_id``: a document whose send was ambiguous (a 5xx, a dropped
connection: it may have landed) is sent again with the same id, and what CrowdTwist answers settles
it. A "not unique" answer after an ambiguous attempt (of this run, or of an earlier run the ledger
remembers) proves the document landed: ``recorded``. On a first attempt it proves an earlier run
recorded it: ``skipped``. Neither is ever ``failed``. Under the reading where a repeat answers 200 with
the first answer (OPEN 1) the resend simply succeeds: ``recorded``. A void answered "not found" after an
ambiguous attempt landed (``voided``); on a first attempt the return is gone already (``skipped``).
Only what every resend left ambiguous ends ``unknown`` (the ledger keeps it for the next run).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_crowdtwist.client.errors import CrowdTwistError
from airflow_provider_crowdtwist.client.pos import error_reason, is_duplicate_id, is_not_found
from airflow_provider_crowdtwist.formats import TextEnum
from airflow_provider_crowdtwist.sync.outcomes import Outcome, OutcomeLike, RowResult
from airflow_provider_crowdtwist.sync.protocol import SyncBase, SyncClient
from airflow_provider_crowdtwist.sync.purchases.config import PosSyncConfig, PurchaseSyncConfig
from airflow_provider_crowdtwist.sync.purchases.ledger import RECORDED, UNKNOWN, VOIDED, PosLedger
from airflow_provider_crowdtwist.sync.purchases.mapping import (
    PHASE_DOCUMENT,
    PHASE_VOID,
    Document,
    DocumentMapping,
)
from airflow_provider_crowdtwist.sync.purchases.spool import LineSpool
from airflow_provider_crowdtwist.sync.run import RowRef, refused_attributes
from airflow_provider_crowdtwist.sync.summary import SyncSummary

if TYPE_CHECKING:
    import pandas as pd

    from airflow_provider_crowdtwist.sync.run import SyncRun

log = logging.getLogger(__name__)


class PosOutcome(TextEnum):
    """The outcomes the POS syncs add: a document CrowdTwist now has, a return it deleted."""

    RECORDED = "recorded"
    VOIDED = "voided"


class PosClient(SyncClient, Protocol):
    """What the frame reads of the client, and the calls the POS syncs make (``CrowdTwistPosClient``)."""

    def purchase(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def create_return(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def void_return(self, return_id: str) -> dict[str, Any]: ...


@dataclass
class PosSyncSummary(SyncSummary):
    """The frame's summary; its rows are documents (receipts, returns, voids), and ``lines_read`` the
    source rows they were made of. ``resent``: sends of a document after an ambiguous attempt."""

    lines_read: int = 0
    resent: int = 0


class PosSync(SyncBase):
    """The plug-in (the frame's ``Sync`` protocol): purchases, or returns and voids, by config type."""

    config: PosSyncConfig
    client: PosClient
    summary: PosSyncSummary
    outcomes: Iterable[OutcomeLike] = tuple(PosOutcome)
    #: A request that may have landed and was not settled by a resend is ``unknown``, never ``failed``.
    ambiguous = Outcome.UNKNOWN

    def __init__(self, client: PosClient, config: PosSyncConfig) -> None:
        self.client = client
        self.config = config.resolved(client.config.id_type)
        self.summary = PosSyncSummary()
        purchases = isinstance(config, PurchaseSyncConfig)
        self.title = "CrowdTwist purchase sync" if purchases else "CrowdTwist return sync"
        self.label = "receipts" if purchases else "returns"
        self.operation = "purchase" if purchases else "return"
        self.ledger: PosLedger | None = None
        self.spool: LineSpool | None = None
        self._columns_checked = False
        self._lines = 0
        self._loose = 0  # lines without an id: a rejected document each

    # ------------------------------------------------------------------ the frame's calls, in order

    def open(self, run: SyncRun) -> None:
        self.run = run
        self.mapping = DocumentMapping(self.config)
        run.column_of = self.mapping.column_of
        self.spool = LineSpool()
        if self.config.ledger_path is not None and not self.config.dry_run:
            self.ledger = PosLedger.open(self.config.partition_path(self.config.ledger_path), log=run.log)

    def plan(self, chunk: pd.DataFrame) -> Iterable[Iterable[Document]]:
        """Map and spool the chunk's lines; nothing is sent before the whole source is read."""
        if not self._columns_checked:
            self.mapping.check_columns(chunk.columns)
            self._columns_checked = True
        assert self.spool is not None
        for number, record in self.run.rows(chunk, self.mapping.key_column, lower=False):
            line = self.mapping.map_line(number, record)
            self._lines += 1
            if line.key:
                self.spool.add(line)
                continue
            self._loose += 1  # no id to group by: the line is a document of its own, rejected
            reason = (line.problem or "").split(": ", 1)[-1]
            self.run.record(self.run.result(RowRef(number, None), Outcome.REJECTED, reason, code="invalid"))
        return ()

    def after_source(self) -> Iterator[Iterator[Document]]:
        """The documents, in two waves: receipts or returns, then voids (after every return is sent)."""
        assert self.spool is not None
        documents = self.spool.count_documents() + self._loose
        self.summary.lines_read = self._lines
        self.summary.rows_read += documents - self._lines  # the frame counted lines; a row is a document
        for phase in (PHASE_DOCUMENT, PHASE_VOID):
            yield self._documents(phase)
            if self.ledger is not None:
                self.ledger.sync()

    def ref(self, item: Document) -> RowRef:
        return item.ref

    def work(self, item: Document) -> RowResult:
        """Send one document; resend it (same id) after an ambiguous failure; read what the answer proves."""
        run = self.run
        ambiguous_before = item.earlier_unknown
        if self.config.dry_run:
            done = PosOutcome.VOIDED if item.kind == "void" else PosOutcome.RECORDED
            return run.result(item.ref, done, "dry run: not sent", code="dry_run")
        last: CrowdTwistError | None = None
        for attempt in range(self.config.max_resends + 1):
            if attempt:
                if run.stop.is_set():
                    break
                item.resends += 1
            try:
                self._send(item)
            except CrowdTwistError as exc:
                landed = ambiguous_before or exc.ambiguous
                settled = self._settled(item, exc, landed)
                if settled is not None:
                    return settled
                if exc.ambiguous:
                    ambiguous_before, last = True, exc
                    continue
                return self._refused(item, exc)
            done = PosOutcome.VOIDED if item.kind == "void" else PosOutcome.RECORDED
            return run.result(item.ref, done)
        assert last is not None
        return run.error_result(item.ref, last, ambiguous=Outcome.UNKNOWN)

    def recorded(self, item: Document, result: RowResult) -> RowResult:
        """Keep in the ledger what CrowdTwist has (or may have); count the resends."""
        if item.resends:
            self.summary.resent += item.resends
        ledger = self.ledger
        if ledger is None or self.config.dry_run:
            return result
        kind = "void" if item.kind == "void" else "document"
        outcome = result.outcome
        if outcome in (PosOutcome.RECORDED, PosOutcome.VOIDED, Outcome.SKIPPED):
            ledger.record(kind, item.key, VOIDED if item.kind == "void" else RECORDED)
        elif outcome == Outcome.UNKNOWN:
            ledger.record(kind, item.key, UNKNOWN, result.message)
        elif outcome == Outcome.REJECTED and item.earlier_unknown:
            ledger.forget(kind, item.key)  # refused for its content: the earlier attempt was refused too
        return result

    def close(self) -> None:
        try:
            if self.spool is not None:
                self.spool.close()
        finally:
            if self.ledger is not None:
                self.ledger.close()

    def notes(self) -> str:
        s = self.summary
        return (
            f"{s.lines_read} source line(s) made {s.rows_read} {self.label}; "
            f"{s.resent} resend(s) after ambiguous failures."
        )

    # ------------------------------------------------------------------ the pieces

    def _documents(self, phase: int) -> Iterator[Document]:
        """The documents of one phase to send; rejected and ledger-known ones are recorded here."""
        assert self.spool is not None
        run = self.run
        ledger_kind = "void" if phase == PHASE_VOID else "document"
        for key, lines in self.spool.documents(phase):
            assembled = self.mapping.assemble(key, phase, lines)
            if isinstance(assembled, tuple):
                document, reason = assembled
                run.record(run.result(document.ref, Outcome.REJECTED, reason, code="invalid"))
                continue
            known = self._known(ledger_kind, key)
            if known in (RECORDED, VOIDED):
                what = "voided" if known == VOIDED else "recorded"
                run.record(run.result(assembled.ref, Outcome.SKIPPED, f"{what} by an earlier run (ledger)"))
                continue
            assembled.earlier_unknown = known == UNKNOWN
            yield assembled

    def _known(self, kind: str, key: str) -> str | None:
        if self.ledger is None:
            return None
        return self.ledger.states(kind, [key]).get(key)

    def _send(self, item: Document) -> None:
        if item.kind == "purchase":
            self.client.purchase(item.body)
        elif item.kind == "return":
            self.client.create_return(item.body)
        else:
            self.client.void_return(item.key)

    def _settled(self, item: Document, exc: CrowdTwistError, landed: bool) -> RowResult | None:
        """What a repeat's refusal proves, or None when the answer is not about a repeat."""
        run = self.run
        what = {"purchase": "receipt_id", "return": "return_id", "void": "return"}[item.kind]
        if item.kind != "void" and is_duplicate_id(exc):
            if landed:
                return run.result(
                    item.ref,
                    PosOutcome.RECORDED,
                    f"{what} not unique after an ambiguous attempt: it landed",
                    code="not_unique",
                )
            return run.result(
                item.ref, Outcome.SKIPPED, f"{what} not unique: recorded by an earlier run", code="not_unique"
            )
        if item.kind == "void" and is_not_found(exc):
            if landed:
                return run.result(
                    item.ref,
                    PosOutcome.VOIDED,
                    "return not found after an ambiguous void: the void landed",
                    code="not_found",
                )
            return run.result(
                item.ref,
                Outcome.SKIPPED,
                "return not found: voided by an earlier run, or never recorded (a ledger_path tells which)",
                code="not_found",
            )
        return None

    def _refused(self, item: Document, exc: CrowdTwistError) -> RowResult:
        """A refusal for the document's content (a 4xx) is ``rejected``, naming the columns it is about;
        everything else (credentials, 429, 5xx, a refused connection) is the frame's to judge."""
        status = exc.status or 0
        if not 400 <= status < 500 or status == 429 or exc.credential_failure:
            return self.run.error_result(item.ref, exc, ambiguous=Outcome.UNKNOWN)
        names = refused_attributes(exc.message, item.body)
        if is_not_found(exc) and "original_receipt_id" in item.body:
            names = ["original_receipt_id"]
        elif error_reason(exc) == "user_not_found":
            names = ["user_id"]
        elif "user_attributes" in names:
            names = [f"user_attributes.{k}" for k in item.body.get("user_attributes", {})]
        # Even after an ambiguous attempt: the same body, refused for its content, was refused then too.
        message = self.run.redact(f"{exc.message}{self.run.columns_named(names)}")
        return self.run.result(item.ref, Outcome.REJECTED, message, code=exc.code, status=exc.status)
