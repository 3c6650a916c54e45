"""``rate_limit_conn_id``: an Airflow Redis connection turned into the program's shared rate limiter.

The connection is the Redis provider's type (``redis``: host, port, password, login as the ACL user,
extras ``db`` and ``ssl``), so the Redis that Celery or other providers already use can be named as
it is. Only its fields are read, with the ``redis`` client itself: the provider's ``RedisHook`` is
not needed at run time (it is what gives the connection its form in the UI), and its releases for
Airflow 2.10 and 3.x differ in what they accept.

Configuration errors -- a name that is no connection, a connection that is not Redis, the ``redis``
client not installed, no cap to share -- raise ``CrowdTwistConfigError`` here, before the first
request. An unreachable Redis is *not* one: the limiter falls back to the task's share and says so
(:mod:`~airflow_provider_crowdtwist.client.shared_limit`), because a Redis outage must not stop syncs.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow_provider_crowdtwist.client.errors import CrowdTwistConfigError
from airflow_provider_crowdtwist.client.ratelimit import RateLimiter
from airflow_provider_crowdtwist.client.shared_limit import SharedRateLimiter, program_key

#: The connection type the Redis provider registers (and Airflow's ``redis://`` URIs give).
REDIS_CONN_TYPE = "redis"
#: Short: a Redis that hangs must turn into the fallback within seconds, not stall every request.
REDIS_TIMEOUT_S = 2.0


def redis_client_for(conn_id: str) -> tuple[Any, str]:
    """``(redis.Redis, "redis://host:port/db")`` for the Airflow connection ``conn_id``.

    Connecting is lazy: nothing is sent to Redis here.
    """
    from airflow.providers.common.compat.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # AirflowNotFoundException, or a secrets backend that failed
        raise CrowdTwistConfigError(
            f"rate_limit_conn_id {conn_id!r} names no Airflow connection ({type(exc).__name__}); "
            "create a Redis connection (conn type 'redis') with that id"
        ) from None
    conn_type = (conn.conn_type or "").strip().lower()
    if conn_type != REDIS_CONN_TYPE:
        raise CrowdTwistConfigError(
            f"rate_limit_conn_id {conn_id!r} is a {conn.conn_type or 'typeless'!r} connection, not "
            f"{REDIS_CONN_TYPE!r}: the shared rate limit needs a Redis connection"
        )
    try:
        import redis
    except ImportError:
        raise CrowdTwistConfigError(
            f"rate_limit_conn_id {conn_id!r} needs the redis client: "
            "pip install 'airflow-provider-crowdtwist[redis]'"
        ) from None
    try:
        extras = conn.extra_dejson or {}
    except Exception:
        extras = {}
    host = (conn.host or "").strip() or "localhost"
    port = int(conn.port or 6379)
    try:
        db = int(extras.get("db", 0) or 0)
    except (TypeError, ValueError):
        raise CrowdTwistConfigError(
            f"rate_limit_conn_id {conn_id!r}: extra 'db' must be an integer, got {extras.get('db')!r}"
        ) from None
    ssl = str(extras.get("ssl", "")).strip().lower() in ("1", "true", "yes", "on")
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "db": db,
        "username": (conn.login or "").strip() or None,
        "password": conn.password or None,
        "socket_timeout": REDIS_TIMEOUT_S,
        "socket_connect_timeout": REDIS_TIMEOUT_S,
    }
    if ssl:
        options["ssl"] = True
        for name in ("ssl_cert_reqs", "ssl_ca_certs", "ssl_keyfile", "ssl_certfile"):
            if extras.get(name):
                options[name] = extras[name]
    scheme = "rediss" if ssl else "redis"
    return redis.Redis(**options), f"{scheme}://{host}:{port}/{db}"


def shared_rate_limiter(
    conn_id: str,
    *,
    base_url: str,
    requests_per_minute: int,
    fallback_requests_per_minute: int,
    fallback_note: str = "",
    logger: logging.Logger | None = None,
) -> SharedRateLimiter:
    """The program's shared limiter at ``requests_per_minute`` (the whole cap) over Redis ``conn_id``;
    when Redis cannot be reached, this task paces alone at ``fallback_requests_per_minute``."""
    if requests_per_minute <= 0:
        raise CrowdTwistConfigError(
            f"rate_limit_conn_id {conn_id!r} is set but requests_per_minute is {requests_per_minute} "
            "(no limit): a shared rate limit needs the program's cap"
        )
    client, where = redis_client_for(conn_id)
    return SharedRateLimiter(
        client,
        program_key(base_url),
        requests_per_minute,
        fallback=RateLimiter(fallback_requests_per_minute),
        where=where,
        fallback_note=fallback_note,
        logger=logger,
    )


__all__ = ["REDIS_CONN_TYPE", "redis_client_for", "shared_rate_limiter"]
