"""How a sync task ends: volume checks, the summary under one XCom key, and the asset event.

Both operators finish the same way, so alerting and scheduling see one shape whatever the sync:

* the summary (counts, rows read, rejects location) plus a one-line ``text`` is pushed under the
  XCom key ``summary`` on success *and* on failure (``_common.push_summary``), so a notifier template
  reads ``ti.xcom_pull(task_ids=..., key="summary")["text"]`` without caring how the task ended;
* ``min_rows`` / ``max_rejected_ratio`` (``sync/summary.py``) turn an empty source or a mostly
  rejected run into a warning or a failure instead of a quiet success;
* a successful (not dry) run adds one event for the program's asset (``crowdtwist://<host>/members``
  or ``/activities[/<id>]``, see ``assets.py``) with the run's counts in its ``extra``. The host comes
  from the connection, which a DAG file must not read at parse time, so the asset is named at run
  time: on Airflow 3 through the task's default outlet, an asset alias; on Airflow 2 by adding the
  dataset to the running task's outlets. (Airflow 2.10/2.11 cannot take alias events from a DAG its
  scheduler never serialized -- ``airflow dags test`` of a new DAG fails on a ``None`` alias -- while
  a dataset it does not know yet is skipped with a warning.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ALIAS_PREFIX = "crowdtwist"


def alias_name(crowdtwist_conn_id: str, asset_object: str) -> str:
    """The name of a task's default asset alias: one per connection and object."""
    return f"{ALIAS_PREFIX}:{crowdtwist_conn_id}:{asset_object}"


def airflow_3() -> bool:
    from importlib.metadata import version

    return int(version("apache-airflow").split(".")[0]) >= 3


def default_outlets(crowdtwist_conn_id: str, asset_object: str) -> list[Any]:
    """``[AssetAlias(...)]`` on Airflow 3 for a sync task that declares no outlets; none on Airflow 2."""
    if not airflow_3():
        return []
    from airflow.providers.common.compat.sdk import AssetAlias

    return [AssetAlias(alias_name(crowdtwist_conn_id, asset_object))]


def asset_extra(summary: Mapping[str, Any]) -> dict[str, int]:
    """The counts an asset event carries: every outcome's count, rows read, requests, rejects written.

    Flat on purpose: Airflow 2 hashes the values of an extra added through an alias, so a nested
    dict there fails the task after the sync succeeded. Small, JSON, no rows and no secrets.
    """
    extra = {str(k): int(v) for k, v in dict(summary.get("counts", {})).items()}
    extra.update(
        rows_read=int(summary.get("rows_read", 0)),
        requests_sent=int(summary.get("requests_sent", 0)),
        rejects_written=int(summary.get("rejects_written", 0)),
    )
    return extra


def emit_asset_event(
    context: Any, outlets: list[Any], alias: str, uri: str, extra: Mapping[str, Any]
) -> list[Any]:
    """Give the asset ``uri`` an event with ``extra``; returns the task's outlets afterwards.

    Airflow 3: added through the outlet alias named ``alias``. Airflow 2: the dataset joins the
    outlets (Airflow registers outlets after ``execute``) and its event gets the ``extra``. Nothing
    when the context has no outlet events (``execute`` called directly, e.g. in a test).
    """
    from airflow.providers.common.compat.sdk import Asset

    events = context.get("outlet_events") if hasattr(context, "get") else None
    if events is None:
        return outlets
    asset = Asset(uri)
    for outlet in outlets:
        if type(outlet).__name__.endswith("Alias") and getattr(outlet, "name", None) == alias:
            events[outlet].add(asset, extra=dict(extra))
            return outlets
    if airflow_3():
        return outlets
    events[asset].extra.update(extra)
    return [*outlets, asset]
