"""CrowdTwistHook: connection -> ClientConfig mapping, errors naming fields, masking, classification.

Connections are real Airflow connections from ``AIRFLOW_CONN_*`` environment variables (URI and JSON),
read through Airflow's own secrets backend, so the parsing Airflow does is part of what is tested.
"""

from __future__ import annotations

import json
from typing import Any
from unittest import mock
from urllib.parse import quote

import pytest

from airflow_provider_crowdtwist.client.config import ID_TYPES as CLIENT_ID_TYPES
from airflow_provider_crowdtwist.client.config import ClientConfig
from airflow_provider_crowdtwist.client.errors import (
    CrowdTwistAuthError,
    CrowdTwistConfigError,
    CrowdTwistConnectionError,
    CrowdTwistError,
    CrowdTwistForbiddenError,
    CrowdTwistNotFoundError,
    CrowdTwistRateLimitError,
    CrowdTwistServerError,
    CrowdTwistValidationError,
)
from airflow_provider_crowdtwist.client.models import Activity
from airflow_provider_crowdtwist.hooks.crowdtwist import CrowdTwistHook
from airflow_provider_crowdtwist.provider_info import CONN_FIELDS, ID_TYPES, UI_FIELD_BEHAVIOUR

API_KEY = "ct-live-7f3a9c2e/Key+with=specials"
HMAC_PRIVATE = "hmac-private-9d8e7f6a5b4c"


def set_json_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "crowdtwist", **fields}))


def set_uri_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, uri: str) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", uri)


def config_error(conn_id: str) -> str:
    hook = CrowdTwistHook(conn_id)
    with pytest.raises(CrowdTwistConfigError) as info:
        hook.get_client_config()
    text = str(info.value)
    assert f"Connection '{conn_id}'" in text
    return text


# ---------------------------------------------------------------------- mapping


def test_json_connection_keeps_host_scheme_and_maps_every_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    set_json_conn(
        monkeypatch,
        "ct_json",
        host="http://127.0.0.1:8080",
        password=API_KEY,
        extra={
            "auth_type": "api_key",
            "key_placement": "query",
            "id_type": "third_party_id",
            "timeout": 12.5,
            "connect_timeout": 2,
            "requests_per_minute": 600,
            "verify": False,
        },
    )
    config = CrowdTwistHook("ct_json").get_client_config()
    assert isinstance(config, ClientConfig)
    assert config.base_url == "http://127.0.0.1:8080"
    assert config.auth_type == "api_key"
    assert config.api_key == API_KEY
    assert config.api_key_in == "query"
    assert config.id_type == "third_party_id"
    assert config.read_timeout == 12.5
    assert config.connect_timeout == 2.0
    assert config.requests_per_minute == 600
    assert config.verify is False
    assert config.hmac_private_key is None


def test_uri_with_bare_host_defaults_to_https_and_takes_port_and_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_uri_conn(
        monkeypatch,
        "ct_uri",
        "crowdtwist://sandbox-public:hmac-private-9d8e7f6a5b4c@sbapi123.crowdtwist.com:8443/gw"
        "?auth_type=hmac&hmac_timestamp_unit=ms&timeout=10&requests_per_minute=10000&verify=true",
    )
    config = CrowdTwistHook("ct_uri").get_client_config()
    assert config.base_url == "https://sbapi123.crowdtwist.com:8443/gw"
    assert config.auth_type == "hmac"
    assert config.hmac_public_key == "sandbox-public"
    assert config.hmac_private_key == HMAC_PRIVATE
    assert config.api_key is None
    assert config.hmac_timestamp_unit == "ms"
    assert config.read_timeout == 10.0
    assert config.requests_per_minute == 10_000
    assert config.verify is True


def test_uri_with_protocol_in_host(monkeypatch: pytest.MonkeyPatch) -> None:
    set_uri_conn(monkeypatch, "ct_proto", "crowdtwist://https://sbapi1.crowdtwist.com?auth_type=api_key")
    # no password in this URI: the error must name it
    assert "password (API key)" in config_error("ct_proto") or "password (the API key)" in config_error(
        "ct_proto"
    )
    set_uri_conn(
        monkeypatch,
        "ct_proto2",
        f"crowdtwist://https://:{quote(API_KEY, safe='')}@sbapi1.crowdtwist.com",
    )
    config = CrowdTwistHook("ct_proto2").get_client_config()
    assert config.base_url == "https://sbapi1.crowdtwist.com"
    assert config.api_key == API_KEY


def test_scheme_extra_http_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    set_uri_conn(
        monkeypatch, "ct_loop", "crowdtwist://:k3y-value-123@127.0.0.1:9999?scheme=http&auth_type=api_key"
    )
    assert CrowdTwistHook("ct_loop").get_client_config().base_url == "http://127.0.0.1:9999"


def test_http_for_a_remote_host_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    set_uri_conn(
        monkeypatch, "ct_plain", "crowdtwist://:k3y-value-123@api.example.com?scheme=http&auth_type=api_key"
    )
    text = config_error("ct_plain")
    assert "host" in text and "https" in text


def test_scheme_conflict_names_both_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    set_json_conn(
        monkeypatch,
        "ct_conf",
        host="https://api.example.com",
        password="k3y-value-123",
        extra={"scheme": "http"},
    )
    text = config_error("ct_conf")
    assert "host" in text and "extra 'scheme'" in text


def test_string_extras_from_ui_and_uri_are_converted(monkeypatch: pytest.MonkeyPatch) -> None:
    set_json_conn(
        monkeypatch,
        "ct_str",
        host="https://api.example.com",
        password=API_KEY,
        extra={
            "auth_type": " API_KEY ",
            "timeout": "7",
            "connect_timeout": "1.5",
            "requests_per_minute": "10000",
            "verify": "False",
            "id_type": "",
        },
    )
    config = CrowdTwistHook("ct_str").get_client_config()
    assert (config.auth_type, config.read_timeout, config.connect_timeout) == ("api_key", 7.0, 1.5)
    assert config.requests_per_minute == 10_000 and config.verify is False
    assert config.id_type == "email"  # empty string from a form means "not set"


def test_answer_cap_deadline_and_client_certificate_extras(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("not parsed before the first request")
    set_json_conn(monkeypatch, "ct_plain", host="https://api.example.com", password=API_KEY)
    config = CrowdTwistHook("ct_plain").get_client_config()
    assert (config.max_answer_bytes, config.attempt_deadline, config.client_cert) == (8 << 20, None, None)
    extra = {"max_answer_bytes": "65536", "attempt_deadline": "12.5", "client_cert": str(cert)}
    set_json_conn(monkeypatch, "ct_limits", host="https://api.example.com", password=API_KEY, extra=extra)
    config = CrowdTwistHook("ct_limits").get_client_config()
    assert (config.max_answer_bytes, config.attempt_deadline, config.client_cert) == (65536, 12.5, str(cert))
    bad = {"max_answer_bytes": "10"}
    set_json_conn(monkeypatch, "ct_bad", host="https://api.example.com", password=API_KEY, extra=bad)
    with pytest.raises(CrowdTwistConfigError, match="extra 'max_answer_bytes'"):
        CrowdTwistHook("ct_bad").get_client_config()


def test_prefixed_extras_of_airflow2_forms_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    set_json_conn(
        monkeypatch,
        "ct_prefixed",
        host="https://api.example.com",
        login="pub",
        password=HMAC_PRIVATE,
        extra={"extra__crowdtwist__auth_type": "hmac", "extra__crowdtwist__hmac_timestamp_unit": "ms"},
    )
    config = CrowdTwistHook("ct_prefixed").get_client_config()
    assert (config.auth_type, config.hmac_timestamp_unit) == ("hmac", "ms")


def test_verify_accepts_a_ca_bundle_path(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    set_json_conn(
        monkeypatch,
        "ct_ca",
        host="https://api.example.com",
        password="k3y-value-123",
        extra={"verify": str(bundle)},
    )
    assert CrowdTwistHook("ct_ca").get_client_config().verify == str(bundle)
    set_json_conn(
        monkeypatch,
        "ct_ca2",
        host="https://api.example.com",
        password="k3y-value-123",
        extra={"verify": str(tmp_path / "nope.pem")},
    )
    assert "extra 'verify'" in config_error("ct_ca2")


# ---------------------------------------------------------------------- bad configuration


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"password": API_KEY}, "host"),
        (
            {"host": "https://api.example.com", "password": API_KEY, "extra": {"auth_type": "oauth"}},
            "extra 'auth_type'",
        ),
        (
            {"host": "https://api.example.com", "password": HMAC_PRIVATE, "extra": {"auth_type": "hmac"}},
            "login",
        ),
        ({"host": "https://api.example.com", "login": "pub", "extra": {"auth_type": "hmac"}}, "password"),
        ({"host": "https://api.example.com", "extra": {"auth_type": "api_key"}}, "password"),
        ({"host": "https://api.example.com", "login": "pub", "password": API_KEY}, "extra 'auth_type'"),
        (
            {"host": "https://api.example.com", "password": API_KEY, "extra": {"key_placement": "cookie"}},
            "extra 'key_placement'",
        ),
        (
            {"host": "https://api.example.com", "password": API_KEY, "extra": {"hmac_timestamp_unit": "us"}},
            "extra 'hmac_timestamp_unit'",
        ),
        (
            {"host": "https://api.example.com", "password": API_KEY, "extra": {"id_type": "phone"}},
            "extra 'id_type'",
        ),
        (
            {"host": "https://api.example.com", "password": API_KEY, "extra": {"timeout": "soon"}},
            "extra 'timeout'",
        ),
        (
            {"host": "https://api.example.com", "password": API_KEY, "extra": {"timeout": 0}},
            "extra 'timeout'",
        ),
        (
            {"host": "https://api.example.com", "password": API_KEY, "extra": {"timeout": "inf"}},
            "extra 'timeout'",
        ),
        (
            {"host": "https://api.example.com", "password": API_KEY, "extra": {"requests_per_minute": "nan"}},
            "extra 'requests_per_minute'",
        ),
        (
            {
                "host": "https://api.example.com",
                "password": API_KEY,
                "extra": {"requests_per_minute": "1e400"},
            },
            "extra 'requests_per_minute'",
        ),
        (
            {"host": "https://api.example.com", "password": API_KEY, "extra": {"connect_timeout": -1}},
            "extra 'connect_timeout'",
        ),
        (
            {
                "host": "https://api.example.com",
                "password": API_KEY,
                "extra": {"requests_per_minute": "lots"},
            },
            "extra 'requests_per_minute'",
        ),
        (
            {"host": "https://api.example.com", "password": API_KEY, "extra": {"requests_per_minute": 2.5}},
            "extra 'requests_per_minute'",
        ),
        ({"host": "https://api.example.com", "password": API_KEY, "extra": {"verify": 3}}, "extra 'verify'"),
        ({"host": "ftp://api.example.com", "password": API_KEY}, "host"),
        ({"host": "https://api.example.com?x=1", "password": API_KEY}, "host"),
    ],
)
def test_bad_configuration_names_connection_and_field_and_hides_the_secret(
    monkeypatch: pytest.MonkeyPatch, fields: dict, expected: str
) -> None:
    set_json_conn(monkeypatch, "ct_bad", **fields)
    text = config_error("ct_bad")
    assert expected in text
    assert API_KEY not in text and HMAC_PRIVATE not in text


def test_connection_is_fetched_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_CT_NOWHERE", raising=False)
    hook = CrowdTwistHook("ct_nowhere")  # must not touch any backend
    assert hook.crowdtwist_conn_id == "ct_nowhere"
    with pytest.raises(Exception, match="ct_nowhere"):
        hook.get_client_config()


def test_default_connection_id(monkeypatch: pytest.MonkeyPatch) -> None:
    set_json_conn(monkeypatch, "crowdtwist_default", host="https://api.example.com", password=API_KEY)
    hook = CrowdTwistHook()
    assert hook.crowdtwist_conn_id == "crowdtwist_default"
    assert hook.get_client_config().api_key == API_KEY


def test_client_overrides_apply_and_unknown_ones_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    set_json_conn(monkeypatch, "ct_over", host="https://api.example.com", password=API_KEY)
    hook = CrowdTwistHook("ct_over", client_overrides={"max_retries": 0})
    assert hook.get_client_config().max_retries == 0
    assert hook.get_client_config(requests_per_minute=60).requests_per_minute == 60
    with pytest.raises(CrowdTwistConfigError, match="max_retry"):
        hook.get_client_config(max_retry=3)


def test_get_conn_is_cached_and_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_crowdtwist.client.client import CrowdTwistClient

    set_json_conn(monkeypatch, "ct_cache", host="http://127.0.0.1:1", password=API_KEY)
    hook = CrowdTwistHook("ct_cache")
    client = hook.get_conn()
    assert isinstance(client, CrowdTwistClient)
    assert hook.get_conn() is client
    hook.close()
    assert hook.get_conn() is not client
    hook.close()


# ---------------------------------------------------------------------- secrets


def test_secrets_are_registered_with_the_airflow_masker(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_crowdtwist._compat import redact

    key = "zz-unique-KEY/4bc+d=e-0192837465"
    set_json_conn(monkeypatch, "ct_mask", host="https://api.example.com", password=key)
    hook = CrowdTwistHook("ct_mask")
    hook.get_client_config()
    from urllib.parse import quote, quote_plus

    for spelling in (key, quote(key, safe=""), quote_plus(key)):
        line = f"GET /v2/activities?api_key={spelling} failed"
        assert spelling not in str(redact(line)), spelling
    assert key not in hook.scrub(f"oops {key}")


def test_config_repr_and_hook_messages_hold_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    set_json_conn(
        monkeypatch,
        "ct_repr",
        host="https://api.example.com",
        login="pub",
        password=HMAC_PRIVATE,
        extra={"auth_type": "hmac"},
    )
    config = CrowdTwistHook("ct_repr").get_client_config()
    assert HMAC_PRIVATE not in repr(config)


# ---------------------------------------------------------------------- UI form


def test_ui_field_behaviour_matches_provider_info() -> None:
    from airflow_provider_crowdtwist import get_provider_info

    behaviour = CrowdTwistHook.get_ui_field_behaviour()
    assert behaviour["relabeling"]["host"] == "API base URL"
    assert behaviour["relabeling"]["login"] == "HMAC public key"
    assert behaviour["relabeling"]["password"] == "API key / HMAC private key"
    assert behaviour["hidden_fields"] == ["schema"]  # port visible: see provider_info.UI_FIELD_BEHAVIOUR
    info = get_provider_info()["connection-types"][0]["ui-field-behaviour"]
    assert info["hidden-fields"] == behaviour["hidden_fields"]
    assert info["relabeling"] == behaviour["relabeling"]
    assert info["placeholders"] == behaviour["placeholders"]
    assert set(behaviour["placeholders"]) - {"host", "port", "login", "password"} == set(CONN_FIELDS)
    assert behaviour == UI_FIELD_BEHAVIOUR


def test_form_widgets_derive_from_conn_fields() -> None:
    pytest.importorskip("wtforms")
    pytest.importorskip("flask_appbuilder")
    widgets = CrowdTwistHook.get_connection_form_widgets()
    assert list(widgets) == list(CONN_FIELDS)
    for name, field in widgets.items():
        schema = CONN_FIELDS[name]["schema"]
        default = schema.get("default")
        kind = "IntegerField" if "integer" in schema["type"] else "StringField"
        assert field.field_class.__name__ == kind, name
        expected = default if kind == "IntegerField" or default is None else str(default)
        assert field.kwargs.get("default") == expected, name
        enum = [v for v in schema.get("enum", []) if v is not None]
        any_of = [v for v in field.kwargs["validators"] if type(v).__name__ == "AnyOf"]
        assert (list(any_of[0].values) if any_of else []) == enum, name


def test_id_types_match_the_client() -> None:
    assert tuple(ID_TYPES) == tuple(CLIENT_ID_TYPES)


def test_hook_class_attributes() -> None:
    assert CrowdTwistHook.conn_name_attr == "crowdtwist_conn_id"
    assert CrowdTwistHook.default_conn_name == "crowdtwist_default"
    assert CrowdTwistHook.conn_type == "crowdtwist"
    assert CrowdTwistHook.hook_name == "CrowdTwist"


# ---------------------------------------------------------------------- check_api classification


@pytest.fixture
def api_hook(monkeypatch: pytest.MonkeyPatch) -> CrowdTwistHook:
    set_json_conn(monkeypatch, "ct_check", host="https://api.example.com", password=API_KEY)
    return CrowdTwistHook("ct_check")


def fake_client(result: Any) -> mock.Mock:
    client = mock.Mock(spec=["list_activities", "close"])
    if isinstance(result, BaseException):
        client.list_activities.side_effect = result
    else:
        client.list_activities.return_value = result
    return client


ACTIVITIES = [Activity("purchase", "Purchase", 10), Activity("signup"), Activity("old", active=False)]


def test_check_success_counts_active_activities(api_hook: CrowdTwistHook) -> None:
    check = api_hook.check_api(["purchase", "signup"], client=fake_client(ACTIVITIES))
    assert (check.status, check.activity_count) == ("success", 2)
    assert check.message == "Connected: 2 active activities"


def test_check_names_missing_and_inactive_ids(api_hook: CrowdTwistHook) -> None:
    check = api_hook.check_api(["purchase", "old", "purchse"], client=fake_client(ACTIVITIES))
    assert check.status == "missing_activities"
    assert check.missing_activity_ids == ("old", "purchse")
    assert "'old' (inactive)" in check.message and "'purchse' (not found)" in check.message
    assert check.final


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (CrowdTwistAuthError(f"bad key {API_KEY}", status=401), "auth_error"),
        (CrowdTwistForbiddenError("forbidden", status=403), "auth_error"),
        (CrowdTwistServerError("down", status=503), "waiting"),
        (CrowdTwistRateLimitError("slow down", status=429), "waiting"),
        (CrowdTwistConnectionError("Connection refused"), "waiting"),
        (CrowdTwistNotFoundError("<html>Not Found</html>", status=404), "error"),
        (CrowdTwistValidationError("bad", status=400), "error"),
        (CrowdTwistError("not JSON", status=200), "error"),
        (ValueError("Expecting value: line 1"), "error"),
        (CrowdTwistConfigError("connection host (API base URL) is empty"), "error"),
    ],
)
def test_check_classification(api_hook: CrowdTwistHook, error: BaseException, status: str) -> None:
    check = api_hook.check_api(client=fake_client(error))
    assert check.status == status
    assert check.final is (status != "waiting")
    assert API_KEY not in check.message
    event = check.to_event()
    assert json.loads(json.dumps(event)) == event
    assert API_KEY not in json.dumps(event)


@pytest.mark.parametrize(
    ("text", "problem", "words"),
    [
        ("GET /v2/activities: could not connect: connection refused", "refused", "connection refused"),
        ("GET /v2/activities: could not connect: the host name does not resolve", "dns", "DNS"),
        ("GET /v2/activities: read timeout", "timeout", "timed out"),
        ("GET /v2/activities: connection error: closed without an answer", "closed", "without an answer"),
    ],
)
def test_connection_errors_are_told_apart(
    api_hook: CrowdTwistHook, text: str, problem: Any, words: str
) -> None:
    # The client decides ``problem`` from the requests exception TYPE; the hook never parses text.
    check = api_hook.check_api(client=fake_client(CrowdTwistConnectionError(text, problem=problem)))
    assert check.status == "waiting"
    assert words in check.message


def test_unexpected_exceptions_propagate_from_check_api(api_hook: CrowdTwistHook) -> None:
    with pytest.raises(RuntimeError):
        api_hook.check_api(client=fake_client(RuntimeError("bug")))


def test_test_connection_never_raises_and_hides_secret(api_hook: CrowdTwistHook) -> None:
    with mock.patch.object(CrowdTwistHook, "new_client", side_effect=RuntimeError(f"boom {API_KEY}")):
        ok, message = api_hook.test_connection()
    assert ok is False
    assert "boom" in message and API_KEY not in message


def test_test_connection_reports_bad_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    set_json_conn(
        monkeypatch, "ct_tc_bad", host="https://api.example.com", password=API_KEY, extra={"auth_type": "x"}
    )
    ok, message = CrowdTwistHook("ct_tc_bad").test_connection()
    assert ok is False
    assert "extra 'auth_type'" in message and API_KEY not in message


def test_masked_api_key_in_from_the_ui_falls_back_to_header(monkeypatch: pytest.MonkeyPatch) -> None:
    # Airflow masked the old extra name (it contains "api_key"); a form saved with the mask still works
    set_json_conn(
        monkeypatch,
        "ct_masked",
        host="https://api.example.com",
        password=API_KEY,
        extra={"api_key_in": "***"},
    )
    assert CrowdTwistHook("ct_masked").get_client_config().api_key_in == "header"


@pytest.mark.parametrize(
    "host", ["https://sbapi123.crowdtwist.com", "http://127.0.0.1:8080", "api.example.com"]
)
@pytest.mark.parametrize("auth", ["api_key", "hmac"])
def test_ui_test_button_uri_round_trip(monkeypatch: pytest.MonkeyPatch, host: str, auth: str) -> None:
    """The UI's "Test" exports the form as ``conn.get_uri()``; the hook must read the same config back."""
    from airflow.models.connection import Connection

    extra = {"auth_type": auth, "timeout": 9, "verify": False, "requests_per_minute": 600, "id_type": "id"}
    conn = Connection(
        conn_id="ct_form",
        conn_type="crowdtwist",
        host=host,
        login="pub-key" if auth == "hmac" else None,
        password=API_KEY,
        extra=json.dumps(extra),
    )
    set_json_conn(monkeypatch, "ct_as_json", host=host, login=conn.login, password=API_KEY, extra=extra)
    expected = CrowdTwistHook("ct_as_json").get_client_config()
    set_uri_conn(monkeypatch, "ct_as_uri", conn.get_uri())
    assert CrowdTwistHook("ct_as_uri").get_client_config() == expected
    assert expected.base_url.startswith("https://" if "127.0.0.1" not in host else "http://")


def test_old_extra_name_api_key_in_is_still_read(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {"api_key_in": "query"}
    set_json_conn(monkeypatch, "ct_legacy", host="https://api.example.com", password=API_KEY, extra=extra)
    assert CrowdTwistHook("ct_legacy").get_client_config().api_key_in == "query"


def test_old_and_new_key_placement_must_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    set_json_conn(
        monkeypatch,
        "ct_both_agree",
        host="https://api.example.com",
        password=API_KEY,
        extra={"api_key_in": "query", "key_placement": "Query"},
    )
    assert CrowdTwistHook("ct_both_agree").get_client_config().api_key_in == "query"
    set_json_conn(
        monkeypatch,
        "ct_both",
        host="https://api.example.com",
        password=API_KEY,
        extra={"api_key_in": "query", "key_placement": "header"},
    )
    with pytest.raises(CrowdTwistConfigError) as info:
        CrowdTwistHook("ct_both").get_client_config()
    text = str(info.value)
    assert "key_placement" in text and "api_key_in" in text and API_KEY not in text


def test_key_placement_is_not_a_name_airflow_masks() -> None:
    """Airflow hides extras by name; the old name was hidden, the new one must not be."""
    import importlib

    for module in (
        "airflow.sdk._shared.secrets_masker",
        "airflow.sdk.execution_time.secrets_masker",
        "airflow.utils.log.secrets_masker",
    ):
        try:
            masker = importlib.import_module(module)
        except ImportError:
            continue
        should_hide = masker.should_hide_value_for_key
        break
    else:  # pragma: no cover - every supported Airflow has one of them
        pytest.fail("no secrets masker found")
    assert should_hide("api_key_in") is True
    for name in CONN_FIELDS:
        assert should_hide(name) is False, name


def test_member_password_masking_follows_airflows_min_length_masked_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hook reads [logging] min_length_masked_secret and hands the number to the client."""
    set_json_conn(monkeypatch, "ct_minlen", host="https://api.example.com", password=API_KEY)
    monkeypatch.delenv("AIRFLOW__LOGGING__MIN_LENGTH_MASKED_SECRET", raising=False)
    # Airflow 3's default
    assert CrowdTwistHook("ct_minlen").get_client_config().min_length_masked_secret == 5
    monkeypatch.setenv("AIRFLOW__LOGGING__MIN_LENGTH_MASKED_SECRET", "2")
    assert CrowdTwistHook("ct_minlen").get_client_config().min_length_masked_secret == 2
    # a task may still choose for itself
    hook = CrowdTwistHook("ct_minlen", client_overrides={"min_length_masked_secret": 1})
    assert hook.get_client_config().min_length_masked_secret == 1
