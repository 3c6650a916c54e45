"""Review rewards over an HMAC-signed connection: every request carries a signature, not an API key.

    wait_for_crowdtwist  ->  upsert_reviewers  ->  credit_reviews

Programs that enable HMAC authentication refuse API keys: each request is signed with the program's
private key (``X-CT-Authorization: CTApiV2Auth public:signature`` plus a timestamp). Nothing in the
DAG changes for that -- only the connection does -- which is the point of this example:

* the connection ``crowdtwist_hmac`` has ``login`` = the public key, ``password`` = the private key,
  and ``{"auth_type": "hmac"}`` (add ``"hmac_timestamp_unit": "ms"`` if the program wants
  milliseconds); see docs/connection.md;
* ``upsert_reviewers`` makes sure the members who wrote a review in the data interval exist;
* ``credit_reviews`` credits one fixed activity (``activity_id="review"``) per review with the
  activity's default points. There is no dedupe column: the dedupe key is then a hash of the whole
  credit (member, activity, date), still kept in a ledger, so a rerun awards nothing twice.

Settings: ``CROWDTWIST_HMAC_CONN_ID`` (``crowdtwist_hmac``), ``CROWDTWIST_WAREHOUSE_CONN_ID``
(``warehouse``), ``CROWDTWIST_DEMO_DIR`` (rejects and ledger).
"""

from __future__ import annotations

import os

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_crowdtwist.operators.activity_credit import CrowdTwistActivityCreditOperator
from airflow_provider_crowdtwist.operators.user_sync import CrowdTwistUserSyncOperator
from airflow_provider_crowdtwist.sensors.crowdtwist import CrowdTwistApiSensor

HMAC_CONN_ID = os.environ.get("CROWDTWIST_HMAC_CONN_ID", "crowdtwist_hmac")
WAREHOUSE_CONN_ID = os.environ.get("CROWDTWIST_WAREHOUSE_CONN_ID", "warehouse")
WORK_DIR = os.environ.get("CROWDTWIST_DEMO_DIR", "/tmp/crowdtwist-demo")

INTERVAL = """
    event_time >= '{{ data_interval_start.strftime("%Y-%m-%d %H:%M:%S") }}'
AND event_time <  '{{ data_interval_end.strftime("%Y-%m-%d %H:%M:%S") }}'
"""
REVIEWERS_SQL = f"""
SELECT user_id, first_name, last_name, postal_code, country_code, city_name
FROM members
WHERE user_id IN (SELECT user_email FROM events WHERE activity_id = 'review' AND {INTERVAL})
ORDER BY updated_at, user_id
"""
REVIEWS_SQL = f"""
SELECT event_id, user_email, event_time
FROM events
WHERE activity_id = 'review' AND {INTERVAL}
ORDER BY event_time, event_id
"""

with DAG(
    dag_id="crowdtwist_hmac_review_rewards",
    description="Credit CrowdTwist 'review' activities through an HMAC-signed connection",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["crowdtwist", "example", "hmac"],
    doc_md=__doc__,
) as dag:
    wait_for_crowdtwist = CrowdTwistApiSensor(
        task_id="wait_for_crowdtwist",
        crowdtwist_conn_id=HMAC_CONN_ID,
        activity_ids=["review"],
        poke_interval=30,
        timeout=30 * 60,
    )
    upsert_reviewers = CrowdTwistUserSyncOperator(
        task_id="upsert_reviewers",
        crowdtwist_conn_id=HMAC_CONN_ID,
        sql=REVIEWERS_SQL,
        sql_conn_id=WAREHOUSE_CONN_ID,
        id_column="user_id",
        id_type="email",
        mode="upsert",
        rejects_path=f"{WORK_DIR}/rejects/hmac-reviewers-{{{{ ds }}}}.jsonl",
    )
    credit_reviews = CrowdTwistActivityCreditOperator(
        task_id="credit_reviews",
        crowdtwist_conn_id=HMAC_CONN_ID,
        sql=REVIEWS_SQL,
        sql_conn_id=WAREHOUSE_CONN_ID,
        id_column="user_email",
        id_type="email",
        activity_id="review",
        activity_date_column="event_time",
        ledger_path=f"{WORK_DIR}/state/hmac-review-ledger.sqlite",
        rejects_path=f"{WORK_DIR}/rejects/hmac-reviews-{{{{ ds }}}}.jsonl",
    )
    wait_for_crowdtwist >> upsert_reviewers >> credit_reviews
