"""Misbehaviour on demand: the ways a real service fails, made reproducible.

A sync engine is only as good as its handling of the bad days, and the bad days cannot be ordered from
production. Each knob here reproduces one failure mode the provider must survive:

- ``latency_ms``: every API request is held this long (``asyncio.sleep``, so hundreds can wait at once);
- ``rate_limit_per_minute``: past it the request is answered 429 with ``Retry-After`` (the contract
  leaves open whether CrowdTwist sends the header, hence ``retry_after``, and whether the limit is a
  leaky bucket or a per-minute window, hence ``rate_limit_mode`` = ``bucket`` | ``window``);
- ``error_rate`` / ``error_status``: a fraction answered 500 or 503 *before* anything is applied;
- ``drop_rate``: a fraction whose connection is closed without an answer, before anything is applied;
- ``applied_then_503_rate``: a fraction that is applied and *then* answered 503 -- the ambiguous outcome
  that makes a naive retry award points twice;
- ``applied_then_drop_rate``: a fraction that is applied and then has its connection closed unanswered
  (a reset or a proxy timeout after the work was done);
- ``odd_answer_rate`` / ``odd_answers``: a fraction that is applied and then answered in a way a
  client must not misread: ``html_200`` (an HTML page), ``empty_200`` (no body), ``accepted_202``,
  ``x_gzip`` (the JSON compressed, ``Content-Encoding: x-gzip``), ``early_hints`` (a ``103`` before
  the real answer); one of ``odd_answers`` is drawn per request;
- ``fault_routes``: limit drop/error/applied-then-* to some endpoints (say, only ``credit``), so a test
  can break credits while member creation stays healthy. Latency and the rate limit apply everywhere.

Decisions come from a seeded ``random.Random`` so a failing test can be replayed.
"""

from __future__ import annotations

import gzip
import json
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from airflow_provider_crowdtwist.sandbox.http import Response

ERROR_STATUSES = (500, 502, 503, 504)
ROUTE_NAMES = (
    "create",
    "get",
    "update",
    "delete",
    "credit",
    "activities",
    "extended",
    "history",
    "deletion_status",
    "purchase",
    "return",
    "void",
)
RATE_LIMIT_MODES = ("bucket", "window")
ODD_ANSWERS = ("html_200", "empty_200", "accepted_202", "x_gzip", "early_hints")


@dataclass(frozen=True)
class FaultSettings:
    """The fault knobs; all off by default so a plain sandbox behaves like a healthy service."""

    latency_ms: float = 0.0
    rate_limit_per_minute: int = 0
    rate_limit_burst: int | None = None
    rate_limit_mode: str = "bucket"
    rate_limit_window_s: float = 60.0
    retry_after: bool = True
    error_rate: float = 0.0
    error_status: int = 500
    drop_rate: float = 0.0
    applied_then_503_rate: float = 0.0
    applied_then_drop_rate: float = 0.0
    odd_answer_rate: float = 0.0
    odd_answers: tuple[str, ...] = ODD_ANSWERS
    fault_routes: tuple[str, ...] = ()
    seed: int | None = None

    def validate(self) -> None:
        """Reject impossible values with the field's name, before the server answers anything."""
        if not _is_number(self.latency_ms) or self.latency_ms < 0:
            raise ValueError(f"latency_ms must be a number >= 0, got {self.latency_ms!r}")
        if not _is_int(self.rate_limit_per_minute) or self.rate_limit_per_minute < 0:
            raise ValueError(
                "rate_limit_per_minute must be an integer >= 0 (0 = no limit), "
                f"got {self.rate_limit_per_minute!r}"
            )
        if self.rate_limit_burst is not None and (
            not _is_int(self.rate_limit_burst) or self.rate_limit_burst < 1
        ):
            raise ValueError(f"rate_limit_burst must be an integer >= 1, got {self.rate_limit_burst!r}")
        if self.rate_limit_mode not in RATE_LIMIT_MODES:
            raise ValueError(
                f"rate_limit_mode must be one of {RATE_LIMIT_MODES}, got {self.rate_limit_mode!r}"
            )
        if not _is_number(self.rate_limit_window_s) or self.rate_limit_window_s <= 0:
            raise ValueError(f"rate_limit_window_s must be a number > 0, got {self.rate_limit_window_s!r}")
        if not isinstance(self.retry_after, bool):
            raise ValueError(f"retry_after must be true or false, got {self.retry_after!r}")
        if not isinstance(self.fault_routes, tuple) or any(r not in ROUTE_NAMES for r in self.fault_routes):
            raise ValueError(f"fault_routes must be names from {ROUTE_NAMES}, got {self.fault_routes!r}")
        if not self.odd_answers or any(a not in ODD_ANSWERS for a in self.odd_answers):
            raise ValueError(f"odd_answers must be names from {ODD_ANSWERS}, got {self.odd_answers!r}")
        for name in (
            "error_rate",
            "drop_rate",
            "applied_then_503_rate",
            "applied_then_drop_rate",
            "odd_answer_rate",
        ):
            value = getattr(self, name)
            if not _is_number(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a fraction between 0 and 1, got {value!r}")
        if self.error_status not in ERROR_STATUSES:
            raise ValueError(f"error_status must be one of {ERROR_STATUSES}, got {self.error_status!r}")
        if self.seed is not None and not _is_int(self.seed):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    def updated(self, changes: Mapping[str, Any]) -> FaultSettings:
        """A copy with ``changes`` applied; unknown names are refused so a typo is not silently ignored."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(
                f"unknown fault setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        changes = dict(changes)
        for name in ("fault_routes", "odd_answers"):
            if isinstance(changes.get(name), (list, str)):
                names = changes[name]
                changes[name] = tuple(names.split(",") if isinstance(names, str) else names)
        new = replace(self, **changes)
        new.validate()
        return new

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class TokenBucket:
    """A leaky-bucket rate limit like the one integrators report in front of CrowdTwist.

    The bucket holds ``burst`` tokens (by default one second's worth) and refills at
    ``per_minute / 60`` per second. A full-minute bucket would let a test run for a minute before the
    first 429, which is useless for testing; one second's worth gets the 429s to appear at once while the
    long-run rate is still exactly ``per_minute``.
    """

    def __init__(self, per_minute: int, burst: int | None, clock: Callable[[], float]) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(burst if burst is not None else max(1, math.ceil(self.rate)))
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()

    def take(self) -> float:
        """Take one token; return 0 when granted, else the seconds until a token is free."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class FixedWindow:
    """The other reading of the limit: at most ``per_minute`` requests in each fixed minute.

    ``window_s`` shortens the window (the limit scales with it) so a test sees the window's signature --
    a full burst at the start of each window, then 429s until it ends -- without waiting a minute.
    """

    def __init__(self, per_minute: int, window_s: float, clock: Callable[[], float]) -> None:
        self.window_s = window_s
        self.limit = max(1, round(per_minute * window_s / 60.0))
        self.clock = clock
        self.window_start = clock()
        self.count = 0

    def take(self) -> float:
        """Count one request; return 0 when inside the limit, else the seconds until the window ends."""
        now = self.clock()
        if now - self.window_start >= self.window_s:
            self.window_start += (now - self.window_start) // self.window_s * self.window_s
            self.count = 0
        if self.count < self.limit:
            self.count += 1
            return 0.0
        return self.window_start + self.window_s - now


def _limiter(settings: FaultSettings, clock: Callable[[], float]) -> TokenBucket | FixedWindow | None:
    if not settings.rate_limit_per_minute:
        return None
    if settings.rate_limit_mode == "window":
        return FixedWindow(settings.rate_limit_per_minute, settings.rate_limit_window_s, clock)
    return TokenBucket(settings.rate_limit_per_minute, settings.rate_limit_burst, clock)


_LIMIT_KNOBS = ("rate_limit_per_minute", "rate_limit_burst", "rate_limit_mode", "rate_limit_window_s")


@dataclass
class FaultDecision:
    """What to do with one request, decided before it is handled."""

    rate_limited_for: float = 0.0  # > 0: answer 429; seconds until the bucket has a token
    drop: bool = False
    error_status: int | None = None
    applied_then_503: bool = False
    applied_then_drop: bool = False
    odd_answer: str | None = None  # applied, then answered this way (a name from ODD_ANSWERS)


class FaultInjector:
    """Holds the live fault settings and decides, request by request, what goes wrong.

    Only the event-loop thread calls :meth:`decide`, so no lock is needed; settings changes come through
    the admin endpoint, on the same thread.
    """

    def __init__(self, settings: FaultSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.configure(settings)

    def configure(self, settings: FaultSettings) -> None:
        settings.validate()
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.bucket = _limiter(settings, self._clock)

    def update(self, changes: Mapping[str, Any]) -> FaultSettings:
        """Apply a runtime change (the admin call) without forgetting what it does not touch.

        The rate-limit bucket keeps its level unless the limit itself changes (turning on
        ``retry_after=False`` must not hand out a fresh burst), and the random sequence restarts
        only when a ``seed`` is given, so setting the same seed twice replays the same faults.
        """
        old = self.settings
        new = old.updated(changes)
        self.settings = new
        if "seed" in changes:
            self.rng = random.Random(new.seed)
        if any(getattr(new, k) != getattr(old, k) for k in _LIMIT_KNOBS):
            self.bucket = _limiter(new, self._clock)
        return new

    @property
    def latency_s(self) -> float:
        return self.settings.latency_ms / 1000.0

    def decide(self, route: str | None = None) -> FaultDecision:
        """The fate of one request to ``route`` (a name from ``ROUTE_NAMES``, None when unknown)."""
        s = self.settings
        decision = FaultDecision()
        if self.bucket is not None:
            wait = self.bucket.take()
            if wait > 0:
                decision.rate_limited_for = wait
                return decision
        if s.fault_routes and route not in s.fault_routes:
            return decision
        if s.drop_rate and self.rng.random() < s.drop_rate:
            decision.drop = True
            return decision
        if s.error_rate and self.rng.random() < s.error_rate:
            decision.error_status = s.error_status
            return decision
        if s.applied_then_503_rate and self.rng.random() < s.applied_then_503_rate:
            decision.applied_then_503 = True
        elif s.applied_then_drop_rate and self.rng.random() < s.applied_then_drop_rate:
            decision.applied_then_drop = True
        elif s.odd_answer_rate and self.rng.random() < s.odd_answer_rate:
            decision.odd_answer = self.rng.choice(s.odd_answers)
        return decision

    @staticmethod
    def retry_after_header(wait_s: float) -> str:
        """``Retry-After`` in whole seconds (HTTP allows no fractions), never 0 so clients do wait."""
        return str(max(1, math.ceil(wait_s)))


def odd_answer(name: str, status: int, payload: Any) -> Response:
    """An applied request's answer, made odd the way ``name`` says (see ``ODD_ANSWERS``)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    if name == "html_200":
        return Response(200, b"<html><body><h1>OK</h1></body></html>", content_type="text/html")
    if name == "empty_200":
        return Response(200, b"")
    if name == "accepted_202":
        return Response(202, body)
    if name == "x_gzip":
        return Response(status, gzip.compress(body), {"Content-Encoding": "x-gzip"})
    hints = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    return Response(status, body, interim=hints)
