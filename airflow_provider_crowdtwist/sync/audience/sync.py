"""The audience sync, a plug-in of the sync frame: a warehouse audience as a member trait and a segment file.

The frame (:meth:`~..run.SyncRun.execute`) drives; this plug-in adds only what is its own:

1. ``plan``: each chunk's identifiers are checked and looked up in the audience state (:mod:`.read`);
   nothing is sent while the source is read, because who *left* is only known at its end;
2. ``after_source``: the diff (:mod:`.diff`). Duplicates are ``skipped``, members who stay are
   counted ``unchanged`` (no request), the guards may stop the run here, before any write; then the
   segment file is uploaded (``mode="segment_file"``/``"both"``) and the traits are sent
   (``mode="traits"``/``"both"``): ``PUT /v2/users/{id}`` with ``{"custom_data": {attribute: value}}``,
   the "in" value for members entering, the "out" value for members leaving;
3. ``recorded``: the state keeps who is in the audience as CrowdTwist now holds it.

Why the first trait is sent alone: every member is sent one of two identical bodies, so a program
that does not have the attribute (or takes another type) refuses them all alike. The first request
goes out as a wave of its own; a 400 answer stops the run as a configuration error, instead of
thousands of identical rejects. Members not sent then end ``failed`` ("not sent"), resent next run.

Outcomes: ``entered`` / ``exited`` (an extra outcome each), ``unchanged``, ``skipped`` (a duplicate
row; a leaver CrowdTwist no longer has, 404), ``rejected`` (a bad identifier; an entering member
CrowdTwist does not know), ``failed``. Leavers are not source rows: they count in ``rows_removed``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_crowdtwist.client.errors import (
    CrowdTwistAlreadyProcessedError,
    CrowdTwistNotFoundError,
    CrowdTwistValidationError,
)
from airflow_provider_crowdtwist.sync.audience.changes import ChangesList
from airflow_provider_crowdtwist.sync.audience.config import AudienceSyncConfig
from airflow_provider_crowdtwist.sync.audience.diff import AudienceDiff, Change
from airflow_provider_crowdtwist.sync.audience.identifiers import DUPLICATE_IDENTIFIER, SEGMENT_HEADERS
from airflow_provider_crowdtwist.sync.audience.read import AudienceReader
from airflow_provider_crowdtwist.sync.audience.segment_file import SegmentFileError, upload_segment
from airflow_provider_crowdtwist.sync.audience.state import AudienceState
from airflow_provider_crowdtwist.sync.outcomes import IDENTIFIER, Outcome, OutcomeLike, RowResult
from airflow_provider_crowdtwist.sync.protocol import SyncBase, SyncClient, Waves
from airflow_provider_crowdtwist.sync.run import RowRef, SyncRun
from airflow_provider_crowdtwist.sync.summary import SyncConfigError, SyncSummary

if TYPE_CHECKING:
    import logging

    import pandas as pd


class AudienceOutcome(str, Enum):
    """The audience sync's outcomes beyond :class:`~..outcomes.Outcome`."""

    ENTERED = "entered"
    EXITED = "exited"


@dataclass
class AudienceSyncSummary(SyncSummary):
    """The counts of the diff and where the segment file went, besides the outcomes."""

    entering: int = 0
    leaving: int = 0
    duplicates: int = 0
    audience_size: int = 0
    last_audience_size: int = 0
    changes_path: str | None = None
    segment_file: str | None = None
    segment_version: int | None = None
    segment_rows: int | None = None


class AudienceClient(SyncClient, Protocol):
    """The one call the audience sync makes (``CrowdTwistClient`` has it)."""

    def update_user(self, user_id: str, fields: Any, id_type: str | None = None) -> dict[str, Any]: ...


class AudienceSync(SyncBase):
    """The plug-in; build it with a config, hand it to ``SyncRun.execute`` (:func:`sync_audience`)."""

    title = "CrowdTwist audience sync"
    operation = "trait"
    label = "members"
    outcomes: Iterable[OutcomeLike] = tuple(AudienceOutcome)
    config: AudienceSyncConfig
    client: AudienceClient
    summary: AudienceSyncSummary

    def __init__(self, config: AudienceSyncConfig, client: AudienceClient) -> None:
        self.config = config.resolved(client.config.id_type)  # None: the connection's id_type
        self.client = client
        self.summary = AudienceSyncSummary()
        self.state: AudienceState | None = None
        self.reader: AudienceReader | None = None
        self.changes: ChangesList | None = None
        self.diff: AudienceDiff | None = None
        self._notes: list[str] = []

    # ------------------------------------------------------------------ the frame's calls

    def open(self, run: SyncRun) -> None:
        self.run = run
        cfg = self.config
        run.column_of = lambda attribute: cfg.id_column if attribute == IDENTIFIER else None
        if cfg.state_path is not None:
            self.state = AudienceState(
                cfg.partition_path(cfg.state_path), identity=cfg.identity(), read_only=cfg.dry_run
            )
        self.reader = AudienceReader(
            self.state, id_type=str(cfg.id_type), column=cfg.id_column, segment=cfg.segment
        )
        self.changes = ChangesList(cfg.partition_path(cfg.rejects_path), run.log, dry_run=cfg.dry_run)
        self.summary.changes_path = self.changes.location

    def plan(self, chunk: pd.DataFrame) -> Waves[Change]:
        cfg = self.config
        assert self.reader is not None
        if cfg.id_column not in chunk.columns:
            raise SyncConfigError(
                f"id_column {cfg.id_column!r} is not a column of the source (it has: "
                f"{', '.join(map(str, chunk.columns))})",
                "id_column",
            )
        rows, numbers = self.run.take(chunk, cfg.id_column, lower=cfg.id_type == "email")
        for row_number, bad in self.reader.add(rows[cfg.id_column], numbers):
            ref = RowRef(row_number, bad.identifier)
            self.run.record(self.run.result(ref, Outcome.REJECTED, bad.reason, code=bad.code))
        return ()  # nothing is sent before the source is read to its end

    def after_source(self) -> Waves[Change]:
        cfg, run = self.config, self.run
        assert self.reader is not None and self.changes is not None
        diff = self.diff = self.reader.finish()
        self._count(diff)
        why = diff.guard_violation(cfg.max_exit_ratio, self.summary.rows_read)
        if why:
            for change in diff.leaving_members():
                self.changes.add(change.identifier, "exit", None, "the audience guard stopped the run")
            where = f" (listed in {self.changes.location})" if self.changes.location else ""
            run.abort(f"the audience guard stopped the sync{where}: {why}")
            yield diff.entering()  # not sent (the run is stopped): failed "not sent", resent next run
            return
        run.log.info(
            "Audience: %d member(s) now (%d as last synced): %d entering, %d leaving, %d unchanged.",
            diff.audience_size,
            diff.last_size,
            diff.entering_count,
            diff.leaving_count,
            diff.unchanged,
        )
        if cfg.segment and not self._upload(diff):
            yield diff.entering()
            return
        if not cfg.traits:
            self._record_segment_changes(diff)
            return
        changes = itertools.chain(diff.entering(), diff.leaving_members())
        first = list(itertools.islice(changes, 1))
        yield first  # alone: a refused attribute or value stops the run at the first answer
        yield changes

    def ref(self, item: Change) -> RowRef:
        payload = self._payload(item)
        if item.entering:
            return RowRef(item.number, item.identifier, payload)
        return RowRef(item.number, item.identifier, payload, label=f"leaving member {item.number}")

    def work(self, item: Change) -> RowResult:
        cfg, run = self.config, self.run
        ref = self.ref(item)
        outcome = AudienceOutcome.ENTERED if item.entering else AudienceOutcome.EXITED
        if cfg.dry_run:
            return run.result(ref, outcome, "dry run: not sent")
        try:
            self.client.update_user(item.identifier, ref.payload, id_type=cfg.id_type)
        except CrowdTwistNotFoundError as exc:
            if item.entering:
                raise  # the frame: rejected, "member not found" (the audience names an unknown member)
            return run.result(
                ref,
                Outcome.SKIPPED,
                f"no longer in CrowdTwist ({exc.message}): nothing to set",
                code=exc.code,
                status=exc.status,
            )
        except CrowdTwistValidationError as exc:
            if not isinstance(exc, CrowdTwistAlreadyProcessedError):
                run.abort(self._refusal(exc))
            raise
        return run.result(ref, outcome)

    def recorded(self, item: Change, result: RowResult) -> RowResult | None:
        assert self.changes is not None
        if not item.entering:
            self.summary.rows_removed += 1
        if self.state is not None and not self.config.dry_run:
            if item.entering and result.outcome == AudienceOutcome.ENTERED:
                self.state.record_entered(item.key, item.key2, item.identifier)
            elif not item.entering and result.outcome in (
                AudienceOutcome.EXITED,
                Outcome.SKIPPED,
                Outcome.REJECTED,
            ):
                self.state.record_left(item.key, item.key2)  # out, gone, or refused: no longer ours
        self.changes.add(
            item.identifier, "enter" if item.entering else "exit", result.outcome, result.message
        )
        return result

    def close(self) -> None:
        try:
            if self.changes is not None:
                self.changes.close()
        finally:
            try:
                if self.reader is not None:
                    self.reader.close()
            finally:
                if self.state is not None:
                    self.state.close()

    def notes(self) -> str:
        return "\n".join(self._notes)

    # ------------------------------------------------------------------ helpers

    def _payload(self, item: Change) -> dict[str, Any] | None:
        cfg = self.config
        if not cfg.traits:
            return None  # the segment file carries the change, not a request
        value = cfg.value_in if item.entering else cfg.value_out
        return {"custom_data": {cfg.attribute: value}}

    def _refusal(self, exc: CrowdTwistValidationError) -> str:
        cfg = self.config
        return (
            f"CrowdTwist refused custom_data {{{cfg.attribute!r}: ...}} ({exc.status}: {exc.message}); every "
            "member is sent the same body, so the run stopped at the first answer. Check that the program "
            f"has the custom attribute {cfg.attribute!r} (names are case-sensitive) and which values its "
            f"type takes: values={tuple(cfg.values)!r} (JSON true/false, 1/0 or strings)"
        )

    def _count(self, diff: AudienceDiff) -> None:
        summary, run = self.summary, self.run
        summary.entering = diff.entering_count
        summary.leaving = diff.leaving_count
        summary.duplicates = len(diff.duplicates)
        summary.audience_size = diff.audience_size
        summary.last_audience_size = diff.last_size
        for duplicate in diff.duplicates:
            ref = RowRef(duplicate.row_number, duplicate.identifier)
            why = f"listed more than once: row {duplicate.first_row} names the same member (counted once)"
            run.record(run.result(ref, Outcome.SKIPPED, why, code=DUPLICATE_IDENTIFIER))
        if diff.duplicates:
            self._notes.append(f"{len(diff.duplicates)} row(s) named a member listed earlier: counted once.")
        summary.add(Outcome.UNCHANGED, diff.unchanged)  # counted whole: no request, no result object
        run.progress.record(Outcome.UNCHANGED, diff.unchanged)

    def _upload(self, diff: AudienceDiff) -> bool:
        """Publish the segment file (a dry run only says what it would publish); False if it failed."""
        cfg, run = self.config, self.run
        header = SEGMENT_HEADERS[str(cfg.id_type)]
        if cfg.dry_run:
            self._notes.append(
                f"Dry run: the segment file {cfg.segment_name}_YYYYMMDD_NNNN.csv ({header}, "
                f"{diff.audience_size} member(s)) was not uploaded."
            )
            return True
        assert cfg.sftp is not None
        try:
            with cfg.sftp() as sftp:
                upload = upload_segment(
                    sftp, cfg.segment_dir, str(cfg.segment_name), header, diff.segment_identifiers()
                )
        except (SegmentFileError, OSError) as exc:
            run.abort(f"the segment file was not uploaded: {run.redact(str(exc))}")
            return False
        self.summary.segment_file = upload.path
        self.summary.segment_version = upload.version
        self.summary.segment_rows = upload.rows
        self._notes.append(f"Segment file {upload.path}: version {upload.version}, {upload.rows} member(s).")
        run.log.info(
            "Uploaded the segment file %s (%d member(s), %d bytes).", upload.path, upload.rows, upload.bytes
        )
        return True

    def _record_segment_changes(self, diff: AudienceDiff) -> None:
        """``mode="segment_file"``: the file carried every change; no request was made per member."""
        for change in itertools.chain(diff.entering(), diff.leaving_members()):
            outcome = AudienceOutcome.ENTERED if change.entering else AudienceOutcome.EXITED
            ref = self.ref(change)
            result = self.run.result(ref, outcome, "dry run: not uploaded" if self.config.dry_run else None)
            kept = self.recorded(change, result)
            if kept is not None:
                self.run.record(kept)


def sync_audience(
    client: AudienceClient,
    chunks: Iterable[Any],
    config: AudienceSyncConfig,
    log: logging.Logger | logging.LoggerAdapter | None = None,
) -> AudienceSyncSummary:
    """Run one audience sync (the operator's one call into the engine)."""
    return SyncRun.execute(AudienceSync(config, client), chunks, log)
