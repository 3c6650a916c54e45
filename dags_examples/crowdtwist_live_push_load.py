"""CrowdTwist's live push back into the warehouse: the landed feeds loaded every hour.

    load_profiles    load_activities

``crowdtwist-live-push serve --output URL`` receives the pushes CrowdTwist sends (every changed
member profile, every activity completion) and lands them as JSON-lines files under
``URL/profile/`` and ``URL/activity/``. This DAG loads what landed since the last run into two tables
of any common.sql connection (SQLite and PostgreSQL here): one row per member at its newest version,
one row per activity completion. Loaded files move to ``loaded/``, so each run picks up only the new
ones, and loading a file twice changes nothing. Each task updates an asset
(``crowdtwist://live-push/profile/<database>/<table>``), so a downstream DAG can be scheduled on fresh
data, and pushes a ``summary`` XCom with a one-line ``text``, as the syncs do.

Settings (environment variables, with working defaults):

* ``CROWDTWIST_LIVE_PUSH_URL`` -- the receiver's ``--output``; default
  ``file://$CROWDTWIST_DEMO_DIR/live-push`` (``s3://...`` and other object storage work the same).
* ``CROWDTWIST_LIVE_PUSH_CONN_ID`` -- the warehouse connection (default ``warehouse``).
* ``CROWDTWIST_DEMO_DIR`` -- where rejected lines are written.
"""

from __future__ import annotations

import os

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

from airflow_provider_crowdtwist.operators.live_push import CrowdTwistLivePushLoadOperator

WORK_DIR = os.environ.get("CROWDTWIST_DEMO_DIR", "/tmp/crowdtwist-demo")
LIVE_PUSH_URL = os.environ.get("CROWDTWIST_LIVE_PUSH_URL", f"file://{WORK_DIR}/live-push").rstrip("/")
CONN_ID = os.environ.get("CROWDTWIST_LIVE_PUSH_CONN_ID", "warehouse")

with DAG(
    dag_id="crowdtwist_live_push_load",
    description="Load CrowdTwist's live push feeds (profiles, activity completions) into the warehouse",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # two runs loading the same files at once would only repeat work
    tags=["crowdtwist", "example", "live-push"],
    doc_md=__doc__,
) as dag:
    for task_id, feed, table in (
        ("load_profiles", "profile", "crowdtwist_members_live"),
        ("load_activities", "activity", "crowdtwist_activities_live"),
    ):
        CrowdTwistLivePushLoadOperator(
            task_id=task_id,
            source_path=f"{LIVE_PUSH_URL}/{feed}",
            sql_conn_id=CONN_ID,
            table=table,
            feed=feed,
            rejects_path=f"{WORK_DIR}/rejects/live-push-{feed}-{{{{ ts_nodash }}}}.jsonl",
        )
