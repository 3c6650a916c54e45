"""Provider metadata: schema-valid on the installed Airflow, discovered by Airflow, form complete.

Runs on both Airflow lines (``.venv`` with 3.x, ``.venv-af2`` with 2.x); checks that only make sense on
one line say so and skip on the other.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_provider_crowdtwist import __version__, get_provider_info
from airflow_provider_crowdtwist.provider_info import CONN_FIELDS, UI_FIELD_BEHAVIOUR

AIRFLOW_3 = int(airflow.__version__.split(".")[0]) >= 3


def _schema() -> dict:
    path = Path(airflow.__file__).parent / "provider_info.schema.json"
    return json.loads(path.read_text())


def test_provider_info_validates_against_the_installed_airflow_schema() -> None:
    info = get_provider_info()
    jsonschema.validate(info, _schema())
    assert info["package-name"] == "airflow-provider-crowdtwist"
    assert info["versions"] == [__version__]


def test_schema_validation_is_not_vacuous() -> None:
    broken = get_provider_info()
    broken["triggers"] = [{"python-modules": ["x"]}]  # integration-name is required for triggers
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, _schema())


def test_listed_modules_exist() -> None:
    info = get_provider_info()
    listed = {
        kind: [module for entry in info[kind] for module in entry["python-modules"]]
        for kind in ("hooks", "operators", "sensors", "triggers")
    }
    assert listed == {
        "hooks": ["airflow_provider_crowdtwist.hooks.crowdtwist"],
        "operators": [
            "airflow_provider_crowdtwist.operators.user_sync",
            "airflow_provider_crowdtwist.operators.activity_credit",
            "airflow_provider_crowdtwist.operators.purchase",
            "airflow_provider_crowdtwist.operators.returns",
            "airflow_provider_crowdtwist.operators.live_push",
            "airflow_provider_crowdtwist.operators.audience",
        ],
        "sensors": ["airflow_provider_crowdtwist.sensors.crowdtwist"],
        "triggers": ["airflow_provider_crowdtwist.triggers.crowdtwist"],
    }
    for modules in listed.values():
        for module in modules:
            assert importlib.util.find_spec(module) is not None, module
    integrations = {i["integration-name"] for i in info["integrations"]}
    for kind in listed:
        assert {entry["integration-name"] for entry in info[kind]} <= integrations


def test_connection_type_points_at_the_hook() -> None:
    (conn,) = get_provider_info()["connection-types"]
    module_name, _, class_name = conn["hook-class-name"].rpartition(".")
    hook_class = getattr(importlib.import_module(module_name), class_name)
    assert hook_class.conn_type == conn["connection-type"] == "crowdtwist"
    assert hook_class.hook_name == conn["hook-name"]


def test_conn_fields_are_valid_json_schemas_with_valid_defaults() -> None:
    (conn,) = get_provider_info()["connection-types"]
    assert conn["conn-fields"] == CONN_FIELDS
    assert set(CONN_FIELDS) == {
        "auth_type",
        "key_placement",
        "hmac_timestamp_unit",
        "id_type",
        "scheme",
        "timeout",
        "connect_timeout",
        "requests_per_minute",
        "pos_host",
        "rate_limit_conn_id",
        "verify",
        "max_answer_bytes",
        "attempt_deadline",
        "client_cert",
        "client_key",
    }
    for name, field in CONN_FIELDS.items():
        assert field["label"] and field["description"], name
        jsonschema.Draft7Validator.check_schema(field["schema"])
        validator = jsonschema.Draft7Validator(field["schema"])
        if "default" in field["schema"]:
            validator.validate(field["schema"]["default"])
        if "enum" not in field["schema"]:
            validator.validate(None)  # a free-text extra may be left empty
        # No null choice: Airflow 3 renders each enum member as an option ("null" for None); a
        # choice left empty is not saved, and the hook's default applies.
        assert all(isinstance(v, str) for v in field["schema"].get("enum", [])), name
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate("oauth", CONN_FIELDS["auth_type"]["schema"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(0, CONN_FIELDS["timeout"]["schema"])


def test_ui_field_behaviour_in_provider_info() -> None:
    (conn,) = get_provider_info()["connection-types"]
    behaviour = conn["ui-field-behaviour"]
    assert set(behaviour) == {"hidden-fields", "relabeling", "placeholders"}
    assert behaviour["relabeling"] == {
        "host": "API base URL",
        "port": "Port (optional)",
        "login": "HMAC public key",
        "password": "API key / HMAC private key",
    }
    assert "schema" in behaviour["hidden-fields"]
    # the port stays visible: Airflow 3.3's Test button needs it to match the stored one
    assert "port" not in behaviour["hidden-fields"]
    assert behaviour["hidden-fields"] == UI_FIELD_BEHAVIOUR["hidden_fields"]


def test_get_provider_info_returns_a_fresh_copy() -> None:
    first = get_provider_info()
    first["connection-types"][0]["conn-fields"]["auth_type"]["label"] = "changed"
    assert get_provider_info()["connection-types"][0]["conn-fields"]["auth_type"]["label"] == "Auth type"
    assert CONN_FIELDS["auth_type"]["label"] == "Auth type"


def test_providers_manager_registers_the_connection_type() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-crowdtwist" in manager.providers
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hook_info = manager.hooks["crowdtwist"]
        widgets = manager.connection_form_widgets
        behaviours = manager.field_behaviours
    assert hook_info is not None
    assert hook_info.hook_class_name == "airflow_provider_crowdtwist.hooks.crowdtwist.CrowdTwistHook"
    assert hook_info.connection_id_attribute_name == "crowdtwist_conn_id"
    assert hook_info.hook_name == "CrowdTwist"
    assert hook_info.connection_testable is True
    prefix = "extra__crowdtwist__"
    ours = sorted(k.removeprefix(prefix) for k in widgets if k.startswith(prefix))
    assert ours == sorted(CONN_FIELDS)
    assert behaviours["crowdtwist"]["relabeling"]["host"] == "API base URL"
    if AIRFLOW_3:
        # declared in provider info, so Airflow 3 never calls the deprecated hook methods
        assert not [w for w in caught if "CrowdTwistHook" in str(w.message)]


@pytest.mark.skipif(not AIRFLOW_3, reason="the /ui/connections/hook_meta service is Airflow 3 only")
def test_hook_meta_as_the_airflow3_ui_receives_it() -> None:
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    metas = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "crowdtwist"]
    assert len(metas) == 1
    meta = metas[0]
    assert meta.hook_name == "CrowdTwist"
    assert meta.standard_fields.host.title == "API base URL"
    assert meta.standard_fields.login.title == "HMAC public key"
    assert meta.standard_fields.password.title == "API key / HMAC private key"
    assert meta.standard_fields.url_schema.hidden and not meta.standard_fields.port.hidden
    assert meta.standard_fields.port.title == "Port (optional)"
    extra = meta.extra_fields
    assert list(extra) == list(CONN_FIELDS)
    assert extra["auth_type"]["value"] == "api_key"
    assert extra["auth_type"]["schema"]["enum"] == ["api_key", "hmac"]
    # no dropdown offers the word "null": no enum carries None
    assert all(None not in f["schema"].get("enum", []) for f in extra.values())
    assert extra["key_placement"]["value"] == "header"
    assert extra["requests_per_minute"]["value"] == 10000
    # no field default is hidden behind the secrets mask (names containing "api_key" are masked)
    assert all(field["value"] != "***" for field in extra.values())


def test_airflow_providers_list_shows_the_provider(tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    airflow_bin = Path(sys.executable).parent / "airflow"
    result = subprocess.run(
        [str(airflow_bin), "providers", "list", "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    start = result.stdout.index("[")
    providers = json.loads(result.stdout[start:])
    ours = [p for p in providers if p["package_name"] == "airflow-provider-crowdtwist"]
    assert len(ours) == 1, result.stdout[-2000:]
    assert ours[0]["version"] == __version__
