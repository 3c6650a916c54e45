"""The member sync: source chunks -> CrowdTwist members created or updated, every row accounted for.

Flow (see ``docs/member-sync.md``):

1. read the source chunk by chunk; map and validate each row (``MemberMapping``); rejections are
   recorded at once; good rows go to a temporary SQLite :class:`~.spool.Spool`;
2. duplicates resolve last-wins in the spool; the losers are ``skipped``; the total is now known;
3. the survivors are sent by :func:`~.sender.send_all` on ``max_workers`` threads over ONE client
   (whose ONE ``RateLimiter`` is shared by every worker, so a 429 slows everybody);
4. each :class:`RowResult` is counted, written to the rejects file if it is a problem, and shown in
   the progress log; the summary is returned, or raised with the error when a threshold is exceeded
   or CrowdTwist said 401 (bad credentials: the sync stops instead of burning the whole source).

No Airflow import: the operator is a thin adapter over :func:`sync_members`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from airflow_provider_crowdtwist.client.errors import (
    CrowdTwistAuthError,
    CrowdTwistError,
    CrowdTwistForbiddenError,
    CrowdTwistNotFoundError,
    CrowdTwistValidationError,
)
from airflow_provider_crowdtwist.client.redact import Redactor
from airflow_provider_crowdtwist.sync.attributes import UPDATE_ONLY_ATTRIBUTES
from airflow_provider_crowdtwist.sync.member_mapping import (
    CREATE_REQUIREMENTS,
    DUPLICATE_IDENTIFIER,
    MemberMapping,
    MemberSyncConfigError,
)
from airflow_provider_crowdtwist.sync.member_read import MemberReader
from airflow_provider_crowdtwist.sync.outcomes import Outcome, RowResult
from airflow_provider_crowdtwist.sync.progress import ProgressReporter, summary_table
from airflow_provider_crowdtwist.sync.rejects import mask_secrets, open_rejects
from airflow_provider_crowdtwist.sync.sender import SendFailure, check_max_workers, send_all
from airflow_provider_crowdtwist.sync.spool import Spool, SpooledRow
from airflow_provider_crowdtwist.sync.state import MemberState
from airflow_provider_crowdtwist.sync.summary import (
    SyncAbortedError,
    SyncSummary,
    ThresholdExceededError,
    threshold_violation,
    validate_thresholds,
)
from airflow_provider_crowdtwist.sync.validation import check_create

log_default = logging.getLogger(__name__)

EMAIL_TAKEN = "already taken"
NOT_SENT_AFTER_ABORT = "not_sent"
MAX_LOGGED_PROBLEMS = 20


@dataclass
class MemberSyncConfig:
    """Settings of one member sync (the operator's arguments, minus the source and the connection).

    ``id_type=None`` takes the client's (the connection's) default. ``max_failed_rows`` and
    ``max_failed_ratio`` both ``None`` means: fail on any failed row, tolerate rejected rows.
    """

    id_column: str = "user_id"
    id_type: str | None = None
    field_mapping: Mapping[str, str] | None = None
    unmapped_columns: str = "custom_data"
    mode: str = "upsert"
    max_workers: int = 16
    max_failed_rows: int | None = None
    max_failed_ratio: float | None = None
    rejects_path: Any = None
    state_path: Any = None
    dry_run: bool = False
    progress_interval: float = 10.0
    spool_dir: str | None = None
    #: Set it from another thread (the operator's ``on_kill``) to stop sending; rows not sent yet end
    #: as ``failed`` ("not sent") and the report is still written.
    stop_event: threading.Event | None = None
    #: Ignore the state's "unchanged" verdict for this run: every row is sent and re-recorded.
    full_refresh: bool = False
    #: ``skip``: a null cell leaves CrowdTwist's value alone; ``clear``: it clears the field.
    null_values: str = "skip"
    #: Keys the state's fingerprints (with a per-state salt); default: the client's API key or HMAC
    #: private key, so that the secret lives where the connection lives, never in the state file.
    state_key: str | None = None

    def mapping(self, default_id_type: str = "email") -> MemberMapping:
        """The :class:`MemberMapping` for these settings (validated)."""
        mapping = MemberMapping(
            id_column=self.id_column,
            id_type=self.id_type or default_id_type,
            field_mapping=dict(self.field_mapping or {}),
            unmapped_columns=self.unmapped_columns,
            mode=self.mode,
            null_values=self.null_values,
        )
        mapping.validate()
        return mapping

    def validate(self, default_id_type: str = "email") -> None:
        """Check every setting; raise :class:`MemberSyncConfigError` naming the field."""
        try:
            check_max_workers(self.max_workers)
            validate_thresholds(self.max_failed_rows, self.max_failed_ratio)
        except ValueError as exc:
            raise MemberSyncConfigError(str(exc)) from None
        for name in ("dry_run", "full_refresh"):
            if not isinstance(getattr(self, name), bool):
                raise MemberSyncConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.progress_interval, (int, float)) or self.progress_interval <= 0:
            raise MemberSyncConfigError(
                f"progress_interval must be > 0 seconds, got {self.progress_interval!r}"
            )
        self.mapping(default_id_type)


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

    def __init__(
        self, client: Any, mapping: MemberMapping, *, dry_run: bool, redact: Callable[[str], str]
    ) -> None:
        self.client = client
        self.mapping = mapping
        self.mode = mapping.mode
        self.id_type = mapping.id_type
        self.dry_run = dry_run
        self.redact = redact
        self.order = UpsertOrder(enabled=self.id_type == "email")

    def __call__(self, row: SpooledRow) -> RowResult:
        payload = json.loads(row.payload_json)
        try:
            if self.dry_run:
                return self._dry_run(row, payload)
            if self.mode == "insert":
                self.client.create_user(_create_body(payload))
                return self._ok(row, Outcome.CREATED)
            if self.mode == "update":
                self.client.update_user(row.identifier, payload, id_type=self.id_type)
                return self._ok(row, Outcome.UPDATED)
            return self._upsert(row, payload)
        except CrowdTwistAuthError as exc:
            return self._problem(row, payload, Outcome.FAILED, exc, code=exc.code or "unauthorized")
        except CrowdTwistForbiddenError as exc:
            return self._problem(row, payload, Outcome.REJECTED, exc)
        except CrowdTwistNotFoundError as exc:
            return self._problem(
                row, payload, Outcome.REJECTED, exc, message=f"member not found ({exc.message})"
            )
        except CrowdTwistValidationError as exc:
            return self._problem(row, payload, Outcome.REJECTED, exc)
        except CrowdTwistError as exc:
            return self._problem(row, payload, Outcome.FAILED, exc, message=str(exc))
        except Exception as exc:  # a bug or an unexpected library error must not lose the row
            return self._problem(
                row, payload, Outcome.FAILED, None, code="internal", message=f"{type(exc).__name__}: {exc}"
            )

    def _create_first(self, row: SpooledRow) -> bool:
        """POST before PUT? With a state, for exactly the members it has never seen; without one, as
        the upsert order learned. Only for email ids, the one documented "already taken" answer."""
        if row.known is None:
            return self.order.create_first
        return self.id_type == "email" and not row.known

    def _upsert(self, row: SpooledRow, payload: dict[str, Any]) -> RowResult:
        if self._create_first(row) and self._cannot_create(row, payload) is None:
            return self._create_then_update(row, payload)
        try:
            self.client.update_user(row.identifier, payload, id_type=self.id_type)
            self.order.observe(was_new=False)
            return self._ok(row, Outcome.UPDATED)
        except CrowdTwistNotFoundError as not_found:
            self.order.observe(was_new=True)
            if self.id_type == "id":
                return self._problem(
                    row,
                    payload,
                    Outcome.REJECTED,
                    not_found,
                    message="member not found (id_type 'id': CrowdTwist assigns ids, it cannot be created)",
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
            self.client.create_user(_create_body(payload))
        except CrowdTwistValidationError as exc:
            if self.id_type == "email" and _email_taken(exc.message):
                self.order.observe(was_new=False)
                self.client.update_user(row.identifier, payload, id_type=self.id_type)
                return self._ok(row, Outcome.UPDATED)
            raise
        self.order.observe(was_new=True)
        return self._ok(row, Outcome.CREATED)

    def _dry_run(self, row: SpooledRow, payload: dict[str, Any]) -> RowResult:
        # No writes: find out whether the member exists (a read) to report what would happen.
        if self.mode == "insert":
            return self._ok(row, Outcome.CREATED)
        try:
            self.client.get_user(row.identifier, id_type=self.id_type)
            return self._ok(row, Outcome.UPDATED)
        except CrowdTwistNotFoundError as exc:
            if self.mode == "update" or self.id_type == "id":
                return self._problem(row, payload, Outcome.REJECTED, exc, message="member not found")
            cannot_create = self._cannot_create(row, payload)
            if cannot_create is not None:
                return cannot_create
            return self._ok(row, Outcome.CREATED)

    @staticmethod
    def _cannot_create(row: SpooledRow, payload: dict[str, Any]) -> RowResult | None:
        """A member that is not there can only be created with the create rules met (location...).

        Checked only after CrowdTwist said "not found": an update needs none of these fields.
        """
        problem = check_create(payload)
        if not problem:
            return None
        name, reason = problem
        return RowResult(
            row.row_number,
            row.identifier,
            Outcome.REJECTED,
            code=CREATE_REQUIREMENTS,
            message=f"row {row.row_number}: member not found, and cannot create it: {name}: {reason}",
            payload=payload,
        )

    @staticmethod
    def _ok(row: SpooledRow, outcome: Outcome) -> RowResult:
        return RowResult(row.row_number, row.identifier, outcome)

    def _problem(
        self,
        row: SpooledRow,
        payload: dict[str, Any],
        outcome: Outcome,
        exc: CrowdTwistError | None,
        *,
        code: str | None = None,
        message: str | None = None,
    ) -> RowResult:
        text = message if message is not None else (exc.message if exc is not None else "")
        password = payload.get("password")
        if isinstance(password, str) and password:
            text = text.replace(password, "***")
        return RowResult(
            row_number=row.row_number,
            identifier=row.identifier,
            outcome=outcome,
            code=code or (exc.code if exc is not None else None),
            message=f"row {row.row_number}: {self.redact(text)}",
            payload=payload,
            status=exc.status if exc is not None else None,
            extra={"auth_failed": True} if isinstance(exc, CrowdTwistAuthError) else {},
        )


def _email_taken(message: str | None) -> bool:
    """CrowdTwist's answer to a create for an email it has ("email_address already taken")."""
    text = (message or "").lower()
    return EMAIL_TAKEN in text and "email" in text


def _create_body(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A create takes no update-only attributes (``is_active``, ``remove_points``)."""
    return {k: v for k, v in payload.items() if k not in UPDATE_ONLY_ATTRIBUTES}


def _redactor_for(client: Any) -> Callable[[str], str]:
    config = getattr(client, "config", None)
    secrets = [getattr(config, "api_key", None), getattr(config, "hmac_private_key", None)]
    redactor = Redactor([s for s in secrets if isinstance(s, str)])
    return redactor.redact


class _Accountant:
    """Counts results, writes problems to the rejects file, logs a few, feeds progress; one thread."""

    def __init__(self, summary: SyncSummary, rejects: Any, progress: ProgressReporter, log: Any) -> None:
        self.summary = summary
        self.rejects = rejects
        self.progress = progress
        self.log = log
        self.problems_logged = 0

    def __call__(self, result: RowResult) -> None:
        self.summary.add(result.outcome)
        if result.is_problem:
            self.rejects.write(result)
            if self.problems_logged < MAX_LOGGED_PROBLEMS:
                self.problems_logged += 1
                self.log.warning("%s %s: %s", result.outcome, result.code or "", result.message)
            elif self.problems_logged == MAX_LOGGED_PROBLEMS:
                self.problems_logged += 1
                self.log.warning("More rejected/failed rows are not logged; see the rejects file.")
        self.progress.record(result.outcome)


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
    :class:`SyncAbortedError` after a 401, :class:`ThresholdExceededError` when too many rows failed
    -- in the last two cases after the rejects file is written, with ``.summary`` attached.
    """
    log = log or log_default
    started = time.monotonic()
    default_id_type = getattr(getattr(client, "config", None), "id_type", None) or "email"
    config.validate(default_id_type)
    mapping = config.mapping(default_id_type)
    redact = _redactor_for(client)
    requests_before = int(getattr(client, "requests_sent", 0) or 0)
    summary = SyncSummary(dry_run=config.dry_run)
    progress = ProgressReporter(log, interval=config.progress_interval)
    abort_reason: str | None = None

    state = _open_state(config, mapping, client)
    try:
        with open_rejects(config.rejects_path, redact=redact) as rejects, Spool(config.spool_dir) as spool:
            summary.rejects_path = getattr(rejects, "location", None)
            account = _Accountant(summary, rejects, progress, log)

            # 1. read, map, validate, spool (with a state: unchanged rows are not even mapped)
            last_read_log = [time.monotonic()]

            def read_rows(n: int) -> int:
                summary.rows_read += n
                return summary.rows_read - n + 1

            def log_reading() -> None:
                if time.monotonic() - last_read_log[0] >= config.progress_interval:
                    last_read_log[0] = time.monotonic()
                    log.info(
                        "Reading the source: %d row(s) read so far, %d rejected by validation.",
                        summary.rows_read,
                        summary.count(Outcome.REJECTED),
                    )

            reader = MemberReader(mapping, spool, account, read_rows, state, config.full_refresh)
            reader.read(chunks, log_reading)
            progress.set_total(summary.rows_read)
            log.info(
                "Read %d row(s); %d to send after validation and de-duplication%s.",
                summary.rows_read,
                spool.count_survivors(),
                " (dry run: no writes)" if config.dry_run else "",
            )

            # 2. duplicates: last wins
            for lost in spool.superseded():
                account(
                    RowResult(
                        lost.row_number,
                        lost.identifier,
                        Outcome.SKIPPED,
                        code=DUPLICATE_IDENTIFIER,
                        message=(
                            f"row {lost.row_number}: duplicate identifier: row {lost.winner_row_number} "
                            "has the same identifier and wins (last row wins)"
                        ),
                    )
                )

            # 3. send
            unchanged = spool.count_unchanged()
            if unchanged:
                summary.add(Outcome.UNCHANGED, unchanged)
                progress.record(Outcome.UNCHANGED, unchanged)
            survivors = spool.survivors()
            if config.dry_run:
                survivors = _log_dry_run_samples(survivors, log)
            stop = config.stop_event if config.stop_event is not None else threading.Event()
            work = _MemberSender(client, mapping, dry_run=config.dry_run, redact=redact)
            for row, outcome in send_all(
                survivors,
                work,
                max_workers=config.max_workers,
                stop=stop,
                heartbeat=progress.maybe_log,
            ):
                if isinstance(outcome, SendFailure):
                    outcome = RowResult(
                        row.row_number,
                        row.identifier,
                        Outcome.FAILED,
                        code="internal",
                        message=f"row {row.row_number}: {type(outcome.error).__name__}: "
                        f"{redact(str(outcome.error))}",
                        payload=row.payload,
                    )
                if outcome.extra.get("auth_failed") and not stop.is_set():
                    stop.set()
                    abort_reason = (
                        "CrowdTwist answered 401 Unauthorized: the API key or HMAC keys of the connection "
                        "are wrong; the sync stopped"
                    )
                    log.error("%s.", abort_reason)
                outcome.extra.pop("auth_failed", None)
                if (
                    state is not None
                    and not config.dry_run
                    and outcome.outcome in (Outcome.CREATED, Outcome.UPDATED)
                ):
                    state.record_sent(row.key, row.key2, row.identifier, row.fingerprint)
                account(outcome)
            if stop.is_set() and abort_reason is None:
                abort_reason = "the sync was stopped before every row was sent (task killed)"
                log.error("%s.", abort_reason)
            if abort_reason:
                for row in survivors:
                    account(
                        RowResult(
                            row.row_number,
                            row.identifier,
                            Outcome.FAILED,
                            code=NOT_SENT_AFTER_ABORT,
                            message=f"row {row.row_number}: not sent: {abort_reason}",
                            payload=row.payload,
                        )
                    )
            summary.rejects_written = rejects.written
    finally:
        if state is not None:
            state.close()
        summary.requests_sent = int(getattr(client, "requests_sent", 0) or 0) - requests_before
        summary.duration_seconds = time.monotonic() - started
    summary.aborted = abort_reason
    if not summary.is_consistent():  # pragma: no cover - would be a bug in this module
        log.error(
            "Row accounting mismatch: %d rows read, %d outcomes", summary.rows_read, summary.total_outcomes
        )
    log.info(
        "%s", summary_table(summary, "CrowdTwist member sync" + (" (dry run)" if config.dry_run else ""))
    )
    if abort_reason:
        raise SyncAbortedError(abort_reason, summary)
    violation = threshold_violation(summary, config.max_failed_rows, config.max_failed_ratio)
    if violation:
        raise ThresholdExceededError(violation, summary)
    return summary


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
            "private key (or MemberSyncConfig.state_key); none is set"
        )
    return MemberState(
        config.state_path, id_type=mapping.id_type, secret=secret.encode("utf-8"), read_only=config.dry_run
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
