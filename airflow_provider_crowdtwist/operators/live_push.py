"""``CrowdTwistLivePushLoadOperator``: files the live push receiver landed -> a warehouse table.

A thin adapter: it resolves ``source_path`` (a local directory or an object-storage URL), opens a
DB-API connection from any common.sql connection, picks the upsert for its database and calls the
engine (``livepush.load.LiveFeedLoader``). It ends as the syncs end (``operators/_outcome.py``): a
``summary`` XCom with a one-line ``text`` on success and failure alike, the same volume checks
(``min_rows``, ``max_rejected_ratio``, plus its own ``max_rejected``), and an event for the asset of
the table it loaded, ``crowdtwist://live-push/<feed>/<database>/<table>``. The database is known only
from the connection, which a DAG file must not read at parse time, so the asset is named at run time
(an asset alias on Airflow 3, as the syncs do). OpenLineage gets the table as the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_crowdtwist.assets import live_push_asset_uri, live_push_database
from airflow_provider_crowdtwist.livepush.dialects import check_table_name, dialect_for
from airflow_provider_crowdtwist.livepush.feeds import FEEDS
from airflow_provider_crowdtwist.livepush.load import LiveFeedLoader
from airflow_provider_crowdtwist.operators._common import push_summary
from airflow_provider_crowdtwist.operators._outcome import airflow_3, emit_asset_event
from airflow_provider_crowdtwist.operators._source import resolve_path
from airflow_provider_crowdtwist.sync.summary import (
    summary_text,
    too_few_rows,
    too_many_rejected,
    validate_volume_checks,
)

MAX_FILES_IN_SUMMARY = 20


def alias_name(feed: str, sql_conn_id: str, table: str) -> str:
    """The task's default asset alias (its arguments as written, templates unrendered)."""
    return f"crowdtwist:live-push:{feed}:{sql_conn_id}:{table}"


class CrowdTwistLivePushLoadOperator(BaseOperator):
    """Load the landed live push files of one feed into a table, newest version per key.

    :param source_path: the feed's directory: ``<receiver --output>/<feed>`` (local, or a URL such as
        ``s3://bucket/live-push/profile``). Files directly under it are loaded, oldest first, and each
        is moved to ``<source_path>/loaded/`` once its rows are committed.
    :param sql_conn_id: any common.sql connection to a SQLite or PostgreSQL database (templated).
    :param table: the target table (created when missing); ``schema.table`` on PostgreSQL.
    :param feed: ``"profile"`` (one row per member, kept at its newest ``dateLastUpdated``) or
        ``"activity"`` (one row per ``userActivityId``).
    :param rejects_path: where lines that could not be loaded are written, with file, line and column.
    :param max_rejected: fail the task when more lines than this were rejected (default 0: any
        rejected line fails the task, after the good lines were loaded and the rejects written).
    :param max_rejected_ratio: also fail when more than this share of the lines read was rejected
        (``None``, the default: only ``max_rejected`` decides).
    :param min_rows: fewer lines read than this is reported (default 1: a run that found nothing);
        ``min_rows_action`` says how: ``"warn"`` (default) or ``"fail"``.
    :param batch_size: rows per ``executemany`` (default 5,000).
    """

    template_fields: Sequence[str] = ("source_path", "sql_conn_id", "table", "rejects_path")

    def __init__(
        self,
        *,
        source_path: str,
        sql_conn_id: str,
        table: str,
        feed: str = "profile",
        rejects_path: str | None = None,
        max_rejected: int = 0,
        max_rejected_ratio: float | None = None,
        min_rows: int = 1,
        min_rows_action: str = "warn",
        batch_size: int = 5_000,
        **kwargs: Any,
    ) -> None:
        if feed not in FEEDS:
            raise ValueError(f"feed must be one of {FEEDS}, got {feed!r}")
        if not source_path:
            raise ValueError("source_path is required")
        if not sql_conn_id:
            raise ValueError("sql_conn_id is required")
        if "{{" not in table:
            check_table_name(table)
        if isinstance(max_rejected, bool) or not isinstance(max_rejected, int) or max_rejected < 0:
            raise ValueError(f"max_rejected must be an integer >= 0, got {max_rejected!r}")
        validate_volume_checks(min_rows, min_rows_action, max_rejected_ratio)
        self._alias = alias_name(feed, sql_conn_id, table)
        self._default_outlets = kwargs.get("outlets") is None
        if self._default_outlets and airflow_3():
            from airflow.providers.common.compat.sdk import AssetAlias

            kwargs["outlets"] = [AssetAlias(self._alias)]
        super().__init__(**kwargs)
        self.source_path = source_path
        self.sql_conn_id = sql_conn_id
        self.table = table
        self.feed = feed
        self.rejects_path = rejects_path
        self.max_rejected = max_rejected
        self.max_rejected_ratio = max_rejected_ratio
        self.min_rows = min_rows
        self.min_rows_action = min_rows_action
        self.batch_size = batch_size
        self._summary: dict[str, Any] | None = None
        self._connection: Any = None

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.providers.common.compat.sdk import BaseHook

        check_table_name(self.table)
        connection = BaseHook.get_connection(self.sql_conn_id)
        self._connection = connection
        dialect = dialect_for(connection.conn_type or "")
        hook = connection.get_hook()
        db = hook.get_conn()
        try:
            loader = LiveFeedLoader(
                db, dialect, feed=self.feed, table=self.table, batch_size=self.batch_size, log=self.log
            )
            source, rejects = resolve_path(self.source_path), resolve_path(self.rejects_path)
            summary = loader.load(source, rejects_path=rejects)
        finally:
            db.close()
        result = summary.as_dict()
        result["files"] = result["files"][:MAX_FILES_IN_SUMMARY]
        result["asset_uri"] = self.asset_uri()
        return self._complete(result, context)

    def asset_uri(self) -> str:
        """``crowdtwist://live-push/<feed>/<database>/<table>`` of the connection used by ``execute``."""
        conn = self._connection
        database = live_push_database(conn.conn_type or "", conn.host, conn.port, conn.schema)
        return live_push_asset_uri(self.feed, database, self.table)

    def _complete(self, summary: dict[str, Any], context: Any) -> dict[str, Any]:
        """The syncs' ending: thresholds, ``text``, the ``summary`` XCom (pushed before any failure)."""
        from airflow_provider_crowdtwist._compat import AirflowFailException

        problem = None
        if summary["rejected"] > self.max_rejected:
            problem = f"{summary['rejected']} line(s) rejected, more than max_rejected={self.max_rejected}"
        problem = problem or too_many_rejected(summary, self.max_rejected_ratio)
        few = too_few_rows(summary, self.min_rows)
        if few and self.min_rows_action == "fail":
            problem = problem or few
        elif few:
            self.log.warning("%s: %s (min_rows_action='warn')", self.task_id, few)
            summary["warnings"] = [few]
        label = f"{self.task_id} (live push {self.feed} -> {self.table})"
        summary["text"] = summary_text(label, summary, problem, None if problem else few)
        summary["status"] = "failed" if problem else "ok"
        self._summary = summary
        push_summary(context, summary)
        self.log.info("%s", summary["text"])
        if problem:
            # no retry: the files were loaded and moved, so a retry would find nothing and pass
            raise AirflowFailException(summary["text"])
        if self._default_outlets:
            extra = {
                "loaded": summary["loaded"],
                "rejected": summary["rejected"],
                "rows_read": summary["rows_read"],
            }
            self.outlets = emit_asset_event(
                context, list(self.outlets or []), self._alias, summary["asset_uri"], extra
            )
        return summary

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the feed's directory in, the table (rows loaded) and the rejects file out."""
        from airflow.providers.common.compat.openlineage.facet import (
            Dataset,
            OutputDataset,
            OutputStatisticsOutputDatasetFacet,
        )
        from airflow.providers.openlineage.extractors import OperatorLineage

        from airflow_provider_crowdtwist.operators._lineage import file_dataset_name

        def stats(rows: int) -> dict[str, Any]:
            return {"outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=rows)}

        summary = self._summary or {}
        namespace, name = file_dataset_name(self.source_path)
        inputs = [Dataset(namespace=namespace, name=name)]
        outputs: list[Any] = []
        if self._connection is not None:
            namespace, name = table_dataset_name(self._connection, self.table)
            outputs.append(
                OutputDataset(namespace=namespace, name=name, outputFacets=stats(summary.get("loaded", 0)))
            )
        written = int(summary.get("rejects_written", 0))
        if summary.get("rejects_path") and written:
            namespace, name = file_dataset_name(summary["rejects_path"])
            outputs.append(OutputDataset(namespace=namespace, name=name, outputFacets=stats(written)))
        return OperatorLineage(inputs=inputs, outputs=outputs)


def table_dataset_name(connection: Any, table: str) -> tuple[str, str]:
    """``(namespace, name)`` of the loaded table, OpenLineage's way.

    PostgreSQL: ``postgres://<host>:<port>`` and ``<database>.<schema>.<table>`` (schema ``public``
    when the table names none). SQLite: ``sqlite://<database file>`` and the table.
    """
    kind = (connection.conn_type or "").lower()
    if kind in ("postgres", "postgresql"):
        schema, _, name = table.rpartition(".")
        namespace = f"postgres://{(connection.host or '').lower()}:{connection.port or 5432}"
        return namespace, f"{connection.schema or ''}.{schema or 'public'}.{name}"
    return f"sqlite://{connection.host or ''}", table
