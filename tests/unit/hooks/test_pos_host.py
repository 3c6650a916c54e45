"""CrowdTwistHook.new_pos_client: the ``pos_host`` extra, API key only, errors naming the connection."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_crowdtwist.client.errors import CrowdTwistConfigError
from airflow_provider_crowdtwist.hooks.crowdtwist import CrowdTwistHook

API_KEY = "ct-live-7f3a9c2e-pos"


def set_conn(monkeypatch: pytest.MonkeyPatch, **fields: Any) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CT_POS", json.dumps({"conn_type": "crowdtwist", **fields}))


def test_pos_client_from_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(
        monkeypatch,
        host="https://sbapi123.crowdtwist.com",
        password=API_KEY,
        extra={
            "pos_host": "https://sbpos123.crowdtwist.com/",
            "key_placement": "query",
            "requests_per_minute": 600,
        },
    )
    with CrowdTwistHook("ct_pos").new_pos_client(max_retries=1) as client:
        assert client.config.base_url == "https://sbpos123.crowdtwist.com"
        assert client.config.api_key_in == "header"  # the POS host takes no query key
        assert client.config.requests_per_minute == 600 and client.config.max_retries == 1
        assert client.program_url == "https://sbapi123.crowdtwist.com"


def test_hmac_connection_is_refused_naming_the_connection_and_why(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(
        monkeypatch,
        host="https://sbapi123.crowdtwist.com",
        login="public",
        password="hmac-private-secret",
        extra={"auth_type": "hmac", "pos_host": "https://sbpos123.crowdtwist.com"},
    )
    with pytest.raises(CrowdTwistConfigError) as info:
        CrowdTwistHook("ct_pos").new_pos_client()
    text = str(info.value)
    assert (
        "Connection 'ct_pos'" in text and "does not support HMAC" in text and "O:HMACAuthentication" in text
    )
    assert "hmac-private-secret" not in text


def test_missing_or_plain_http_pos_host(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, host="https://sbapi123.crowdtwist.com", password=API_KEY)
    with pytest.raises(CrowdTwistConfigError, match=r"connection extra 'pos_host'.* is empty"):
        CrowdTwistHook("ct_pos").new_pos_client()
    set_conn(
        monkeypatch,
        host="https://sbapi123.crowdtwist.com",
        password=API_KEY,
        extra={"pos_host": "http://sbpos123.crowdtwist.com"},
    )
    with pytest.raises(CrowdTwistConfigError, match=r"connection extra 'pos_host'.*https is required"):
        CrowdTwistHook("ct_pos").new_pos_client()
