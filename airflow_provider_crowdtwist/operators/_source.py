"""Source arguments shared by the sync operators -> DataFrame chunks for the engine.

Both operators take the same three kinds of source -- ``sql`` + ``sql_conn_id`` (any common.sql
connection), ``rows`` (a DataFrame, a list of dicts, an XCom) or ``source_path`` (a local file or an
object-storage URL) -- and this module turns them into the engine's input: an iterator of DataFrame
chunks. It is the only place that knows about Airflow connections and ``ObjectStoragePath``, which
keeps ``sync/`` free of Airflow.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_crowdtwist.sync.lazy import LazyModule
from airflow_provider_crowdtwist.sync.sources import DEFAULT_CHUNKSIZE, OnBadLines, SourceItem, iter_chunks

if TYPE_CHECKING:
    import pandas as pd
else:  # imported on first use: parsing a DAG must not pay for pandas (see sync/lazy.py)
    pd = LazyModule("pandas", globals(), "pd")


def validate_source_args(
    *, sql: str | None, sql_conn_id: str | None, rows: Any, source_path: Any, chunksize: int
) -> None:
    """Exactly one source must be given, and ``sql`` needs ``sql_conn_id``; fail with the field's name.

    Runs in the operator's ``__init__`` (a DAG with a bad source never gets scheduled) for the
    arguments that cannot change at render time; templated values are re-checked in ``execute``.
    """
    given = [
        name
        for name, value in (("sql", sql), ("rows", rows), ("source_path", source_path))
        if value is not None
    ]
    if len(given) != 1:
        raise ValueError(
            "Give exactly one source: sql (with sql_conn_id), rows, or source_path; "
            f"got {', '.join(given) if given else 'none'}"
        )
    if sql is not None and not sql_conn_id:
        raise ValueError("sql_conn_id is required when sql is given")
    if sql is None and sql_conn_id:
        raise ValueError("sql_conn_id is given but sql is not")
    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise ValueError(f"chunksize must be a positive integer, got {chunksize!r}")


def resolve_path(path: Any) -> Any:
    """A local path stays a string; a URL (``s3://``, ``gs://``, ``file://``...) becomes an
    ``ObjectStoragePath``, so a URL always takes the object-storage route (connections via
    ``conn_id@``, fsspec options) whatever its scheme.

    Path-like objects that already have ``.open()`` are returned unchanged.
    """
    if path is None:
        return None
    if not isinstance(path, str):
        return path
    text = path.strip()
    if "://" in text:
        from airflow.providers.common.compat.sdk import ObjectStoragePath

        return ObjectStoragePath(text)
    return text


def parse_rows(rows: Any) -> Any:
    """Turn the ``rows`` argument into something ``iter_chunks`` reads.

    A rendered template arrives as a string: JSON is accepted, and so is a Python literal (what
    Jinja renders for a list of dicts pulled from XCom), parsed with ``ast.literal_eval`` (never
    ``eval``). A lazy XCom sequence is materialised as a list of dicts.
    """
    if isinstance(rows, str):
        text = rows.strip()
        if not text:
            return []
        try:
            return json.loads(text)
        except ValueError:
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise ValueError(
                    "rows: a string must be JSON or a Python literal list of dicts (as rendered from an XCom)"
                ) from None
    if isinstance(rows, (pd.DataFrame, list, tuple, Mapping)):
        return rows
    if hasattr(rows, "__iter__"):
        return list(rows)
    raise ValueError(f"rows: expected a DataFrame, a list of dicts or an XCom, got {type(rows).__name__}")


def sql_hook(sql_conn_id: str, hook_params: Mapping[str, Any] | None = None) -> Any:
    """The common.sql hook of ``sql_conn_id``, built with ``hook_params`` (e.g. a Snowflake warehouse
    or role, a BigQuery location); ``ValueError`` when the connection is not a database one."""
    from airflow.providers.common.compat.sdk import BaseHook
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    if hook_params is not None and not isinstance(hook_params, Mapping):
        raise ValueError(f"sql_hook_params must be a dict, got {type(hook_params).__name__}")
    hook = BaseHook.get_connection(sql_conn_id).get_hook(hook_params=dict(hook_params or {}))
    if not isinstance(hook, DbApiHook):
        raise ValueError(
            f"sql_conn_id {sql_conn_id!r}: its hook {type(hook).__name__} is not a DbApiHook (common.sql); "
            "use a database connection"
        )
    return hook


def sql_chunks(
    sql: str,
    sql_conn_id: str,
    *,
    parameters: Any = None,
    chunksize: int = DEFAULT_CHUNKSIZE,
    hook_params: Mapping[str, Any] | None = None,
) -> Iterator[pd.DataFrame]:
    """Run ``sql`` on any common.sql connection and yield pandas chunks (never the whole result).

    The connection's hook must be a ``DbApiHook``; its ``get_df_by_chunks`` (common-sql >= 1.26)
    streams the result (``df_type="pandas"`` is asked for explicitly: common-sql also offers polars).
    """
    hook = sql_hook(sql_conn_id, hook_params)
    yield from hook.get_df_by_chunks(sql, parameters=parameters, chunksize=chunksize, df_type="pandas")


def source_chunks(
    *,
    sql: str | None = None,
    sql_conn_id: str | None = None,
    sql_hook_params: Mapping[str, Any] | None = None,
    parameters: Any = None,
    rows: Any = None,
    source_path: Any = None,
    chunksize: int = DEFAULT_CHUNKSIZE,
    file_format: str | None = None,
    on_bad_lines: OnBadLines = "fail",
) -> Iterator[SourceItem]:
    """The operator's source arguments -> an iterator of DataFrame chunks of at most ``chunksize`` rows
    (and, for a file read with ``on_bad_lines="reject"``, its unreadable lines between them)."""
    if isinstance(sql, str) and not sql.strip():
        sql = None
    if isinstance(source_path, str) and not source_path.strip():
        source_path = None
    validate_source_args(
        sql=sql, sql_conn_id=sql_conn_id, rows=rows, source_path=source_path, chunksize=chunksize
    )
    if sql is not None:
        return iter_chunks(
            sql_chunks(
                sql,
                str(sql_conn_id),
                parameters=parameters,
                chunksize=chunksize,
                hook_params=sql_hook_params,
            ),
            chunksize,
        )
    if rows is not None:
        return iter_chunks(parse_rows(rows), chunksize)
    return iter_chunks(
        resolve_path(source_path), chunksize, file_format=file_format, on_bad_lines=on_bad_lines
    )
