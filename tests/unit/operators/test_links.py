"""The "CrowdTwist run" extra link: where it leads on each Airflow, and that every sync carries it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from airflow_provider_crowdtwist.operators.activity_credit import CrowdTwistActivityCreditOperator
from airflow_provider_crowdtwist.operators.links import CrowdTwistRunLink, run_link
from airflow_provider_crowdtwist.operators.user_sync import CrowdTwistUserSyncOperator

RUN = "manual__2026-11-22T01:00:00+00:00"


def test_airflow_3_1_links_to_the_tab_encoded_under_the_base_url() -> None:
    url = run_link("d", RUN, "t", -1, version=(3, 3), base="https://af.example.com/airflow")
    assert url == (
        "https://af.example.com/airflow/dags/d/runs/manual__2026-11-22T01%3A00%3A00%2B00%3A00/tasks/t"
        "/plugin/crowdtwist-run"
    )
    assert run_link("d", "r", "t", 4, version=(3, 1), base="").endswith(
        "/tasks/t/mapped/4/plugin/crowdtwist-run"
    )


def test_airflow_3_0_links_to_the_xcom_tab_and_2_to_the_grid() -> None:
    assert run_link("d", "r", "t", -1, version=(3, 0), base="") == "/dags/d/runs/r/tasks/t/xcom"
    assert run_link("d", RUN, "t", 2, version=(2, 11), base="http://h:8080") == (
        "http://h:8080/dags/d/grid?dag_run_id=manual__2026-11-22T01%3A00%3A00%2B00%3A00&task_id=t&tab=xcom"
        "&map_index=2"
    )


def test_get_link_reads_the_task_instance_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://127.0.0.1:9/root/")
    monkeypatch.setenv("AIRFLOW__WEBSERVER__BASE_URL", "http://127.0.0.1:9/root/")
    key = SimpleNamespace(dag_id="d", run_id="r", task_id="t", map_index=-1)
    url = CrowdTwistRunLink().get_link(None, ti_key=key)
    assert url.startswith("http://127.0.0.1:9/root/dags/d/")


@pytest.mark.parametrize("operator", [CrowdTwistUserSyncOperator, CrowdTwistActivityCreditOperator])
def test_every_sync_operator_has_the_link(operator: type) -> None:
    assert [link.name for link in operator.operator_extra_links] == ["CrowdTwist run"]
