"""Which message, if any, a change of a sync's status deserves: the rule behind alerts that fire once.

A failing daily sync that mails on every run teaches its readers to ignore the mail. A sync has three
statuses -- ``ok``, ``degraded`` (it ran, but above the ``degraded`` threshold of rejected rows) and
``failed`` -- and a message goes out only when the status differs from the previous run's: one when it
gets worse or changes, one "recovered" when it is ``ok`` again, nothing on a repeat. Plain Python, no
Airflow import, so the rule is tested without a scheduler.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

Status = Literal["ok", "degraded", "failed"]
Alert = Literal["failed", "degraded", "recovered"]
STATUSES: tuple[Status, ...] = ("ok", "degraded", "failed")


def status_of(summary: Mapping[str, Any] | None, *, task_failed: bool) -> Status:
    """The status of one run: ``failed`` when the task failed, else what the summary says (``ok``).

    A task can fail before it wrote any summary (a bad connection id): that is ``failed`` too.
    """
    if task_failed:
        return "failed"
    status = (summary or {}).get("status")
    return status if status in STATUSES else "ok"


def previous_status_of(summary: Mapping[str, Any] | None) -> Status | None:
    """The status of the run before, as the operator recorded it in this run's summary.

    ``None`` when there was no earlier run (or it left no summary): the first run is compared with
    ``ok``, so a first run that fails alerts and a first run that succeeds says nothing.
    """
    previous = (summary or {}).get("previous_status")
    return previous if previous in STATUSES else None


def alert_for(previous: Status | None, current: Status) -> Alert | None:
    """The message a change deserves: the new status, ``recovered``, or ``None`` for a repeat."""
    before = previous or "ok"
    if current == before:
        return None
    if current == "ok":
        return "recovered"
    return current
