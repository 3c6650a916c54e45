"""The member sync: source chunks -> CrowdTwist members created, updated, deactivated or deleted.

Why it is built this way: ``docs/sync-design.md``, section ``sync/members/sync.py``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from airflow_provider_crowdtwist.sync.members.config import MemberOutcome, MemberSyncConfig
from airflow_provider_crowdtwist.sync.members.mapping import DUPLICATE_IDENTIFIER, MemberSyncConfigError
from airflow_provider_crowdtwist.sync.members.read import MemberReader
from airflow_provider_crowdtwist.sync.members.removal import (
    RemovalsList,
    RemovedMember,
    count_unseen,
    guard_violation,
    removed_members,
)
from airflow_provider_crowdtwist.sync.members.send import MemberClient, MemberRemover, MemberSender, row_ref
from airflow_provider_crowdtwist.sync.members.spool import Spool, SpooledRow
from airflow_provider_crowdtwist.sync.members.state import MemberState
from airflow_provider_crowdtwist.sync.outcomes import Outcome, OutcomeLike, RowResult
from airflow_provider_crowdtwist.sync.protocol import SyncBase
from airflow_provider_crowdtwist.sync.rejects import mask_secrets
from airflow_provider_crowdtwist.sync.run import RowRef, SyncRun
from airflow_provider_crowdtwist.sync.summary import SyncSummary

if TYPE_CHECKING:
    import pandas as pd

#: What the member sync sends: a source row from the spool, or a member who left the source.
MemberItem = SpooledRow | RemovedMember
_ACCEPTED = (Outcome.CREATED, Outcome.UPDATED, MemberOutcome.REACTIVATED)


class MemberSync(SyncBase):
    """The member sync as a plug-in: its state, its spool, its reader, sender and remover."""

    title = "CrowdTwist member sync"
    outcomes: Iterable[OutcomeLike] = tuple(MemberOutcome)
    config: MemberSyncConfig
    client: MemberClient

    def __init__(self, config: MemberSyncConfig, client: MemberClient) -> None:
        self.config = config.resolved(client.config.id_type)
        self.client = client
        self.summary = SyncSummary()
        self.state: MemberState | None = None
        self.spool: Spool | None = None
        self.listed: RemovalsList | None = None
        self._last_log = time.monotonic()

    def open(self, run: SyncRun) -> None:
        config = self.config
        self.run = run
        self.mapping = config.mapping()
        run.column_of = self.mapping.column_of
        self.state = self._open_state()  # a second sync on this state fails here, at once
        self.spool = Spool(config.spool_dir)
        lower = self.mapping.id_type == "email"
        self.reader = MemberReader(
            self.mapping,
            self.spool,
            run.record,
            lambda chunk: run.take(chunk, self.mapping.id_column, lower=lower),
            self.state,
            config.full_refresh,
        )
        self.sender = MemberSender(run, self.client, self.mapping)
        self.remover = MemberRemover(run, self.client, config)

    def _open_state(self) -> MemberState | None:
        """The member state of ``state_path`` (read-only in a dry run), or ``None`` without one."""
        config = self.config
        if not config.state_path:
            return None
        secret = config.state_key or self.client.config.api_key or self.client.config.hmac_private_key
        if not secret:
            raise MemberSyncConfigError(
                "state_path needs a secret to key the state's hashes: the connection's API key or HMAC "
                "private key (or MemberSyncConfig.state_key); none is set",
                "state_path",
            )
        return MemberState(
            config.partition_path(config.state_path),  # one state per partition: its members only
            id_type=self.mapping.id_type,
            secret=secret.encode("utf-8"),
            read_only=config.dry_run,
        )

    # ------------------------------------------------------------------ the source

    def plan(self, chunk: pd.DataFrame) -> Iterable[Iterable[MemberItem]]:
        """Read the chunk into the spool; nothing is sent before the whole source is read."""
        self.reader.read(chunk)
        summary = self.summary
        if time.monotonic() - self._last_log >= self.config.progress_interval:
            self._last_log = time.monotonic()
            self.run.log.info(
                "Reading the source: %d row(s) read so far, %d rejected by validation.",
                summary.rows_read,
                summary.count(Outcome.REJECTED),
            )
        return ()

    def after_source(self) -> Iterator[Iterable[MemberItem]]:
        """Duplicates and unchanged rows counted; the survivors sent, then the members who left."""
        run, spool, config = self.run, self.spool, self.config
        assert spool is not None  # opened by open()
        run.progress.set_total(self.summary.rows_read)
        for note in self.mapping.conversion_notes():
            run.log.info("Documented conversion (docs/contract.md): %s.", note)
        run.log.info(
            "Read %d row(s); %d to send after validation, de-duplication and the state%s.",
            self.summary.rows_read,
            spool.count_survivors(),
            " (dry run: no writes)" if config.dry_run else "",
        )
        # Removals only after a complete read: a stopped run read part of the source at most.
        removals = None if run.stop.is_set() else self._removals()
        for lost in spool.superseded():  # duplicates: the last row wins
            why = f"duplicate identifier: row {lost.winner_row_number} has the same identifier and wins"
            ref = RowRef(lost.row_number, lost.identifier)
            run.record(run.result(ref, Outcome.SKIPPED, f"{why} (last row wins)", code=DUPLICATE_IDENTIFIER))
        unchanged = spool.count_unchanged()  # counted whole: these rows were never even mapped
        self.summary.add(Outcome.UNCHANGED, unchanged)
        run.progress.record(Outcome.UNCHANGED, unchanged)
        survivors = spool.survivors()
        yield _dry_run_samples(survivors, run.log) if config.dry_run else survivors
        if removals is None or removals[0] == 0 or run.stop.is_set():
            return
        with self._removals_list() as self.listed:
            yield removals[1]()
        listed = self.listed
        where = f"listed in {listed.location}" if listed.location else "listed in the log"
        verb = "would be removed" if config.dry_run else "removed"
        run.log.info(
            "%d member(s) who left the source %s (on_removed=%r), %s.",
            listed.count,
            verb,
            config.on_removed,
            where,
        )

    def _removals(self) -> tuple[int, Any] | None:
        """The members to remove (count, lister), or None; the guard aborts the run before any request."""
        state, config, run = self.state, self.config, self.run
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
            self.summary.rows_read,
            on_removed=config.on_removed,
            max_removed_ratio=config.max_removed_ratio,
            allow_empty_source_removal=config.allow_empty_source_removal,
        )
        if violation:
            if config.dry_run:  # the preview still lists them: the user decides whether to raise the ratio
                with self._removals_list() as listed:
                    for member in members():
                        listed.add(member, None, "the removal guard stopped the run")
            run.abort(f"the removal guard stopped the sync: {violation}")
            return None
        run.log.info("%d member(s) left the source: on_removed=%r.", count, config.on_removed)
        return count, members

    def _removals_list(self) -> RemovalsList:
        config = self.config
        return RemovalsList(config.rejects_path, config.on_removed, self.run.log, dry_run=config.dry_run)

    # ------------------------------------------------------------------ one member

    def ref(self, item: MemberItem) -> RowRef:
        return MemberRemover.ref(item) if isinstance(item, RemovedMember) else row_ref(item)

    def work(self, item: MemberItem) -> RowResult:
        return self.remover(item) if isinstance(item, RemovedMember) else self.sender(item)

    def recorded(self, item: MemberItem, result: RowResult) -> RowResult:
        """What CrowdTwist accepted goes into the state (not in a dry run)."""
        state, live = self.state, not self.config.dry_run
        if isinstance(item, RemovedMember):
            self.summary.rows_removed += 1
            if state is not None and live:
                if result.outcome == MemberOutcome.DEACTIVATED:
                    state.record_deactivated(item.key, item.key2)
                elif result.outcome == MemberOutcome.DELETED or result.status == 404:
                    state.forget(item.key, item.key2)  # deleted, or already gone from CrowdTwist
            if self.listed is not None:
                self.listed.add(item, result.outcome, result.message)
        elif state is not None and live and result.outcome in _ACCEPTED:
            state.record_sent(item.key, item.key2, item.identifier, item.fingerprint)
        return result

    def close(self) -> None:
        try:
            if self.spool is not None:
                self.spool.close()
        finally:
            if self.state is not None:
                self.state.close()


def sync_members(
    client: MemberClient,
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
    return SyncRun.execute(MemberSync(config, client), chunks, log)


def _dry_run_samples(rows: Iterator[SpooledRow], log: Any, samples: int = 3) -> Iterator[SpooledRow]:
    for i, row in enumerate(rows):
        if i < samples:
            log.info(
                "Dry run: row %d (%s) would send %s",
                row.row_number,
                row.identifier,
                json.dumps(mask_secrets(row.payload), sort_keys=True),
            )
        yield row
