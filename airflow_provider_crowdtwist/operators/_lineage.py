"""OpenLineage facets of a finished sync: where the rows came from and where they went.

Inputs: the tables the ``sql`` reads -- through common.sql's OpenLineage helper
(``get_openlineage_facets_with_sql``), which knows each database's naming (PostgreSQL, Snowflake...),
or, for a hook that gives no database info (SQLite), the tables the generic SQL parser finds, named in
the connection's namespace -- or the ``source_path`` file. Outputs: the CrowdTwist program's object
(``crowdtwist://<host>`` + ``members`` / ``activities/<id>``, the asset's URI split the OpenLineage
way) with an ``outputStatistics`` facet counting the rows CrowdTwist took, and the rejects file with the
rows written there. Only the openlineage provider calls this, so its imports live here and nowhere
else: the operators run without it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

#: Outcomes in which CrowdTwist took the row (the output dataset's row count).
NOT_WRITTEN = frozenset({"rejected", "failed", "unknown", "skipped", "unchanged"})


def rows_written(summary: Mapping[str, Any]) -> int:
    """Rows CrowdTwist accepted a write for (created, updated, credited, deactivated...)."""
    return sum(int(n) for k, n in dict(summary.get("counts", {})).items() if k not in NOT_WRITTEN)


def file_dataset_name(location: Any) -> tuple[str, str]:
    """``(namespace, name)`` of a file the OpenLineage way: ``("file", "/abs/path")`` for a local path,
    ``("s3://bucket", "key")`` for an object-storage URL."""
    text = str(location)
    if "://" not in text:
        return "file", os.path.abspath(text)
    parts = urlsplit(text)
    if parts.scheme == "file":
        return "file", parts.path
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/")


def sql_inputs(sql: str, sql_conn_id: str, hook_params: Mapping[str, Any] | None) -> list[Any]:
    """The datasets ``sql`` reads on the connection ``sql_conn_id``."""
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.common.compat.openlineage.utils.sql import get_openlineage_facets_with_sql

    from airflow_provider_crowdtwist.operators._source import sql_hook

    hook = sql_hook(sql_conn_id, hook_params)
    try:
        lineage = get_openlineage_facets_with_sql(hook=hook, sql=sql, conn_id=sql_conn_id, database=None)
    except Exception as exc:  # lineage must never fail a sync that succeeded
        log.debug("common.sql lineage for %s failed: %s", sql_conn_id, exc)
        lineage = None
    if lineage is not None and lineage.inputs:
        return list(lineage.inputs)
    # No database info from this hook: the tables the SQL names, in the connection's namespace.
    from airflow.providers.openlineage.sqlparser import SQLParser

    meta = SQLParser(dialect="generic").parse(sql)
    conn = hook.get_connection(sql_conn_id)
    namespace = f"{conn.conn_type}://{conn.host or ''}"
    return [Dataset(namespace=namespace, name=t.qualified_name) for t in (meta.in_tables if meta else [])]


def operator_lineage(op: Any) -> Any:
    """The ``OperatorLineage`` of a sync operator after ``execute`` (``op._summary``, ``op._base_url``)."""
    from airflow.providers.common.compat.openlineage.facet import (
        Dataset,
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
    )
    from airflow.providers.openlineage.extractors import OperatorLineage

    inputs: list[Any] = []
    if op.sql and op.sql_conn_id:
        inputs = sql_inputs(op.sql, op.sql_conn_id, op.sql_hook_params)
    elif op.source_path:
        namespace, name = file_dataset_name(op.source_path)
        inputs = [Dataset(namespace=namespace, name=name)]

    summary = op._summary or {}
    outputs: list[Any] = []
    if op._base_url:
        uri = urlsplit(op._asset_uri(op._base_url))
        outputs.append(
            OutputDataset(
                namespace=f"{uri.scheme}://{uri.netloc}",
                name=uri.path.lstrip("/"),
                outputFacets={
                    "outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=rows_written(summary))
                },
            )
        )
    written = int(summary.get("rejects_written", 0))
    if summary.get("rejects_path") and written:
        namespace, name = file_dataset_name(summary["rejects_path"])
        outputs.append(
            OutputDataset(
                namespace=namespace,
                name=name,
                outputFacets={"outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=written)},
            )
        )
    return OperatorLineage(inputs=inputs, outputs=outputs)
