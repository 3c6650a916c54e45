"""CrowdTwistApiSensor against the sandbox over real HTTP: up, down then up, bad key, missing ids.

``execute()`` is run directly with a minimal context, as Airflow's task runner would call it; the
sandbox's fault switch takes the API down (503) and back up from a timer thread.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest

from airflow_provider_crowdtwist._compat import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)
from airflow_provider_crowdtwist.sensors.crowdtwist import CrowdTwistApiSensor
from airflow_provider_crowdtwist.triggers.crowdtwist import CrowdTwistApiTrigger

pytestmark = pytest.mark.integration


@pytest.fixture
def conn(monkeypatch: pytest.MonkeyPatch, sandbox: Any) -> str:
    payload = {"conn_type": "crowdtwist", "host": sandbox.base_url, "password": sandbox.api_key}
    monkeypatch.setenv("AIRFLOW_CONN_CT_SENSOR", json.dumps(payload))
    return "ct_sensor"


@pytest.fixture
def bad_key_conn(monkeypatch: pytest.MonkeyPatch, sandbox: Any) -> str:
    payload = {"conn_type": "crowdtwist", "host": sandbox.base_url, "password": "not-the-key-8c1e5a"}
    monkeypatch.setenv("AIRFLOW_CONN_CT_SENSOR_BAD", json.dumps(payload))
    return "ct_sensor_bad"


@pytest.fixture
def flip_up_later(sandbox: Any) -> Iterator[Any]:
    """Take the sandbox down now; ``start(seconds)`` brings it back up from a timer thread."""
    sandbox.admin.set_faults(error_rate=1.0, error_status=503)
    timers: list[threading.Timer] = []

    def start(seconds: float) -> None:
        timer = threading.Timer(seconds, lambda: sandbox.admin.set_faults(error_rate=0))
        timers.append(timer)
        timer.start()

    yield start
    for timer in timers:
        timer.cancel()
        timer.join()


def make_sensor(conn_id: str, **kwargs: Any) -> CrowdTwistApiSensor:
    options: dict[str, Any] = {"poke_interval": 0.1, "timeout": 20, "deferrable": False}
    options.update(kwargs)
    return CrowdTwistApiSensor(task_id="wait_for_crowdtwist", crowdtwist_conn_id=conn_id, **options)


def statuses(sandbox: Any) -> dict[str, int]:
    return sandbox.admin.stats()["by_status"]


def test_up(conn: str, sandbox: Any) -> None:
    sensor = make_sensor(conn, activity_ids=["purchase", "signup"])
    assert sensor.poke({}) is True
    sensor.execute({})
    assert statuses(sandbox) == {"200": 2}


def test_down_then_up_keeps_waiting(conn: str, sandbox: Any, flip_up_later: Any) -> None:
    flip_up_later(0.5)
    make_sensor(conn).execute({})
    seen = statuses(sandbox)
    assert seen["200"] == 1
    assert seen["503"] >= 2  # several pokes while down, each a single request (no client retries)


def test_down_until_timeout(conn: str, sandbox: Any) -> None:
    sandbox.admin.set_faults(error_rate=1.0, error_status=503)
    with pytest.raises(AirflowSensorTimeout):
        make_sensor(conn, timeout=0.4).execute({})
    with pytest.raises(AirflowSkipException):
        make_sensor(conn, timeout=0.2, soft_fail=True).execute({})


def test_rate_limited_and_dropped_connections_keep_waiting(conn: str, sandbox: Any) -> None:
    sandbox.admin.set_faults(rate_limit_per_minute=1, rate_limit_burst=1)
    sensor = make_sensor(conn)
    assert sensor.poke({}) is True  # takes the only token
    assert sensor.poke({}) is False  # 429: wait, do not fail
    sandbox.admin.set_faults(rate_limit_per_minute=0, drop_rate=1.0)
    assert sensor.poke({}) is False  # connection closed without an answer: wait
    assert statuses(sandbox) == {"200": 1, "429": 1, "dropped": 1}


def test_bad_key_fails_at_once(bad_key_conn: str, sandbox: Any) -> None:
    sensor = make_sensor(bad_key_conn, timeout=60)
    with pytest.raises(AirflowFailException, match=r"Authentication failed \(HTTP 401\)") as info:
        sensor.execute({})
    assert "not-the-key-8c1e5a" not in str(info.value)
    assert statuses(sandbox) == {"401": 1}


def test_missing_and_inactive_activity_ids_fail_at_once(conn: str, sandbox: Any) -> None:
    sensor = make_sensor(conn, activity_ids="purchase, purchse,legacy_survey", timeout=60)
    with pytest.raises(AirflowFailException) as info:
        sensor.execute({})
    text = str(info.value)
    # GET /v2/activities lists active activities only, so an inactive one is simply absent
    assert "'purchse' (not found)" in text and "'legacy_survey'" in text
    assert "'purchase'" not in text
    assert statuses(sandbox) == {"200": 1}


def test_reschedule_mode(conn: str, sandbox: Any) -> None:
    try:
        from airflow.sdk.exceptions import AirflowRescheduleException
    except ImportError:  # Airflow 2
        from airflow.exceptions import AirflowRescheduleException  # type: ignore[no-redef]

    sandbox.admin.set_faults(error_rate=1.0, error_status=503)
    sensor = make_sensor(conn, mode="reschedule", poke_interval=30)
    ti = mock.Mock(max_tries=0, dag_id="d", task_id="t", run_id="r", map_index=-1)
    ti.get_first_reschedule_date.return_value = None
    # Airflow 2 reads the first try's start from the metadata DB; there is none here
    with mock.patch("airflow.sensors.base._orig_start_date", return_value=None, create=True):
        with pytest.raises(AirflowRescheduleException):
            sensor.execute({"ti": ti})
        sandbox.admin.set_faults(error_rate=0)
        sensor.execute({"ti": ti})


def test_deferrable_up_does_not_defer(conn: str, sandbox: Any) -> None:
    make_sensor(conn, deferrable=True).execute({})
    assert statuses(sandbox) == {"200": 1}


def test_deferrable_down_defers_to_the_trigger(conn: str, sandbox: Any) -> None:
    sandbox.admin.set_faults(error_rate=1.0, error_status=503)
    sensor = make_sensor(conn, deferrable=True, activity_ids=["purchase"], poke_interval=5, timeout=600)
    with pytest.raises(TaskDeferred) as info:
        sensor.execute({})
    deferred = info.value
    assert deferred.method_name == "execute_complete"
    assert isinstance(deferred.trigger, CrowdTwistApiTrigger)
    _, kwargs = deferred.trigger.serialize()
    assert kwargs["crowdtwist_conn_id"] == conn
    assert kwargs["activity_ids"] == ["purchase"]
    assert kwargs["poke_interval"] == 5.0
    assert deferred.timeout is not None and deferred.timeout >= timedelta(seconds=600)
    assert sandbox.api_key not in json.dumps(kwargs)


def test_deferrable_bad_key_fails_before_deferring(bad_key_conn: str) -> None:
    with pytest.raises(AirflowFailException):
        make_sensor(bad_key_conn, deferrable=True).execute({})


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"status": "success", "message": "Connected: 4 active activities"}, None),
        ({"status": "auth_error", "message": "Authentication failed (HTTP 401)"}, AirflowFailException),
        ({"status": "missing_activities", "message": "'x' (not found)"}, AirflowFailException),
        ({"status": "error", "message": "Wrong base URL"}, AirflowFailException),
        ({"status": "timeout", "message": "Gave up"}, AirflowSensorTimeout),
        ({"status": "waiting", "message": "503"}, Exception),
        (None, Exception),
    ],
)
def test_execute_complete_applies_the_same_rules(conn: str, event: Any, expected: Any) -> None:
    sensor = make_sensor(conn, deferrable=True)
    if expected is None:
        assert sensor.execute_complete({}, event) is None
    else:
        with pytest.raises(expected):
            sensor.execute_complete({}, event)


def test_soft_fail_skips_after_resume(conn: str) -> None:
    sensor = make_sensor(conn, deferrable=True, soft_fail=True)
    with pytest.raises(AirflowSkipException):
        sensor.resume_execution("execute_complete", {"event": {"status": "timeout", "message": "x"}}, {})


def test_default_deferrable_follows_airflow_config(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import airflow_provider_crowdtwist.sensors.crowdtwist as module

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    try:
        reloaded = importlib.reload(module)
        assert reloaded.CrowdTwistApiSensor(task_id="s").deferrable is True
    finally:
        monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE")
        importlib.reload(module)
