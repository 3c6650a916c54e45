"""``CrowdTwistPlugin``: the CrowdTwist pages in the Airflow 3.1+ UI, and nothing on older Airflows.

On Airflow 3.1+ it adds, through Airflow's own plugin points:

* a FastAPI app mounted at ``<base_url>/crowdtwist`` (``plugins/app.py``), every route guarded by
  Airflow's auth manager;
* ``external_views``: "CrowdTwist syncs" in the Browse menu, and a "CrowdTwist" tab on every task
  instance (``destination: "task_instance"``), both iframes of the app's pages.

Airflow 3.0 has no ``external_views`` and 2.x no FastAPI apps, so there the plugin declares nothing:
it loads with no error and adds no page (docs/ui.md). The app is built on the first request, not at
import: every Airflow process that loads plugins (scheduler, DAG processor, ``airflow`` CLI) imports
this module, and only the API server ever serves a page.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_crowdtwist.plugins.render import SYNCS_ROUTE, TAB_ROUTE

#: Where the app is mounted, under the API server's root path.
URL_PREFIX = "/crowdtwist"


def ui_supported(version: str | None = None) -> bool:
    """True on Airflow 3.1 and later, where plugins have ``external_views`` and FastAPI apps."""
    from airflow_provider_crowdtwist._compat import airflow_version

    return airflow_version(version) >= (3, 1)


def root_path() -> str:
    """The path of ``[api] base_url`` without its trailing slash (``""`` when Airflow is at ``/``)."""
    from airflow_provider_crowdtwist._compat import conf

    base = conf.get("api", "base_url", fallback="") or ""
    path = urlsplit(base).path if "://" in base else base
    return path.rstrip("/")


class LazyApp:
    """An ASGI app that builds the real FastAPI app (``plugins/app.py``) on its first request."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from airflow_provider_crowdtwist.plugins.app import create_app

                    self._app = create_app()
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._get()(scope, receive, send)

    def __repr__(self) -> str:
        return "airflow_provider_crowdtwist.plugins.app:create_app (built on first request)"


def ui_views(root: str) -> list[dict[str, Any]]:
    """The Browse entry and the task-instance tab; ``root`` is the API server's root path."""
    tab_query = "dag_id={DAG_ID}&run_id={RUN_ID}&task_id={TASK_ID}&map_index={MAP_INDEX}"
    return [
        {
            "name": "CrowdTwist syncs",
            "href": f"{root}{URL_PREFIX}/syncs",
            "destination": "nav",
            "category": "browse",
            "url_route": SYNCS_ROUTE,
        },
        {
            "name": "CrowdTwist",
            "href": f"{root}{URL_PREFIX}/ti?{tab_query}",
            "destination": "task_instance",
            "url_route": TAB_ROUTE,
        },
    ]


class CrowdTwistPlugin(AirflowPlugin):
    """The CrowdTwist UI pages (Airflow 3.1+); an empty plugin on older versions."""

    name = "crowdtwist"
    if ui_supported():
        fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "CrowdTwist"}]
        external_views = ui_views(root_path())
