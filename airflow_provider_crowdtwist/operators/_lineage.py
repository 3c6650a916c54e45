"""OpenLineage facets of a finished sync: where the rows came from, how, and where they went.

Inputs: the tables the ``sql`` reads -- through common.sql's OpenLineage helper
(``get_openlineage_facets_with_sql``), which knows each database's naming (PostgreSQL, Snowflake...),
or, for a hook that gives no database info (SQLite), the tables the generic SQL parser finds, named in
the connection's namespace -- or the ``source_path`` file. A single input carries an
``inputStatistics`` facet with the rows the sync read; with several (a join) the rows read belong to
the query, not to any one table, so none is claimed. The job carries the ``sql`` facet (the query, as
common.sql gives it, or normalized the same way). Outputs: the CrowdTwist program's object
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


def sql_lineage(
    sql: str, sql_conn_id: str, hook_params: Mapping[str, Any] | None
) -> tuple[list[Any], dict[str, Any]]:
    """``(inputs, job_facets)`` of ``sql`` on the connection ``sql_conn_id``: the datasets it reads and
    the ``sql`` job facet (``SQLJobFacet``) with the query."""
    from airflow.providers.common.compat.openlineage.facet import Dataset, SQLJobFacet
    from airflow.providers.common.compat.openlineage.utils.sql import get_openlineage_facets_with_sql
    from airflow.providers.openlineage.sqlparser import SQLParser

    from airflow_provider_crowdtwist.operators._source import sql_hook

    hook = sql_hook(sql_conn_id, hook_params)
    try:
        lineage = get_openlineage_facets_with_sql(hook=hook, sql=sql, conn_id=sql_conn_id, database=None)
    except Exception as exc:  # lineage must never fail a sync that succeeded
        log.debug("common.sql lineage for %s failed: %s", sql_conn_id, exc)
        lineage = None
    job_facets = dict(getattr(lineage, "job_facets", None) or {})
    job_facets.setdefault("sql", SQLJobFacet(query=SQLParser.normalize_sql(sql)))
    if lineage is not None and lineage.inputs:
        return list(lineage.inputs), job_facets
    # No database info from this hook: the tables the SQL names, in the connection's namespace.
    meta = SQLParser(dialect="generic").parse(sql)
    conn = hook.get_connection(sql_conn_id)
    namespace = f"{conn.conn_type}://{conn.host or ''}"
    inputs = [Dataset(namespace=namespace, name=t.qualified_name) for t in (meta.in_tables if meta else [])]
    return inputs, job_facets


def with_rows_read(inputs: list[Any], summary: Mapping[str, Any]) -> list[Any]:
    """``inputs`` as ``InputDataset``s; a single one with an ``inputStatistics`` facet (rows read).

    The rows a sync read are the query's (or the file's): with one input dataset they are that
    dataset's, with several (a join) no single table read them, so no count is claimed.
    """
    from airflow.providers.common.compat.openlineage.facet import InputDataset

    rows_read = summary.get("rows_read")
    statistics: dict[str, Any] = {}
    if len(inputs) == 1 and isinstance(rows_read, int) and not isinstance(rows_read, bool):
        try:  # absent from old openlineage-python releases: then the datasets come without the count
            from openlineage.client.generated.input_statistics_input_dataset import (
                InputStatisticsInputDatasetFacet,
            )
        except ImportError:
            pass
        else:
            statistics = {"inputStatistics": InputStatisticsInputDatasetFacet(rowCount=rows_read)}
    out: list[Any] = []
    for dataset in inputs:
        facets = dict(getattr(dataset, "facets", None) or {})
        input_facets = {**dict(getattr(dataset, "inputFacets", None) or {}), **statistics}
        out.append(
            InputDataset(
                namespace=dataset.namespace, name=dataset.name, facets=facets, inputFacets=input_facets
            )
        )
    return out


def operator_lineage(op: Any) -> Any:
    """The ``OperatorLineage`` of a sync operator after ``execute`` (``op._summary``, ``op._base_url``)."""
    from airflow.providers.common.compat.openlineage.facet import (
        Dataset,
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
    )
    from airflow.providers.openlineage.extractors import OperatorLineage

    inputs: list[Any] = []
    job_facets: dict[str, Any] = {}
    if op.sql and op.sql_conn_id:
        inputs, job_facets = sql_lineage(op.sql, op.sql_conn_id, op.sql_hook_params)
    elif op.source_path:
        namespace, name = file_dataset_name(op.source_path)
        inputs = [Dataset(namespace=namespace, name=name)]

    summary = op._summary or {}
    inputs = with_rows_read(inputs, summary)
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
    return OperatorLineage(inputs=inputs, outputs=outputs, job_facets=job_facets)
