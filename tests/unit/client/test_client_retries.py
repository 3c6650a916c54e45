"""Retry rules: what is retried, how long the client waits, the total wait cap, the error it ends with."""

from __future__ import annotations

import logging
from email.utils import formatdate
from typing import Any

import pytest
from urllib3.exceptions import NewConnectionError, ProtocolError

from airflow_provider_crowdtwist.client import (
    CrowdTwistAuthError,
    CrowdTwistConnectionError,
    CrowdTwistError,
    CrowdTwistForbiddenError,
    CrowdTwistNotFoundError,
    CrowdTwistRateLimitError,
    CrowdTwistServerError,
    CrowdTwistValidationError,
)
from airflow_provider_crowdtwist.client.transport import TransportFailed

from .conftest import RecordingLimiter, connect_timeout, read_timeout, refused, reset, tls_failure

ACTIVITIES = "https://api.test/v2/activities"
OK = {"json": {"activities": [{"id": "purchase"}]}}


def _reset() -> TransportFailed:
    return reset()


def _refused() -> TransportFailed:
    return refused()


def test_429_with_retry_after_waits_that_long_and_pauses_everyone(
    wire: Any, make_client: Any, clock: Any
) -> None:
    wire.get(ACTIVITIES, [{"status_code": 429, "headers": {"Retry-After": "7"}}, OK])
    limiter = RecordingLimiter()
    client = make_client(limiter=limiter)
    assert [a.id for a in client.list_activities()] == ["purchase"]
    assert clock.sleeps == [7.0]
    assert limiter.pauses == [7.0]
    assert limiter.rate_limited == [(7.0, 1000.0)]  # sent at the clock's start: nothing slept before
    assert limiter.successes == 1
    assert limiter.acquired == 2 == client.requests_sent


def test_429_without_retry_after_backs_off_and_reports_to_the_limiter(
    wire: Any, make_client: Any, clock: Any
) -> None:
    """Without Retry-After the request backs off on its own; the limiter learns from the report.

    (Until issue 16 the backoff also paused every worker; now the adaptive limiter cuts the pace.)
    """
    wire.get(ACTIVITIES, [{"status_code": 429}, {"status_code": 429}, OK])
    limiter = RecordingLimiter()
    make_client(limiter=limiter).list_activities()
    assert clock.sleeps == [0.01, 0.02]  # the jitter draw is pinned to its maximum in these tests
    assert limiter.pauses == []
    assert limiter.rate_limited == [(None, 1000.0), (None, 1000.01)]  # each with its send time
    assert limiter.successes == 1


def test_retry_after_as_http_date(wire: Any, make_client: Any, clock: Any) -> None:
    now = 1_700_000_000.0
    wire.get(
        ACTIVITIES, [{"status_code": 429, "headers": {"Retry-After": formatdate(now + 12, usegmt=True)}}, OK]
    )
    make_client(wall_clock=lambda: now).list_activities()
    assert clock.sleeps == [pytest.approx(12.0)]


def test_retry_after_on_503_is_honoured(wire: Any, make_client: Any, clock: Any) -> None:
    wire.get(ACTIVITIES, [{"status_code": 503, "headers": {"Retry-After": "2"}}, OK])
    limiter = RecordingLimiter()
    make_client(limiter=limiter).list_activities()
    assert clock.sleeps == [2.0] and limiter.pauses == []  # only a 429 slows every worker
    assert limiter.rate_limited == [] and limiter.successes == 2  # a 503 is an answer, not a 429


def test_exponential_backoff_with_full_jitter_and_cap(wire: Any, clock: Any) -> None:
    from airflow_provider_crowdtwist.client import CrowdTwistClient

    from .conftest import make_config

    bounds: list[tuple[float, float]] = []

    def rng(low: float, high: float) -> float:
        bounds.append((low, high))
        return high / 2

    wire.get(ACTIVITIES, status_code=500, text="boom")
    client = CrowdTwistClient(
        make_config(backoff_base=0.5, backoff_max=3.0, max_retries=5), sleep=clock.sleep, clock=clock, rng=rng
    )
    with pytest.raises(CrowdTwistServerError):
        client.list_activities()
    assert bounds == [(0.0, 0.5), (0.0, 1.0), (0.0, 2.0), (0.0, 3.0), (0.0, 3.0)]
    assert clock.sleeps == [0.25, 0.5, 1.0, 1.5, 1.5]


def test_5xx_exhausted_is_a_server_error_and_ambiguous(wire: Any, make_client: Any, clock: Any) -> None:
    wire.get(ACTIVITIES, status_code=503, json={"error": "internal_error", "message": "Maintenance"})
    client = make_client(max_retries=2)
    with pytest.raises(CrowdTwistServerError) as info:
        client.list_activities()
    error = info.value
    assert (error.status, error.code, error.message) == (503, "internal_error", "Maintenance")
    assert error.ambiguous is True
    assert client.requests_sent == 3 and len(clock.sleeps) == 2
    assert "GET /v2/activities -> 503 internal_error: Maintenance" in str(error)


def test_connection_reset_is_retried_and_ambiguous(wire: Any, make_client: Any) -> None:
    wire.get(ACTIVITIES, [{"exc": _reset()}, OK])
    client = make_client()
    assert len(client.list_activities()) == 1
    assert client.requests_sent == 2

    wire.get(ACTIVITIES, exc=_reset())
    with pytest.raises(CrowdTwistConnectionError) as info:
        client.list_activities()
    assert info.value.ambiguous is True and info.value.status is None
    assert "connection error" in str(info.value)


def test_read_timeout_is_retried_and_ambiguous(wire: Any, make_client: Any) -> None:
    wire.get(ACTIVITIES, exc=read_timeout())
    client = make_client(max_retries=1)
    with pytest.raises(CrowdTwistConnectionError) as info:
        client.list_activities()
    assert info.value.ambiguous is True and "read timeout" in info.value.message
    assert client.requests_sent == 2


@pytest.mark.parametrize("exc", [_refused(), connect_timeout()])
def test_connect_failures_are_retried_and_not_ambiguous(wire: Any, make_client: Any, exc: Exception) -> None:
    wire.get(ACTIVITIES, exc=exc)
    client = make_client(max_retries=2)
    with pytest.raises(CrowdTwistConnectionError) as info:
        client.list_activities()
    assert info.value.ambiguous is False
    assert client.requests_sent == 3


def test_tls_errors_are_not_retried(wire: Any, make_client: Any) -> None:
    wire.get(ACTIVITIES, exc=tls_failure())
    client = make_client()
    with pytest.raises(CrowdTwistConnectionError, match="TLS error"):
        client.list_activities()
    assert client.requests_sent == 1


@pytest.mark.parametrize(
    ("status", "cls", "body"),
    [
        (400, CrowdTwistValidationError, {"error": "input_error", "message": "Unrecognized attribute name"}),
        (401, CrowdTwistAuthError, {"error": "unauthorized", "message": "Invalid API key"}),
        (403, CrowdTwistForbiddenError, {"error": "forbidden", "message": "User is inactive."}),
        (404, CrowdTwistNotFoundError, {"error": "page_not_found", "message": "User does not exist."}),
        (409, CrowdTwistValidationError, {"error": "param_error", "message": "conflict"}),
        (422, CrowdTwistValidationError, {"error": "param_error", "message": "bad"}),
    ],
)
def test_other_4xx_are_never_retried_and_typed(
    wire: Any, make_client: Any, clock: Any, status: int, cls: type, body: dict
) -> None:
    wire.get("https://api.test/v2/users/x?id_type=email", status_code=status, json=body)
    client = make_client()
    with pytest.raises(cls) as info:
        client.get_user("x")
    error = info.value
    assert (error.status, error.code, error.message) == (status, body["error"], body["message"])
    assert error.ambiguous is False
    assert (error.method, error.path) == ("GET", "/v2/users/x?id_type=email")
    assert client.requests_sent == 1 and clock.sleeps == []


def test_total_wait_cap_stops_a_long_retry_after(wire: Any, make_client: Any, clock: Any) -> None:
    wire.get(ACTIVITIES, status_code=429, headers={"Retry-After": "30"}, json={"error": "rate_limited"})
    client = make_client(max_retry_wait=10.0)
    with pytest.raises(CrowdTwistRateLimitError) as info:
        client.list_activities()
    assert info.value.retry_after == 30.0 and info.value.ambiguous is False
    assert client.requests_sent == 1 and clock.sleeps == []


def test_total_wait_cap_clips_backoff(wire: Any, make_client: Any, clock: Any) -> None:
    wire.get(ACTIVITIES, status_code=502, text="<html>Bad gateway</html>")
    client = make_client(backoff_base=0.4, backoff_max=10.0, max_retries=10, max_retry_wait=1.0)
    with pytest.raises(CrowdTwistServerError) as info:
        client.list_activities()
    assert clock.sleeps == [0.4, pytest.approx(0.6)]
    assert sum(clock.sleeps) <= 1.0
    assert client.requests_sent == 3
    assert info.value.message == "<html>Bad gateway</html>"


def test_retries_are_logged_at_warning(wire: Any, make_client: Any, caplog: Any) -> None:
    wire.get("https://api.test/v2/users/a%40b.com?id_type=email", [{"status_code": 503}, {"json": {}}])
    with caplog.at_level(logging.WARNING, logger="airflow_provider_crowdtwist"):
        make_client().get_user("a@b.com")
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "GET /v2/users/a%40b.com?id_type=email -> 503; retry 1 of 3 in 0.01 s" in record.getMessage()


def test_redirects_are_not_followed(wire: Any, make_client: Any) -> None:
    wire.get(ACTIVITIES, status_code=302, headers={"Location": "https://elsewhere.example/steal"})
    client = make_client()
    with pytest.raises(
        CrowdTwistError, match=r"unexpected redirect to https://elsewhere\.example/steal"
    ) as info:
        client.list_activities()
    assert info.value.status == 302 and client.requests_sent == 1
    assert wire.call_count == 1


def test_every_attempt_takes_a_token(wire: Any, make_client: Any) -> None:
    wire.get(ACTIVITIES, [{"status_code": 500}, {"exc": _reset()}, OK])
    limiter = RecordingLimiter()
    client = make_client(limiter=limiter)
    client.list_activities()
    assert limiter.acquired == 3 == client.requests_sent == wire.call_count


def test_transport_failures_are_described_from_their_types_and_phase() -> None:
    """As ``urllib3`` raises them: before anything was sent (never ambiguous) and after."""
    from http.client import RemoteDisconnected

    from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, ReadTimeoutError

    from airflow_provider_crowdtwist.client.transport import _connect_failure, _sent_failure

    refused_exc = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] refused")  # type: ignore[arg-type]
    refused_exc.__cause__ = ConnectionRefusedError(111, "Connection refused")
    before = {
        "could not connect: the host name does not resolve (DNS)": (
            NameResolutionError("h.invalid", None, OSError("Name or service not known")),  # type: ignore[arg-type]
            "dns",
        ),
        "could not connect: connection refused": (refused_exc, "refused"),
        "could not connect: connect timeout": (ConnectTimeoutError("slow"), "timeout"),
    }
    for description, (exc, problem) in before.items():
        failure = _connect_failure(exc)
        assert (failure.description, failure.problem, failure.ambiguous) == (description, problem, False)
    after = {
        "connection error: the connection was reset": ProtocolError("aborted", ConnectionResetError()),
        "connection error: closed without an answer": ProtocolError("aborted", RemoteDisconnected("closed")),
        "read timeout": ReadTimeoutError(None, "/", "read timed out"),  # type: ignore[arg-type]
    }
    for description, exc in after.items():
        failure = _sent_failure(exc)
        assert (failure.description, failure.retryable, failure.ambiguous) == (description, True, True)


def test_final_429_still_pauses_the_other_workers(wire: Any, make_client: Any) -> None:
    wire.get(ACTIVITIES, status_code=429, headers={"Retry-After": "40"})
    limiter = RecordingLimiter()
    with pytest.raises(CrowdTwistRateLimitError):
        make_client(limiter=limiter, max_retry_wait=10.0).list_activities()
    assert limiter.pauses == [40.0]
