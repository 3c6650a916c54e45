"""A thread-safe rate limiter shared by every worker of a sync.

CrowdTwist caps a program at N requests a minute, counted over the whole program, so one limiter
serves all threads, and a 429 seen by one thread pauses all of them.

The algorithm is GCRA ("virtual scheduling"), a token bucket expressed as one timestamp: each caller
*reserves* the next free slot under the lock and sleeps outside it, so waiting threads get distinct
slots instead of waking together and racing for a token. To keep the cap over *any* 60-second window,
not only on average, the burst is small and the sustained rate is lowered by the burst:
at most ``burst + 60 * rate = requests_per_minute`` requests fit in any minute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Token bucket; ``requests_per_minute <= 0`` means unlimited (``pause`` still works)."""

    def __init__(
        self,
        requests_per_minute: float,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.requests_per_minute = float(requests_per_minute)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._paused_until = float("-inf")
        self.unlimited = self.requests_per_minute <= 0
        if self.unlimited:
            self.burst = 0
            self.rate_per_second = float("inf")
            self._interval = 0.0
        else:
            # A tenth of a second's worth of requests: enough to absorb thread start-up jitter,
            # small enough that lowering the sustained rate to make room for it costs ~0.2 %.
            default_burst = max(1, round(self.requests_per_minute / 600))
            self.burst = int(burst) if burst is not None else default_burst
            if self.burst < 1:
                raise ValueError("burst must be at least 1")
            sustained = self.requests_per_minute - self.burst
            if sustained <= 0:  # tiny caps: fall back to the plain rate, a one-request overshoot at most
                sustained = self.requests_per_minute
            self.rate_per_second = sustained / 60.0
            self._interval = 1.0 / self.rate_per_second
        self._tolerance = max(0, self.burst - 1) * self._interval
        # Theoretical arrival time of the next request; starts "now" so the first burst is free.
        self._tat = clock()

    def acquire(self) -> None:
        """Block until this caller may send one request."""
        while True:
            with self._lock:
                now = self._clock()
                if now < self._paused_until:
                    wait = self._paused_until - now
                    reserved = False
                elif self.unlimited:
                    return
                else:
                    tat = max(self._tat, now)
                    allowed_at = tat - self._tolerance
                    self._tat = tat + self._interval
                    if allowed_at <= now:
                        return
                    wait = allowed_at - now
                    reserved = True
            self._sleep(wait)
            if reserved:
                with self._lock:
                    # A pause that began while we slept wins over our reservation.
                    if self._clock() >= self._paused_until:
                        return

    def pause(self, seconds: float) -> None:
        """Nobody gets a token for ``seconds`` (a 429's ``Retry-After``); then restart gently."""
        if seconds <= 0:
            return
        with self._lock:
            until = self._clock() + seconds
            if until > self._paused_until:
                self._paused_until = until
            if not self.unlimited:
                # After the pause, one request at a time at the sustained rate, no burst.
                self._tat = max(self._tat, self._paused_until + self._tolerance)

    @property
    def paused_until(self) -> float:
        """Clock value until which every caller waits (``-inf`` when never paused)."""
        return self._paused_until

    def __repr__(self) -> str:
        return f"RateLimiter(requests_per_minute={self.requests_per_minute:g}, burst={self.burst})"


__all__ = ["RateLimiter"]
