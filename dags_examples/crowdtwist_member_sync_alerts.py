"""A member sync that mails an alert when it fails: Airflow's standard SMTP notifier, no custom code.

The sync operators push their summary under the XCom key ``summary`` on success *and* failure, with a
ready one-line ``text`` (counts, why it failed, where the rejected rows are), so the notifier template
is one ``xcom_pull``. The task fails -- and the mail goes out -- when

* more than 20 % of the rows are rejected (``max_rejected_ratio``): a renamed column or a broken export
  should page someone, not pass as a run with many rejects;
* the export has no rows at all (``min_rows=1`` with ``min_rows_action="fail"``; the default only warns).

Settings (environment variables with working defaults):

=============================  ==================================  =================================
variable                       default                             what
=============================  ==================================  =================================
``CROWDTWIST_CONN_ID``         ``crowdtwist_default``              the CrowdTwist connection
``CROWDTWIST_DEMO_DIR``        ``/tmp/crowdtwist-demo``            where rejects go
``CROWDTWIST_MEMBERS_URL``     ``file://<DEMO_DIR>/members.csv``   the export to sync
``CROWDTWIST_ALERT_TO``        ``loyalty-oncall@example.com``      who gets the alert
``CROWDTWIST_ALERT_FROM``      ``airflow@example.com``             the sender
=============================  ==================================  =================================

The mail goes through the ``smtp_default`` connection (``apache-airflow-providers-smtp``).
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.smtp.notifications.smtp import SmtpNotifier

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

from airflow_provider_crowdtwist.operators.user_sync import CrowdTwistUserSyncOperator

CROWDTWIST_CONN_ID = os.environ.get("CROWDTWIST_CONN_ID", "crowdtwist_default")
WORK_DIR = os.environ.get("CROWDTWIST_DEMO_DIR", "/tmp/crowdtwist-demo")
MEMBERS_URL = os.environ.get("CROWDTWIST_MEMBERS_URL", f"file://{WORK_DIR}/members.csv")

SUMMARY_TEXT = "{{ ti.xcom_pull(task_ids=ti.task_id, key='summary')['text'] }}"

alert = SmtpNotifier(
    to=os.environ.get("CROWDTWIST_ALERT_TO", "loyalty-oncall@example.com"),
    from_email=os.environ.get("CROWDTWIST_ALERT_FROM", "airflow@example.com"),
    subject="CrowdTwist sync failed: {{ ti.dag_id }}.{{ ti.task_id }} ({{ ds }})",
    html_content=f"<p>{SUMMARY_TEXT}</p>",
)

with DAG(
    dag_id="crowdtwist_member_sync_alerts",
    description="Member sync from a CSV export that mails an alert on failure (SMTP notifier)",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["crowdtwist", "example"],
    doc_md=__doc__,
) as dag:
    CrowdTwistUserSyncOperator(
        task_id="sync_members",
        crowdtwist_conn_id=CROWDTWIST_CONN_ID,
        source_path=MEMBERS_URL,
        id_column="user_id",
        id_type="email",
        unmapped_columns="ignore",
        max_failed_ratio=1.0,  # rejects are judged by max_rejected_ratio below
        max_rejected_ratio=0.2,
        min_rows=1,
        min_rows_action="fail",
        rejects_path=f"{WORK_DIR}/rejects/alerted-members-{{{{ ds }}}}.jsonl",
        on_failure_callback=alert,
        retries=0,
    )
