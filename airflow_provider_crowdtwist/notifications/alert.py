"""``CrowdTwistAlertNotifier``: any Airflow notifier, called only when a sync's status changes.

Wrap the notifier you already use (``SmtpNotifier``, ``SlackNotifier``, ``PagerdutyNotifier``...) and
give the wrapper as both ``on_success_callback`` and ``on_failure_callback`` of a sync task. It sends
one message when the status changes (``ok`` -> ``degraded`` -> ``failed``), one ``recovered`` message
when the sync is ``ok`` again, and nothing while the status repeats (see ``status.py`` for the rule).

The previous status comes from Airflow itself: the operator reads the previous run's ``summary`` XCom
(``operators/_common.previous_status``, just before it pushes its own) and records its status in its
own summary as ``previous_status`` -- a callback cannot read a run other than its own in Airflow 3, an
operator can. Airflow clears a task instance's XComs when a try starts, so for a retry "previous" is
the previous DAG run, never an earlier try of the same run: messages follow how runs finally end.
The wrapped notifier's templates see ``crowdtwist_alert`` in their context: ``kind`` (``failed`` |
``degraded`` | ``recovered``), ``status``, ``previous_status`` and ``text`` (the summary's one line).

.. seealso:: ``docs/airflow-integration.md`` (alerts) and the example DAG
   ``crowdtwist_member_sync_alerts``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from airflow.providers.common.compat.sdk import BaseNotifier

from airflow_provider_crowdtwist.notifications.status import (
    Alert,
    alert_for,
    previous_status_of,
    status_of,
)

log = logging.getLogger(__name__)

SUMMARY_KEY = "summary"


class CrowdTwistAlertNotifier(BaseNotifier):
    """Forward to ``notifier`` only when the sync's status differs from the previous run's.

    :param notifier: the Airflow notifier (or any callable taking the context) that sends the message.
    :param alert_on: which changes send a message; by default all three (``failed``, ``degraded``,
        ``recovered``).
    """

    template_fields = ()

    def __init__(
        self,
        notifier: Callable[..., Any],
        *,
        alert_on: tuple[Alert, ...] = ("failed", "degraded", "recovered"),
    ) -> None:
        super().__init__()
        if not callable(notifier):
            raise TypeError(f"notifier must be an Airflow notifier or a callable, got {notifier!r}")
        unknown = sorted(set(alert_on) - {"failed", "degraded", "recovered"})
        if unknown:
            raise ValueError(
                f"alert_on: unknown change(s) {unknown}; choose from failed, degraded, recovered"
            )
        self.notifier = notifier
        self.alert_on = tuple(alert_on)

    def notify(self, context: Any) -> None:
        ti = context.get("ti") or context.get("task_instance")
        summary = _own_summary(ti)
        failed = context.get("exception") is not None or _state(ti) in ("failed", "upstream_failed")
        current = status_of(summary, task_failed=failed)
        previous = previous_status_of(summary)
        kind = alert_for(previous, current)
        if kind is None or kind not in self.alert_on:
            log.info("CrowdTwist alert: status %s, before %s: no message", current, previous or "none")
            return
        context["crowdtwist_alert"] = {
            "kind": kind,
            "status": current,
            "previous_status": previous,
            "text": (summary or {}).get("text") or _fallback_text(context, current),
        }
        log.info("CrowdTwist alert: %s (status %s, was %s)", kind, current, previous or "ok")
        self.notifier(context)


def _own_summary(ti: Any) -> Mapping[str, Any] | None:
    """This task instance's summary XCom, or ``None`` when it left none (it failed before the sync)."""
    if ti is None:
        return None
    kwargs: dict[str, Any] = {"task_ids": ti.task_id, "key": SUMMARY_KEY}
    map_index = getattr(ti, "map_index", -1)
    if map_index is not None and map_index >= 0:
        kwargs["map_indexes"] = map_index
    try:
        value = ti.xcom_pull(**kwargs)
    except Exception as exc:  # an alert must still go out when XCom cannot be read
        log.warning("CrowdTwist alert: could not read this run's summary: %s", exc)
        return None
    if isinstance(value, list):  # some Airflow versions return a list for a mapped pull
        value = value[0] if value else None
    return value if isinstance(value, Mapping) else None


def _state(ti: Any) -> str:
    state = getattr(ti, "state", None)
    return str(getattr(state, "value", state) or "")


def _fallback_text(context: Any, status: str) -> str:
    ti = context.get("ti") or context.get("task_instance")
    where = f"{ti.dag_id}.{ti.task_id}" if ti is not None else "a CrowdTwist sync"
    exc = context.get("exception")
    return f"{where}: {status}" + (f" ({type(exc).__name__})" if exc is not None else "")
