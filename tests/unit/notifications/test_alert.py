"""The alert rule (one message per change, "recovered" once) and the notifier that applies it."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_crowdtwist.notifications import CrowdTwistAlertNotifier
from airflow_provider_crowdtwist.notifications.status import alert_for, previous_status_of, status_of


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        (None, "ok", None),
        (None, "failed", "failed"),
        (None, "degraded", "degraded"),
        ("ok", "ok", None),
        ("ok", "degraded", "degraded"),
        ("degraded", "failed", "failed"),
        ("failed", "failed", None),
        ("failed", "degraded", "degraded"),
        ("failed", "ok", "recovered"),
        ("degraded", "ok", "recovered"),
        ("degraded", "degraded", None),
    ],
)
def test_alert_only_on_change(previous: Any, current: Any, expected: Any) -> None:
    assert alert_for(previous, current) == expected


def test_status_read_from_the_summary_and_the_task() -> None:
    assert status_of({"status": "degraded"}, task_failed=False) == "degraded"
    assert status_of({"status": "degraded"}, task_failed=True) == "failed"
    assert status_of(None, task_failed=False) == "ok"
    assert status_of({"status": "bogus"}, task_failed=False) == "ok"
    assert previous_status_of({"previous_status": "failed"}) == "failed"
    assert previous_status_of({"previous_status": None}) is None
    assert previous_status_of(None) is None


class FakeTI:
    def __init__(self, summary: dict[str, Any] | None, state: str = "success") -> None:
        self.summary = summary
        self.state = state
        self.dag_id, self.task_id, self.map_index = "d", "t", -1
        self.pulls: list[dict[str, Any]] = []

    def xcom_pull(self, **kwargs: Any) -> Any:
        self.pulls.append(kwargs)
        return self.summary


def run(notifier: CrowdTwistAlertNotifier, ti: FakeTI, exception: Exception | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {"ti": ti, "task_instance": ti}
    if exception is not None:
        context["exception"] = exception
    notifier.notify(context)
    return context


def test_sequence_failed_repeat_recovered() -> None:
    sent: list[dict[str, Any]] = []
    notifier = CrowdTwistAlertNotifier(lambda ctx: sent.append(dict(ctx["crowdtwist_alert"])))
    run(notifier, FakeTI({"status": "failed", "previous_status": "ok", "text": "x: FAILED"}, "failed"))
    run(notifier, FakeTI({"status": "failed", "previous_status": "failed"}, "failed"))
    run(notifier, FakeTI({"status": "ok", "previous_status": "failed", "text": "x: ok"}))
    run(notifier, FakeTI({"status": "ok", "previous_status": "ok"}))
    assert [s["kind"] for s in sent] == ["failed", "recovered"]
    assert sent[0]["text"] == "x: FAILED"
    assert sent[1]["previous_status"] == "failed"


def test_failure_without_a_summary_still_alerts() -> None:
    sent: list[Any] = []
    notifier = CrowdTwistAlertNotifier(lambda ctx: sent.append(ctx["crowdtwist_alert"]))
    run(notifier, FakeTI(None, "running"), exception=ValueError("bad conn"))
    assert sent and sent[0]["kind"] == "failed"
    assert "ValueError" in sent[0]["text"]


def test_alert_on_filters_and_mapped_pull() -> None:
    sent: list[Any] = []
    notifier = CrowdTwistAlertNotifier(lambda ctx: sent.append(ctx), alert_on=("failed",))
    ti = FakeTI({"status": "ok", "previous_status": "failed"})
    ti.map_index = 3
    run(notifier, ti)
    assert sent == []
    assert ti.pulls[0]["map_indexes"] == 3


def test_bad_arguments() -> None:
    with pytest.raises(TypeError):
        CrowdTwistAlertNotifier("smtp")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alert_on"):
        CrowdTwistAlertNotifier(print, alert_on=("sometimes",))  # type: ignore[arg-type]
