"""The member sync: source chunks -> CrowdTwist members created or updated, every row accounted for.

A sync on the run skeleton (``sync/run.py``); see ``docs/member-sync.md``. Its mapping is
:class:`MemberMapping`; rows are read into a temporary SQLite :class:`~.spool.Spool` (duplicates
resolve last-wins, so the total is known before sending), unchanged ones are dropped with the
optional :class:`~.state.MemberState`, and the per-row work (:class:`_MemberSender`: one PUT or POST,
two when an upsert has to fall back) runs through :meth:`SyncRun.send` on ``max_workers`` threads
over ONE client, whose ONE rate limiter paces every worker.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from airflow_provider_crowdtwist.client.client import split_update_only
from airflow_provider_crowdtwist.client.config import PII_FREE_ID_TYPES
from airflow_provider_crowdtwist.client.errors import (
    CrowdTwistError,
    CrowdTwistNotFoundError,
    CrowdTwistValidationError,
)
from airflow_provider_crowdtwist.sync.member_mapping import (
    CREATE_REQUIREMENTS,
    DUPLICATE_IDENTIFIER,
    MappedRow,
    MemberMapping,
    MemberMode,
    MemberSyncConfigError,
    UnmappedPolicy,
)
from airflow_provider_crowdtwist.sync.outcomes import Outcome, RowResult
from airflow_provider_crowdtwist.sync.rejects import mask_secrets
from airflow_provider_crowdtwist.sync.run import RowRef, RunConfig, SyncRun
from airflow_provider_crowdtwist.sync.spool import Spool, SpooledRow
from airflow_provider_crowdtwist.sync.state import MemberState
from airflow_provider_crowdtwist.sync.summary import SyncConfigError, SyncSummary
from airflow_provider_crowdtwist.sync.validation import check_create

log_default = logging.getLogger(__name__)

EMAIL_TAKEN = "already taken"


@dataclass(kw_only=True)
class MemberSyncConfig(RunConfig):
    """Settings of one member sync (the operator's arguments, minus the source and the connection).

    ``id_type=None`` takes the client's (the connection's) default. The shared settings (workers,
    thresholds, rejects, dry run, stop event) are those of :class:`~.run.RunConfig`.
    """

    id_column: str = "user_id"
    id_type: str | None = None
    field_mapping: Mapping[str, str] | None = None
    unmapped_columns: UnmappedPolicy = "custom_data"
    mode: MemberMode = "upsert"
    state_path: Any = None
    spool_dir: str | None = None

    def mapping(self) -> MemberMapping:
        """The :class:`MemberMapping` for these settings (validated)."""
        mapping = MemberMapping(
            id_column=self.id_column,
            id_type=self.id_type or "email",
            field_mapping=dict(self.field_mapping)
            if isinstance(self.field_mapping, Mapping)
            else self.field_mapping,
            unmapped_columns=self.unmapped_columns,
            mode=self.mode,
        )
        mapping.validate()
        return mapping

    def validate(self) -> None:
        """Check every setting; raise :class:`MemberSyncConfigError` naming the field."""
        try:
            super().validate()
        except MemberSyncConfigError:
            raise
        except SyncConfigError as exc:
            raise MemberSyncConfigError(str(exc), exc.field) from None

    def validate_sync(self) -> None:
        self.mapping()


class UpsertOrder:
    """Which request an upsert tries first, learned from the answers so far in this run.

    PUT first costs one request for a member CrowdTwist has and two for a new one (404, then POST);
    POST first costs the reverse (an existing member answers "email_address already taken", then
    PUT). So the cheaper order follows the share of new members: the first load of a program (nearly
    all new) costs about one request a row instead of two, and a routine sync (nearly all existing)
    stays at one PUT a row. The share is a moving average over the latest answers, shared by all
    workers, starting from "existing" (PUT first). Only for ``id_type`` email: "email_address already
    taken" is the one duplicate answer the contract documents, so only there is POST first safe.
    """

    #: Weight of each new answer in the moving average: about the last 40 rows decide.
    SMOOTHING = 0.05

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.new_share = 0.0
        self._lock = threading.Lock()

    @property
    def create_first(self) -> bool:
        return self.enabled and self.new_share > 0.5

    def observe(self, *, was_new: bool) -> None:
        with self._lock:
            self.new_share += self.SMOOTHING * ((1.0 if was_new else 0.0) - self.new_share)


class _MemberSender:
    """The per-row work done on a worker thread: one member, one (or in upsert's 404 case, two) requests."""

    def __init__(self, run: SyncRun[SpooledRow], mapping: MemberMapping) -> None:
        self.run = run
        self.client = run.client
        self.mapping = mapping
        self.mode = mapping.mode
        self.id_type = mapping.id_type
        self.dry_run = run.config.dry_run
        self.order = UpsertOrder(enabled=self.id_type == "email")

    def __call__(self, row: SpooledRow) -> RowResult:
        payload = json.loads(row.payload_json)
        try:
            if self.dry_run:
                return self._dry_run(row, payload)
            if self.mode == "insert":
                self._create(row, payload)
                return self._ok(row, Outcome.CREATED)
            if self.mode == "update":
                self.client.update_user(row.identifier, payload, id_type=self.id_type)
                return self._ok(row, Outcome.UPDATED)
            return self._upsert(row, payload)
        except Exception as exc:  # every error, a bug included, becomes the row's outcome in one place
            return self.run.error_result(_ref(row, payload), exc)

    def _upsert(self, row: SpooledRow, payload: dict[str, Any]) -> RowResult:
        if self.order.create_first and self._cannot_create(row, payload) is None:
            return self._create_then_update(row, payload)
        try:
            self.client.update_user(row.identifier, payload, id_type=self.id_type)
            self.order.observe(was_new=False)
            return self._ok(row, Outcome.UPDATED)
        except CrowdTwistNotFoundError as not_found:
            self.order.observe(was_new=True)
            if self.id_type == "id":
                why = "member not found (id_type 'id': CrowdTwist assigns ids, it cannot be created)"
                return self.run.result(
                    _ref(row, payload), Outcome.REJECTED, why, code=not_found.code, status=not_found.status
                )
            cannot_create = self._cannot_create(row, payload)
            if cannot_create is not None:
                return cannot_create
        # The PUT said "no such member". Should the POST say "already taken", either our own earlier
        # POST landed without an answer (a dropped connection, retried), or another writer created it
        # meanwhile. Either way the member now exists: update it, once.
        return self._create_then_update(row, payload)

    def _create_then_update(self, row: SpooledRow, payload: dict[str, Any]) -> RowResult:
        """POST; on "email_address already taken" the member exists: one PUT updates it."""
        try:
            self._create(row, payload)
        except CrowdTwistValidationError as exc:
            if self.id_type == "email" and _email_taken(exc.message):
                self.order.observe(was_new=False)
                self.client.update_user(row.identifier, payload, id_type=self.id_type)
                return self._ok(row, Outcome.UPDATED)
            raise
        self.order.observe(was_new=True)
        return self._ok(row, Outcome.CREATED)

    def _create(self, row: SpooledRow, payload: dict[str, Any]) -> None:
        """POST the member; then PUT what the create does not take (``is_active``, ``remove_points``).

        Without the PUT a row with ``is_active=0`` would end ``created`` with an active member. When
        the PUT fails the row takes that error, its message saying the member was created.
        """
        body, update_only = split_update_only(payload)
        self.client.create_user(body)
        if not update_only:
            return
        try:
            self.client.update_user(row.identifier, update_only, id_type=self.id_type)
        except CrowdTwistError as exc:
            exc.message = (
                f"member created, but the update that sets {', '.join(sorted(update_only))} "
                f"failed: {exc.message}"
            )
            raise

    def _dry_run(self, row: SpooledRow, payload: dict[str, Any]) -> RowResult:
        # No writes: find out whether the member exists (a read) to report what would happen.
        if self.mode == "insert":
            return self._ok(row, Outcome.CREATED)
        try:
            # Only existence matters: no personal data is read where CrowdTwist allows it (O:UserProfile).
            pii = self.id_type not in PII_FREE_ID_TYPES
            self.client.get_user(row.identifier, id_type=self.id_type, pii=pii)
            return self._ok(row, Outcome.UPDATED)
        except CrowdTwistNotFoundError as exc:
            if self.mode == "update" or self.id_type == "id":
                ref = _ref(row, payload)
                return self.run.result(
                    ref, Outcome.REJECTED, "member not found", code=exc.code, status=exc.status
                )
            cannot_create = self._cannot_create(row, payload)
            if cannot_create is not None:
                return cannot_create
            return self._ok(row, Outcome.CREATED)

    def _cannot_create(self, row: SpooledRow, payload: dict[str, Any]) -> RowResult | None:
        """A member that is not there can only be created with the create rules met (location...).

        Checked only after CrowdTwist said "not found": an update needs none of these fields.
        """
        problem = check_create(payload)
        if not problem:
            return None
        name, reason = problem
        why = f"member not found, and cannot create it: {self.mapping.field_label(name)}: {reason}"
        return self.run.result(_ref(row, payload), Outcome.REJECTED, why, code=CREATE_REQUIREMENTS)

    @staticmethod
    def _ok(row: SpooledRow, outcome: Outcome) -> RowResult:
        return RowResult(row.row_number, row.identifier, outcome)


def _ref(row: SpooledRow, payload: dict[str, Any] | None = None) -> RowRef:
    return RowRef(row.row_number, row.identifier, payload if payload is not None else row.payload)


def _email_taken(message: str | None) -> bool:
    """CrowdTwist's answer to a create for an email it has ("email_address already taken")."""
    text = (message or "").lower()
    return EMAIL_TAKEN in text and "email" in text


def sync_members(
    client: Any,
    chunks: Iterable[pd.DataFrame],
    config: MemberSyncConfig,
    log: logging.Logger | logging.LoggerAdapter | None = None,
) -> SyncSummary:
    """Sync source rows into CrowdTwist members; return the summary.

    ``client`` is a ``CrowdTwistClient`` (shared by all workers; its rate limiter paces them).
    ``chunks`` is any iterable of DataFrames (see ``sources.iter_chunks``). Raises
    :class:`MemberSyncConfigError` before the first request on bad settings or columns,
    :class:`SyncAbortedError` after a credential failure or a stop, :class:`ThresholdExceededError`
    when too many rows failed -- in the last two cases after the rejects file is written, with
    ``.summary`` attached.
    """
    log = log or log_default
    default_id_type = getattr(getattr(client, "config", None), "id_type", None) or "email"
    config = dataclasses.replace(config, id_type=config.id_type or default_id_type)
    config.validate()
    mapping = config.mapping()
    run: SyncRun[SpooledRow] = SyncRun(client, config, SyncSummary(), log, title="CrowdTwist member sync")
    run.column_of = mapping.column_of
    state = (
        MemberState(config.partition_path(config.state_path), namespace=mapping.id_type)
        if config.state_path
        else None
    )
    try:
        with Spool(config.spool_dir) as spool:
            _read(run, chunks, mapping, spool)
            for lost in spool.superseded():  # duplicates: the last row wins
                why = f"duplicate identifier: row {lost.winner_row_number} has the same identifier and wins"
                run.record(
                    run.result(
                        RowRef(lost.row_number, lost.identifier),
                        Outcome.SKIPPED,
                        f"{why} (last row wins)",
                        code=DUPLICATE_IDENTIFIER,
                    )
                )
            survivors = _filter_unchanged(run, spool.survivors(), state, mapping)
            if config.dry_run:
                survivors = _log_dry_run_samples(survivors, log)
            for row, result in run.send(survivors, _MemberSender(run, mapping), _ref):
                if (
                    state is not None
                    and not config.dry_run
                    and result.outcome in (Outcome.CREATED, Outcome.UPDATED)
                ):
                    state.record(mapping.dedupe_key(row.identifier), row.payload_json)
                run.record(result)
    finally:
        try:
            if state is not None:
                state.close()
        finally:
            run.close()
    run.finish()
    return run.summary


def _read(
    run: SyncRun[SpooledRow], chunks: Iterable[pd.DataFrame], mapping: MemberMapping, spool: Spool
) -> None:
    """Map every row of every chunk into the spool; rejections are recorded at once."""
    summary = run.summary
    last_log = time.monotonic()
    for chunk in run.chunks(chunks):
        plan = mapping.plan([str(c) for c in chunk.columns])
        batch: list[tuple[int, str, str, str]] = []
        for row_number, record in run.rows(chunk, mapping.id_column, lower=mapping.id_type == "email"):
            mapped = mapping.map_record(row_number, record, plan)
            if isinstance(mapped, MappedRow):
                payload = json.dumps(
                    mapped.payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False
                )
                batch.append((mapped.row_number, mapped.dedupe_key, mapped.identifier, payload))
            else:
                run.record(mapped)
        spool.add_many(batch)
        if time.monotonic() - last_log >= run.config.progress_interval:
            last_log = time.monotonic()
            run.log.info(
                "Reading the source: %d row(s) read so far, %d rejected by validation.",
                summary.rows_read,
                summary.count(Outcome.REJECTED),
            )
    run.progress.set_total(summary.rows_read)
    for note in mapping.conversion_notes():
        run.log.info("Documented conversion (docs/contract.md): %s.", note)
    run.log.info(
        "Read %d row(s); %d to send after validation and de-duplication%s.",
        summary.rows_read,
        spool.count_survivors(),
        " (dry run: no writes)" if run.config.dry_run else "",
    )


def _filter_unchanged(
    run: SyncRun[SpooledRow], rows: Iterator[SpooledRow], state: MemberState | None, mapping: MemberMapping
) -> Iterator[SpooledRow]:
    """Drop (as ``unchanged``) rows whose payload equals the last one sent successfully."""
    for row in rows:
        if state is not None and state.is_unchanged(mapping.dedupe_key(row.identifier), row.payload_json):
            why = "same payload as the last successful sync (state_path)"
            run.record(run.result(RowRef(row.row_number, row.identifier), Outcome.UNCHANGED, why))
            continue
        yield row


def _log_dry_run_samples(rows: Iterator[SpooledRow], log: Any, samples: int = 3) -> Iterator[SpooledRow]:
    for i, row in enumerate(rows):
        if i < samples:
            log.info(
                "Dry run: row %d (%s) would send %s",
                row.row_number,
                row.identifier,
                json.dumps(mask_secrets(row.payload), sort_keys=True),
            )
        yield row
