"""rate_limit_conn_id: a Redis connection into the shared limiter; every bad setting fails up front.

Connections are real Airflow connections from ``AIRFLOW_CONN_*`` variables; Redis is a real server.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from airflow_provider_crowdtwist.client.errors import CrowdTwistConfigError
from airflow_provider_crowdtwist.hooks.rate_limit import redis_client_for, shared_rate_limiter

BASE = "https://acme.crowdtwist.test/v2"


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def limiter(conn_id: str, **kw: Any) -> Any:
    options: dict[str, Any] = {
        "base_url": BASE,
        "requests_per_minute": 10_000,
        "fallback_requests_per_minute": 2_500,
        "fallback_note": "10000/min / 4 partitions",
        **kw,
    }
    return shared_rate_limiter(conn_id, **options)


def test_a_name_that_is_no_connection_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_REDIS", raising=False)
    with pytest.raises(CrowdTwistConfigError, match="'no_such_redis' names no Airflow connection"):
        limiter("no_such_redis")


def test_a_connection_that_is_not_redis_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, "pg_not_redis", conn_type="postgres", host="127.0.0.1", password="s3cret-pw")
    with pytest.raises(CrowdTwistConfigError, match="'postgres' connection, not 'redis'") as err:
        limiter("pg_not_redis")
    assert "s3cret-pw" not in str(err.value)


def test_no_cap_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, "rl_redis", conn_type="redis", host="127.0.0.1", port=1)
    with pytest.raises(CrowdTwistConfigError, match="needs the program's cap"):
        limiter("rl_redis", requests_per_minute=0)


def test_bad_db_extra_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, "rl_redis", conn_type="redis", host="127.0.0.1", extra={"db": "zero"})
    with pytest.raises(CrowdTwistConfigError, match="extra 'db' must be an integer"):
        redis_client_for("rl_redis")


@pytest.mark.redis
def test_a_redis_connection_gives_a_shared_limiter(monkeypatch: pytest.MonkeyPatch, redis_db: Any) -> None:
    where = {"host": redis_db.host, "port": redis_db.port}
    set_conn(monkeypatch, "rl_redis", conn_type="redis", **where, extra={"db": 3})
    shared = limiter("rl_redis")
    assert shared.shared
    assert shared.where == f"redis://{redis_db.host}:{redis_db.port}/3"
    shared.acquire()
    assert redis_db.client(db=3).exists("crowdtwist:rate:acme.crowdtwist.test") == 1
    stats = shared.stats()
    assert stats["configured_requests_per_minute"] == 10_000
    assert stats["shared_limiter_fallback"] is None


def test_an_unreachable_redis_falls_back_instead_of_failing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.redis_server import _free_port

    set_conn(monkeypatch, "rl_gone", conn_type="redis", host="127.0.0.1", port=_free_port(), password="pw-x9")
    with caplog.at_level(logging.WARNING):
        shared = limiter("rl_gone")
    assert not shared.shared
    assert shared.fallback.requests_per_minute == 2_500
    assert "2500 requests/min (10000/min / 4 partitions)" in caplog.text
    assert "pw-x9" not in caplog.text and "pw-x9" not in str(shared.stats())


def test_the_extra_must_be_a_connection_id(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_crowdtwist.hooks.crowdtwist import CrowdTwistHook

    extra = {"rate_limit_conn_id": 5}
    set_conn(monkeypatch, "ct_bad_rate", conn_type="crowdtwist", host=BASE, password="k-123", extra=extra)
    refused = r"extra 'rate_limit_conn_id' must be (text|a connection)"
    with pytest.raises(CrowdTwistConfigError, match=refused):
        CrowdTwistHook("ct_bad_rate").new_client()


@pytest.mark.redis
def test_the_hook_s_clients_share_the_program_s_limiter(
    monkeypatch: pytest.MonkeyPatch, redis_db: Any
) -> None:
    from airflow_provider_crowdtwist.client.shared_limit import SharedRateLimiter
    from airflow_provider_crowdtwist.hooks.crowdtwist import CrowdTwistHook

    set_conn(monkeypatch, "rl_redis", conn_type="redis", host=redis_db.host, port=redis_db.port)
    extra = {"rate_limit_conn_id": " rl_redis ", "requests_per_minute": 4000}
    set_conn(monkeypatch, "ct_shared", conn_type="crowdtwist", host=BASE, password="k-123", extra=extra)
    hook = CrowdTwistHook("ct_shared")
    with hook.new_client(pace=lambda cap: cap // 4) as client:
        limiter = client.rate_limiter
        assert isinstance(limiter, SharedRateLimiter)
        assert limiter.requests_per_minute == 4000  # the program's whole cap
        assert limiter.fallback.requests_per_minute == 1000  # the partition's share, if Redis goes
        assert client.config.requests_per_minute == 1000
    with hook.new_client(rate_limit_conn_id="") as client:
        assert not isinstance(client.rate_limiter, SharedRateLimiter)
