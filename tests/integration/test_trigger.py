"""CrowdTwistApiTrigger: serialization, and ``run()`` driven against the sandbox over real HTTP.

``run()`` is consumed to the end on a real event loop, as the triggerer would, while the sandbox
flips from 503 to 200 on a timer thread.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
import time
from typing import Any

import pytest

from airflow_provider_crowdtwist.triggers.crowdtwist import CrowdTwistApiTrigger

pytestmark = pytest.mark.integration


@pytest.fixture
def conn(monkeypatch: pytest.MonkeyPatch, sandbox: Any) -> str:
    payload = {"conn_type": "crowdtwist", "host": sandbox.base_url, "password": sandbox.api_key}
    monkeypatch.setenv("AIRFLOW_CONN_CT_TRIGGER", json.dumps(payload))
    return "ct_trigger"


def run_to_end(trigger: CrowdTwistApiTrigger, *, heartbeat: list[float] | None = None) -> list[Any]:
    """Consume ``trigger.run()`` completely; optionally tick a heartbeat coroutine beside it."""

    async def main() -> list[Any]:
        stop = asyncio.Event()

        async def beat() -> None:
            while not stop.is_set():
                if heartbeat is not None:
                    heartbeat.append(time.monotonic())
                await asyncio.sleep(0.01)

        beater = asyncio.create_task(beat())
        try:
            return [event async for event in trigger.run()]
        finally:
            stop.set()
            await beater

    return asyncio.run(main())


def test_serialize_round_trips() -> None:
    trigger = CrowdTwistApiTrigger("ct_x", activity_ids=["purchase", 7], poke_interval=15, end_time=1e9)
    classpath, kwargs = trigger.serialize()
    module_name, _, class_name = classpath.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    assert cls is CrowdTwistApiTrigger
    # what the triggerer stores must survive JSON (the metadata DB column) unchanged
    restored = cls(**json.loads(json.dumps(kwargs)))
    assert restored.serialize() == (classpath, kwargs)
    assert kwargs == {
        "crowdtwist_conn_id": "ct_x",
        "activity_ids": ["purchase", "7"],
        "poke_interval": 15.0,
        "end_time": 1e9,
    }


def test_run_waits_through_503_then_succeeds(conn: str, sandbox: Any) -> None:
    sandbox.admin.set_faults(error_rate=1.0, error_status=503)
    timer = threading.Timer(0.5, lambda: sandbox.admin.set_faults(error_rate=0))
    timer.start()
    try:
        events = run_to_end(
            CrowdTwistApiTrigger(conn, ["purchase"], poke_interval=0.1, end_time=time.time() + 30)
        )
    finally:
        timer.cancel()
        timer.join()
    assert len(events) == 1
    payload = events[0].payload
    assert payload["status"] == "success"
    assert payload["activity_count"] >= 1
    assert json.loads(json.dumps(payload)) == payload
    seen = sandbox.admin.stats()["by_status"]
    assert seen["200"] == 1 and seen["503"] >= 2


def test_run_does_not_block_the_event_loop(conn: str, sandbox: Any) -> None:
    # each request is held 600 ms by the sandbox; a blocking call would freeze the heartbeat for that long
    sandbox.admin.set_faults(latency_ms=600)
    beats: list[float] = []
    started = time.monotonic()
    events = run_to_end(CrowdTwistApiTrigger(conn, poke_interval=0.1), heartbeat=beats)
    elapsed = time.monotonic() - started
    assert events[0].payload["status"] == "success"
    assert elapsed >= 0.6
    during = [t for t in beats if started + 0.1 < t < started + 0.5]
    assert len(during) >= 5, f"heartbeat ticked {len(during)} times while the request was in flight"


def test_run_reports_auth_error_without_secret(monkeypatch: pytest.MonkeyPatch, sandbox: Any) -> None:
    wrong = "wrong-trigger-key-31d7"
    payload = {"conn_type": "crowdtwist", "host": sandbox.base_url, "password": wrong}
    monkeypatch.setenv("AIRFLOW_CONN_CT_TRIGGER_BAD", json.dumps(payload))
    events = run_to_end(CrowdTwistApiTrigger("ct_trigger_bad", poke_interval=0.1))
    assert [e.payload["status"] for e in events] == ["auth_error"]
    assert events[0].payload["http_status"] == 401
    assert wrong not in json.dumps(events[0].payload)


def test_run_reports_missing_activities(conn: str, sandbox: Any) -> None:
    events = run_to_end(CrowdTwistApiTrigger(conn, ["purchase", "nope"], poke_interval=0.1))
    assert events[0].payload["status"] == "missing_activities"
    assert events[0].payload["missing_activity_ids"] == ["nope"]


def test_run_times_out_with_last_answer(conn: str, sandbox: Any) -> None:
    sandbox.admin.set_faults(error_rate=1.0, error_status=503)
    events = run_to_end(CrowdTwistApiTrigger(conn, poke_interval=0.1, end_time=time.time() + 0.4))
    assert len(events) == 1
    assert events[0].payload["status"] == "timeout"
    assert "503" in events[0].payload["message"]


def test_run_reports_an_unknown_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_CT_TRIGGER_NONE", raising=False)
    events = run_to_end(CrowdTwistApiTrigger("ct_trigger_none", poke_interval=0.1))
    assert events[0].payload["status"] == "error"
    assert "ct_trigger_none" in events[0].payload["message"]
