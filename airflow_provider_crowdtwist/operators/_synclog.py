"""The operator side of the sync log and the calls sample: Airflow connection -> ``SyncLog``.

The engine (``sync/synclog.py``) writes over any DB-API connection and knows nothing of Airflow; this
module turns ``log_conn_id`` (any common.sql connection) into the connection factory, the SQL
dialect and the driver's ``paramstyle`` it needs, and the task instance into the run's key (a retry
is its own try). See docs/sync-log.md.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from airflow_provider_crowdtwist.operators._source import resolve_path, sql_hook
from airflow_provider_crowdtwist.sync.partition import active_partition
from airflow_provider_crowdtwist.sync.synclog import RunKey, SyncLog, validate_prefix

#: common.sql connection types whose SQL the sync log speaks natively; others get generic types.
DIALECTS = {"postgres": "postgresql", "postgresql": "postgresql", "sqlite": "sqlite"}
DEFAULT_PREFIX = "crowdtwist_sync"


def validate_log_arguments(log_table_prefix: Any, calls_per_class: Any) -> None:
    """Parse-time checks of the literal arguments (templated ones wait for execute)."""
    if isinstance(log_table_prefix, str) and "{{" not in log_table_prefix:
        try:
            validate_prefix(log_table_prefix)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
    if isinstance(calls_per_class, bool) or not isinstance(calls_per_class, int) or calls_per_class < 0:
        raise ValueError(f"calls_per_class must be an integer >= 0, got {calls_per_class!r}")


def run_key(context: Any) -> RunKey:
    """The task try this run is (``map_index`` -1 when not mapped)."""
    ti = context.get("ti") if hasattr(context, "get") else None
    if ti is None:  # execute() called directly (tests): one anonymous run
        return RunKey("manual", "manual", "manual", -1, 1)
    map_index = getattr(ti, "map_index", -1)
    return RunKey(
        str(ti.dag_id),
        str(ti.run_id),
        str(ti.task_id),
        -1 if map_index is None else int(map_index),
        int(getattr(ti, "try_number", 1) or 1),
    )


def paramstyle_of(connection: Any) -> str:
    """The DB-API ``paramstyle`` of the driver that made ``connection`` (psycopg2: pyformat...)."""
    module = sys.modules.get(type(connection).__module__.split(".")[0])
    return str(getattr(module, "paramstyle", "qmark"))


def build_sync_log(
    log_conn_id: str,
    *,
    prefix: str,
    context: Any,
    sync_kind: str,
    program_host: str,
    partition: Any,
    log_unchanged: bool,
    redact: Any,
) -> SyncLog:
    """The run's :class:`SyncLog` on ``log_conn_id`` (not opened: the engine opens it before sending)."""
    hook = sql_hook(log_conn_id)
    conn_type = str(getattr(hook.get_connection(log_conn_id), "conn_type", "") or "").lower()
    probe = hook.get_conn()
    try:
        paramstyle = paramstyle_of(probe)
    finally:
        probe.close()
    part = active_partition(partition)
    return SyncLog(
        hook.get_conn,
        dialect=DIALECTS.get(conn_type, "generic"),
        paramstyle=paramstyle,
        prefix=validate_prefix(prefix),
        key=run_key(context),
        sync_kind=sync_kind,
        program_host=program_host,
        partition=f"{part.index}/{part.count}" if part is not None else None,
        log_unchanged=log_unchanged,
        redact=redact,
    )


def with_run_services(op: Any, config: Any, client: Any, context: Any, sync_kind: str) -> Any:
    """``config`` with the sync log and the calls sample the operator's arguments ask for."""
    from airflow_provider_crowdtwist.assets import program_host

    sync_log = None
    if op.log_conn_id:
        sync_log = build_sync_log(
            op.log_conn_id,
            prefix=op.log_table_prefix,
            context=context,
            sync_kind=sync_kind,
            # the program (its API host), also for the POS syncs whose client talks to the POS host
            program_host=program_host(op._base_url or client.config.base_url),
            partition=op.partition,
            log_unchanged=op.log_unchanged,
            redact=client.redact,
        )
    return dataclasses.replace(
        config,
        sync_log=sync_log,
        calls_path=resolve_path(op.calls_path) if op.calls_path else None,
        calls_per_class=op.calls_per_class,
        calls_pii=op.calls_pii,
    )
