"""What the sync operators share: argument checks, the summary XCom, and failure reporting.

Kept here so that both operators turn engine errors into Airflow task failures the same way (summary
still pushed to XCom, a clear message, no retry where a retry cannot help). Their client comes from
the hook (``CrowdTwistHook.new_client``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airflow_provider_crowdtwist.client.errors import CrowdTwistConfigError
from airflow_provider_crowdtwist.sync.file_guard import BrokenFileError
from airflow_provider_crowdtwist.sync.summary import (
    STATUSES,
    SyncAbortedError,
    SyncConfigError,
    summary_text,
)

SUMMARY_XCOM_KEY = "summary"


def validate_requests_per_minute(value: Any) -> None:
    """``requests_per_minute`` must be ``None`` (the connection's) or an integer >= 0 (0 = no limit)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"requests_per_minute must be an integer >= 0 (0 = no limit) or None, got {value!r}")


def previous_status(ti: Any) -> str | None:
    """The ``status`` of the summary this task (same map index) left in its previous run, or ``None``.

    Read with ``include_prior_dates=True``: the newest summary of this task in a run whose logical
    date is not after this one's. It must be read BEFORE this run pushes its own (:func:`push_summary`
    does). Airflow 2 and 3 both clear a task instance's XComs when a try starts, so a retry finds the
    previous *run's* summary, not its own earlier try's: "previous" is the previous run, and an alert
    goes out on how a run finally ended, not on each try. ``None`` when there was no earlier run, it
    left no summary, or XCom cannot be read (an alert must not fail a sync).
    """
    pull = getattr(ti, "xcom_pull", None)
    if pull is None:
        return None
    map_index = getattr(ti, "map_index", None)
    try:
        value = pull(
            task_ids=ti.task_id,
            key=SUMMARY_XCOM_KEY,
            include_prior_dates=True,
            map_indexes=map_index if isinstance(map_index, int) else -1,
        )
    except Exception as exc:  # reporting must never fail the sync
        logging.getLogger(__name__).warning("Could not read the previous run's summary: %s", exc)
        return None
    if isinstance(value, list):  # a mapped pull returns a list on some Airflow versions
        value = value[0] if value else None
    status = value.get("status") if isinstance(value, Mapping) else None
    return status if status in STATUSES else None


def push_summary(context: Any, summary: dict[str, Any]) -> None:
    """Push the summary under ``summary``, on success and failure alike (``_outcome.py``).

    Adds ``previous_status`` (:func:`previous_status`, read first) for ``CrowdTwistAlertNotifier``,
    and ``status`` ``ok`` when the summary has none yet.
    """
    ti = (context or {}).get("ti") if hasattr(context, "get") else None
    summary.setdefault("status", "ok")
    if ti is None:
        return
    if "previous_status" not in summary:
        summary["previous_status"] = previous_status(ti)
    try:
        ti.xcom_push(key=SUMMARY_XCOM_KEY, value=summary)
    except Exception as exc:  # reporting must never hide the real failure
        logging.getLogger(__name__).warning("Could not push the summary to XCom: %s", exc)


def parse_time_config(config: Any) -> None:
    """Check a sync config built from the non-template arguments; a bad one fails the DAG's parse.

    The engine's own validation (``config.validate()``) is the one rule; this only says which
    operator argument it is about. The engine checks everything again, rendered, in ``execute``.
    """
    try:
        config.validate()
    except SyncConfigError as exc:
        raise ValueError(argument_message(exc)) from None


def argument_message(error: BaseException) -> str:
    """An engine config error as the operator's user sees it: naming the argument to fix."""
    field = getattr(error, "field", None)
    text = str(error)
    return text if not field or text.startswith(field) else f"argument {field}: {text}"


def push_failure(context: Any, error: BaseException) -> None:
    """Push the summary of a failed run: the engine's (with its counts) or, when the run failed before
    the sync started (a bad argument, the connection), one with no rows -- so that the next run's
    ``previous_status`` is this run's ``failed`` and not the status of an older run."""
    summary = getattr(error, "summary", None)
    data = summary.to_dict() if summary is not None else {"rows_read": 0, "counts": {}}
    ti = context.get("ti") if hasattr(context, "get") else None
    data["status"], data["status_reason"] = "failed", str(error)
    data["text"] = summary_text(str(getattr(ti, "task_id", None) or "sync"), data, str(error))
    push_summary(context, data)


def fail_task(error: BaseException, context: Any) -> BaseException:
    """Map an engine error to the Airflow exception to raise (summary pushed first).

    Configuration errors and bad credentials fail without retry (``AirflowFailException``): a retry
    cannot fix them. Threshold failures are ordinary failures: failed rows may succeed on a retry.
    """
    from airflow_provider_crowdtwist._compat import AirflowException, AirflowFailException

    push_failure(context, error)
    if isinstance(error, SyncConfigError):
        return AirflowFailException(argument_message(error))
    if isinstance(error, (SyncAbortedError, CrowdTwistConfigError, ValueError, BrokenFileError)):
        return AirflowFailException(str(error))
    return AirflowException(str(error))
