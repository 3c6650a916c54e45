"""Which failures are retried, and how long to wait before the next attempt.

* only 429, 5xx and connection failures are retried: a refused row cannot succeed and burns budget;
* backoff is exponential with *full jitter* (uniform in ``[0, min(cap, base * 2**n)]``), so workers hit
  by one outage do not come back in lockstep; a ``Retry-After`` (seconds or HTTP date) wins;
* the total wait of one call is capped (``max_retry_wait``): a longer ``Retry-After`` ends the retries;
* a credit is never resent after an *ambiguous* attempt (CrowdTwist has no idempotency key): the
  credit sync looks it up in the member's activity history instead. What was certainly not applied
  (429, a refused connection) is retried as for any other call.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from airflow_provider_crowdtwist.client.errors import ConnectionProblem, CrowdTwistError


def is_retryable_status(status: int) -> bool:
    """429 (rate limited) and 5xx (server trouble, maintenance windows) are worth another try."""
    return status == 429 or 500 <= status <= 599


def is_ambiguous_status(status: int) -> bool:
    """A 5xx may come after the server applied the request; a 429 or other 4xx was not applied."""
    return 500 <= status <= 599


#: The refusals CrowdTwist documents (400 input/param error, 401, 403, 404) and the rate limit: the
#: request was certainly not applied. Any other non-2xx may come after it was (docs/activity-credits.md).
CERTAIN_REFUSALS = frozenset((400, 401, 403, 404, 429))


def is_certain_refusal(status: int) -> bool:
    """True when an answer with ``status`` proves the request was not applied."""
    return status in CERTAIN_REFUSALS


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or HTTP date); None if unusable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now()
    if seconds != seconds or seconds == float("inf"):  # NaN / inf
        return None
    return max(0.0, seconds)


def backoff_delay(
    retry_number: int, base: float, cap: float, rng: Callable[[float, float], float] = random.uniform
) -> float:
    """Full-jitter exponential backoff for the ``retry_number``-th retry (1-based)."""
    exponent = min(max(retry_number - 1, 0), 62)
    ceiling = min(cap, base * (2**exponent))
    return rng(0.0, ceiling) if ceiling > 0 else 0.0


@dataclass(frozen=True)
class TransportFailure:
    """How the client must treat a failure below HTTP (decided by the transport from its phase)."""

    description: str  # short, secret-free kind, e.g. "read timeout"
    retryable: bool
    ambiguous: bool
    problem: ConnectionProblem = "other"


class ResponseLike(Protocol):
    """What the client reads of an answer (a ``transport.Answer``, or a fake's)."""

    @property
    def status_code(self) -> int: ...
    @property
    def reason(self) -> str: ...
    @property
    def headers(self) -> Any: ...
    @property
    def content(self) -> bytes: ...


@dataclass
class AttemptResult:
    """The outcome of one HTTP attempt, in the form the retry decisions need.

    Either ``response`` (any status) or ``error`` (a wrapped transport failure) is set. The
    response is kept only until the client turns it into a return value or a typed error.
    """

    response: ResponseLike | None = None
    error: CrowdTwistError | None = None
    retryable: bool = False
    ambiguous: bool = False
    retry_after: float | None = None

    @property
    def status(self) -> int | None:
        return self.response.status_code if self.response is not None else None


@dataclass
class RetryPlan:
    """The wait before the next attempt of one call, or None to stop retrying."""

    max_retries: int
    max_retry_wait: float
    backoff_base: float
    backoff_max: float
    #: A credit: never resend after an attempt that may have been applied.
    credit_mode: bool = False
    rng: Callable[[float, float], float] = random.uniform

    def next_wait(
        self,
        attempt: AttemptResult,
        retries_done: int,
        waited: float,
        any_ambiguous: bool = False,
    ) -> float | None:
        if not attempt.retryable or retries_done >= self.max_retries:
            return None
        if self.credit_mode and (attempt.ambiguous or any_ambiguous):
            return None
        remaining = self.max_retry_wait - waited
        if attempt.retry_after is not None:
            return attempt.retry_after if attempt.retry_after <= remaining else None
        if remaining <= 0:
            return None
        return min(backoff_delay(retries_done + 1, self.backoff_base, self.backoff_max, self.rng), remaining)


__all__ = [
    "CERTAIN_REFUSALS",
    "AttemptResult",
    "ResponseLike",
    "RetryPlan",
    "TransportFailure",
    "backoff_delay",
    "is_ambiguous_status",
    "is_certain_refusal",
    "is_retryable_status",
    "parse_retry_after",
]
