"""The member sync: source chunks -> CrowdTwist members created, updated, deactivated or deleted.

Flow (see ``docs/member-sync.md``):

1. read the source chunk by chunk (:class:`~.member_read.MemberReader`): map and validate each row;
   rejections are recorded at once; good rows go to a temporary :class:`~.spool.Spool`. With a
   member state, rows whose fingerprint did not change are ``unchanged`` without being mapped;
2. duplicates resolve last-wins in the spool; the losers are ``skipped``; the total is now known;
3. with ``on_removed``, the members the state knows and the complete source did not mention are
   found (:mod:`.member_removal`); the guard may stop the run here, before any request;
4. the survivors are sent on ``max_workers`` threads over ONE client (whose ONE ``RateLimiter`` is
   shared by every worker, so a 429 slows everybody), then the removals;
5. each :class:`RowResult` is recorded by the run skeleton (:class:`~.run.SyncRun`) and in the state;
   the summary is returned, or raised with the error when a threshold is exceeded or the run aborted.

No Airflow import: the operator is a thin adapter over :func:`sync_members`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

from airflow_provider_crowdtwist.client.client import split_update_only
from airflow_provider_crowdtwist.client.config import PII_FREE_ID_TYPES
from airflow_provider_crowdtwist.client.errors import (
    CrowdTwistError,
    CrowdTwistNotFoundError,
    CrowdTwistValidationError,
)
from airflow_provider_crowdtwist.sync.members.mapping import (
    CREATE_REQUIREMENTS,
    DUPLICATE_IDENTIFIER,
    MemberMapping,
    MemberMode,
    MemberSyncConfigError,
    NullValues,
    UnmappedPolicy,
)
from airflow_provider_crowdtwist.sync.members.read import MemberReader
from airflow_provider_crowdtwist.sync.members.removal import (
    RemovalsList,
    RemovedMember,
    count_unseen,
    guard_violation,
    removal_body,
    removed_members,
)
from airflow_provider_crowdtwist.sync.members.spool import Spool, SpooledRow
from airflow_provider_crowdtwist.sync.members.state import MemberState
from airflow_provider_crowdtwist.sync.outcomes import Outcome, RowResult
from airflow_provider_crowdtwist.sync.rejects import mask_secrets
from airflow_provider_crowdtwist.sync.run import RowRef, RunConfig, SyncRun
from airflow_provider_crowdtwist.sync.summary import SyncConfigError, SyncSummary
from airflow_provider_crowdtwist.sync.validation import check_create

if TYPE_CHECKING:
    import pandas as pd

log_default = logging.getLogger(__name__)

EMAIL_TAKEN = "already taken"

OnRemoved = Literal["ignore", "deactivate", "delete"]


class MemberOutcome(str, Enum):
    """The member sync's outcomes beyond :class:`~.outcomes.Outcome` (declared to the run skeleton).

    ``deactivated`` and ``deleted`` are members who left the source (counted in ``rows_removed``, not
    in the rows read); ``reactivated`` is a source row for a member an earlier run deactivated.
    """

    DEACTIVATED = "deactivated"
    DELETED = "deleted"
    REACTIVATED = "reactivated"

    def __str__(self) -> str:
        return self.value


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
    #: What happens to members the state knows and the (complete) source no longer has.
    on_removed: OnRemoved = "ignore"
    #: With ``on_removed="deactivate"``: also wipe their points (``remove_points: 1``).
    remove_points_on_deactivate: bool = False
    #: The guard: a run that would remove more than this share of the state's members fails.
    max_removed_ratio: float = 0.1
    #: A zero-row source removes nothing unless this is set (an empty query is usually a broken one).
    allow_empty_source_removal: bool = False
    #: Ignore the state's "unchanged" verdict for this run: every row is sent and re-recorded.
    full_refresh: bool = False
    #: ``skip``: a null cell leaves CrowdTwist's value alone; ``clear``: it clears the field.
    null_values: NullValues = "skip"
    #: Keys the state's fingerprints (with a per-state salt). Default: the client's API key or HMAC
    #: private key, so that the secret lives where the connection lives, never in the state file.
    state_key: str | None = None

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
            null_values=self.null_values,
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
        if not 0.0 <= float(self.max_removed_ratio) <= 1.0:
            raise MemberSyncConfigError(
                f"max_removed_ratio must be between 0 and 1, got {self.max_removed_ratio!r}",
                "max_removed_ratio",
            )
        if not self.state_path:
            for name, value, default in (
                ("on_removed", self.on_removed, "ignore"),
                ("full_refresh", self.full_refresh, False),
            ):
                if value != default:
                    raise MemberSyncConfigError(
                        f"{name}={value!r} needs state_path: only the member state knows which members "
                        "earlier syncs wrote",
                        name,
                    )
        if self.remove_points_on_deactivate and self.on_removed != "deactivate":
            raise MemberSyncConfigError(
                "remove_points_on_deactivate=True applies only with on_removed='deactivate' "
                f"(on_removed is {self.on_removed!r})",
                "remove_points_on_deactivate",
            )


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
        if row.reactivate:  # an earlier run deactivated this member; it is back in the source
            payload["is_active"] = 1
        try:
            if self.dry_run:
                return self._dry_run(row, payload)
            if self.mode == "insert":
                self._create(row, payload)
                return self._ok(row, Outcome.CREATED)
            if self.mode == "update":
                self.client.update_user(row.identifier, payload, id_type=self.id_type)
                return self._ok(row, _updated(row))
            return self._upsert(row, payload)
        except Exception as exc:  # every error, a bug included, becomes the row's outcome in one place
            return self.run.error_result(_ref(row, payload), exc)

    def _create_first(self, row: SpooledRow) -> bool:
        """POST before PUT? With a state: for exactly the members it has never seen (one request a row
        on every run); without one, as the upsert order learned. Email ids only: "already taken" is
        the one documented answer that tells an existing member."""
        if row.known is None:
            return self.order.create_first
        return self.id_type == "email" and not row.known

    def _upsert(self, row: SpooledRow, payload: dict[str, Any]) -> RowResult:
        if self._create_first(row) and self._cannot_create(row, payload) is None:
            return self._create_then_update(row, payload)
        try:
            self.client.update_user(row.identifier, payload, id_type=self.id_type)
            self.order.observe(was_new=False)
            return self._ok(row, _updated(row))
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
                return self._ok(row, _updated(row))
            raise
        self.order.observe(was_new=True)
        return self._ok(row, Outcome.CREATED)

    def _create(self, row: SpooledRow, payload: dict[str, Any]) -> None:
        """POST the member; then PUT what the create does not take (``is_active``, ``remove_points``).

        Without the PUT a row with ``is_active=0`` would end ``created`` with an active member. When
        the PUT fails the row takes that error, its message saying the member was created.
        """
        body, update_only = split_update_only(payload)
        # A new member has nothing to clear: nulls (null_values="clear") stay out of the create.
        self.client.create_user({k: v for k, v in body.items() if v is not None})
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
            return self._ok(row, _updated(row))
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
    def _ok(row: SpooledRow, outcome: Outcome | MemberOutcome) -> RowResult:
        return RowResult(row.row_number, row.identifier, outcome)


class _MemberRemover:
    """The per-member work for members who left the source: one PUT (deactivate) or one DELETE."""

    def __init__(self, run: SyncRun[Any], config: MemberSyncConfig, id_type: str) -> None:
        self.run = run
        self.client = run.client
        self.id_type = id_type
        self.delete = config.on_removed == "delete"
        self.body = removal_body(config.remove_points_on_deactivate)

    @staticmethod
    def ref(member: RemovedMember) -> RowRef:
        return RowRef(0, member.identifier, label=f"member {member.identifier} (left the source)")

    def __call__(self, member: RemovedMember) -> RowResult:
        try:
            if self.delete:
                self.client.delete_user(member.identifier, id_type=self.id_type)
                return self.run.result(self.ref(member), MemberOutcome.DELETED, "deletion queued")
            self.client.update_user(member.identifier, dict(self.body), id_type=self.id_type)
            return self.run.result(self.ref(member), MemberOutcome.DEACTIVATED, "deactivated")
        except Exception as exc:  # the one error -> outcome place
            return self.run.error_result(self.ref(member), exc)

    def preview(self, member: RemovedMember) -> RowResult:
        """What a dry run records: the outcome a real run would try for."""
        outcome = MemberOutcome.DELETED if self.delete else MemberOutcome.DEACTIVATED
        return self.run.result(self.ref(member), outcome, "dry run: would be removed")


def _updated(row: SpooledRow) -> Outcome | MemberOutcome:
    return MemberOutcome.REACTIVATED if row.reactivate else Outcome.UPDATED


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
    run: SyncRun[Any] = SyncRun(
        client, config, SyncSummary(), log, title="CrowdTwist member sync", outcomes=MemberOutcome
    )
    run.column_of = mapping.column_of
    state: MemberState | None = None
    try:
        state = _open_state(config, mapping, client)  # a second sync on this state fails here, at once
        with Spool(config.spool_dir) as spool:
            _read(run, chunks, mapping, spool, state, config)
            removals = _removals(run, state, config)  # the source was read completely
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
            unchanged = spool.count_unchanged()  # counted whole: these rows were never even mapped
            run.summary.add(Outcome.UNCHANGED, unchanged)
            run.progress.record(Outcome.UNCHANGED, unchanged)
            survivors: Iterator[SpooledRow] = spool.survivors()
            if config.dry_run:
                survivors = _log_dry_run_samples(survivors, log)
            for row, result in run.send(survivors, _MemberSender(run, mapping), _ref):
                if state is not None and not config.dry_run and _accepted(result):
                    state.record_sent(row.key, row.key2, row.identifier, row.fingerprint)
                run.record(result)
            if removals is not None:
                _remove(run, state, config, mapping.id_type, *removals)
    finally:
        try:
            if state is not None:
                state.close()
        finally:
            run.close()
    run.finish()
    return run.summary


def _accepted(result: RowResult) -> bool:
    return result.outcome in (Outcome.CREATED, Outcome.UPDATED, MemberOutcome.REACTIVATED)


def _open_state(config: MemberSyncConfig, mapping: MemberMapping, client: Any) -> MemberState | None:
    """The member state of ``config.state_path`` (read-only in a dry run), or ``None`` without one."""
    if not config.state_path:
        return None
    secret = config.state_key
    if secret is None:
        client_config = getattr(client, "config", None)
        secret = getattr(client_config, "api_key", None) or getattr(client_config, "hmac_private_key", None)
    if not secret:
        raise MemberSyncConfigError(
            "state_path needs a secret to key the state's hashes: the connection's API key or HMAC "
            "private key (or MemberSyncConfig.state_key); none is set",
            "state_path",
        )
    return MemberState(
        config.partition_path(config.state_path),  # one state per partition: its members only
        id_type=mapping.id_type,
        secret=secret.encode("utf-8"),
        read_only=config.dry_run,
    )


def _read(
    run: SyncRun[Any],
    chunks: Iterable[pd.DataFrame],
    mapping: MemberMapping,
    spool: Spool,
    state: MemberState | None,
    config: MemberSyncConfig,
) -> None:
    """Read every chunk into the spool (rejections are recorded at once), logging as it goes."""
    summary = run.summary
    last_log = [time.monotonic()]

    def take(chunk: pd.DataFrame) -> tuple[pd.DataFrame, Any]:
        return run.take(chunk, mapping.id_column, lower=mapping.id_type == "email")

    def log_progress() -> None:
        if time.monotonic() - last_log[0] >= config.progress_interval:
            last_log[0] = time.monotonic()
            run.log.info(
                "Reading the source: %d row(s) read so far, %d rejected by validation.",
                summary.rows_read,
                summary.count(Outcome.REJECTED),
            )

    reader = MemberReader(mapping, spool, run.record, take, state, config.full_refresh)
    reader.read(run.chunks(chunks), log_progress)
    run.progress.set_total(summary.rows_read)
    for note in mapping.conversion_notes():
        run.log.info("Documented conversion (docs/contract.md): %s.", note)
    run.log.info(
        "Read %d row(s); %d to send after validation, de-duplication and the state%s.",
        summary.rows_read,
        spool.count_survivors(),
        " (dry run: no writes)" if config.dry_run else "",
    )


def _removals(
    run: SyncRun[Any], state: MemberState | None, config: MemberSyncConfig
) -> tuple[int, Any] | None:
    """The members to remove (count, lister), or ``None``; the guard aborts the run before any request."""
    if state is None:
        return None
    if config.on_removed == "ignore":
        unseen = count_unseen(state)
        if unseen:
            run.log.info(
                "%d member(s) of the state are not in the source; on_removed='ignore' leaves them alone.",
                unseen,
            )
        return None
    count, members = removed_members(state, config.on_removed)
    violation = guard_violation(
        count,
        len(state),
        run.summary.rows_read,
        on_removed=config.on_removed,
        max_removed_ratio=config.max_removed_ratio,
        allow_empty_source_removal=config.allow_empty_source_removal,
    )
    if violation:
        if config.dry_run:  # the preview still lists them: the user decides whether to raise the ratio
            with _removals_list(run, config) as listed:
                for member in members():
                    listed.add(member, None, "the removal guard stopped the run")
        run.abort(f"the removal guard stopped the sync: {violation}")
        return None
    run.log.info("%d member(s) left the source: on_removed=%r.", count, config.on_removed)
    return count, members


def _removals_list(run: SyncRun[Any], config: MemberSyncConfig) -> RemovalsList:
    return RemovalsList(config.rejects_path, config.on_removed, run.log, dry_run=config.dry_run)


def _remove(
    run: SyncRun[Any],
    state: MemberState | None,
    config: MemberSyncConfig,
    id_type: str,
    count: int,
    members: Any,
) -> None:
    """Deactivate or delete the members who left the source; a dry run counts and lists them only."""
    if count == 0 or state is None or run.stop.is_set():
        return
    remover = _MemberRemover(run, config, id_type)
    with _removals_list(run, config) as listed:
        if config.dry_run:
            results: Iterable[tuple[RemovedMember, RowResult]] = ((m, remover.preview(m)) for m in members())
        else:
            results = run.send(members(), remover, remover.ref)
        for member, result in results:
            run.summary.rows_removed += 1
            if not config.dry_run:
                if result.outcome == MemberOutcome.DEACTIVATED:
                    state.record_deactivated(member.key, member.key2)
                elif result.outcome == MemberOutcome.DELETED or result.status == 404:
                    state.forget(member.key, member.key2)  # deleted, or already gone from CrowdTwist
            listed.add(member, result.outcome, result.message)
            run.record(result)
    where = f"listed in {listed.location}" if listed.location else "listed in the log"
    verb = "would be removed" if config.dry_run else "removed"
    run.log.info(
        "%d member(s) who left the source %s (on_removed=%r), %s.",
        listed.count,
        verb,
        config.on_removed,
        where,
    )


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
