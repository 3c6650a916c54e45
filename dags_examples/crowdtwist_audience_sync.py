"""Daily audiences: two warehouse audiences into CrowdTwist, as a member trait and as a segment file.

    recent_buyers (trait recent_buyer)
    churn_risk    (trait churn_risk + Client Defined Segment file churn_risk_YYYYMMDD_NNNN.csv)

* ``recent_buyers``: members with a purchase in the 30 days before the run's data interval ends. A
  member who enters the audience gets ``custom_data.recent_buyer = true``, one who leaves gets
  ``false``; members who stay cost no request (the state file remembers the audience as last synced).
  CrowdTwist real-time segments can filter on the trait.
* ``churn_risk``: members with no event in 90 days, as the ``churn_risk`` trait AND as a Client
  Defined Segment file uploaded to CrowdTwist's SFTP (``mode="both"``): the whole audience in
  Oracle's format, under a temporary name and renamed when complete, one version more each upload of
  the day.

Both stop before any write when more than ``max_exit_ratio`` of the last audience would leave (a
broken query looks like everybody leaving) or when the audience is empty; the task log (or the file
beside the rejects file) lists who would leave. ``docs/audience.md`` tells the rest.

Settings come from environment variables with working defaults:

=================================  ==========================  ==================================
variable                           default                     what
=================================  ==========================  ==================================
``CROWDTWIST_CONN_ID``             ``crowdtwist_default``      the CrowdTwist connection
``CROWDTWIST_WAREHOUSE_CONN_ID``   ``warehouse``               any common.sql connection
``CROWDTWIST_SFTP_CONN_ID``        ``crowdtwist_sftp``         the SFTP provider's connection
``CROWDTWIST_SEGMENT_DIR``         (the login directory)       the program's directory on the SFTP
``CROWDTWIST_DEMO_DIR``            ``/tmp/crowdtwist-demo``    where states and rejects go
=================================  ==========================  ==================================
"""

from __future__ import annotations

import os

import pendulum
from airflow.timetables.interval import CronDataIntervalTimetable

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

from airflow_provider_crowdtwist.operators.audience import CrowdTwistAudienceSyncOperator

CROWDTWIST_CONN_ID = os.environ.get("CROWDTWIST_CONN_ID", "crowdtwist_default")
WAREHOUSE_CONN_ID = os.environ.get("CROWDTWIST_WAREHOUSE_CONN_ID", "warehouse")
SFTP_CONN_ID = os.environ.get("CROWDTWIST_SFTP_CONN_ID", "crowdtwist_sftp")
SEGMENT_DIR = os.environ.get("CROWDTWIST_SEGMENT_DIR", "")
WORK_DIR = os.environ.get("CROWDTWIST_DEMO_DIR", "/tmp/crowdtwist-demo")

# Timestamps as literals, so the queries run on SQLite (text timestamps) and PostgreSQL alike.
FORMAT = '.strftime("%Y-%m-%d %H:%M:%S")'
END = "{{ data_interval_end" + FORMAT + " }}"
DAYS_BEFORE_END = "{{{{ (data_interval_end - macros.timedelta(days={days})){format} }}}}"
RECENT_BUYERS_SQL = f"""
SELECT DISTINCT user_email
FROM events
WHERE activity_id = 'purchase'
  AND event_time >= '{DAYS_BEFORE_END.format(days=30, format=FORMAT)}'
  AND event_time < '{END}'
ORDER BY user_email
"""
CHURN_RISK_SQL = f"""
SELECT m.user_id
FROM members m
WHERE NOT EXISTS (
    SELECT 1 FROM events e
    WHERE e.user_email = m.user_id
      AND e.event_time >= '{DAYS_BEFORE_END.format(days=90, format=FORMAT)}'
      AND e.event_time < '{END}'
)
ORDER BY m.user_id
"""

with DAG(
    dag_id="crowdtwist_audience_sync",
    description="Warehouse audiences into CrowdTwist: member traits and a Client Defined Segment file",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # runs share the audience states
    tags=["crowdtwist", "example"],
    doc_md=__doc__,
) as dag:
    recent_buyers = CrowdTwistAudienceSyncOperator(
        task_id="recent_buyers",
        crowdtwist_conn_id=CROWDTWIST_CONN_ID,
        sql=RECENT_BUYERS_SQL,
        sql_conn_id=WAREHOUSE_CONN_ID,
        id_column="user_email",
        id_type="email",
        attribute="recent_buyer",
        values=(True, False),  # what the program's boolean attribute takes: (1, 0) or ("true", "false")
        state_path=f"{WORK_DIR}/state/audience-recent_buyer.sqlite",
        rejects_path=f"{WORK_DIR}/rejects/audience-recent_buyer-{{{{ ds }}}}.jsonl",
        max_exit_ratio=0.2,
    )

    churn_risk = CrowdTwistAudienceSyncOperator(
        task_id="churn_risk",
        crowdtwist_conn_id=CROWDTWIST_CONN_ID,
        sql=CHURN_RISK_SQL,
        sql_conn_id=WAREHOUSE_CONN_ID,
        id_column="user_id",
        id_type="email",
        attribute="churn_risk",
        state_path=f"{WORK_DIR}/state/audience-churn_risk.sqlite",
        rejects_path=f"{WORK_DIR}/rejects/audience-churn_risk-{{{{ ds }}}}.jsonl",
        mode="both",
        segment_name="churn_risk",
        sftp_conn_id=SFTP_CONN_ID,
        segment_dir=SEGMENT_DIR,
    )
