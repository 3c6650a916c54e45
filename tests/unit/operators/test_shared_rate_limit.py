"""rate_limit_conn_id on the sync operators: ``execute`` for real with a real Redis and the sandbox.

The connection's extra or the task's argument names the Redis connection; a partition then paces at
the program's whole cap in the shared bucket; a name that is no Redis connection fails the task
before the first request; an unreachable Redis runs on the task's own share and the summary says so.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_crowdtwist._compat import AirflowException
from airflow_provider_crowdtwist.operators.activity_credit import CrowdTwistActivityCreditOperator
from airflow_provider_crowdtwist.operators.user_sync import CrowdTwistUserSyncOperator
from tests.redis_server import _free_port

CONN_ID = "crowdtwist_shared_test"
REDIS_ID = "crowdtwist_rate_test"


def context() -> dict[str, Any]:
    class TI:
        def xcom_push(self, key: str, value: Any) -> None:
            json.dumps(value)

    return {"ti": TI()}


def set_conns(
    monkeypatch: pytest.MonkeyPatch, sandbox: Any, redis: dict[str, Any] | None, **extra: Any
) -> None:
    payload = {
        "conn_type": "crowdtwist",
        "host": sandbox.base_url,
        "password": sandbox.api_key,
        "extra": {"id_type": "email", "requests_per_minute": 6000, **extra},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(payload))
    if redis is not None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{REDIS_ID.upper()}", json.dumps(redis))


def member_sync(**kwargs: Any) -> CrowdTwistUserSyncOperator:
    rows = [
        {"user_id": f"sh{i}@example.com", "first_name": "Sh", "last_name": f"L{i}", "postal_code": "02134"}
        for i in range(8)
    ]
    return CrowdTwistUserSyncOperator(task_id="sync_members", crowdtwist_conn_id=CONN_ID, rows=rows, **kwargs)


@pytest.mark.redis
def test_the_connection_extra_gives_a_partition_the_program_s_whole_cap(
    sandbox: Any, redis_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = {"conn_type": "redis", "host": redis_db.host, "port": redis_db.port}
    set_conns(monkeypatch, sandbox, redis, rate_limit_conn_id=REDIS_ID)
    result = member_sync(partition=(0, 2), max_workers=2).execute(context())
    rate = result["rate_limit"]
    assert (
        rate["shared_limiter"]
        == f"redis://{redis_db.host}:{redis_db.port}/0 crowdtwist:rate:127.0.0.1:"
        + (sandbox.base_url.rsplit(":", 1)[1])
    )
    assert rate["configured_requests_per_minute"] == 6000  # the whole cap, not 6000 / 2
    assert rate["shared_limiter_fallback"] is None
    assert result["counts"].get("created", 0) == result["rows_read"] > 0
    assert redis_db.client().exists(rate["shared_limiter"].split(" ", 1)[1]) == 1


@pytest.mark.redis
def test_the_task_argument_wins_and_an_empty_one_turns_it_off(
    sandbox: Any, redis_db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = {"conn_type": "redis", "host": redis_db.host, "port": redis_db.port}
    set_conns(monkeypatch, sandbox, redis, rate_limit_conn_id="no_such_connection")
    shared = member_sync(rate_limit_conn_id=REDIS_ID, max_workers=2).execute(context())
    assert shared["rate_limit"]["shared_limiter"].startswith("redis://")
    alone = member_sync(rate_limit_conn_id="", max_workers=2).execute(context())
    assert "shared_limiter" not in alone["rate_limit"]
    assert alone["rate_limit"]["configured_requests_per_minute"] == 6000


@pytest.mark.parametrize(
    ("redis", "message"),
    [
        (None, "names no Airflow connection"),
        ({"conn_type": "postgres", "host": "127.0.0.1"}, "'postgres' connection, not 'redis'"),
    ],
)
def test_a_name_that_is_no_redis_connection_fails_before_the_first_request(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch, redis: dict[str, Any] | None, message: str
) -> None:
    monkeypatch.delenv(f"AIRFLOW_CONN_{REDIS_ID.upper()}", raising=False)
    set_conns(monkeypatch, sandbox, redis, rate_limit_conn_id=REDIS_ID)
    for task in (
        member_sync(),
        CrowdTwistActivityCreditOperator(
            task_id="credits",
            crowdtwist_conn_id=CONN_ID,
            rows=[{"user_id": "a@example.com", "points": 1}],
            activity_id="purchase",
            points_column="points",
            allow_duplicates=True,
        ),
    ):
        with pytest.raises(AirflowException, match=message):
            task.execute(context())
    assert sandbox.admin.stats()["total"] == 0


def test_an_unreachable_redis_runs_on_the_task_s_share_and_says_so(
    sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = {"conn_type": "redis", "host": "127.0.0.1", "port": _free_port()}
    set_conns(monkeypatch, sandbox, redis, rate_limit_conn_id=REDIS_ID)
    result = member_sync(partition=(1, 2), max_workers=2).execute(context())
    rate = result["rate_limit"]
    assert "unreachable at start" in rate["shared_limiter_fallback"]
    assert (
        "paced alone at 3000 requests/min (this task's share of 6000/min)" in rate["shared_limiter_fallback"]
    )
    assert result["counts"].get("created", 0) == result["rows_read"] > 0
