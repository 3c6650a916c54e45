"""``CrowdTwistRunLink``: the "CrowdTwist run" button of every CrowdTwist sync task.

Where it points depends on the Airflow that shows it:

* 3.1+: the task instance's CrowdTwist tab (``plugins/``), with the run's counts, reasons and calls;
* 3.0 (no plugin tabs): the task instance's XCom tab, where the ``summary`` XCom is;
* 2.x: the grid view with the task selected on its XCom tab (the ``summary`` XCom).

Airflow 3 asks the worker for the link when the task ends and keeps it as an XCom, so the URL is
built from the worker's ``[api] base_url``; without one it is a path from the server root, which the
UI opens on its own host. Airflow 2's webserver builds it on each view from ``[webserver] base_url``
(the class is listed under ``extra-links`` in the provider info for that).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

# Through _compat: common.compat 1.8.0 (the floor) may not export it.
from airflow_provider_crowdtwist._compat import BaseOperatorLink

#: The tab's ``url_route`` (``plugins/render.py`` holds the same value; kept here so that a worker
#: building the link does not import the plugin package).
TAB_ROUTE = "crowdtwist-run"


def _base(section: str) -> str:
    from airflow_provider_crowdtwist._compat import conf

    return str(conf.get(section, "base_url", fallback="") or "").rstrip("/")


def run_link(
    dag_id: str, run_id: str, task_id: str, map_index: int, *, version: tuple[int, int], base: str
) -> str:
    """The URL of one task instance's CrowdTwist view on Airflow ``version`` served at ``base``."""
    if version < (3, 0):
        query: dict[str, Any] = {"dag_run_id": run_id, "task_id": task_id, "tab": "xcom"}
        if map_index >= 0:
            query["map_index"] = map_index
        return f"{base}/dags/{quote(dag_id, safe='')}/grid?{urlencode(query)}"
    path = (
        f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}"
    )
    if map_index >= 0:
        path += f"/mapped/{map_index}"
    return f"{path}/plugin/{TAB_ROUTE}" if version >= (3, 1) else f"{path}/xcom"


class CrowdTwistRunLink(BaseOperatorLink):
    """The "CrowdTwist run" extra link (see the module docstring for where it leads)."""

    name = "CrowdTwist run"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow_provider_crowdtwist._compat import airflow_version

        version = airflow_version()
        base = _base("api" if version >= (3, 0) else "webserver")
        map_index = getattr(ti_key, "map_index", -1)
        return run_link(
            ti_key.dag_id,
            ti_key.run_id,
            ti_key.task_id,
            -1 if map_index is None else int(map_index),
            version=version,
            base=base,
        )
