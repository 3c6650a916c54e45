"""A thread-safe, adaptive rate limiter shared by every worker of a sync.

CrowdTwist caps a program at N requests a minute, counted over the whole program, so one limiter
serves all threads, and a 429 seen by one thread slows all of them.

Pacing is GCRA ("virtual scheduling"), a token bucket expressed as one timestamp: each caller
*reserves* the next free slot under the lock and sleeps outside it, so waiting threads get distinct
slots instead of waking together and racing for a token. To keep the cap over *any* 60-second window,
not only on average, the burst is small and the sustained rate is lowered by the burst:
at most ``burst + 60 * rate = requests_per_minute`` requests fit in any minute.

Adaptive pacing (AIMD): the configured cap is what the connection *says*; a program's real limit can be
lower (a shared program, a contract below the standard cap). Every 429 is a wasted request that counts
against the program, so the limiter learns the real rate from them instead of hammering at the
configured one:

* **multiplicative decrease** -- a 429 for a request sent at the current pace cuts the pace: to just
  under the rate the server was seen to accept when that is known, else by half the first time
  (a storm far above the real limit must end in a few round trips), by ``decrease_factor`` later;
  429s for requests sent *before* the last cut are counted but do not cut again (they were already
  answered for the old pace -- without this guard one storm would cut the pace to the floor);
* **additive increase** -- after a cut, the pace climbs back slowly (``probe_fraction`` of the
  learned rate per second), so it follows a limit that went up and probes at most a little above one
  that did not;
* the configured cap stays the ceiling: the pace never goes above it;
* ``Retry-After`` is honoured as a pause for everyone (the program, not the one request, is over its
  limit); without the header the cut alone slows everyone, and the retried request backs off on its own.

The accepted rate is measured from the successes the client reports (:meth:`record_success`)
between two 429s: at each 429 the server's bucket was empty, so what it accepted from one to the next
is its real rate times the time, pauses included (it refilled during them). Within an episode of 429s
the span starts at the episode's first 429; a new episode measures from the last one's last 429. A
span under half a second or ten successes measures nothing (the multiplicative rule applies).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

_LOG = logging.getLogger(__name__)

#: An episode of 429s ends after this many seconds without one (or ten request intervals if longer).
_EPISODE_QUIET_S = 5.0
#: The accepted rate is trusted once measured over at least this long and this many successes.
_MEASURE_MIN_S = 0.5
_MEASURE_MIN_COUNT = 10


@runtime_checkable
class Pacer(Protocol):
    """What the client needs from a limiter: this process's :class:`RateLimiter`, or the
    :class:`~airflow_provider_crowdtwist.client.shared_limit.SharedRateLimiter` that paces every task
    of a program together. ``sent_at`` is the caller's clock; a limiter keeping its own time may ignore it.
    """

    def acquire(self) -> None: ...

    def pause(self, seconds: float) -> None: ...

    def record_success(self) -> None: ...

    def record_rate_limited(self, retry_after: float | None = None, sent_at: float | None = None) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class RateLimiter:
    """Adaptive token bucket; ``requests_per_minute <= 0`` means no configured cap.

    Without a configured cap the limiter sends as fast as asked until the first 429, then paces at
    what it learned. ``adaptive=False`` gives the plain token bucket (429s only pause).
    """

    def __init__(
        self,
        requests_per_minute: float,
        *,
        burst: int | None = None,
        adaptive: bool = True,
        decrease_factor: float = 0.85,
        probe_fraction: float = 0.01,
        margin: float = 0.02,
        min_requests_per_minute: float = 6.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        logger: logging.Logger | None = None,
    ) -> None:
        if not 0.0 < decrease_factor < 1.0:
            raise ValueError("decrease_factor must be between 0 and 1")
        if not 0.0 <= probe_fraction <= 1.0:
            raise ValueError("probe_fraction must be between 0 and 1")
        if not 0.0 <= margin < 1.0:
            raise ValueError("margin must be between 0 and 1")
        if not min_requests_per_minute > 0:
            raise ValueError("min_requests_per_minute must be above 0")
        self.requests_per_minute = float(requests_per_minute)
        self.adaptive = adaptive
        self.decrease_factor = decrease_factor
        self.probe_fraction = probe_fraction
        self.margin = margin
        self._floor = min_requests_per_minute / 60.0
        self._clock = clock
        self._sleep = sleep
        self.log = logger or _LOG
        self._lock = threading.Lock()
        self._paused_until = float("-inf")
        self.unlimited = self.requests_per_minute <= 0
        if self.unlimited:
            self.burst = 0
            self._ceiling = math.inf
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
            self._ceiling = sustained / 60.0
        # The pace: ``_base`` requests/s at ``_base_at``, climbing by ``_climb`` requests/s per second.
        self._base = self._ceiling
        self._base_at = clock()
        self._climb = 0.0
        self._learned: float | None = None  # the accepted rate measured in the last 429 episode, req/s
        self._decreased_at = float("-inf")
        self._last_429_at = float("-inf")
        self._episode_start: float | None = None
        self._accepted = 0  # successes reported, and their count at the two marks below
        self._accepted_at_episode = 0
        self._accepted_at_last_429 = 0
        self._recent_sent: deque[float] = deque(maxlen=4096)  # send times, only while uncapped
        self.rate_limited = 0  # 429s reported
        self.decreases = 0
        # Theoretical arrival time of the next request; starts "now" so the first burst is free.
        self._tat = clock()
        self._epoch = 0  # bumped by every cut, so that slots reserved at the old pace are voided

    # -- pacing --------------------------------------------------------------------------------

    @property
    def rate_per_second(self) -> float:
        """The current sustained pace, requests per second (``inf`` while unpaced)."""
        with self._lock:
            return self._rate(self._clock())

    @property
    def _interval(self) -> float:
        rate = self.rate_per_second
        return 0.0 if math.isinf(rate) else 1.0 / rate

    def _rate(self, now: float) -> float:
        if self._climb <= 0.0 or now <= self._base_at:
            return self._base
        rate = self._base + self._climb * (now - self._base_at)
        if rate >= self._ceiling:
            # Back at the ceiling: freeze there so the formula stops running on every request.
            self._base, self._climb = self._ceiling, 0.0
            return self._ceiling
        return rate

    def _reserve(self, now: float) -> tuple[float, int | None]:
        """Under the lock: ``(seconds to wait, epoch of the reserved slot or None)``; ``0`` = go now."""
        if now < self._paused_until:
            return self._paused_until - now, None
        rate = self._rate(now)
        if math.isinf(rate):
            if self.adaptive:
                self._recent_sent.append(now)
            return 0.0, self._epoch
        interval = 1.0 / rate
        tolerance = max(0, self.burst - 1) * interval
        tat = max(self._tat, now)
        allowed_at = tat - tolerance
        self._tat = tat + interval
        return max(0.0, allowed_at - now), self._epoch

    def _burst_span(self, now: float) -> float:
        """Under the lock: how far ahead ``_tat`` must be so that no burst is free at ``now``."""
        rate = self._rate(now)
        return 0.0 if math.isinf(rate) else max(1, self.burst) / rate

    def _still_valid(self, epoch: int | None, now: float) -> bool:
        """Under the lock: a slot reserved before a pause or a cut must be reserved again."""
        return epoch is not None and epoch == self._epoch and now >= self._paused_until

    def acquire(self) -> None:
        """Block until this caller may send one request."""
        while True:
            with self._lock:
                wait, epoch = self._reserve(self._clock())
            if wait <= 0.0:
                return
            self._sleep(wait)
            if epoch is not None:
                with self._lock:
                    # A pause or a cut that came while we slept wins over our reservation: the slot
                    # was handed out at the old pace.
                    if self._still_valid(epoch, self._clock()):
                        return

    def pause(self, seconds: float) -> None:
        """Nobody gets a token for ``seconds`` (a 429's ``Retry-After``); then restart gently."""
        if seconds <= 0:
            return
        with self._lock:
            self._pause(self._clock(), seconds)

    def _pause(self, now: float, seconds: float) -> None:
        """Under the lock: the pause itself; the climb of the pace holds still while it lasts."""
        until = now + seconds
        if until <= self._paused_until:
            return
        if self._climb > 0.0:
            self._base, self._base_at = self._rate(now), max(now, until)
        self._paused_until = until
        # After the pause, one request at a time at the sustained rate, no burst.
        self._tat = max(self._tat, until + self._burst_span(until))

    @property
    def paused_until(self) -> float:
        """Clock value until which every caller waits (``-inf`` when never paused)."""
        return self._paused_until

    # -- learning ------------------------------------------------------------------------------

    def record_success(self) -> None:
        """A request was accepted (any answer but 429): evidence of what the program takes."""
        if self.adaptive:
            with self._lock:
                self._accepted += 1

    def record_rate_limited(self, retry_after: float | None = None, sent_at: float | None = None) -> None:
        """A request sent at clock time ``sent_at`` was answered 429 (``Retry-After`` seconds, if any).

        ``Retry-After`` pauses everyone; the pace is cut when the request was sent at the current
        pace (``sent_at`` after the last cut, or unknown).
        """
        with self._lock:
            now = self._clock()
            self.rate_limited += 1
            old = self._rate(now)
            if retry_after is not None and retry_after > 0:
                self._pause(now, retry_after)
            # What the server accepted between two moments it was saturated is its real rate:
            # within an episode from its first 429; for a new one, since the last episode's last 429.
            if self._episode_start is None or now - self._last_429_at > self._quiet_period(now):
                since, accepted = self._last_429_at, self._accepted - self._accepted_at_last_429
                self._episode_start, self._accepted_at_episode = now, self._accepted
            else:
                since, accepted = self._episode_start, self._accepted - self._accepted_at_episode
            self._last_429_at, self._accepted_at_last_429 = now, self._accepted
            if not self.adaptive or (sent_at is not None and sent_at < self._decreased_at):
                return
            span = now - since
            trusted = _MEASURE_MIN_S <= span < math.inf and accepted >= _MEASURE_MIN_COUNT
            measured = accepted / span if trusted else None
            if measured is not None:
                self._learned = measured
            if math.isinf(old):
                # No configured cap: start from what was being sent over the last second.
                old = max(self._floor, float(sum(1 for t in self._recent_sent if t > now - 1.0)))
            new = min(self._ceiling, max(self._floor, self._cut(old, measured)))
            self._base, self._base_at, self._decreased_at = new, max(now, self._paused_until), now
            self._climb = self.probe_fraction * (
                self._learned or (self._ceiling if not self.unlimited else new)
            )
            # Slots already handed out were at the old pace: void them (sleepers re-reserve).
            self._tat = max(now, self._paused_until) + self._burst_span(now)
            self._epoch += 1
            self.decreases += 1
            learned = self._learned
        self.log.warning(
            "CrowdTwist answered 429: pacing at %.0f requests/min (was %.0f, configured %s)%s",
            new * 60,
            old * 60,
            f"{self.requests_per_minute:.0f}" if not self.unlimited else "no limit",
            f"; real limit measured at ~{learned * 60:.0f}/min" if learned else "",
        )

    def _cut(self, old: float, measured: float | None) -> float:
        """The new pace after a 429 sent at pace ``old``.

        Measured: just under what the server accepts. Else, knowing the real rate from an earlier
        episode: back to just under it (a probe went over), or by ``decrease_factor`` if that is lower.
        Knowing nothing: by half (a storm far above the limit must end within a few round trips).
        """
        if measured is not None:
            return min(old, measured) * (1.0 - self.margin)
        if self._learned is not None:
            return max(old * self.decrease_factor, min(old, self._learned) * (1.0 - self.margin))
        return old * (0.5 if self.decreases == 0 else self.decrease_factor)

    def _quiet_period(self, now: float) -> float:
        rate = self._rate(now)
        return max(_EPISODE_QUIET_S, 10.0 / rate if 0 < rate < math.inf else 0.0)

    # -- reporting -----------------------------------------------------------------------------

    @property
    def learned_requests_per_minute(self) -> float | None:
        """The real limit measured from 429s (requests/min), or None if none was ever measured."""
        with self._lock:
            return None if self._learned is None else self._learned * 60.0

    @property
    def current_requests_per_minute(self) -> float | None:
        """The pace now, requests/min (None while there is no pace at all)."""
        rate = self.rate_per_second
        return None if math.isinf(rate) else rate * 60.0

    def stats(self) -> dict[str, Any]:
        """What a summary shows: the configured cap, the learned rate, the 429s and cuts."""
        learned = self.learned_requests_per_minute
        current = self.current_requests_per_minute
        return {
            "configured_requests_per_minute": None if self.unlimited else round(self.requests_per_minute),
            "learned_requests_per_minute": None if learned is None else round(learned),
            "paced_requests_per_minute": None if current is None else round(current),
            "rate_limited": self.rate_limited,
            "rate_decreases": self.decreases,
        }

    def __repr__(self) -> str:
        return f"RateLimiter(requests_per_minute={self.requests_per_minute:g}, burst={self.burst})"


__all__ = ["Pacer", "RateLimiter"]
