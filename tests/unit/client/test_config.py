"""ClientConfig.validate(): every bad field fails before any request, named as the user knows it."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_crowdtwist.client import ID_TYPES, ClientConfig, CrowdTwistClient, CrowdTwistConfigError
from airflow_provider_crowdtwist.provider_info import CONNECTION_FIELD_LABELS

from .conftest import API_KEY, PRIVATE_KEY


def _config(**kw: Any) -> ClientConfig:
    values: dict[str, Any] = {"base_url": "https://api.example.com", "api_key": API_KEY}
    values.update(kw)
    return ClientConfig(**values)


def test_defaults_are_valid() -> None:
    config = _config()
    config.validate()
    assert config.api_root == "https://api.example.com"
    assert ClientConfig("https://x.example/", api_key="k").api_root == "https://x.example"


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:8080",
        "http://127.3.2.1",
        "http://localhost:9/",
        "http://[::1]:9",
        "https://h.example",
    ],
)
def test_loopback_http_and_any_https_are_accepted(base_url: str) -> None:
    _config(base_url=base_url).validate()


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"base_url": "http://api.example.com"}, "host 'api.example.com'"),
        ({"base_url": "http://10.0.0.1"}, "host '10.0.0.1'"),
        ({"base_url": "api.example.com"}, "connection host"),
        ({"base_url": "ftp://api.example.com"}, "https://"),
        ({"base_url": ""}, "connection host (API base URL) is empty"),
        ({"base_url": "https://"}, "no host name"),
        ({"base_url": "https://u:p@api.example.com"}, "credentials"),
        ({"base_url": "https://api.example.com?x=1"}, "query string"),
        ({"auth_type": "oauth"}, "connection extra 'auth_type' must be one of 'api_key', 'hmac'"),
        ({"api_key": None}, "password (API key) is empty"),
        ({"api_key": ""}, "password (API key) is empty"),
        ({"api_key": "has space"}, "password (API key) contains whitespace"),
        ({"api_key": "line\nbreak"}, "password (API key) contains whitespace"),
        ({"api_key_in": "body"}, "connection extra 'key_placement' must be one of 'header', 'query'"),
        ({"auth_type": "hmac", "api_key": None, "hmac_private_key": "p"}, "login (HMAC public key) is empty"),
        ({"auth_type": "hmac", "hmac_public_key": "p"}, "password (HMAC private key) is empty"),
        (
            {
                "auth_type": "hmac",
                "hmac_public_key": "p",
                "hmac_private_key": "q",
                "hmac_timestamp_unit": "us",
            },
            "connection extra 'hmac_timestamp_unit' must be one of 's', 'ms'",
        ),
        ({"id_type": "phone"}, "connection extra 'id_type' must be one of"),
        ({"connect_timeout": 0}, "connection extra 'connect_timeout' must be greater than 0"),
        ({"read_timeout": -1}, "connection extra 'timeout' must be greater than 0"),
        ({"read_timeout": "30"}, "must be a number of seconds"),
        ({"read_timeout": float("nan")}, "must be a number of seconds"),
        ({"read_timeout": True}, "must be a number of seconds"),
        ({"requests_per_minute": -5}, "connection extra 'requests_per_minute' must be at least 0"),
        ({"requests_per_minute": 10.5}, "must be a whole number"),
        ({"max_retries": -1}, "client setting 'max_retries' must be at least 0"),
        ({"max_retry_wait": -1.0}, "client setting 'max_retry_wait' must not be negative"),
        ({"backoff_base": 5.0, "backoff_max": 1.0}, "'backoff_max' (1.0) must not be smaller"),
        ({"pool_size": 0}, "client setting 'pool_size' must be at least 1"),
        ({"verify": "/no/such/ca.pem"}, "connection extra 'verify' must be true, false or the path"),
        ({"verify": 1}, "connection extra 'verify'"),
    ],
)
def test_bad_field_is_named(overrides: dict[str, Any], fragment: str) -> None:
    # named as the hook names them: the connection's field labels (the client knows no Airflow words)
    with pytest.raises(CrowdTwistConfigError) as info:
        _config(**overrides).validate(CONNECTION_FIELD_LABELS)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_without_labels_the_client_names_its_own_field() -> None:
    with pytest.raises(CrowdTwistConfigError, match="client setting 'id_type' must be one of"):
        _config(id_type="phone").validate()


def test_client_validates_before_any_request(wire: Any) -> None:
    with pytest.raises(CrowdTwistConfigError, match=r"host 'api\.example\.com'"):
        CrowdTwistClient(_config(base_url="http://api.example.com"))
    assert wire.call_count == 0


def test_hmac_config_needs_no_api_key() -> None:
    ClientConfig(
        "https://h.example", auth_type="hmac", hmac_public_key="pub", hmac_private_key="x"
    ).validate()


def test_every_id_type_is_accepted() -> None:
    for id_type in ID_TYPES:
        _config(id_type=id_type).validate()


def test_repr_masks_secrets_but_keeps_the_rest() -> None:
    config = _config(auth_type="hmac", hmac_public_key="pub-1", hmac_private_key=PRIVATE_KEY)
    text = repr(config)
    assert API_KEY not in text and PRIVATE_KEY not in text
    assert "api_key='***'" in text and "hmac_private_key='***'" in text
    assert "pub-1" in text and "https://api.example.com" in text
    assert "hmac_private_key=None" in repr(_config())


def test_secret_never_echoed_in_validation_messages() -> None:
    with pytest.raises(CrowdTwistConfigError) as info:
        _config(api_key=API_KEY + " \n").validate()
    assert API_KEY not in str(info.value) and API_KEY not in repr(info.value)
