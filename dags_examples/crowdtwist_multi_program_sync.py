"""Several CrowdTwist programs from one warehouse: one member sync mapped over their connections.

    sync_members[program x partition]  ->  members_total

A brand with a program per region (or per banner) keeps one Airflow connection per program, each
with its own key and cap. One mapped task per program (and, where a program needs it, per
partition) sends each program its members; Airflow's executor spreads the task instances over its
workers, and each paces itself at its own program's cap (divided by the partitions).

``expand_arguments(n, crowdtwist_conn_id=[...], state_path=[...])`` builds the ``expand_kwargs``
list: every program times every partition. Each program keeps its own state file (a member's last
payload is per program), so ``state_path`` is one of the per-program arguments.

Settings (environment variables): ``CROWDTWIST_PROGRAM_CONN_IDS`` (comma-separated connection ids,
default ``crowdtwist_us,crowdtwist_eu``), ``CROWDTWIST_PARTITIONS`` (partitions per program, default
1), ``CROWDTWIST_WAREHOUSE_CONN_ID``, ``CROWDTWIST_DEMO_DIR``.
"""

from __future__ import annotations

import os

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

try:  # Airflow 3
    from airflow.sdk import task
except ImportError:  # Airflow 2
    from airflow.decorators import task

from airflow_provider_crowdtwist.operators.partition import (
    combine_summaries,
    combined_violation,
    expand_arguments,
)
from airflow_provider_crowdtwist.operators.user_sync import CrowdTwistUserSyncOperator

PROGRAMS = [
    c.strip() for c in os.environ.get("CROWDTWIST_PROGRAM_CONN_IDS", "crowdtwist_us,crowdtwist_eu").split(",")
]
PARTITIONS = int(os.environ.get("CROWDTWIST_PARTITIONS", "1"))
WAREHOUSE_CONN_ID = os.environ.get("CROWDTWIST_WAREHOUSE_CONN_ID", "warehouse")
WORK_DIR = os.environ.get("CROWDTWIST_DEMO_DIR", "/tmp/crowdtwist-demo")

MEMBERS_SQL = """
SELECT user_id, first_name, last_name, postal_code, country_code, city_name, date_of_birth,
       receive_email_updates
FROM members
ORDER BY updated_at, user_id
"""

with DAG(
    dag_id="crowdtwist_multi_program_sync",
    description="One member sync mapped over several CrowdTwist programs (connections)",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["crowdtwist", "example"],
    doc_md=__doc__,
) as dag:
    sync_members = CrowdTwistUserSyncOperator.partial(
        task_id="sync_members",
        sql=MEMBERS_SQL,
        sql_conn_id=WAREHOUSE_CONN_ID,
        id_column="user_id",
        id_type="email",
        mode="upsert",
        max_workers=16,
    ).expand_kwargs(
        expand_arguments(
            PARTITIONS,
            crowdtwist_conn_id=PROGRAMS,
            state_path=[f"{WORK_DIR}/state/{program}-member-state.sqlite" for program in PROGRAMS],
            rejects_path=[f"{WORK_DIR}/rejects/{program}-members.jsonl" for program in PROGRAMS],
        )
    )

    @task
    def members_total(summaries: list[dict]) -> dict:
        """All programs' summaries as one (each program's own stays in its task's XCom), judged by a
        5% failure ratio: a partition's share of bad rows scatters around the whole's."""
        total = combine_summaries(summaries)
        problem = combined_violation(total, max_failed_ratio=0.05)
        if problem:
            raise ValueError(problem)
        return total

    members_total(sync_members.output)
