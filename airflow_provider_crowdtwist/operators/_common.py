"""What the sync operators share: argument checks, the summary XCom, and failure reporting.

Kept here so that both operators turn engine errors into Airflow task failures the same way (summary
still pushed to XCom, a clear message, no retry where a retry cannot help). Their client comes from
the hook (``CrowdTwistHook.new_client``).
"""

from __future__ import annotations

import logging
from typing import Any

from airflow_provider_crowdtwist.client.errors import CrowdTwistConfigError
from airflow_provider_crowdtwist.sync.summary import SyncAbortedError, SyncConfigError, summary_text

SUMMARY_XCOM_KEY = "summary"


def validate_requests_per_minute(value: Any) -> None:
    """``requests_per_minute`` must be ``None`` (the connection's) or an integer >= 0 (0 = no limit)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"requests_per_minute must be an integer >= 0 (0 = no limit) or None, got {value!r}")


def push_summary(context: Any, summary: dict[str, Any]) -> None:
    """Push the summary under ``summary``, on success and failure alike (``_outcome.py``)."""
    ti = (context or {}).get("ti") if hasattr(context, "get") else None
    if ti is None:
        return
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


def fail_task(error: BaseException, context: Any) -> BaseException:
    """Map an engine error to the Airflow exception to raise (summary pushed first).

    Configuration errors and bad credentials fail without retry (``AirflowFailException``): a retry
    cannot fix them. Threshold failures are ordinary failures: failed rows may succeed on a retry.
    """
    from airflow_provider_crowdtwist._compat import AirflowException, AirflowFailException

    summary = getattr(error, "summary", None)
    if summary is not None:
        data = summary.to_dict()
        ti = context.get("ti") if hasattr(context, "get") else None
        data["text"] = summary_text(str(getattr(ti, "task_id", None) or "sync"), data, str(error))
        push_summary(context, data)
    if isinstance(error, SyncConfigError):
        return AirflowFailException(argument_message(error))
    if isinstance(error, (SyncAbortedError, CrowdTwistConfigError, ValueError)):
        return AirflowFailException(str(error))
    return AirflowException(str(error))
