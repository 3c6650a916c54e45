"""``CrowdTwistUserSyncOperator``: warehouse rows -> CrowdTwist members, created, updated or removed.

A thin adapter: it checks arguments, turns the source arguments into DataFrame chunks
(``_source.py``), builds ONE rate-limited client from the connection, and calls the engine
(``sync.members.sync.sync_members``), which has no Airflow import. It returns the engine's small
summary (counts by outcome, duration, requests, rejects location) as its XCom -- never rows.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from airflow_provider_crowdtwist.operators._base import SOURCE_TEMPLATE_FIELDS, CrowdTwistSyncOperatorBase
from airflow_provider_crowdtwist.operators._common import fail_task, parse_time_config
from airflow_provider_crowdtwist.operators._source import resolve_path
from airflow_provider_crowdtwist.operators._synclog import with_run_services
from airflow_provider_crowdtwist.sync.members.sync import MemberSyncConfig, sync_members
from airflow_provider_crowdtwist.sync.paths import FileInUseError
from airflow_provider_crowdtwist.sync.summary import SyncError


class CrowdTwistUserSyncOperator(CrowdTwistSyncOperatorBase):
    """Create or update CrowdTwist members from rows, one request a row, at the program's rate cap.

    Source (exactly one): ``sql`` + ``sql_conn_id`` (any common.sql connection; ``.sql`` files
    allowed; read in chunks), ``rows`` (a DataFrame, a list of dicts, or an XCom), or ``source_path``
    (CSV / JSON lines / Parquet, local or an object-storage URL; read in chunks).

    :param crowdtwist_conn_id: the CrowdTwist connection.
    :param id_column: the column holding each member's identifier (default ``user_id``).
    :param id_type: what the identifier is (``email``, ``third_party_id``...); default: the connection's.
    :param field_mapping: source column -> CrowdTwist attribute (or ``custom_data.<key>``). Columns
        already named like an attribute map themselves.
    :param unmapped_columns: what to do with other columns: ``custom_data`` (default), ``ignore``, ``error``.
    :param mode: ``upsert`` (PUT, then POST on 404), ``insert`` (POST only) or ``update`` (PUT only).
    :param max_workers: concurrent requests (default 16), all paced by one rate limiter.
    :param requests_per_minute: the rate cap; default: the connection's extra (10,000 if unset).
    :param rate_limit_conn_id: a Redis connection: every task of the program shares one pace at the
        whole cap (docs/scale-out.md); default: the connection's extra; ``""``: this task alone.
    :param max_failed_rows: fail the task when failed + rejected rows exceed this.
    :param max_failed_ratio: fail the task when (failed + rejected) / rows read exceeds this.
        With neither set: any failed row fails the task, rejected rows are tolerated.
    :param fail_when_nothing_landed: fail the task when every row (at least one) was rejected or
        failed, whatever the thresholds say (default True).
    :param degraded_rejected_ratio: a run that succeeds with more than this share of its rows
        rejected (or with failed rows tolerated) ends with status ``degraded`` (default 0.1; ``None``:
        the ratio is off).
    :param rejects_path: where to write rejected/failed rows as JSON lines (local or object storage).
    :param state_path: optional SQLite file remembering the members synced; unchanged rows are not
        resent, new members are created first, and members who left the source can be removed.
    :param on_removed: members the state knows that the (completely read) source no longer has:
        ``ignore`` (default), ``deactivate`` (``is_active: 0``) or ``delete`` (queued deletion).
        Needs ``state_path``.
    :param remove_points_on_deactivate: with ``on_removed="deactivate"``, wipe their points too.
    :param max_removed_ratio: the guard: a run that would remove more than this share of the members
        in the state (default 0.1) fails before sending anything.
    :param allow_empty_source_removal: let a source with zero rows remove members (default: never).
    :param full_refresh: send every row this run, whatever the state says, and re-record it. Also the
        way past a state that lost its content (empty, truncated, corrupt: refused otherwise, naming
        it): the broken file is kept as ``<state>.broken-<UTC time>`` and a new state is built.
    :param null_values: ``skip`` (default: a null leaves CrowdTwist's value alone) or ``clear`` (a null
        in an optional field clears it; in a required one it rejects the row).
    :param dry_run: do everything but the writes (reads tell created from updated) and report; with
        ``on_removed``, list the members a real run would remove (beside the rejects file, or in the log).
    :param chunksize: rows per chunk read from the source (default 10,000).
    :param on_bad_lines: a CSV / JSON-lines line that cannot be read (a byte that is not UTF-8, more
        fields than the header): ``fail`` (default) fails the task naming the line; ``reject`` makes
        it a rejected row (in the rejects file) and syncs the rest of the file.
    """

    template_fields: Sequence[str] = (*SOURCE_TEMPLATE_FIELDS, "state_path", "field_mapping")
    template_fields_renderers = {
        **CrowdTwistSyncOperatorBase.template_fields_renderers,
        "field_mapping": "json",
    }
    ui_color = "#f7d9c4"

    def __init__(
        self,
        *,
        field_mapping: dict[str, str] | None = None,
        unmapped_columns: str = "custom_data",
        mode: str = "upsert",
        state_path: Any = None,
        on_removed: str = "ignore",
        remove_points_on_deactivate: bool = False,
        max_removed_ratio: float = 0.1,
        allow_empty_source_removal: bool = False,
        full_refresh: bool = False,
        null_values: str = "skip",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.field_mapping = field_mapping
        self.unmapped_columns = unmapped_columns
        self.mode = mode
        self.state_path = state_path
        self.on_removed = on_removed
        self.remove_points_on_deactivate = remove_points_on_deactivate
        self.max_removed_ratio = max_removed_ratio
        self.allow_empty_source_removal = allow_empty_source_removal
        self.full_refresh = full_refresh
        self.null_values = null_values
        self._validate_arguments()

    def _validate_arguments(self) -> None:
        """Fail at DAG parse time on arguments that are not template fields (those wait for execute)."""
        self._validate_shared_arguments()
        parse_time_config(self._sync_config(parse_time=True))

    def _sync_config(self, *, parse_time: bool = False) -> MemberSyncConfig:
        """The engine's config; at parse time without the template fields (not rendered yet)."""

        def path(value: Any) -> Any:
            return None if parse_time or not value else resolve_path(value)

        return MemberSyncConfig(
            id_column=self.id_column,
            id_type=self.id_type,
            field_mapping=None if parse_time else self.field_mapping,
            unmapped_columns=self.unmapped_columns,  # type: ignore[arg-type]  # checked by the engine
            mode=self.mode,  # type: ignore[arg-type]
            rejects_path=path(self.rejects_path),
            # At parse time only whether there is one matters (on_removed and full_refresh need it).
            state_path=(self.state_path or None) if parse_time else path(self.state_path),
            on_removed=self.on_removed,  # type: ignore[arg-type]  # checked by the engine
            remove_points_on_deactivate=self.remove_points_on_deactivate,
            max_removed_ratio=self.max_removed_ratio,
            allow_empty_source_removal=self.allow_empty_source_removal,
            full_refresh=self.full_refresh,
            null_values=self.null_values,  # type: ignore[arg-type]
            **self._run_config_kwargs(parse_time=parse_time),
        )

    def execute(self, context: Any) -> dict[str, Any]:
        """Read, map, validate and send; return the summary dict (XCom)."""
        self._stop = threading.Event()
        try:
            config = self._sync_config()
            client = self._build_client()
            config = with_run_services(self, config, client, context, "members")
        except ValueError as exc:
            raise fail_task(exc, context) from None
        with client:
            try:
                self.log.info(
                    "Syncing members to CrowdTwist: mode=%s, max_workers=%d, %s%s",
                    self.mode,
                    self.max_workers,
                    self._pace_text(client),
                    ", dry run" if self.dry_run else "",
                )
                summary = sync_members(client, self._source_chunks(), config, self.log)
            except (SyncError, FileInUseError, ValueError) as exc:
                raise fail_task(exc, context) from None
        return self._complete(summary.to_dict(), context)
