"""Both auth modes, verified the way the contract says, through the package's client and on the wire."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time

import pytest
import requests

from airflow_provider_crowdtwist.client.errors import CrowdTwistAuthError
from airflow_provider_crowdtwist.sandbox.server import SandboxServer
from tests.conftest import client_for as make_client
from tests.integration.sandbox._helpers import member, raw, sign

pytestmark = pytest.mark.integration


def test_api_key_in_header_through_the_client(sandbox, client_for):
    client = client_for(sandbox, api_key_in="header")
    assert [a.id for a in client.list_activities()] == ["purchase", "signup", "review", "birthday"]
    assert sandbox.admin.stats()["auth_modes"] == {"api_key": 1}


def test_api_key_in_query_through_the_client(sandbox, client_for):
    client = client_for(sandbox, api_key_in="query")
    created = client.create_user(member("query@example.com"))
    assert client.get_user("query@example.com")["id"] == created["id"]
    assert sandbox.admin.stats()["auth_modes"] == {"api_key": 2}


def test_wrong_api_key_is_refused_and_never_echoed(sandbox, client_for):
    secret = "prod-key-7f3a9c1e55d2"
    client = client_for(sandbox, api_key=secret)
    with pytest.raises(CrowdTwistAuthError) as caught:
        client.list_activities()
    assert caught.value.status == 401
    answer = raw(sandbox, "GET", f"/v2/activities?api_key={secret}")
    assert answer.status_code == 401
    assert answer.json()["error"] == "auth_error"
    assert secret not in answer.text


@pytest.mark.parametrize(
    "header",
    [
        "CTApiKey  sandbox-api-key",
        "ctapikey sandbox-api-key",
        "Bearer sandbox-api-key",
    ],
)
def test_api_key_header_format_is_exact(sandbox, header):
    assert raw(sandbox, "GET", "/v2/activities", headers={"X-CT-Authorization": header}).status_code == 401


def test_missing_credentials_are_refused(sandbox):
    answer = raw(sandbox, "GET", "/v2/activities")
    assert answer.status_code == 401
    assert "Missing authentication" in answer.json()["message"]


def test_hmac_through_the_client_for_every_kind_of_call(sandbox, client_for):
    client = client_for(sandbox, auth_type="hmac")
    email = "o'neil+tag@example.com"
    client.list_activities()  # GET without a body: MD5 and content type empty
    created = client.create_user(member(email))  # POST with a body
    updated = client.update_user(email, {"last_name": "Byron"})  # PUT, path with %40 and %2B
    assert updated["id"] == created["id"]
    assert client.credit_activity(email, "purchase") == {"awarded": True}
    client.delete_user(email)  # DELETE without a body
    assert sandbox.admin.stats()["auth_modes"] == {"hmac": 5}


@pytest.mark.parametrize("unit", ["s", "ms"])
def test_hmac_timestamp_unit_must_match_the_program(unit, client_for):
    other = "ms" if unit == "s" else "s"
    with SandboxServer(timestamp_unit=unit) as server:
        assert client_for(server, auth_type="hmac", hmac_timestamp_unit=unit).list_activities()
        with pytest.raises(CrowdTwistAuthError) as caught:
            client_for(server, auth_type="hmac", hmac_timestamp_unit=other).list_activities()
        assert "outside the allowed window" in caught.value.message


def test_hmac_wrong_private_key_is_refused_and_not_leaked(sandbox, client_for):
    secret = "wrong-private-9d8e7f"
    client = client_for(sandbox, auth_type="hmac", hmac_private_key=secret)
    with pytest.raises(CrowdTwistAuthError) as caught:
        client.list_activities()
    assert secret not in str(caught.value)
    assert "signature" in caught.value.message.lower()


def test_hmac_signature_by_hand_is_accepted_on_get_and_post(sandbox):
    assert raw(sandbox, "GET", "/v2/activities", headers=sign("GET", "/v2/activities")).status_code == 200
    body = json.dumps(member("hand@example.com")).encode()
    answer = raw(sandbox, "POST", "/v2/users", data=body, headers=sign("POST", "/v2/users", body))
    assert answer.status_code == 200, answer.text


def test_hmac_request_uri_is_signed_exactly_as_sent(sandbox):
    """Signing the decoded path while sending the encoded one must fail: the URI is taken verbatim."""
    raw(
        sandbox,
        "POST",
        "/v2/users",
        json=member("a@b.com"),
        headers={"X-CT-Authorization": "CTApiKey sandbox-api-key"},
    )
    sent = "/v2/users/a%40b.com?id_type=email"
    assert raw(sandbox, "GET", sent, headers=sign("GET", sent)).status_code == 200
    wrong = sign("GET", "/v2/users/a@b.com?id_type=email")
    assert raw(sandbox, "GET", sent, headers=wrong).status_code == 401
    without_query = sign("GET", "/v2/users/a%40b.com")
    assert raw(sandbox, "GET", sent, headers=without_query).status_code == 401


def test_hmac_body_is_part_of_the_signature(sandbox):
    body = json.dumps(member("tamper@example.com")).encode()
    headers = sign("POST", "/v2/users", body)
    tampered = body.replace(b"Ada", b"Eve")
    assert raw(sandbox, "POST", "/v2/users", data=tampered, headers=headers).status_code == 401
    assert sandbox.admin.members() == []


def _hand_signed(text_parts: list[str], ts: str, *, raw_digest: bool = False) -> dict[str, str]:
    mac = hmac.new(b"sandbox-private", "\n".join(text_parts).encode(), hashlib.sha256)
    sig = base64.b64encode(mac.digest() if raw_digest else mac.hexdigest().encode()).decode()
    return {"X-CT-Authorization": f"CTApiV2Auth sandbox-public:{sig}", "X-CT-Timestamp": ts}


def test_hmac_get_must_sign_empty_md5_and_content_type(sandbox):
    """Without a body both MD5 and CONTENT_TYPE are the empty string; md5('') or a type is refused."""
    ts = str(int(time.time()))
    good = _hand_signed(["GET", "", "", ts, "/v2/activities"], ts)
    assert raw(sandbox, "GET", "/v2/activities", headers=good).status_code == 200
    with_md5 = _hand_signed(["GET", hashlib.md5(b"").hexdigest(), "", ts, "/v2/activities"], ts)
    assert raw(sandbox, "GET", "/v2/activities", headers=with_md5).status_code == 401
    with_type = _hand_signed(["GET", "", "application/json", ts, "/v2/activities"], ts)
    assert raw(sandbox, "GET", "/v2/activities", headers=with_type).status_code == 401


def test_hmac_raw_digest_base64_is_refused(sandbox):
    """The quirk: base64 of the *hex string*, not of the raw digest."""
    ts = str(int(time.time()))
    headers = _hand_signed(["GET", "", "", ts, "/v2/activities"], ts, raw_digest=True)
    assert raw(sandbox, "GET", "/v2/activities", headers=headers).status_code == 401


@pytest.mark.parametrize(
    ("offset", "status"), [(-14 * 60, 200), (14 * 60, 200), (-16 * 60, 401), (16 * 60, 401)]
)
def test_hmac_timestamp_window_is_15_minutes(sandbox, offset, status):
    ts = str(int(time.time()) + offset)
    answer = raw(sandbox, "GET", "/v2/activities", headers=sign("GET", "/v2/activities", timestamp=ts))
    assert answer.status_code == status


@pytest.mark.parametrize(
    "mutate",
    [
        lambda h: {
            **h,
            "X-CT-Authorization": h["X-CT-Authorization"].replace("sandbox-public", "other-public"),
        },
        lambda h: {k: v for k, v in h.items() if k != "X-CT-Timestamp"},
        lambda h: {**h, "X-CT-Timestamp": "soon"},
        lambda h: {**h, "X-CT-Authorization": "CTApiV2Auth sandbox-public"},
    ],
    ids=["unknown-public-key", "missing-timestamp", "non-numeric-timestamp", "no-signature"],
)
def test_hmac_malformed_requests_are_refused(sandbox, mutate):
    answer = raw(sandbox, "GET", "/v2/activities", headers=mutate(sign("GET", "/v2/activities")))
    assert answer.status_code == 401
    assert answer.json()["error"] == "auth_error"


def test_auth_modes_can_be_restricted(client_for):
    with SandboxServer(auth_modes=("hmac",)) as server:
        with pytest.raises(CrowdTwistAuthError):
            client_for(server).list_activities()
        assert client_for(server, auth_type="hmac").list_activities()
    with SandboxServer(auth_modes=("api_key",)) as server, pytest.raises(CrowdTwistAuthError):
        client_for(server, auth_type="hmac").list_activities()


def test_access_log_redacts_the_api_key_in_the_query(caplog):
    secret = "real-looking-key-0a1b2c3d4e"
    caplog.set_level(logging.INFO, logger="airflow_provider_crowdtwist.sandbox.access")
    with SandboxServer(api_key=secret, access_log=True) as server:
        client = make_client(server, api_key_in="query")
        try:
            client.list_activities()
        finally:
            client.close()
        requests.get(f"{server.base_url}/v2/activities?api_key=not-it-{secret}", timeout=5)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "GET /v2/activities?api_key=*** -> 200" in logged
    assert secret not in logged
