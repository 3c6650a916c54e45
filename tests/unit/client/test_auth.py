"""API-key and HMAC auth, checked against signatures computed here from the literal string to sign."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest
import requests

from airflow_provider_crowdtwist.client import ApiKeyAuth, HmacAuth, hmac_string_to_sign
from airflow_provider_crowdtwist.client.auth import body_md5

from .conftest import API_KEY, PRIVATE_KEY, PUBLIC_KEY

BODY = b'{"activity_id":"purchase","num_points":5}'
BODY_MD5 = "bdb8c8c5dd8908adcec8c47843ed4b79"  # md5 of BODY, computed once and written out


def _expected_signature(private_key: str, literal: str) -> str:
    """The contract: base64 of the lowercase *hex* HMAC-SHA256 digest."""
    hex_digest = hmac.new(private_key.encode(), literal.encode(), hashlib.sha256).hexdigest()
    return base64.b64encode(hex_digest.encode()).decode()


def _prepare(
    method: str, url: str, auth: Any, data: bytes | None = None, **kw: Any
) -> requests.PreparedRequest:
    headers = {"Content-Type": "application/json"} if data is not None else {}
    return requests.Request(method, url, data=data, headers=headers, auth=auth, **kw).prepare()


def test_api_key_in_header_by_default() -> None:
    prepared = _prepare("GET", "https://api.test/v2/activities", ApiKeyAuth(API_KEY))
    assert prepared.headers["X-CT-Authorization"] == f"CTApiKey {API_KEY}"
    assert "api_key" not in prepared.url


def test_api_key_in_query_when_asked() -> None:
    prepared = _prepare(
        "GET",
        "https://api.test/v2/users/a%40b.com",
        ApiKeyAuth(API_KEY, "query"),
        params={"id_type": "email"},
    )
    assert prepared.url == f"https://api.test/v2/users/a%40b.com?id_type=email&api_key={API_KEY}"
    assert "X-CT-Authorization" not in prepared.headers


def test_api_key_auth_repr_masks_key() -> None:
    assert API_KEY not in repr(ApiKeyAuth(API_KEY, "query"))
    with pytest.raises(ValueError):
        ApiKeyAuth(API_KEY, "body")


def test_hmac_get_without_body_seconds() -> None:
    auth = HmacAuth(PUBLIC_KEY, PRIVATE_KEY, "s", clock=lambda: 1_700_000_000.75)
    prepared = _prepare("GET", "https://api.test/v2/activities", auth)
    literal = "GET\n\n\n1700000000\n/v2/activities"
    assert hmac_string_to_sign("GET", "", "", "1700000000", "/v2/activities") == literal
    assert prepared.headers["X-CT-Timestamp"] == "1700000000"
    assert (
        prepared.headers["X-CT-Authorization"]
        == f"CTApiV2Auth {PUBLIC_KEY}:{_expected_signature(PRIVATE_KEY, literal)}"
    )


def test_hmac_post_with_body_milliseconds_and_query() -> None:
    assert hashlib.md5(BODY).hexdigest() == BODY_MD5
    auth = HmacAuth(PUBLIC_KEY, PRIVATE_KEY, "ms", clock=lambda: 1_700_000_000.123)
    prepared = _prepare(
        "POST",
        "https://api.test/v2/users/a%2Bb%40c.com/activities",
        auth,
        data=BODY,
        params={"id_type": "email"},
    )
    literal = (
        "POST\nbdb8c8c5dd8908adcec8c47843ed4b79\napplication/json\n1700000000123\n"
        "/v2/users/a%2Bb%40c.com/activities?id_type=email"
    )
    assert prepared.headers["X-CT-Timestamp"] == "1700000000123"
    signature = _expected_signature(PRIVATE_KEY, literal)
    assert prepared.headers["X-CT-Authorization"] == f"CTApiV2Auth {PUBLIC_KEY}:{signature}"
    # The quirk matters: base64 of the raw digest would be a different, shorter value.
    raw = base64.b64encode(hmac.new(PRIVATE_KEY.encode(), literal.encode(), hashlib.sha256).digest()).decode()
    assert signature != raw and len(signature) == 88


def test_hmac_signs_the_path_as_sent_under_a_base_path() -> None:
    auth = HmacAuth(PUBLIC_KEY, PRIVATE_KEY, clock=lambda: 1_700_000_000)
    prepared = _prepare("PUT", "https://api.test/base/v2/users/x?id_type=third_party_id", auth, data=b"{}")
    literal = (
        "PUT\n99914b932bd37a50b983c5e7c90ae93b\napplication/json\n1700000000\n"
        "/base/v2/users/x?id_type=third_party_id"
    )
    assert prepared.headers["X-CT-Authorization"].endswith(":" + _expected_signature(PRIVATE_KEY, literal))


def test_hmac_each_prepare_gets_a_fresh_timestamp() -> None:
    ticks = iter([100.0, 105.0])
    auth = HmacAuth(PUBLIC_KEY, PRIVATE_KEY, clock=lambda: next(ticks))
    first = _prepare("GET", "https://api.test/v2/activities", auth)
    second = _prepare("GET", "https://api.test/v2/activities", auth)
    assert (first.headers["X-CT-Timestamp"], second.headers["X-CT-Timestamp"]) == ("100", "105")
    assert first.headers["X-CT-Authorization"] != second.headers["X-CT-Authorization"]


def test_body_md5_rules() -> None:
    assert body_md5(None) == "" and body_md5(b"") == "" and body_md5("") == ""
    assert body_md5(BODY) == BODY_MD5 and body_md5(BODY.decode()) == BODY_MD5


def test_hmac_repr_masks_private_key() -> None:
    text = repr(HmacAuth(PUBLIC_KEY, PRIVATE_KEY))
    assert PRIVATE_KEY not in text and PUBLIC_KEY in text
    with pytest.raises(ValueError):
        HmacAuth(PUBLIC_KEY, PRIVATE_KEY, "ns")


def test_client_hmac_request_end_to_end_over_mock(wire: Any, make_client: Any) -> None:
    """Through the client: the signed bytes are exactly the bytes sent, Content-Type included."""
    wire.post("https://api.test/v2/users/a%40b.com/activities", json={"awarded": True})
    wire.get("https://api.test/v2/activities", json=[])
    client = make_client(
        auth_type="hmac",
        api_key=None,
        hmac_public_key=PUBLIC_KEY,
        hmac_private_key=PRIVATE_KEY,
        wall_clock=lambda: 1_700_000_000.0,
    )
    client.list_activities()
    get = wire.request_history[0]
    literal_get = "GET\n\n\n1700000000\n/v2/activities"
    assert (
        get.headers["X-CT-Authorization"]
        == f"CTApiV2Auth {PUBLIC_KEY}:{_expected_signature(PRIVATE_KEY, literal_get)}"
    )
    assert "Content-Type" not in get.headers and get.body is None

    client.credit_activity("a@b.com", "purchase", num_points=5)
    post = wire.request_history[1]
    assert post.body == BODY
    assert post.headers["Content-Type"] == "application/json"
    literal = (
        "POST\nbdb8c8c5dd8908adcec8c47843ed4b79\napplication/json\n1700000000\n"
        "/v2/users/a%40b.com/activities?id_type=email"
    )
    assert (
        post.headers["X-CT-Authorization"]
        == f"CTApiV2Auth {PUBLIC_KEY}:{_expected_signature(PRIVATE_KEY, literal)}"
    )
    assert post.headers["X-CT-Timestamp"] == "1700000000"
