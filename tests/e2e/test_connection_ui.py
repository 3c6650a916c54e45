"""The connection form the Airflow UI shows, and ``airflow connections test``, in a real Airflow.

Airflow 3.2+ builds the form from the provider info's ``connection-types`` (``conn-fields``,
``ui-field-behaviour``) without importing the hook; Airflow 2 asks the hook for WTForms widgets. These
tests read the form the way each Airflow line does -- the API server's hook-meta service on 3.x,
``ProvidersManager`` on 2.x -- so a form that only looks right in our own module would still fail here.
"""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    E2E_API_KEY,
    E2E_HMAC_PRIVATE,
    AirflowEnv,
    airflow_major,
    api_key_conn,
    explain,
    hmac_conn,
)

pytestmark = pytest.mark.e2e

EXTRA_FIELDS = {
    "auth_type",
    "key_placement",
    "hmac_timestamp_unit",
    "id_type",
    "timeout",
    "requests_per_minute",
    "verify",
}


def test_provider_info_is_valid_for_airflow() -> None:
    """``get_provider_info()`` satisfies the schema the installed Airflow ships, with the connection type."""
    import jsonschema

    from airflow_provider_crowdtwist import get_provider_info

    spec = importlib.util.find_spec("airflow")
    assert spec and spec.submodule_search_locations
    schema_file = Path(next(iter(spec.submodule_search_locations))) / "provider_info.schema.json"
    info = get_provider_info()
    jsonschema.validate(info, json.loads(schema_file.read_text()))
    (conn_type,) = [c for c in info["connection-types"] if c["connection-type"] == "crowdtwist"]
    assert conn_type["hook-class-name"] == "airflow_provider_crowdtwist.hooks.crowdtwist.CrowdTwistHook"
    assert set(conn_type["conn-fields"]) >= EXTRA_FIELDS


def _ui_form(airflow_env: AirflowEnv) -> dict[str, Any]:
    """What this Airflow line will render for a ``crowdtwist`` connection, read in a child process."""
    if airflow_major() >= 3:
        code = """
            import json
            from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
            (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "crowdtwist"]
            print("FORM=" + json.dumps(meta.model_dump(), default=str))
        """
    else:
        code = """
            import json
            from airflow.providers_manager import ProvidersManager
            pm = ProvidersManager()
            hook = pm.hooks["crowdtwist"]
            widgets = {k: type(v.field).__name__ for k, v in pm.connection_form_widgets.items()
                       if k.startswith("extra__crowdtwist__")}
            print("FORM=" + json.dumps({
                "hook_class_name": hook.hook_class_name,
                "connection_testable": hook.connection_testable,
                "widgets": widgets,
                "behaviour": pm.field_behaviours.get("crowdtwist"),
            }))
        """
    proc = airflow_env.python(textwrap.dedent(code))
    assert proc.returncode == 0, explain(proc)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("FORM="))
    return json.loads(line[len("FORM=") :])


def test_connection_form_is_what_the_ui_reads(airflow_env: AirflowEnv) -> None:
    form = _ui_form(airflow_env)
    assert form["hook_class_name"] == "airflow_provider_crowdtwist.hooks.crowdtwist.CrowdTwistHook"
    if airflow_major() >= 3:
        fields = form["standard_fields"]
        assert fields["host"]["title"] == "API base URL"
        assert fields["host"]["hidden"] is False
        assert fields["port"]["hidden"] is False and fields["url_schema"]["hidden"] is True
        assert "HMAC public key" in fields["login"]["title"]
        assert "API key" in fields["password"]["title"]
        extra = form["extra_fields"]
        assert set(extra) >= EXTRA_FIELDS
        assert set(extra["auth_type"]["schema"]["enum"]) >= {"api_key", "hmac"}
        assert extra["auth_type"]["value"] == "api_key"
        assert set(extra["hmac_timestamp_unit"]["schema"]["enum"]) >= {"s", "ms"}
    else:
        assert form["connection_testable"] is True
        assert {f"extra__crowdtwist__{name}" for name in EXTRA_FIELDS} <= set(form["widgets"])
        behaviour = form["behaviour"]
        assert "schema" in behaviour["hidden_fields"] and "port" not in behaviour["hidden_fields"]
        assert behaviour["relabeling"]["host"] == "API base URL"
        assert "HMAC public key" in behaviour["relabeling"]["login"]


def _connections_test(airflow_env: AirflowEnv, conn_json: str, *, enabled: bool) -> tuple[int, str]:
    env = {"AIRFLOW_CONN_CROWDTWIST_DEFAULT": conn_json}
    if enabled:
        env["AIRFLOW__CORE__TEST_CONNECTION"] = "Enabled"
    proc = airflow_env.run("connections", "test", "crowdtwist_default", extra_env=env, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


def test_airflow_connections_test_command(airflow_env: AirflowEnv, e2e_sandbox: Any) -> None:
    good = api_key_conn(e2e_sandbox)
    code, out = _connections_test(airflow_env, good, enabled=True)
    assert code == 0 and "Connection success!" in out, out[-3000:]
    assert E2E_API_KEY not in out
    assert e2e_sandbox.admin.stats()["total"] >= 1, "the test did not reach the sandbox"

    # A wrong key fails with a reason, and neither key shows in the output.
    wrong_key = "ctk_live_0000wrong1111key2222abcd"
    bad = json.loads(good)
    bad["password"] = wrong_key
    code, out = _connections_test(airflow_env, json.dumps(bad), enabled=True)
    assert "Connection failed!" in out, out[-3000:]
    assert "401" in out or "API key" in out
    assert wrong_key not in out and E2E_API_KEY not in out

    # An HMAC connection is tested with a signed request; the private key shows nowhere.
    code, out = _connections_test(airflow_env, hmac_conn(e2e_sandbox), enabled=True)
    assert code == 0 and "Connection success!" in out, out[-3000:]
    assert E2E_HMAC_PRIVATE not in out

    # Airflow keeps connection testing off unless the deployment enables it.
    code, out = _connections_test(airflow_env, good, enabled=False)
    assert code != 0 and "disabled" in out.lower(), out[-3000:]
