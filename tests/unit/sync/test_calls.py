"""The calls sample: per-class caps, the firsts always kept, secrets gone, PII hashed unless asked."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from airflow_provider_crowdtwist.client.observe import Call
from airflow_provider_crowdtwist.sync.calls import MAX_BODY, CallSampler, call_class, pii_hash

ANSWER = b'{"error": "input_error", "message": "ann@example.com taken"}'


def call(status: int | None, *, code: str | None = None, ambiguous: bool = False, **kw: Any) -> Call:
    body = {"email_address": "ann@example.com", "first_name": "Ann", "password": "hunter2", "custom_data": {}}
    return Call(
        method=kw.get("method", "PUT"),
        path=kw.get("path", "/v2/users/ann%40example.com?id_type=email&api_key=KEY123"),
        request_body=kw.get("request_body", json.dumps(body).encode()),
        status=status,
        response_body=kw.get("response_body", ANSWER),
        latency_s=0.0123,
        attempt=kw.get("attempt", 1),
        ambiguous=ambiguous,
        error_code=code,
    )


def lines(sampler: CallSampler) -> list[dict[str, Any]]:
    out = io.StringIO()
    sampler.write(out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_at_most_per_class_and_the_firsts_always() -> None:
    sampler = CallSampler(per_class=2)
    for _ in range(5):
        sampler(call(200))
    for _ in range(5):
        sampler(call(400, code="input_error"))
    # a 429, a 5xx and an ambiguous failure in classes that are already full still get in once
    full = CallSampler(per_class=0)
    for c in (call(429), call(429), call(503), call(503), call(None, code="timeout", ambiguous=True)):
        full(c)
    records = lines(sampler)
    assert len(records) == 4 and sampler.seen == 10
    assert sorted(r["class"] for r in records) == ["ok", "ok", "refused", "refused"]
    firsts = lines(full)
    assert [r.get("first") for r in firsts] == ["first_429", "first_5xx", "first_ambiguous"]
    assert full.classes() == {"no_answer timeout": 1, "rate_limited 429": 2, "server_error 503": 2}


def test_no_secret_and_no_pii_by_default() -> None:
    sampler = CallSampler(per_class=10, redact=lambda t: t.replace("KEY123", "***"))
    sampler(call(400, code="input_error"))
    text = io.StringIO()
    sampler.write(text)
    written = text.getvalue()
    for secret in ("KEY123", "hunter2", "ann@example.com", "ann%40example.com", '"Ann"'):
        assert secret not in written
    record = json.loads(written)
    assert record["path"] == f"/v2/users/{pii_hash('ann@example.com')}?id_type=email"
    assert record["request_body"]["email_address"] == pii_hash("ann@example.com")
    assert record["request_body"]["password"] == "***"
    assert record["response_body"]["message"] == f"{pii_hash('ann@example.com')} taken"
    assert record["latency_ms"] == 12.3 and record["attempt"] == 1


def test_calls_pii_keeps_members_but_never_secrets() -> None:
    sampler = CallSampler(pii=True)
    sampler(call(200))
    record = lines(sampler)[0]
    assert record["path"] == "/v2/users/ann%40example.com?id_type=email"
    assert record["request_body"]["first_name"] == "Ann"
    assert record["request_body"]["password"] == "***"


def test_bodies_are_cut_and_html_kept_as_text() -> None:
    sampler = CallSampler()
    sampler(call(503, response_body=b"<html>" + b"x" * (MAX_BODY * 2) + b"</html>"))
    body = lines(sampler)[0]["response_body"]
    assert body["truncated"] is True and len(body["text"]) == MAX_BODY


@pytest.mark.parametrize(
    ("status", "ambiguous", "expected"),
    [(200, False, "ok"), (200, True, "ambiguous"), (404, False, "refused"), (None, True, "no_answer")],
)
def test_call_class(status: int | None, ambiguous: bool, expected: str) -> None:
    assert call_class(call(status, ambiguous=ambiguous))[0] == expected


def test_bad_per_class() -> None:
    with pytest.raises(ValueError, match="calls_per_class"):
        CallSampler(per_class=-1)
