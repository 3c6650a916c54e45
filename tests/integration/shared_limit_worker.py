"""One task process of a program, paced by the shared limiter: for the 8-process Retry-After test.

Usage: ``python shared_limit_worker.py BASE_URL API_KEY REDIS_URL KEY SECONDS START_AT GAP``: from the
wall-clock time START_AT (so that every process has started), sends member reads
(``GET /users/...``, answered 404: a response, so a success for the limiter) for SECONDS through a
``CrowdTwistClient`` whose limiter is a ``SharedRateLimiter`` on ``KEY``; prints one JSON line: the
wall-clock time each request was sent, and when it was answered 429 with which ``Retry-After``
(``None`` if never). GAP seconds pass between the first request and the second (the process that
will be answered 429 waits, so that the others are seen sending before its 429).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import redis

from airflow_provider_crowdtwist.client.client import CrowdTwistClient
from airflow_provider_crowdtwist.client.config import ClientConfig
from airflow_provider_crowdtwist.client.errors import CrowdTwistError, CrowdTwistRateLimitError
from airflow_provider_crowdtwist.client.ratelimit import RateLimiter
from airflow_provider_crowdtwist.client.shared_limit import SharedRateLimiter

CAP = 1200  # per minute for the program: 20 requests/s over all processes


class Recorded:
    """The limiter, recording when each slot was granted: when the request really left."""

    def __init__(self, inner: SharedRateLimiter) -> None:
        self.inner = inner
        self.sent: list[float] = []

    def acquire(self) -> None:
        self.inner.acquire()
        self.sent.append(time.time())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def main() -> None:
    base_url, api_key, redis_url, key, seconds, start_at, gap = sys.argv[1:8]
    logging.basicConfig(level=logging.WARNING)
    shared = SharedRateLimiter(
        redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2),
        key,
        CAP,
        fallback=RateLimiter(CAP // 8),
        where=redis_url,
    )
    limiter = Recorded(shared)
    config = ClientConfig(base_url=base_url, api_key=api_key, requests_per_minute=CAP, max_retries=0)
    limited_at = retry_after = None
    time.sleep(max(0.0, float(start_at) - time.time()))
    deadline = time.time() + float(seconds)
    with CrowdTwistClient(config, rate_limiter=limiter) as client:
        while time.time() < deadline:
            if len(limiter.sent) == 1:
                time.sleep(float(gap))
            try:
                client.get_user("nobody@example.com")
            except CrowdTwistRateLimitError as exc:
                limited_at, retry_after = time.time(), exc.retry_after
                break
            except CrowdTwistError:
                pass  # 404: the member does not exist; the request was answered all the same
    result = {"sent": limiter.sent, "limited_at": limited_at, "retry_after": retry_after}
    print(json.dumps({**result, "shared": shared.shared}))


if __name__ == "__main__":
    main()
