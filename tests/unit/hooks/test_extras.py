"""The connection's extras follow their one definition, ``provider_info.CONN_FIELDS``.

Each test walks every extra of CONN_FIELDS rather than a hand-written list, so an extra added there is
covered without touching this file, and a choice, default or range written again anywhere in the hook
(the drift this replaces) makes a test fail: the last tests change a definition and expect the hook to
follow it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_crowdtwist.client.config import ClientConfig
from airflow_provider_crowdtwist.client.errors import CrowdTwistConfigError
from airflow_provider_crowdtwist.hooks.crowdtwist import CrowdTwistHook
from airflow_provider_crowdtwist.hooks.extras import config_name, read_extras
from airflow_provider_crowdtwist.provider_info import CONN_FIELDS, CONNECTION_FIELD_LABELS

API_KEY = "ct-test-key-0123456789"
CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(ClientConfig)}
WITH_DEFAULT = [name for name, f in CONN_FIELDS.items() if "default" in f["schema"]]
CHOICES = [name for name, f in CONN_FIELDS.items() if "enum" in f["schema"]]
RANGED = [
    name
    for name, f in CONN_FIELDS.items()
    if {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"} & set(f["schema"])
]


def hook_for(
    monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], conn_id: str = "ct_extras"
) -> CrowdTwistHook:
    conn = {"conn_type": "crowdtwist", "host": "https://api.example.com", "password": API_KEY, "extra": extra}
    if extra.get("auth_type", CONN_FIELDS["auth_type"]["schema"]["default"]) == "hmac":
        conn["login"] = "public-key"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return CrowdTwistHook(conn_id)


def setting(hook: CrowdTwistHook, extra: str) -> Any:
    """What the hook made of ``extra``: its ClientConfig field, or for the hook's own extras its setting."""
    name = config_name(extra)
    if name in CONFIG_FIELDS:
        return getattr(hook.get_client_config(), name)
    hook.get_client_config()  # the whole connection is valid
    return hook._settings()[extra]


def test_the_definitions_cover_what_they_claim() -> None:
    # guards the parametrizations below against silently running over nothing
    assert {"auth_type", "key_placement", "hmac_timestamp_unit", "id_type", "scheme"} <= set(CHOICES)
    assert {"timeout", "connect_timeout", "requests_per_minute", "max_answer_bytes"} <= set(WITH_DEFAULT)
    assert {
        "timeout",
        "connect_timeout",
        "requests_per_minute",
        "max_answer_bytes",
        "attempt_deadline",
    } <= set(RANGED)
    # every extra sets a ClientConfig field of its name (or EXTRA_CONFIG_NAMES'), except the hook's own:
    # scheme (folded into the base URL) and, where present, the POS host and the rate limit connection
    hook_own = {e for e in CONN_FIELDS if config_name(e) not in CONFIG_FIELDS}
    assert "scheme" in hook_own and hook_own <= {"scheme", "pos_host", "rate_limit_conn_id"}


@pytest.mark.parametrize("extra", WITH_DEFAULT)
def test_an_extra_left_out_takes_its_definitions_default(monkeypatch: pytest.MonkeyPatch, extra: str) -> None:
    default = CONN_FIELDS[extra]["schema"]["default"]
    expected = True if extra == "verify" and default == "true" else default
    assert setting(hook_for(monkeypatch, {}), extra) == expected
    # and the client, built without Airflow, starts from the same default
    if config_name(extra) in CONFIG_FIELDS:
        assert CONFIG_FIELDS[config_name(extra)].default == expected


@pytest.mark.parametrize("extra", CHOICES)
def test_every_choice_of_the_definition_is_taken_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch, extra: str
) -> None:
    base = {"scheme": "https"} if extra == "scheme" else {}
    for choice in CONN_FIELDS[extra]["schema"]["enum"]:
        if extra == "scheme" and choice == "http":
            continue  # refused for a non-loopback host, by a rule of its own (test_crowdtwist_hook)
        assert setting(hook_for(monkeypatch, {**base, extra: choice}), extra) == choice
    with pytest.raises(CrowdTwistConfigError) as info:
        hook_for(monkeypatch, {extra: "not-a-choice"}).get_client_config()
    assert f"extra '{extra}' must be one of" in str(info.value)


@pytest.mark.parametrize("extra", RANGED)
def test_the_range_of_the_definition_is_enforced_at_its_edge(
    monkeypatch: pytest.MonkeyPatch, extra: str
) -> None:
    schema = CONN_FIELDS[extra]["schema"]
    if "exclusiveMinimum" in schema:
        edge, inside = schema["exclusiveMinimum"], schema["exclusiveMinimum"] + 1
    else:
        edge, inside = schema["minimum"] - 1, schema["minimum"]
    with pytest.raises(CrowdTwistConfigError) as info:
        hook_for(monkeypatch, {extra: edge}).get_client_config()
    assert f"extra '{extra}'" in str(info.value)
    assert setting(hook_for(monkeypatch, {extra: str(inside)}), extra) == inside


@pytest.mark.parametrize("extra", WITH_DEFAULT)
def test_the_hook_follows_a_changed_default(monkeypatch: pytest.MonkeyPatch, extra: str) -> None:
    """The drift test: change the definition's default and the hook's result changes with it."""
    schema = CONN_FIELDS[extra]["schema"]
    if "enum" in schema:
        new = next(c for c in schema["enum"] if c != schema["default"])
        expected: Any = new
    elif extra == "verify":
        new, expected = "false", False
    else:
        new = expected = schema["default"] + 7
    monkeypatch.setitem(schema, "default", new)
    assert setting(hook_for(monkeypatch, {}), extra) == expected


@pytest.mark.parametrize("extra", CHOICES)
def test_the_hook_follows_a_changed_choice_list(monkeypatch: pytest.MonkeyPatch, extra: str) -> None:
    schema = CONN_FIELDS[extra]["schema"]
    kept = schema["enum"][0]
    refused = schema["enum"][-1]
    monkeypatch.setitem(schema, "enum", [kept])
    if schema.get("default") not in (None, kept):
        monkeypatch.setitem(schema, "default", kept)
    with pytest.raises(CrowdTwistConfigError, match=f"extra '{extra}' must be one of '{kept}', got"):
        hook_for(monkeypatch, {extra: refused}).get_client_config()


def test_the_hook_follows_a_changed_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CONN_FIELDS["requests_per_minute"]["schema"], "minimum", 60)
    with pytest.raises(
        CrowdTwistConfigError, match="extra 'requests_per_minute' must be a whole number at least 60"
    ):
        hook_for(monkeypatch, {"requests_per_minute": 59}).get_client_config()


def test_read_extras_gives_every_extra() -> None:
    values = read_extras({"timeout": "12"})
    assert list(values) == list(CONN_FIELDS)
    assert (
        values["timeout"] == 12.0 and values["connect_timeout"] == 5.0 and values["attempt_deadline"] is None
    )


def test_connect_timeout_messages_name_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # the hook's own check of the extra ...
    with pytest.raises(CrowdTwistConfigError) as info:
        hook_for(monkeypatch, {"connect_timeout": 0}).get_client_config()
    assert "extra 'connect_timeout'" in str(info.value)
    # ... and ClientConfig.validate's, by the labels the hook passes it
    with pytest.raises(CrowdTwistConfigError) as info:
        hook_for(monkeypatch, {}).get_client_config(connect_timeout=0.0)
    assert "connection extra 'connect_timeout' must be greater than 0" in str(info.value)
    assert "'timeout'" not in str(info.value)
    assert CONNECTION_FIELD_LABELS["connect_timeout"] == "connection extra 'connect_timeout'"
    assert CONNECTION_FIELD_LABELS["read_timeout"] == "connection extra 'timeout'"


def test_every_extra_has_a_label_naming_it() -> None:
    for extra in CONN_FIELDS:
        assert CONNECTION_FIELD_LABELS[config_name(extra)] == f"connection extra '{extra}'"


def test_the_connection_doc_states_each_extras_choices_and_default() -> None:
    """docs/connection.md's table is written by hand: it must say what the definition says."""
    doc = (Path(__file__).parents[3] / "docs" / "connection.md").read_text()
    rows = {line.split("|")[1]: line for line in doc.splitlines() if line.startswith("| `")}
    for extra, field in CONN_FIELDS.items():
        (row,) = [line for cell, line in rows.items() if f"`{extra}`" in cell]
        schema = field["schema"]
        for choice in schema.get("enum", []):
            assert f"`{choice}`" in row.split("|")[2], (extra, choice)
        if "default" in schema:
            assert f"`{schema['default']}`" in row.split("|")[3], extra
