"""Helpers for the client unit tests: a client whose waits are recorded instead of slept."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from requests.structures import CaseInsensitiveDict
from urllib3 import HTTPHeaderDict

from airflow_provider_crowdtwist.client import ClientConfig, CrowdTwistClient
from airflow_provider_crowdtwist.client import transport as transport_module
from airflow_provider_crowdtwist.client.transport import Answer, Transport, TransportFailed

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


# -- a fake at the transport seam -------------------------------------------------------------------


class SentRequest:
    """One request as the fake transport received it (the parts the tests look at)."""

    def __init__(
        self, transport: Any, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> None:
        parts = urlsplit(url)
        self.transport = transport
        self.method = method
        self.url = url
        self.netloc = parts.netloc
        self.path = parts.path
        self.query = parts.query
        self.qs = parse_qs(parts.query)
        self.headers = CaseInsensitiveDict(headers)
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class Route:
    """Answers for one method and URL (a listed answer each time, the last one repeated), like
    ``requests_mock``'s: ``status_code``, ``json``, ``text``, ``content``, ``headers``, ``reason``,
    ``exc``."""

    def __init__(self, method: str, url: str, answers: list[dict[str, Any]]) -> None:
        parts = urlsplit(url)
        self.method = method
        self.base = f"{parts.scheme}://{parts.netloc}{parts.path}"
        self.query = parse_qs(parts.query)
        self.answers = answers
        self.request_history: list[SentRequest] = []

    def matches(self, request: SentRequest) -> bool:
        if request.method != self.method or request.url.split("?")[0] != self.base:
            return False
        return all(request.qs.get(name) == values for name, values in self.query.items())

    @property
    def call_count(self) -> int:
        return len(self.request_history)

    @property
    def called(self) -> bool:
        return bool(self.request_history)

    @property
    def last_request(self) -> SentRequest | None:
        return self.request_history[-1] if self.request_history else None

    def answer(self, request: SentRequest) -> Answer:
        spec = self.answers[min(len(self.request_history), len(self.answers) - 1)]
        self.request_history.append(request)
        if "exc" in spec:
            raise spec["exc"]
        headers = HTTPHeaderDict(spec.get("headers") or {})
        if "json" in spec:
            value = spec["json"](request, None) if callable(spec["json"]) else spec["json"]
            content = json.dumps(value).encode()
            headers.setdefault("Content-Type", "application/json")
        elif "text" in spec:
            content = spec["text"].encode()
        else:
            content = spec.get("content", b"")
        status = spec.get("status_code", 200)
        return Answer(status, spec.get("reason", "OK"), headers, content, request.url)


class FakeWire(Route):
    """Every request any client sends in a test goes here instead of onto the network."""

    def __init__(self) -> None:
        super().__init__("*", "https://fake/", [{}])
        self.routes: list[Route] = []

    def register(
        self, method: str, url: str, answers: list[dict[str, Any]] | None = None, **one: Any
    ) -> Route:
        route = Route(method, url, answers if answers is not None else [one])
        self.routes.insert(0, route)  # the latest registration wins, as with requests_mock
        return route

    def get(self, url: str, answers: list[dict[str, Any]] | None = None, **one: Any) -> Route:
        return self.register("GET", url, answers, **one)

    def post(self, url: str, answers: list[dict[str, Any]] | None = None, **one: Any) -> Route:
        return self.register("POST", url, answers, **one)

    def put(self, url: str, answers: list[dict[str, Any]] | None = None, **one: Any) -> Route:
        return self.register("PUT", url, answers, **one)

    def delete(self, url: str, answers: list[dict[str, Any]] | None = None, **one: Any) -> Route:
        return self.register("DELETE", url, answers, **one)

    def reset_mock(self) -> None:
        self.request_history = []
        for route in self.routes:
            route.request_history = []

    def send(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, transport: Any = None
    ) -> Answer:
        request = SentRequest(transport, method, url, headers, body)
        self.request_history.append(request)
        for route in self.routes:
            if route.matches(request):
                return route.answer(request)
        raise AssertionError(f"no fake answer for {method} {url}")


def failed(exc: BaseException, *, sent: bool) -> TransportFailed:
    """The failure the transport reports for ``exc`` raised before (``sent=False``) or after the
    request was written."""
    kind = transport_module._sent_failure(exc) if sent else transport_module._connect_failure(exc)
    return TransportFailed(kind, type(exc).__name__)


def reset() -> TransportFailed:
    return failed(ConnectionResetError(104, "reset"), sent=True)


def refused() -> TransportFailed:
    return failed(ConnectionRefusedError(111, "refused"), sent=False)


def read_timeout() -> TransportFailed:
    return failed(TimeoutError("timed out"), sent=True)


def connect_timeout() -> TransportFailed:
    return failed(TimeoutError("timed out"), sent=False)


def tls_failure() -> TransportFailed:
    return failed(ssl.SSLError("certificate verify failed"), sent=False)


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> FakeWire:
    """Replaces the transport's ``send`` (every client's) with :class:`FakeWire`'s."""
    fake = FakeWire()
    monkeypatch.setattr(Transport, "send", lambda self, *args: fake.send(*args, transport=self))
    return fake
