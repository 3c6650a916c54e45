"""The plugin's declarations: present on Airflow 3.1+, with hrefs under the API server's root path."""

from __future__ import annotations

import pytest

from airflow_provider_crowdtwist.plugins import plugin
from airflow_provider_crowdtwist.plugins.plugin import CrowdTwistPlugin, LazyApp, ui_supported, ui_views
from tests.e2e.conftest import airflow_major


@pytest.mark.parametrize(
    ("version", "supported"),
    [("2.11.0", False), ("3.0.6", False), ("3.1.0", True), ("3.3.2", True), ("3.10.0rc1", True)],
)
def test_pages_only_from_airflow_3_1(version: str, supported: bool) -> None:
    assert ui_supported(version) is supported


def test_views_live_under_the_base_url_path() -> None:
    nav, tab = ui_views("/airflow")
    assert nav["href"] == "/airflow/crowdtwist/syncs" and nav["category"] == "browse"
    assert nav["destination"] == "nav" and nav["url_route"] == "crowdtwist-syncs"
    assert tab["destination"] == "task_instance" and tab["url_route"] == "crowdtwist-run"
    assert tab["href"] == (
        "/airflow/crowdtwist/ti?dag_id={DAG_ID}&run_id={RUN_ID}&task_id={TASK_ID}&map_index={MAP_INDEX}"
    )


def test_root_path_from_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    for base, expected in (
        ("", ""),
        ("http://host:8080/", ""),
        ("https://h/airflow/", "/airflow"),
        ("/af", "/af"),
    ):
        monkeypatch.setenv("AIRFLOW__API__BASE_URL", base)
        assert plugin.root_path() == expected, base


@pytest.mark.skipif(airflow_major() < 3, reason="the plugin declares nothing on Airflow 2")
def test_the_installed_airflow_gets_the_app_and_both_views() -> None:
    if not ui_supported():
        pytest.skip("Airflow 3.0: no external views")
    (app,) = CrowdTwistPlugin.fastapi_apps
    assert app["url_prefix"] == "/crowdtwist" and isinstance(app["app"], LazyApp)
    assert [v["url_route"] for v in CrowdTwistPlugin.external_views] == ["crowdtwist-syncs", "crowdtwist-run"]
