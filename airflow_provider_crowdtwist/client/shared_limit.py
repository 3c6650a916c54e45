"""One rate limit for every task of a program, on every worker: the pace kept in Redis.

CrowdTwist counts a program's requests together, whichever task, DAG or machine sends them. A
:class:`~airflow_provider_crowdtwist.client.ratelimit.RateLimiter` only knows its own process, so
partitions split the cap (an idle share is lost), two syncs of one program each assume the whole cap,
and each process learns the real limit from 429s of its own. :class:`SharedRateLimiter` keeps the
same algorithm -- GCRA slot reservation, a ``Retry-After`` pause for everyone, the AIMD pace learned
from 429s -- in one Redis hash per program (keyed by the program's host), updated by atomic Lua
scripts (:mod:`~airflow_provider_crowdtwist.client.shared_limit_lua`, which says why not
``pyrate-limiter``) with Redis ``TIME`` as the one clock. This module only calls the scripts, sleeps
between them, and falls back.

Failure: Redis is a helper, never a single point of failure. When it cannot be reached at start or
stops answering mid-run, the limiter logs it once and hands every later call to its ``fallback``, a
local :class:`RateLimiter` at the pace the task would have without Redis (the cap split between the
partitions): the task is paced on its own, never unpaced. :meth:`stats` says so, and the sync's
summary carries it (``rate_limit.shared_limiter_fallback``). A task that fell back stays on its
fallback to the end: flapping between a shared pace and a local one would let it overshoot its share.

No Airflow here (client/ never imports it); the hook turns a Redis connection into a client.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_crowdtwist.client import shared_limit_lua
from airflow_provider_crowdtwist.client.ratelimit import RateLimiter

_LOG = logging.getLogger(__name__)

#: Every key the limiter writes starts with this; the rest is the program's host.
KEY_PREFIX = "crowdtwist:rate:"
#: Seconds the pace stays just under a measured real rate before probing above it again.
DEFAULT_HOLD_S = 300.0
#: Seconds a program's state outlives the last call (crashed workers leave nothing behind for longer).
DEFAULT_TTL_S = 300
# The learning constants of RateLimiter, so both learn alike (see its module docstring).
_EPISODE_QUIET_S = 5.0
_MEASURE_MIN_S = 0.5
_MEASURE_MIN_COUNT = 10


#: The hash fields :meth:`SharedRateLimiter.stats` reads, in this order.
_FIGURES = ("base", "base_at", "climb", "learned", "decreases", "pauses", "hold", "hold_until")


def program_key(base_url: str) -> str:
    """The Redis key of the program behind ``base_url``: its host (and port), lower-cased.

    The host, not the whole URL: CrowdTwist serves one program per host, and the same program reached
    through ``/v2`` and ``/v2/`` is one program with one cap.
    """
    parts = urlsplit(base_url if "//" in base_url else f"//{base_url}")
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError(f"cannot tell the program's host from base_url {base_url!r}")
    return f"{KEY_PREFIX}{host}:{parts.port}" if parts.port else f"{KEY_PREFIX}{host}"


def _redis_errors() -> tuple[type[BaseException], ...]:
    """What "Redis is gone" looks like: the client's own errors and the socket's."""
    try:
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover - the hook refuses a shared limiter without redis installed
        return (OSError,)
    return (RedisError, OSError)


class SharedRateLimiter:
    """The pace of every task of one program, kept in Redis; a local ``fallback`` when Redis is gone.

    :param redis: a ``redis.Redis`` client (short socket timeouts: a hung Redis must turn into the
        fallback quickly, not into a stalled sync).
    :param key: the program's hash (:func:`program_key`).
    :param requests_per_minute: the cap the connection says, for the whole program (not a share).
    :param fallback: the local limiter used when Redis cannot be reached (the task's share of the cap).
    :param where: how logs name this Redis (``redis://host:port/db``; never a password).
    :param fallback_note: how logs explain the fallback's pace, e.g. ``"the cap / 4 partitions"``.

    The other parameters are :class:`RateLimiter`'s, with two differences that come from pacing many
    tasks at once. Once a 429 episode measured the real rate, the pace climbs back to just under it and
    *holds* there for ``hold_seconds`` before probing above it again: a probe over the limit costs a
    429 and, with ``Retry-After``, a pause of every task of the program, and CrowdTwist's bucket, full
    again after the pause, lets a probing pace put more than the limit into one minute. And the
    ``margin`` under the measured rate is 3% (2% in one process): the first minute of a run also
    carries the burst the program's bucket allowed and the 429s of the first storm.
    Every task of a program should use the same settings.
    """

    def __init__(
        self,
        redis: Any,
        key: str,
        requests_per_minute: float,
        *,
        fallback: RateLimiter,
        where: str = "Redis",
        fallback_note: str = "",
        burst: int | None = None,
        adaptive: bool = True,
        decrease_factor: float = 0.85,
        probe_fraction: float = 0.01,
        margin: float = 0.03,
        min_requests_per_minute: float = 6.0,
        hold_seconds: float = DEFAULT_HOLD_S,
        ttl_seconds: int = DEFAULT_TTL_S,
        sleep: Callable[[float], None] = time.sleep,
        logger: logging.Logger | None = None,
    ) -> None:
        if not requests_per_minute > 0:
            raise ValueError("a shared rate limit needs requests_per_minute above 0 (the program's cap)")
        if not 0.0 < decrease_factor < 1.0:
            raise ValueError("decrease_factor must be between 0 and 1")
        if not 0.0 <= probe_fraction <= 1.0:
            raise ValueError("probe_fraction must be between 0 and 1")
        if not 0.0 <= margin < 1.0:
            raise ValueError("margin must be between 0 and 1")
        if not min_requests_per_minute > 0:
            raise ValueError("min_requests_per_minute must be above 0")
        if hold_seconds < 0:
            raise ValueError("hold_seconds must be >= 0")
        if ttl_seconds < 10:
            raise ValueError("ttl_seconds must be at least 10")
        self.requests_per_minute = float(requests_per_minute)
        self.key = key
        self.where = where
        self.fallback = fallback
        self.fallback_note = fallback_note
        self.adaptive = adaptive
        self.log = logger or _LOG
        self._sleep = sleep
        self._ttl = int(ttl_seconds)
        # The same burst and sustained ceiling as RateLimiter: burst + 60 * rate = the cap per minute.
        self.burst = int(burst) if burst is not None else max(1, round(self.requests_per_minute / 600))
        if self.burst < 1:
            raise ValueError("burst must be at least 1")
        sustained = self.requests_per_minute - self.burst
        self._ceiling = (sustained if sustained > 0 else self.requests_per_minute) / 60.0
        self._learning = (
            decrease_factor,
            probe_fraction,
            margin,
            min_requests_per_minute / 60.0,
            _EPISODE_QUIET_S,
            _MEASURE_MIN_S,
            _MEASURE_MIN_COUNT,
            float(hold_seconds),
        )
        self._errors = _redis_errors()
        self._lock = threading.Lock()
        self._pending = 0  # successes not yet added to the program's count (sent with the next call)
        self._local = threading.local()  # .granted: Redis time (us) of this thread's last slot
        self.rate_limited = 0  # 429s this task saw
        self.pauses = 0  # Retry-After pauses this task started
        self.fallback_reason: str | None = None
        self._redis = redis
        try:
            self._acquire_script = redis.register_script(shared_limit_lua.ACQUIRE)
            self._limited_script = redis.register_script(shared_limit_lua.RATE_LIMITED)
            self._pause_script = redis.register_script(shared_limit_lua.PAUSE)
            redis.ping()
        except self._errors as exc:
            self._fall_back("at start", exc)

    # -- state ---------------------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        """True while the pace comes from Redis (False once this task fell back)."""
        return self.fallback_reason is None

    def _fall_back(self, when: str, exc: BaseException) -> None:
        with self._lock:
            if self.fallback_reason is not None:
                return
            self.fallback_reason = f"Redis {self.where} unreachable {when} ({type(exc).__name__}: {exc})"
        note = f" ({self.fallback_note})" if self.fallback_note else ""
        self.log.warning(
            "Shared rate limit: %s; this task now paces on its own at %s requests/min%s until it ends.",
            self.fallback_reason,
            f"{self.fallback.requests_per_minute:.0f}" if not self.fallback.unlimited else "no limit",
            note,
        )

    def _take_pending(self) -> int:
        with self._lock:
            pending, self._pending = self._pending, 0
            return pending

    def _give_back(self, pending: int) -> None:
        if pending:
            with self._lock:
                self._pending += pending

    # -- the Pacer interface -------------------------------------------------------------------

    def acquire(self) -> None:
        """Block until this caller may send one request: a slot of the program's shared pace."""
        held = -1
        while self.fallback_reason is None:
            pending = self._take_pending()
            try:
                wait_us, epoch, now_us = self._acquire_script(
                    keys=[self.key], args=[self._ceiling, self.burst, self._ttl, pending, held]
                )
            except self._errors as exc:
                self._give_back(pending)
                self._fall_back("mid-run", exc)
                break
            wait_us, epoch, now_us = int(wait_us), int(epoch), int(now_us)
            if wait_us <= 0:
                self._local.granted = now_us
                return
            # Sleep, then ask again holding the slot's epoch: a pause or a cut that came meanwhile
            # voids it (it was handed out at the old pace), else the slot is ours.
            self._sleep(wait_us / 1e6)
            held = epoch
        self.fallback.acquire()

    def record_success(self) -> None:
        """A request was accepted: counted with this task's next call (the program's accepted rate)."""
        if self.fallback_reason is not None:
            self.fallback.record_success()
            return
        if self.adaptive:
            with self._lock:
                self._pending += 1

    def record_rate_limited(self, retry_after: float | None = None, sent_at: float | None = None) -> None:
        """A request was answered 429: pause every task for ``Retry-After``, cut the shared pace.

        ``sent_at`` (the client's clock) is ignored: the slot's Redis time, remembered per thread,
        tells whether the request was sent before the last cut, whichever process made it.
        """
        with self._lock:
            self.rate_limited += 1
        if self.fallback_reason is not None:
            self.fallback.record_rate_limited(retry_after, sent_at)
            return
        pending = self._take_pending()
        retry_us = round(retry_after * 1e6) if retry_after is not None and retry_after > 0 else -1
        slot = getattr(self._local, "granted", -1)
        try:
            cut, new, old, learned, _paused = self._limited_script(
                keys=[self.key],
                args=[
                    self._ceiling,
                    self.burst,
                    self._ttl,
                    pending,
                    retry_us,
                    slot,
                    1 if self.adaptive else 0,
                    *self._learning,
                ],
            )
        except self._errors as exc:
            self._fall_back("mid-run", exc)
            self.fallback.record_rate_limited(retry_after, sent_at)
            return
        if retry_us > 0:
            with self._lock:
                self.pauses += 1
            self.log.info(
                "CrowdTwist asked to wait %.1f s (Retry-After): every task of the program pauses.",
                retry_after,
            )
        if int(cut):
            learned_rate = float(learned)
            self.log.warning(
                "CrowdTwist answered 429: the program's shared pace is now %.0f requests/min "
                "(was %.0f, configured %.0f)%s",
                float(new) * 60,
                float(old) * 60,
                self.requests_per_minute,
                f"; real limit measured at ~{learned_rate * 60:.0f}/min" if learned_rate > 0 else "",
            )

    def pause(self, seconds: float) -> None:
        """No task of the program gets a slot for ``seconds``; then one at a time at the pace."""
        if seconds <= 0:
            return
        if self.fallback_reason is None:
            try:
                self._pause_script(
                    keys=[self.key], args=[round(seconds * 1e6), self.burst, self._ceiling, self._ttl]
                )
                return
            except self._errors as exc:
                self._fall_back("mid-run", exc)
        self.fallback.pause(seconds)

    # -- reporting -----------------------------------------------------------------------------

    def _shared_figures(self) -> dict[str, Any] | None:
        """The program's pace, learned rate and cuts as Redis has them; None if Redis is gone."""
        pending = self._take_pending()
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                if pending:
                    pipe.hincrby(self.key, "accepted", pending)
                pipe.time()
                pipe.hmget(self.key, *_FIGURES)
                replies = pipe.execute()
        except self._errors as exc:
            self._fall_back("mid-run", exc)
            return None
        seconds, micros = replies[-2]
        now = int(seconds) * 1_000_000 + int(micros)
        base, base_at, climb, learned, decreases, pauses, hold, hold_until = (
            None if v is None else float(v) for v in replies[-1]
        )
        pace = self._ceiling if base is None else base
        if base is not None and climb and base_at is not None and now > base_at:
            pace = base + climb * (now - base_at) / 1e6
            if hold is not None and hold_until is not None and base <= hold:
                pace = min(pace, hold + climb * max(0.0, now - hold_until) / 1e6)
        pace = min(pace, self._ceiling)
        return {
            "learned_requests_per_minute": None if learned is None else round(learned * 60),
            "paced_requests_per_minute": round(pace * 60),
            "rate_decreases": int(decreases or 0),
            "program_pauses": int(pauses or 0),
        }

    def stats(self) -> dict[str, Any]:
        """What a summary shows: RateLimiter's figures (the program's, while shared) and whether the
        pace was shared (``shared_limiter``) or why this task fell back (``shared_limiter_fallback``)."""
        figures = self._shared_figures() if self.fallback_reason is None else None
        if figures is None:
            local = self.fallback.stats()
            figures = {
                "learned_requests_per_minute": local.get("learned_requests_per_minute"),
                "paced_requests_per_minute": local.get("paced_requests_per_minute"),
                "rate_decreases": local.get("rate_decreases"),
            }
        return {
            "configured_requests_per_minute": round(self.requests_per_minute),
            **figures,
            "rate_limited": self.rate_limited,
            "shared_limiter": f"{self.where} {self.key}",
            "shared_limiter_fallback": None
            if self.fallback_reason is None
            else f"{self.fallback_reason}; paced alone at "
            f"{self.fallback.requests_per_minute:.0f} requests/min"
            + (f" ({self.fallback_note})" if self.fallback_note else ""),
        }

    def __repr__(self) -> str:
        return (
            f"SharedRateLimiter(key={self.key!r}, requests_per_minute={self.requests_per_minute:g}, "
            f"shared={self.shared})"
        )


__all__ = ["DEFAULT_HOLD_S", "DEFAULT_TTL_S", "KEY_PREFIX", "SharedRateLimiter", "program_key"]
