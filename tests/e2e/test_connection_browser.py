"""The Add Connection page of the Airflow 3 UI, driven by a real browser (Debian's Chromium).

Selenium fills the form for type ``crowdtwist``, checks every dropdown (no ``null`` option), saves,
reads the connection back (the key placement is not masked), reopens it, presses the row's *Test*
button against the sandbox and asserts the toast the page shows. A screenshot of each step goes to
the test's temporary directory (its path is printed).

Airflow 3 only (the React UI); on Airflow 2 the form is covered by ``test_connection_ui.py``. Under
``CI=true`` a missing Chromium, chromium-driver or selenium fails the test instead of skipping it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_crowdtwist.client.config import ID_TYPES
from tests.e2e.conftest import BIN_DIR, E2E_API_KEY, AirflowEnv, airflow_major, explain, free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(airflow_major() < 3, reason="the React connection form is Airflow 3 only"),
]

CONN_ID = "ct_browser"
CHOICES = {
    "Auth type": ["api_key", "hmac"],
    "Send API key in": ["header", "query"],
    "HMAC timestamp unit": ["s", "ms"],
    "Default id_type": list(ID_TYPES),
    "Scheme": ["https", "http"],
}


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI installs chromium and chromium-driver from Debian; see .ci/run)")
    pytest.skip(reason)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (dev dependency group)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        _missing("chromium / chromedriver not found (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,2200"):
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.implicitly_wait(10)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def api_server(airflow_env: AirflowEnv, tmp_path: Path) -> Iterator[str]:
    """``airflow api-server`` on a free loopback port with its own home; every user is an admin."""
    home = tmp_path / "airflow_home"
    home.mkdir()
    env = airflow_env.env(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        }
    )
    migrate = subprocess.run(
        [str(BIN_DIR / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True, timeout=240
    )
    assert migrate.returncode == 0, explain(migrate)
    port = free_port()
    log = (tmp_path / "api-server.log").open("w")
    proc = subprocess.Popen(
        [str(BIN_DIR / "airflow"), "api-server", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its workers die with it
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2) as answer,
            ):
                if answer.status == 200:
                    break
            assert proc.poll() is None, (tmp_path / "api-server.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "the api-server did not come up in 120 s"
            time.sleep(1)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_add_connection_in_the_airflow3_ui(
    browser: Any, api_server: str, e2e_sandbox: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots in {shots}")

    def dropdown(label: str) -> Any:
        row = browser.find_element(
            By.XPATH, f"//*[normalize-space(text())='{label}']/ancestor::*[.//input[@role='combobox']][1]"
        )
        return row, row.find_element(By.CSS_SELECTOR, "input[role=combobox]")

    def open_dropdown(box: Any) -> None:
        """Scroll the box to the middle first: a field's helper text can cover it near the edge."""
        from selenium.common.exceptions import ElementClickInterceptedException

        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", box)
        try:
            box.click()
        except ElementClickInterceptedException:
            box.send_keys(Keys.ARROW_DOWN)  # the keyboard opens the same menu

    def close_dropdown() -> None:  # Escape would close the whole dialog
        browser.find_element(By.XPATH, "//*[@role='dialog']//h2 | //*[@role='dialog']//header").click()

    def visible_options() -> list[str]:
        return [o.text for o in browser.find_elements(By.CSS_SELECTOR, "[role=option]") if o.is_displayed()]

    browser.get(f"{api_server}/connections")
    WebDriverWait(browser, 60).until(
        ec.element_to_be_clickable((By.XPATH, "//button[normalize-space(.)='Add Connection']"))
    ).click()
    browser.find_element(By.NAME, "connection_id").send_keys(CONN_ID)
    kind = browser.find_element(By.CSS_SELECTOR, "[role=dialog] input[role=combobox]")
    kind.send_keys("CrowdTwist")
    WebDriverWait(browser, 10).until(lambda d: "CrowdTwist" in visible_options())
    kind.send_keys(Keys.ENTER)
    host, port = e2e_sandbox.base_url.rsplit(":", 1)
    browser.find_element(By.NAME, "host").send_keys(host)
    browser.find_element(By.NAME, "port").send_keys(port)
    browser.find_element(By.NAME, "password").send_keys(E2E_API_KEY)
    browser.find_element(By.XPATH, "//button[normalize-space(.)='Extra Fields']").click()

    for label, expected in CHOICES.items():
        _, box = dropdown(label)
        open_dropdown(box)
        WebDriverWait(browser, 10).until(lambda d: visible_options())
        options = visible_options()
        assert options == expected, (label, options)
        assert "null" not in options
        if label == "Send API key in":
            next(
                o for o in browser.find_elements(By.CSS_SELECTOR, "[role=option]") if o.text == "query"
            ).click()
        else:
            close_dropdown()
    rate = browser.find_element(By.NAME, "element_requests_per_minute")
    rate.send_keys(Keys.CONTROL, "a")
    rate.send_keys("0")
    browser.save_screenshot(str(shots / "1-filled.png"))
    assert not [o for o in browser.find_elements(By.TAG_NAME, "option") if o.text.strip() == "null"]
    browser.find_element(By.XPATH, "//*[@role='dialog']//button[normalize-space(.)='Save']").click()
    WebDriverWait(browser, 30).until(ec.invisibility_of_element_located((By.CSS_SELECTOR, "[role=dialog]")))

    # What was saved: the choice reads back as "query", never as the secrets mask.
    with urllib.request.urlopen(f"{api_server}/api/v2/connections/{CONN_ID}", timeout=10) as answer:
        saved = json.load(answer)
    extra = json.loads(saved["extra"])
    assert extra["key_placement"] == "query"
    assert "***" not in saved["extra"] and saved["password"] == "***"
    assert (saved["conn_type"], saved["host"], saved["port"]) == ("crowdtwist", host, int(port))

    # The edit form shows the choice unmasked too.
    row_xpath = f"//tr[.//*[normalize-space(text())='{CONN_ID}']]"
    browser.find_element(By.XPATH, f"{row_xpath}//button[@aria-label='Edit Connection']").click()
    browser.find_element(By.XPATH, "//button[normalize-space(.)='Extra Fields']").click()

    def choice_shown(_: Any) -> str | bool:
        """The row's text once the dialog has rendered it (an unrendered row reads as '')."""
        row, _box = dropdown("Send API key in")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", row)
        return row.text if "query" in row.text else False

    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    shown = WebDriverWait(
        browser, 20, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
    ).until(choice_shown)
    assert "query" in shown and "***" not in shown
    browser.save_screenshot(str(shots / "2-edit.png"))
    browser.find_element(By.CSS_SELECTOR, "[role=dialog] button[aria-label='Close']").click()
    WebDriverWait(browser, 30).until(ec.invisibility_of_element_located((By.CSS_SELECTOR, "[role=dialog]")))

    # Test: one GET /v2/activities against the sandbox, answered in a toast.
    before = e2e_sandbox.admin.stats()["total"]
    browser.find_element(By.XPATH, f"{row_xpath}//button[@aria-label='Test Connection']").click()
    toast = WebDriverWait(browser, 60).until(
        lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, "[role=status]") if e.text.strip()), None)
    )
    browser.save_screenshot(str(shots / "3-tested.png"))
    assert "Connected: 4 active activities" in toast.text, toast.text
    assert E2E_API_KEY not in browser.page_source
    assert e2e_sandbox.admin.stats()["total"] == before + 1
