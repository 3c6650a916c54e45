"""``CrowdTwistLivePushLoadOperator``: files the live push receiver landed -> a warehouse table.

A thin adapter: it resolves ``source_path`` (a local directory or an object-storage URL), opens a
DB-API connection from any common.sql connection, picks the upsert for its database and calls the
engine (``livepush.load.LiveFeedLoader``). Its outlet is an asset, so a downstream DAG can be
scheduled on fresh live push data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.common.compat.assets import Asset
from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_crowdtwist.assets import live_push_asset_uri
from airflow_provider_crowdtwist.livepush.dialects import check_table_name, dialect_for
from airflow_provider_crowdtwist.livepush.feeds import FEEDS
from airflow_provider_crowdtwist.livepush.load import LiveFeedLoader
from airflow_provider_crowdtwist.operators._source import resolve_path

MAX_FILES_IN_SUMMARY = 20


def live_push_asset(feed: str, table: str) -> Asset:
    """The asset a load of ``feed`` into ``table`` updates: ``crowdtwist://live-push/<feed>/<table>``."""
    return Asset(live_push_asset_uri(feed, table))


class CrowdTwistLivePushLoadOperator(BaseOperator):
    """Load the landed live push files of one feed into a table, newest version per key.

    :param source_path: the feed's directory: ``<receiver --output>/<feed>`` (local, or a URL such as
        ``s3://bucket/live-push/profile``). Files directly under it are loaded, oldest first, and each
        is moved to ``<source_path>/loaded/`` once its rows are committed.
    :param sql_conn_id: any common.sql connection to a SQLite or PostgreSQL database.
    :param table: the target table (created when missing); ``schema.table`` on PostgreSQL.
    :param feed: ``"profile"`` (one row per member, kept at its newest ``dateLastUpdated``) or
        ``"activity"`` (one row per ``userActivityId``).
    :param rejects_path: where lines that could not be loaded are written, with file, line and column.
    :param max_rejected: fail the task when more lines than this were rejected (default 0: any
        rejected line fails the task, after the good lines were loaded and the rejects written).
    :param batch_size: rows per ``executemany`` (default 5,000).
    """

    template_fields: Sequence[str] = ("source_path", "table", "rejects_path")

    def __init__(
        self,
        *,
        source_path: str,
        sql_conn_id: str,
        table: str,
        feed: str = "profile",
        rejects_path: str | None = None,
        max_rejected: int = 0,
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
        outlets = list(kwargs.pop("outlets", None) or [])
        outlets.append(live_push_asset(feed, table))
        super().__init__(outlets=outlets, **kwargs)
        self.source_path = source_path
        self.sql_conn_id = sql_conn_id
        self.table = table
        self.feed = feed
        self.rejects_path = rejects_path
        self.max_rejected = max_rejected
        self.batch_size = batch_size

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.providers.common.compat.sdk import BaseHook

        from airflow_provider_crowdtwist._compat import AirflowException

        check_table_name(self.table)
        connection = BaseHook.get_connection(self.sql_conn_id)
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
        self.log.info(
            "live push %s -> %s: %d file(s), %d line(s) read, %d loaded, %d rejected",
            self.feed,
            self.table,
            len(summary.files),
            summary.rows_read,
            summary.loaded,
            summary.rejected,
        )
        if summary.rejected > self.max_rejected:
            raise AirflowException(
                f"{summary.rejected} live push line(s) rejected (max_rejected={self.max_rejected}); "
                f"see {summary.rejects_path or 'the task log'}"
            )
        return result
