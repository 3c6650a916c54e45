"""The partitioned example DAG under a real ``airflow scheduler`` (LocalExecutor), with the shared limiter.

``airflow dags test`` runs a DAG's tasks one after the other in one process; only a scheduler with a
parallel executor runs the 4 partitions of a sync as 4 processes at once, which is what the shared
limiter is for. Here: a fresh Airflow home, ``airflow api-server`` + ``scheduler`` + ``dag-processor``
with the LocalExecutor (parallelism 8), the CrowdTwist connection naming a Redis connection in its
``rate_limit_conn_id`` extra, a real ``redis-server``. Asserted: the triggered run succeeds, the four
member partitions ran at the same time, every partition paced through Redis (its summary says so, no
fallback), the program's key is in Redis, and the sandbox's end state equals the source.

Airflow 3 only: Airflow 2's LocalExecutor refuses SQLite, and this leg is the slow one anyway.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    BIN_DIR,
    DAGS_DIR,
    RUN_DATE,
    AirflowEnv,
    WarehouseRows,
    airflow_major,
    api_key_conn,
    assert_no_secrets,
    explain,
    files_under,
    free_port,
)
from tests.e2e.test_example_dags import assert_members_in_sandbox, expected_members

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(900)]

DAG_ID = "crowdtwist_partitioned_sync"
PARTITIONS = 4
CAP = 1200  # per minute for the program: 300 members take ~15 s, so the partitions overlap


@contextlib.contextmanager
def airflow_services(env: AirflowEnv, extra_env: dict[str, str], logs: Path) -> Iterator[None]:
    """api-server, scheduler and dag-processor, each in its own process group; all stopped after."""
    procs = []
    try:
        for name, args in (
            ("api-server", ["api-server", "--port", extra_env["AIRFLOW__API__PORT"]]),
            ("scheduler", ["scheduler"]),
            ("dag-processor", ["dag-processor"]),
        ):
            out = (logs / f"{name}.log").open("w")
            procs.append(
                subprocess.Popen(
                    [str(BIN_DIR / "airflow"), *args],
                    env=env.env(extra_env),
                    cwd=env.home,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        yield
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def wait_for_run(env: AirflowEnv, extra_env: dict[str, str], run_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        proc = env.run("dags", "list-runs", DAG_ID, "-o", "json", extra_env=extra_env)
        tables = [line for line in proc.stdout.splitlines() if line.startswith("[")]  # warnings first
        if proc.returncode == 0 and tables:
            runs = {r["run_id"]: r["state"] for r in json.loads(tables[-1])}
            state = runs.get(run_id, "missing")
            if state in ("success", "failed"):
                return state
        time.sleep(3)
    return state


def test_partitioned_dag_under_a_scheduler_shares_one_pace(
    airflow_env: AirflowEnv,
    e2e_sandbox: Any,
    sqlite_warehouse: dict[str, str],
    warehouse_rows: WarehouseRows,
    redis_db: Any,
    tmp_path: Path,
) -> None:
    if airflow_major() < 3:
        pytest.skip("Airflow 2's LocalExecutor needs a database other than SQLite; the Airflow 3 leg runs it")
    home = tmp_path / "airflow_home"
    dags = tmp_path / "dags"
    home.mkdir()
    dags.mkdir()
    shutil.copy(DAGS_DIR / "crowdtwist_loyalty_sync.py", dags)  # the one file: a quick parse
    env = AirflowEnv(home=home, base_env={**airflow_env.base_env, "AIRFLOW_HOME": str(home)})
    port = str(free_port())
    conn = json.loads(api_key_conn(e2e_sandbox))
    conn["extra"].update({"rate_limit_conn_id": "crowdtwist_rate", "requests_per_minute": CAP})
    work = tmp_path / "work"
    extra_env = {
        **sqlite_warehouse,
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__API__PORT": port,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": "e2e-jwt-secret-for-this-test-only",
        "AIRFLOW__API__SECRET_KEY": "e2e-secret-key-for-this-test-only",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW_CONN_CROWDTWIST_DEFAULT": json.dumps(conn),
        "AIRFLOW_CONN_CROWDTWIST_RATE": json.dumps(
            {"conn_type": "redis", "host": redis_db.host, "port": redis_db.port}
        ),
        "CROWDTWIST_DEMO_DIR": str(work),
        "CROWDTWIST_PARTITIONS": str(PARTITIONS),
    }
    proc = env.run("db", "migrate", extra_env=extra_env, timeout=240)
    assert proc.returncode == 0, explain(proc)
    logs = tmp_path / "logs"
    logs.mkdir()
    with airflow_services(env, extra_env, logs):
        # the DAG is known once the dag-processor parsed it
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            listed = env.run("dags", "list", "-o", "json", extra_env=extra_env)
            if DAG_ID in listed.stdout:
                break
            time.sleep(3)
        else:
            pytest.fail(f"{DAG_ID} never parsed:\n{(logs / 'dag-processor.log').read_text()[-4000:]}")
        run_id = "shared_limit_e2e"
        proc = env.run(
            "dags", "trigger", DAG_ID, "--run-id", run_id, "--logical-date", f"{RUN_DATE}T00:00:00+00:00",
            extra_env=extra_env,
        )  # fmt: skip
        assert proc.returncode == 0, explain(proc)
        assert env.run("dags", "unpause", DAG_ID, extra_env=extra_env).returncode == 0
        state = wait_for_run(env, extra_env, run_id, timeout=600)
    service_logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in logs.iterdir())
    assert state == "success", f"run {run_id}: {state}\n{service_logs}"

    db = sqlite3.connect(f"file:{home / 'airflow.db'}?mode=ro", uri=True)
    try:
        spans = db.execute(
            "SELECT start_date, end_date FROM task_instance WHERE dag_id = ? AND run_id = ? "
            "AND task_id = 'sync_members' ORDER BY map_index",
            (DAG_ID, run_id),
        ).fetchall()
        summaries = [
            json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            for (raw,) in db.execute(
                "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id IN "
                "('sync_members', 'credit_events') AND key = 'return_value'",
                (DAG_ID, run_id),
            )
        ]
    finally:
        db.close()
    # the four member partitions really ran at once: each started before any ended
    assert len(spans) == PARTITIONS
    assert max(s for s, _ in spans) < min(e for _, e in spans), spans
    # every partition paced through Redis, none fell back
    assert len(summaries) == 2 * PARTITIONS
    for summary in summaries:
        rate = summary["rate_limit"]
        assert rate["shared_limiter"].startswith(f"redis://{redis_db.host}:{redis_db.port}/0"), rate
        assert rate["shared_limiter_fallback"] is None, rate
        assert rate["configured_requests_per_minute"] == CAP  # the whole cap, not a quarter
    host = e2e_sandbox.base_url.split("//", 1)[1].split("/", 1)[0]
    assert redis_db.client().exists(f"crowdtwist:rate:{host}") == 1
    clean, _rejected, _superseded = expected_members(warehouse_rows.members)
    assert_members_in_sandbox(e2e_sandbox, clean)
    assert_no_secrets(json.dumps(summaries), paths=files_under(work, logs, home / "logs"))
