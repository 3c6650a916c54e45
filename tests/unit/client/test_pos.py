"""``CrowdTwistPosClient``: the POS base URL, the API key header only, HMAC refused before any request."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_crowdtwist.client.config import ClientConfig
from airflow_provider_crowdtwist.client.errors import CrowdTwistConfigError, CrowdTwistValidationError
from airflow_provider_crowdtwist.client.pos import CrowdTwistPosClient, is_duplicate_id, is_not_found

POS = "https://sbpos123.crowdtwist.com"


def config(**overrides: Any) -> ClientConfig:
    options: dict[str, Any] = {
        "base_url": "https://sbapi123.crowdtwist.com",
        "api_key": "a-real-looking-key-123",
    }
    options.update(overrides)
    return ClientConfig(**options)


def test_hmac_only_connection_is_refused_naming_why() -> None:
    hmac = config(auth_type="hmac", api_key=None, hmac_public_key="pub", hmac_private_key="secret-private")
    with pytest.raises(CrowdTwistConfigError, match="does not support HMAC") as info:
        CrowdTwistPosClient(hmac, POS)
    assert "secret-private" not in str(info.value)


@pytest.mark.parametrize("pos_host", [None, "", "  "])
def test_missing_pos_host(pos_host: Any) -> None:
    with pytest.raises(CrowdTwistConfigError, match="POS base URL"):
        CrowdTwistPosClient(config(), pos_host)


def test_plain_http_pos_host_is_refused_for_a_remote_host() -> None:
    with pytest.raises(CrowdTwistConfigError, match="https is required"):
        CrowdTwistPosClient(
            config(), "http://sbpos123.crowdtwist.com", labels={"pos_host": "extra 'pos_host'"}
        )


def test_calls_go_to_the_pos_host_with_the_key_in_the_header_even_if_the_connection_says_query(
    wire: Any,
) -> None:
    mock = wire
    with CrowdTwistPosClient(config(api_key_in="query"), POS + "/") as client:
        mock.post(f"{POS}/purchase", json={"receipt_id": 5})
        mock.post(f"{POS}/return", json={})
        mock.delete(f"{POS}/return/X%2F1", json={"return_id": 7})
        assert client.purchase({"receipt_id": "R1"}) == {"receipt_id": 5}
        assert client.create_return({"return_id": "X"}) == {}
        assert client.void_return("X/1") == {"return_id": 7}
        for request in mock.request_history:
            assert request.headers["X-CT-Authorization"] == "CTApiKey a-real-looking-key-123"
            assert "api_key" not in request.url
        assert client.requests_sent == 3


def test_the_pos_envelope_reason_becomes_the_error_code(wire: Any) -> None:
    body = {
        "system": "pos",
        "reason": "not_unique",
        "description": "x",
        "message": "Receipt id [R1] is not unique.",
    }
    with CrowdTwistPosClient(config(), POS) as client:
        wire.post(f"{POS}/purchase", status_code=400, json=body)
        with pytest.raises(CrowdTwistValidationError) as info:
            client.purchase({"receipt_id": "R1"})
    assert info.value.code == "not_unique" and is_duplicate_id(info.value)


def test_duplicate_and_not_found_recognition() -> None:
    def error(status: int, code: str | None = None, message: str = "") -> CrowdTwistValidationError:
        return CrowdTwistValidationError(message, status=status, code=code)

    assert is_duplicate_id(error(409))
    assert is_duplicate_id(error(400, None, "Return id is not unique"))
    assert not is_duplicate_id(error(400, "invalid", "Date purchased is in incorrect format."))
    assert is_not_found(error(404)) and is_not_found(error(400, "return not found"))
    assert is_not_found(error(400, None, "Return third party id cannot be found"))
    assert not is_not_found(error(400, "missing_data", 'Required field ["items"] is missing.'))
