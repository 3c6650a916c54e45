"""Which failures are retried, and how long to wait before the next attempt.

The rules, from the API contract and from what users of similar providers asked for:

* retry only 429, 5xx and connection errors/timeouts; never another 4xx (resending a refused row
  cannot succeed and burns the program's request budget);
* exponential backoff with *full jitter* (a uniform draw in ``[0, min(cap, base * 2**n)]``), so that
  many workers hit by the same outage do not come back in lockstep;
* a ``Retry-After`` header (delta seconds or an HTTP date) wins over the backoff;
* the total time spent waiting between attempts of one call is capped (``max_retry_wait``): a
  ``Retry-After`` longer than what is left ends the retries instead of being shortened;
* for activity credits, once an attempt was *ambiguous* (it may have been applied), nothing is resent:
  CrowdTwist has no idempotency key and no documented duplicate window, so a blind resend could award
  twice. The ambiguous error goes to the credit sync, which looks the credit up in the member's
  activity history before it decides (see ``sync/credits/verify.py``). Failures that were certainly
  not applied (429, a refused connection) are retried as for any other call.

This module holds the decisions as plain functions and a small :class:`RetryPlan`; the client's
retry loop asks the plan for the wait before each next attempt.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from http.client import RemoteDisconnected
from typing import Any, Protocol

import requests
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
)

from airflow_provider_crowdtwist.client.errors import ConnectionProblem, CrowdTwistError


def is_retryable_status(status: int) -> bool:
    """429 (rate limited) and 5xx (server trouble, maintenance windows) are worth another try."""
    return status == 429 or 500 <= status <= 599


def is_ambiguous_status(status: int) -> bool:
    """A 5xx may come after the server applied the request; a 429 or other 4xx was not applied."""
    return 500 <= status <= 599


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
    """How the client must treat an exception raised by ``requests``."""

    description: str  # short, secret-free kind, e.g. "read timeout"
    retryable: bool
    ambiguous: bool
    problem: ConnectionProblem = "other"


def classify_transport_error(exc: BaseException) -> TransportFailure:
    """Decide retry and ambiguity from the exception *type*, never from its (URL-bearing) text.

    A request that never reached the server (connect refused, DNS, connect timeout, TLS handshake)
    is not ambiguous. One that was sent but got no complete answer (read timeout, connection reset
    or closed mid-response) may have been applied.
    """
    if isinstance(exc, requests.exceptions.SSLError):
        return TransportFailure("TLS error", retryable=False, ambiguous=False, problem="tls")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return TransportFailure("connect timeout", retryable=True, ambiguous=False, problem="timeout")
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return TransportFailure("read timeout", retryable=True, ambiguous=True, problem="timeout")
    if isinstance(exc, requests.exceptions.Timeout):
        return TransportFailure("timeout", retryable=True, ambiguous=True, problem="timeout")
    if isinstance(exc, requests.exceptions.ProxyError):
        return TransportFailure("proxy error", retryable=True, ambiguous=False)
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return TransportFailure("connection broken while reading the response", True, True, "closed")
    if isinstance(exc, requests.exceptions.ConnectionError):
        inner = exc.args[0] if exc.args else None
        reason = inner.reason if isinstance(inner, MaxRetryError) else None
        if isinstance(reason, NameResolutionError):
            return TransportFailure(
                "could not connect: the host name does not resolve (DNS)", True, False, "dns"
            )
        if isinstance(reason, NewConnectionError):  # (a subclass of ConnectTimeoutError in urllib3 2)
            refused = isinstance(reason.__cause__ or reason.__context__, ConnectionRefusedError) or (
                "refused" in str(reason).lower()
            )
            what = "connection refused" if refused else "no connection"
            return TransportFailure(
                f"could not connect: {what}",
                retryable=True,
                ambiguous=False,
                problem="refused" if refused else "other",
            )
        if isinstance(reason, ConnectTimeoutError):
            return TransportFailure("could not connect: connect timeout", True, False, "timeout")
        # Reset / aborted / remote closed after the request went out: may have been applied.
        cause = inner.args[1] if isinstance(inner, ProtocolError) and len(inner.args) > 1 else None
        if isinstance(cause, RemoteDisconnected):  # (a subclass of ConnectionResetError)
            return TransportFailure("connection error: closed without an answer", True, True, "closed")
        if isinstance(cause, ConnectionResetError):
            return TransportFailure("connection error: the connection was reset", True, True, "reset")
        return TransportFailure("connection error", retryable=True, ambiguous=True)
    if isinstance(
        exc,
        (
            requests.exceptions.InvalidURL,
            requests.exceptions.InvalidHeader,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
            requests.exceptions.URLRequired,
        ),
    ):
        return TransportFailure("invalid request", retryable=False, ambiguous=False)
    return TransportFailure("request failed", retryable=False, ambiguous=True)


class ResponseLike(Protocol):
    """What the client reads of an answer: a ``requests.Response`` or a ``transport.Answer``."""

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
    finished_at: float = 0.0

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
    "AttemptResult",
    "ResponseLike",
    "RetryPlan",
    "TransportFailure",
    "backoff_delay",
    "classify_transport_error",
    "is_ambiguous_status",
    "is_retryable_status",
    "parse_retry_after",
]
