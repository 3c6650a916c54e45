"""``CrowdTwistSyncOperatorBase``: what both sync operators take and do the same way.

Both operators read the same sources, pace the same client, write the same rejects file and apply
the same failure thresholds; only the engine they call differs. Keeping the shared arguments here
means a DAG author meets one vocabulary, and a fix to source handling or argument checks lands in
both operators at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_crowdtwist.client.client import CrowdTwistClient
from airflow_provider_crowdtwist.operators._common import build_client, validate_requests_per_minute
from airflow_provider_crowdtwist.operators._source import source_chunks, validate_source_args
from airflow_provider_crowdtwist.sync.partition import Partition, active_partition
from airflow_provider_crowdtwist.sync.sources import DEFAULT_CHUNKSIZE, SourceItem

SOURCE_TEMPLATE_FIELDS: tuple[str, ...] = ("sql", "parameters", "rows", "source_path", "rejects_path")


class CrowdTwistSyncOperatorBase(BaseOperator):
    """Shared arguments of the sync operators (see either operator's docstring for their meaning).

    The operators declare only their own arguments and pass the rest here through ``**kwargs``,
    so a shared argument has one default, one check and one place to change.

    ``partition=(i, n)``: sync only the members that hash to ``i`` of ``n``, with this partition's own
    state / ledger / rejects files and ``1/n`` of the cap; for ``.expand(partition=partitions(n))``
    (docs/scale-out.md).

    Source (exactly one): ``sql`` + ``sql_conn_id`` (any common.sql connection; ``.sql`` files
    allowed; read in chunks), ``rows`` (a DataFrame, a list of dicts, or an XCom), or ``source_path``
    (CSV / JSON lines / Parquet, local or an object-storage URL; read in chunks). ``on_bad_lines``:
    a CSV / JSON-lines line that cannot be read fails the task naming the line (``fail``, the
    default) or is a rejected row while the rest of the file is synced (``reject``).
    """

    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql", "parameters": "json"}

    def __init__(
        self,
        *,
        crowdtwist_conn_id: str = "crowdtwist_default",
        sql: str | None = None,
        sql_conn_id: str | None = None,
        parameters: Any = None,
        rows: Any = None,
        source_path: Any = None,
        file_format: str | None = None,
        chunksize: int = DEFAULT_CHUNKSIZE,
        id_column: str = "user_id",
        id_type: str | None = None,
        max_workers: int = 16,
        requests_per_minute: int | None = None,
        max_failed_rows: int | None = None,
        max_failed_ratio: float | None = None,
        rejects_path: Any = None,
        dry_run: bool = False,
        on_bad_lines: str = "fail",
        partition: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.crowdtwist_conn_id = crowdtwist_conn_id
        self.sql = sql
        self.sql_conn_id = sql_conn_id
        self.parameters = parameters
        self.rows = rows
        self.source_path = source_path
        self.file_format = file_format
        self.chunksize = chunksize
        self.id_column = id_column
        self.id_type = id_type
        self.max_workers = max_workers
        self.requests_per_minute = requests_per_minute
        self.max_failed_rows = max_failed_rows
        self.max_failed_ratio = max_failed_ratio
        self.rejects_path = rejects_path
        self.dry_run = dry_run
        self.on_bad_lines = on_bad_lines
        self.partition = partition
        # Made in execute (an Event cannot be deep-copied with the task); set by on_kill.
        self._stop: threading.Event | None = None

    def on_kill(self) -> None:
        """Stop sending: requests in flight finish and are recorded, the rest are reported not sent."""
        if self._stop is not None:
            self._stop.set()

    def _validate_shared_arguments(self) -> None:
        """Fail at DAG parse time on shared arguments that are not template fields.

        Only whether a source is given is looked at, never its (unrendered) content.
        """
        validate_source_args(
            sql=self.sql,
            sql_conn_id=self.sql_conn_id,
            rows=self.rows,
            source_path=self.source_path,
            chunksize=self.chunksize,
        )
        validate_requests_per_minute(self.requests_per_minute)
        Partition.parse(self.partition)  # a PartitionError (ValueError) names the argument

    def _build_client(self) -> CrowdTwistClient:
        """ONE client with ONE rate limiter for all workers of this task, from the connection."""
        from airflow_provider_crowdtwist.hooks.crowdtwist import CrowdTwistHook

        hook = CrowdTwistHook(crowdtwist_conn_id=self.crowdtwist_conn_id)
        return build_client(
            hook,
            requests_per_minute=self.requests_per_minute,
            max_workers=self.max_workers,
            partition=active_partition(self.partition),
        )

    def _source_chunks(self) -> Iterator[SourceItem]:
        """The rendered source arguments -> DataFrame chunks (nothing is read until iterated)."""
        return source_chunks(
            sql=self.sql,
            sql_conn_id=self.sql_conn_id,
            parameters=self.parameters,
            rows=self.rows,
            source_path=self.source_path,
            chunksize=self.chunksize,
            file_format=self.file_format,
            on_bad_lines=self.on_bad_lines,  # type: ignore[arg-type]  # checked by the engine config
        )
