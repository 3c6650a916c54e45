"""Helpers for the client unit tests: a client whose waits are recorded instead of slept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_crowdtwist.client import ClientConfig, CrowdTwistClient

BASE = "https://api.test"
# Real-looking secret values: the secret tests search for them in logs and exception texts.
API_KEY = "ctk_live_9f8e7d6c5b4a3210ZZtopSecret"
PUBLIC_KEY = "pub-4471"
PRIVATE_KEY = "priv_Secret+/=Key-0042"


class FakeClock:
    """A monotonic clock that only moves when something sleeps on it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class RecordingLimiter:
    """Stands in for RateLimiter to observe the calls the client makes."""

    def __init__(self, on_acquire: Callable[[int], None] | None = None) -> None:
        self.acquired = 0
        self.pauses: list[float] = []
        self.rate_limited: list[tuple[float | None, float | None]] = []  # (retry_after, sent_at)
        self.successes = 0
        self._on_acquire = on_acquire

    def acquire(self) -> None:
        self.acquired += 1
        if self._on_acquire is not None:
            self._on_acquire(self.acquired)

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)

    def record_rate_limited(self, retry_after: float | None = None, sent_at: float | None = None) -> None:
        self.rate_limited.append((retry_after, sent_at))
        if retry_after is not None:
            self.pause(retry_after)  # as the real limiter does: Retry-After pauses everyone

    def record_success(self) -> None:
        self.successes += 1


def make_config(**overrides: Any) -> ClientConfig:
    values: dict[str, Any] = {
        "base_url": BASE,
        "api_key": API_KEY,
        "backoff_base": 0.01,
        "backoff_max": 0.08,
        "max_retries": 3,
    }
    values.update(overrides)
    return ClientConfig(**values)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(clock: FakeClock) -> Callable[..., CrowdTwistClient]:
    """``make_client(limiter=None, wall_clock=..., **config)``; backoff draws take the maximum."""
    created: list[CrowdTwistClient] = []

    def factory(
        limiter: Any = None, wall_clock: Callable[[], float] = lambda: 1_700_000_000.0, **overrides: Any
    ) -> CrowdTwistClient:
        client = CrowdTwistClient(
            make_config(**overrides),
            rate_limiter=limiter,
            sleep=clock.sleep,
            clock=clock,
            wall_clock=wall_clock,
            rng=lambda low, high: high,
        )
        created.append(client)
        return client

    yield factory
    for client in created:
        client.close()
