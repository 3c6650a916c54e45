"""The FastAPI app the plugin mounts on the Airflow 3.1+ API server: the tab and the syncs page.

Airflow does not authenticate plugin apps (a mounted app sees every request, logged in or not), so
every route here carries Airflow's own checks, the ones its REST API uses:

* ``get_user`` (the session cookie or a bearer token): none, or an expired one, is 401;
* the tab: ``requires_access_dag("GET", TASK_INSTANCE)`` and ``("GET", XCOM)`` on the ``dag_id`` of
  the query, so a user who may not read that DAG's task instances and XComs gets 403, whatever the
  auth manager (simple, FAB, Keycloak...) decides "read" means;
* the syncs page: only DAGs in ``get_authorized_dag_ids(user)`` that also pass the same two checks.

This module is imported only on the API server (``plugin.LazyApp``, on the first request), so it
imports Airflow's API modules at the top: FastAPI resolves the route annotations from its globals.
The check comes before any lookup, so a 404 never tells a user without access that a run exists.
The pages read what Airflow keeps (task instances, the ``summary`` XCom) plus bounded parts of the
rejects and calls files (``plugins/files.py``), never the rows of the source.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import get_user, requires_access_dag
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse

from airflow_provider_crowdtwist.plugins.render import (
    TaskRun,
    render_message,
    render_syncs_page,
    render_tab_for,
)

#: The XCom key the sync operators push their summary under (``operators/_common.py``).
SUMMARY_KEY = "summary"
#: Task runs the syncs page shows, newest first.
SYNCS_LIMIT = 200
#: Task runs whose operator class is named like ours: ``CrowdTwist...Operator`` (not the sensor).
OPERATOR_PATTERN = "CrowdTwist%Operator"


def _map_index(value: str | None) -> int:
    """The tab's ``map_index``: the UI leaves the ``{MAP_INDEX}`` placeholder for unmapped tasks."""
    try:
        return int(value) if value is not None else -1
    except ValueError:
        return -1


def _summary_of(value: Any) -> dict[str, Any] | None:
    """A summary dict from an XCom value (deserialized by Airflow's own XCom model), else None."""
    from airflow.models.xcom import XComModel

    class _Row:  # deserialize_value reads ``.value``
        def __init__(self, v: Any) -> None:
            self.value = v

    try:
        data = XComModel.deserialize_value(_Row(value))
    except Exception:  # a value another backend wrote: not shown rather than a broken page
        return None
    return data if isinstance(data, dict) and isinstance(data.get("counts"), dict) else None


def _summaries(
    session: Any, keys: Iterable[tuple[str, str, str, int]]
) -> dict[tuple[str, str, str, int], Any]:
    """The ``summary`` XCom (else a summary-shaped ``return_value``) of each task-instance key."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select, tuple_

    wanted = list(keys)
    if not wanted:
        return {}
    found: dict[tuple[str, str, str, int], Any] = {}
    for key in (SUMMARY_KEY, "return_value"):
        missing = [k for k in wanted if k not in found]
        if not missing:
            break
        stmt = select(
            XComModel.dag_id, XComModel.run_id, XComModel.task_id, XComModel.map_index, XComModel.value
        ).where(
            XComModel.key == key,
            tuple_(XComModel.dag_id, XComModel.run_id, XComModel.task_id, XComModel.map_index).in_(missing),
        )
        for dag_id, run_id, task_id, map_index, value in session.execute(stmt):
            summary = _summary_of(value)
            if summary is not None:
                found[(dag_id, run_id, task_id, map_index)] = summary
    return found


def _task_run(ti: Any, summary: Any) -> TaskRun:
    return TaskRun(
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=ti.task_id,
        map_index=ti.map_index,
        state=str(ti.state) if ti.state is not None else None,
        operator=ti.operator,
        try_number=ti.try_number,
        start_date=ti.start_date,
        end_date=ti.end_date,
        summary=summary,
    )


def load_task_run(dag_id: str, run_id: str, task_id: str, map_index: int) -> TaskRun | None:
    """The task instance and its summary, or None when Airflow has no such task instance."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        ti = session.scalar(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run_id,
                TaskInstance.task_id == task_id,
                TaskInstance.map_index == map_index,
            )
        )
        if ti is None:
            return None
        key = (dag_id, run_id, task_id, map_index)
        return _task_run(ti, _summaries(session, [key]).get(key))


def readable_dag_ids(user: Any, dag_ids: Sequence[str]) -> set[str]:
    """Of ``dag_ids`` (already in ``get_authorized_dag_ids``), those whose task instances and XComs
    ``user`` may read: the same two checks as the tab."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
    from airflow.models.dag import DagModel

    manager = get_auth_manager()
    readable = set()
    for dag_id in dag_ids:
        details = DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id))
        if all(
            manager.is_authorized_dag(method="GET", access_entity=entity, details=details, user=user)
            for entity in (DagAccessEntity.TASK_INSTANCE, DagAccessEntity.XCOM)
        ):
            readable.add(dag_id)
    return readable


def load_recent_runs(user: Any, limit: int = SYNCS_LIMIT) -> list[TaskRun]:
    """The latest CrowdTwist task runs in DAGs ``user`` may read, newest first.

    Two indexed reads, never a scan of all task instances: the newest ``summary`` XComs (index on
    the key) joined to their task instances, and the CrowdTwist tasks running now (index on the
    state). A task that failed before it could push a summary is therefore not listed.
    """
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import and_, select

    visible = set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))
    if not visible:
        return []
    ours = and_(TI.operator.like(OPERATOR_PATTERN), TI.dag_id.in_(visible))
    with create_session() as session:
        finished = session.execute(
            select(TI, XComModel.value)
            .join(
                XComModel,
                and_(
                    XComModel.dag_id == TI.dag_id,
                    XComModel.run_id == TI.run_id,
                    XComModel.task_id == TI.task_id,
                    XComModel.map_index == TI.map_index,
                ),
            )
            .where(XComModel.key == SUMMARY_KEY, ours)
            .order_by(XComModel.timestamp.desc())
            .limit(limit)
        ).all()
        active = (TaskInstanceState.RUNNING, TaskInstanceState.QUEUED, TaskInstanceState.UP_FOR_RETRY)
        running = session.scalars(select(TI).where(TI.state.in_(active), ours).limit(limit)).all()
        runs = [_task_run(ti, _summary_of(value)) for ti, value in finished]
        seen = {(r.dag_id, r.run_id, r.task_id, r.map_index) for r in runs}
        runs += [
            _task_run(t, None) for t in running if (t.dag_id, t.run_id, t.task_id, t.map_index) not in seen
        ]
    readable = readable_dag_ids(user, sorted({r.dag_id for r in runs}))
    oldest = datetime.min.replace(tzinfo=timezone.utc)
    runs = [r for r in runs if r.dag_id in readable]
    runs.sort(key=lambda r: (r.start_date or oldest, r.run_id), reverse=True)
    return runs[:limit]


def create_app() -> FastAPI:
    """The app mounted under ``/crowdtwist``; no OpenAPI or docs routes (they would be unguarded)."""
    app = FastAPI(title="CrowdTwist", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HTTPException)
    async def _as_html(request: Request, exc: HTTPException) -> HTMLResponse:
        titles = {401: "Not logged in", 403: "No access", 404: "Not found"}
        title = titles.get(exc.status_code, "CrowdTwist")
        text = {
            401: "Log in to Airflow to see CrowdTwist runs.",
            403: "You may not read this DAG's task instances and XComs.",
        }.get(exc.status_code, str(exc.detail))
        return HTMLResponse(render_message(title, text), status_code=exc.status_code, headers=exc.headers)

    tab_checks = [
        Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE)),
        Depends(requires_access_dag("GET", DagAccessEntity.XCOM)),
    ]

    @app.get("/ti", response_class=HTMLResponse, dependencies=tab_checks)
    def task_tab(dag_id: str, run_id: str, task_id: str, map_index: str | None = None) -> HTMLResponse:
        run = load_task_run(dag_id, run_id, task_id, _map_index(map_index))
        if run is None:
            raise HTTPException(404, f"No task instance {task_id} in run {run_id} of {dag_id}.")
        if not (run.operator or "").startswith("CrowdTwist") and run.summary is None:
            text = f"{task_id} is a {run.operator or 'task'}, not a CrowdTwist sync: nothing to show here."
            return HTMLResponse(render_message("Not a CrowdTwist task", text))
        return HTMLResponse(render_tab_for(run))

    @app.get("/syncs", response_class=HTMLResponse)
    def syncs(user: Annotated[Any, Depends(get_user)]) -> HTMLResponse:
        return HTMLResponse(render_syncs_page(load_recent_runs(user), limit=SYNCS_LIMIT))

    return app
