"""The CrowdTwist UI plugin on a real Airflow 3 API server, behind an ``[api] base_url`` prefix.

One Airflow home for the module: two DAGs (``ct_ui_sync`` and ``ct_ui_other``) each sync the same
small CSV (eight good members, two rejected rows) into the sandbox with ``airflow dags test``; then
``airflow api-server`` starts on a free loopback port with ``base_url`` ``http://127.0.0.1:PORT/airflow``
and the test auth manager (``ui_auth_manager.py``: Airflow's SimpleAuthManager with real logins, plus
one per-DAG denial, because the simple manager has no per-DAG permissions). Users: ``admin`` (admin)
and ``outsider`` (viewer, denied ``ct_ui_sync``).

* HTTP: every plugin route is 401 without a login; the outsider gets 403 on the tab of
  ``ct_ui_sync`` and a syncs page that lists ``ct_ui_other`` only; the admin's tab shows the counts
  of the summary XCom, quickly; the "CrowdTwist run" extra link is the tab's address.
* Browser (Debian's Chromium): the admin opens the task instance, clicks the CrowdTwist tab, sees the
  summary's counts in it, and finds the run on the CrowdTwist syncs page from the Browse menu.

Airflow 3.1+ only (the plugin declares nothing before). Screenshots go to the test's tmp directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from airflow_provider_crowdtwist._compat import airflow_version
from tests.e2e.conftest import BIN_DIR, REPO, AirflowEnv, api_key_conn, explain, free_port
from tests.e2e.test_connection_browser import browser  # noqa: F401  (the Chromium fixture)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        airflow_version() < (3, 1), reason="the UI plugin needs Airflow 3.1+ (external views, plugin apps)"
    ),
]

DAG_IDS = ("ct_ui_sync", "ct_ui_other")
TASK_ID = "sync_members"
DAG_FILE = """
import os

import pendulum
from airflow.sdk import DAG

from airflow_provider_crowdtwist.operators.user_sync import CrowdTwistUserSyncOperator

WORK = os.environ.get("CT_UI_WORK", "/tmp/ct-ui")
for dag_id in ("ct_ui_sync", "ct_ui_other"):
    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False) as dag:
        CrowdTwistUserSyncOperator(
            task_id="sync_members",
            source_path=f"{WORK}/members.csv",
            id_column="user_id",
            id_type="email",
            rejects_path=f"{WORK}/rejects-{dag_id}.jsonl",
        )
    globals()[dag_id] = dag
"""
MEMBERS = [
    "user_id,first_name,last_name,postal_code",
    *(f"ui{i}@example.com,Ui,Member,02134" for i in range(8)),
    ",No,Identifier,02134",
    "ui-bad@example.com,Bad,Zip,ABCDE",
]
PASSWORDS = {"admin": "admin-pass-8c1f", "outsider": "outsider-pass-2b7d"}


@dataclass
class UiAirflow:
    url: str  # the Airflow root, with the /airflow prefix
    home: Path
    tokens: dict[str, str]
    run_ids: dict[str, str]
    summaries: dict[str, dict[str, Any]]
    log: Path

    def tab_url(self, dag_id: str) -> str:
        query = urlencode({"dag_id": dag_id, "run_id": self.run_ids[dag_id], "task_id": TASK_ID})
        return f"{self.url}/crowdtwist/ti?{query}&map_index={{MAP_INDEX}}"

    def ui_task_url(self, dag_id: str) -> str:
        return f"{self.url}/dags/{dag_id}/runs/{quote(self.run_ids[dag_id], safe='')}/tasks/{TASK_ID}"


def get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:  # not listening yet
        return 0, str(exc)


def login(url: str, user: str) -> str:
    body = json.dumps({"username": user, "password": PASSWORDS[user]}).encode()
    request = urllib.request.Request(
        f"{url}/auth/token", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return str(json.loads(answer.read())["access_token"])


def read_run(db: Path, dag_id: str) -> tuple[str, dict[str, Any]]:
    """The run id and the ``summary`` XCom of the DAG's one run, straight from the metadata DB."""
    con = sqlite3.connect(db)
    try:
        run_id, value = con.execute(
            "SELECT run_id, value FROM xcom WHERE dag_id = ? AND task_id = ? AND key = 'summary'",
            (dag_id, TASK_ID),
        ).fetchone()
    finally:
        con.close()
    summary = json.loads(value)
    if isinstance(summary, str):  # the task SDK stores the serialized JSON text
        summary = json.loads(summary)
    return run_id, summary


@pytest.fixture(scope="module")
def ui_airflow(e2e_sandbox_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiAirflow]:
    e2e_sandbox_server.reset()
    root = tmp_path_factory.mktemp("ui_plugin")
    auth_dir = root / "auth"
    auth_dir.mkdir()
    shutil.copy(REPO / "tests" / "e2e" / "ui_auth_manager.py", auth_dir / "ui_auth_manager.py")
    home, dags, work = root / "airflow_home", root / "dags", root / "work"
    for d in (home, dags, work):
        d.mkdir()
    (dags / "ct_ui_dags.py").write_text(DAG_FILE)
    (work / "members.csv").write_text("\n".join(MEMBERS) + "\n")
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    port = free_port()
    url = f"http://127.0.0.1:{port}/airflow"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CROWDTWIST_"))}
    base.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__AUTH_MANAGER": "ui_auth_manager.OneDagDeniedAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,outsider:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API__BASE_URL": url,
            "AIRFLOW_CONN_CROWDTWIST_DEFAULT": api_key_conn(e2e_sandbox_server),
            "CROWDTWIST_UI_DENY": "outsider:ct_ui_sync",
            "CT_UI_WORK": str(work),
            "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}",
            # Only the test's auth manager, not the checkout: a checkout holds the editable install's
            # egg-info, and Airflow, reading every distribution on the path, would load our plugin
            # entry point twice ("already registered") -- which no installed wheel does.
            "PYTHONPATH": os.pathsep.join(p for p in (str(auth_dir), os.environ.get("PYTHONPATH", "")) if p),
            "PYTHONWARNINGS": "ignore::DeprecationWarning",
        }
    )
    if not _plugin_entry_point_installed():
        # A checkout whose editable install predates the entry point: load the provider-info plugin.
        base["AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS"] = "False"
    airflow = AirflowEnv(home=home, base_env=base)
    proc = airflow.run("db", "migrate", timeout=240)
    assert proc.returncode == 0, explain(proc)
    run_ids, summaries = {}, {}
    for dag_id in DAG_IDS:
        proc = airflow.run("dags", "test", dag_id, "2026-11-22", timeout=300)
        assert proc.returncode == 0, explain(proc)
        run_ids[dag_id], summaries[dag_id] = read_run(home / "airflow.db", dag_id)
    log = root / "api-server.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(BIN_DIR / "airflow"), "api-server", "--host", "127.0.0.1", "--port", str(port)],
            env=airflow.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its workers stop with it
        )
    try:
        deadline = time.monotonic() + 120
        while get(f"{url}/api/v2/monitor/health")[0] != 200:
            assert server.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, "the api-server did not come up in 120 s"
            time.sleep(1)
        tokens = {user: login(url, user) for user in PASSWORDS}
        yield UiAirflow(url=url, home=home, tokens=tokens, run_ids=run_ids, summaries=summaries, log=log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def _plugin_entry_point_installed() -> bool:
    from importlib.metadata import entry_points

    return any(
        ep.value.startswith("airflow_provider_crowdtwist.") for ep in entry_points(group="airflow.plugins")
    )


def test_the_syncs_ran_with_rejects(ui_airflow: UiAirflow) -> None:
    first, second = (ui_airflow.summaries[d]["counts"] for d in DAG_IDS)
    assert first["created"] == 8 and first["rejected"] == 2, first
    assert second["updated"] + second["unchanged"] == 8 and second["rejected"] == 2, second  # same members


def test_the_plugin_is_registered_with_both_views(ui_airflow: UiAirflow) -> None:
    status, body = get(f"{ui_airflow.url}/api/v2/plugins", ui_airflow.tokens["admin"])
    assert status == 200, body
    (plugin,) = [p for p in json.loads(body)["plugins"] if p["name"] == "crowdtwist"]
    views = {v["url_route"]: v for v in plugin["external_views"]}
    assert views["crowdtwist-syncs"]["href"] == "/airflow/crowdtwist/syncs"
    assert views["crowdtwist-run"]["destination"] == "task_instance"
    status, body = get(f"{ui_airflow.url}/api/v2/plugins/importErrors", ui_airflow.tokens["admin"])
    assert status == 200, body
    # (Under lazy_discover_providers=False, OpenLineage's plugin comes twice -- entry point and
    # provider info -- and Airflow notes the second as an import error: not ours to assert on.)
    assert not [e for e in json.loads(body)["import_errors"] if "crowdtwist" in json.dumps(e).lower()], body


def test_every_plugin_route_refuses_anonymous_requests(ui_airflow: UiAirflow) -> None:
    for route in (ui_airflow.tab_url("ct_ui_sync"), f"{ui_airflow.url}/crowdtwist/syncs"):
        status, body = get(route)
        assert status == 401, (route, status, body[:300])
        assert "Log in to Airflow" in body
    status, _ = get(ui_airflow.tab_url("ct_ui_sync"), "not-a-token")
    assert status in (401, 403)
    for unguarded in ("docs", "openapi.json", "redoc"):  # no schema or docs routes at all
        assert get(f"{ui_airflow.url}/crowdtwist/{unguarded}", ui_airflow.tokens["admin"])[0] == 404


def test_a_user_without_access_to_the_dag_gets_403_and_does_not_see_it(ui_airflow: UiAirflow) -> None:
    token = ui_airflow.tokens["outsider"]
    status, body = get(ui_airflow.tab_url("ct_ui_sync"), token)
    assert status == 403, body[:300]
    assert "8" not in body.split("<body>", 1)[1]  # no count leaks into the refusal
    # ... nor does a run id that does not exist answer differently (the check comes first)
    status, _ = get(ui_airflow.tab_url("ct_ui_sync").replace("run_id=", "run_id=nope"), token)
    assert status == 403
    status, body = get(ui_airflow.tab_url("ct_ui_other"), token)
    assert status == 200 and "data-outcome='created'" in body
    status, page = get(f"{ui_airflow.url}/crowdtwist/syncs", token)
    assert status == 200
    assert "data-dag-id='ct_ui_other'" in page and "ct_ui_sync" not in page


def test_the_tab_shows_the_summary_counts_quickly(ui_airflow: UiAirflow) -> None:
    token = ui_airflow.tokens["admin"]
    get(ui_airflow.tab_url("ct_ui_sync"), token)  # the app is built on its first request
    began = time.perf_counter()
    status, body = get(ui_airflow.tab_url("ct_ui_sync"), token)
    elapsed = time.perf_counter() - began
    print(f"tab answered in {elapsed * 1000:.0f} ms")
    assert status == 200, body[:500]
    assert elapsed < 1.0
    summary = ui_airflow.summaries["ct_ui_sync"]
    for outcome, count in summary["counts"].items():
        assert f"<tr data-outcome='{outcome}'><td>{outcome}</td><td class='n'>{count:,}</td></tr>" in body
    assert "Top reject reasons" in body and "No calls recorded" in body
    status, page = get(f"{ui_airflow.url}/crowdtwist/syncs", token)
    assert status == 200 and page.count("<section class='sync'") == 2
    run_path = quote(ui_airflow.run_ids["ct_ui_sync"], safe="")
    assert f"href='../dags/ct_ui_sync/runs/{run_path}/tasks/{TASK_ID}/plugin/crowdtwist-run'" in page


def test_the_extra_link_leads_to_the_tab(ui_airflow: UiAirflow) -> None:
    run_id = quote(ui_airflow.run_ids["ct_ui_sync"], safe="")
    status, body = get(
        f"{ui_airflow.url}/api/v2/dags/ct_ui_sync/dagRuns/{run_id}/taskInstances/{TASK_ID}/links",
        ui_airflow.tokens["admin"],
    )
    assert status == 200, body
    assert (
        json.loads(body)["extra_links"]["CrowdTwist run"]
        == f"{ui_airflow.ui_task_url('ct_ui_sync')}/plugin/crowdtwist-run"
    )


@pytest.mark.browser
def test_the_tab_and_the_syncs_page_in_chromium(
    browser: Any,  # noqa: F811
    ui_airflow: UiAirflow,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots in {shots}")
    # Logged in as the admin: the UI and the plugin read the same session cookie.
    browser.get(f"{ui_airflow.url}/api/v2/monitor/health")
    browser.add_cookie({"name": "_token", "value": ui_airflow.tokens["admin"], "path": "/"})

    browser.get(ui_airflow.ui_task_url("ct_ui_sync"))
    tab = WebDriverWait(browser, 60).until(
        ec.element_to_be_clickable(
            (By.XPATH, "//a[normalize-space(.)='CrowdTwist'] | //button[normalize-space(.)='CrowdTwist']")
        )
    )
    browser.save_screenshot(str(shots / "1-task-instance.png"))
    tab.click()
    frame = WebDriverWait(browser, 30).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "iframe[title='CrowdTwist']"))
    )
    assert browser.current_url.endswith("/plugin/crowdtwist-run"), browser.current_url
    browser.switch_to.frame(frame)
    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, "table.counts")))
    shown = {
        row.get_attribute("data-outcome"): row.find_elements(By.TAG_NAME, "td")[1].text
        for row in browser.find_elements(By.CSS_SELECTOR, "table.counts tr[data-outcome]")
        if row.get_attribute("data-outcome") != "total"
    }
    summary = ui_airflow.summaries["ct_ui_sync"]
    assert shown == {k: f"{v:,}" for k, v in summary["counts"].items()}
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart.bars rect.bar")
    background = "return getComputedStyle(document.body).backgroundColor"
    assert browser.execute_script(background) == "rgb(255, 255, 255)"
    browser.switch_to.default_content()
    browser.save_screenshot(str(shots / "2-crowdtwist-tab.png"))
    # A browser that prefers dark gets the dark colours.
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
    )
    browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "iframe[title='CrowdTwist']"))
    assert browser.execute_script(background) == "rgb(20, 24, 33)"
    browser.switch_to.default_content()
    browser.save_screenshot(str(shots / "3-crowdtwist-tab-dark.png"))
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})

    # The Browse menu's entry opens the syncs page, which lists the run.
    browser.get(f"{ui_airflow.url}/")
    WebDriverWait(browser, 60).until(
        ec.element_to_be_clickable(
            (
                By.XPATH,
                "//button[.//*[normalize-space(text())='Browse']] | //button[normalize-space(.)='Browse']",
            )
        )
    ).click()
    WebDriverWait(browser, 10).until(
        ec.element_to_be_clickable(
            (
                By.XPATH,
                "//*[@role='menuitem'][normalize-space(.)='CrowdTwist syncs']"
                " | //a[normalize-space(.)='CrowdTwist syncs']",
            )
        )
    ).click()
    frame = WebDriverWait(browser, 30).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "iframe[title='CrowdTwist syncs']"))
    )
    browser.switch_to.frame(frame)
    run_row = WebDriverWait(browser, 30).until(
        ec.presence_of_element_located(
            (
                By.CSS_SELECTOR,
                f"section[data-dag-id='ct_ui_sync'] tr[data-run-id='{ui_airflow.run_ids['ct_ui_sync']}']",
            )
        )
    )
    assert "8 created, 2 rejected" in run_row.text, run_row.text
    browser.switch_to.default_content()
    browser.save_screenshot(str(shots / "4-syncs-page.png"))
