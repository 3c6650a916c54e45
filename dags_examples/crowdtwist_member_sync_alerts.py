"""A member sync that mails once when its status changes: Airflow's SMTP notifier, wrapped.

``CrowdTwistAlertNotifier`` wraps Airflow's standard ``SmtpNotifier`` and is given as both
``on_success_callback`` and ``on_failure_callback``: it mails when the sync's status (``ok``,
``degraded``, ``failed``) differs from the previous run's -- one mail when it fails, nothing while it
keeps failing, one "recovered" mail when it is ``ok`` again. The operator records the previous run's
status in its ``summary`` XCom (``previous_status``); the templates read ``crowdtwist_alert``:
``kind`` (``failed`` | ``degraded`` | ``recovered``), ``status``, ``previous_status`` and ``text``, the
summary's one line (counts, why it failed, where the rejected rows are). The task fails when

* more than 20 % of the rows are rejected (``max_rejected_ratio``): a renamed column or a broken export
  should page someone, not pass as a run with many rejects;
* every row was rejected or failed (the default ``fail_when_nothing_landed=True``);
* the export has no rows at all (``min_rows=1`` with ``min_rows_action="fail"``; the default only warns).

Between 10 % (the default ``degraded_rejected_ratio``) and 20 % rejected it succeeds as ``degraded``
and mails that once.

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

from airflow_provider_crowdtwist.notifications import CrowdTwistAlertNotifier
from airflow_provider_crowdtwist.operators.user_sync import CrowdTwistUserSyncOperator

CROWDTWIST_CONN_ID = os.environ.get("CROWDTWIST_CONN_ID", "crowdtwist_default")
WORK_DIR = os.environ.get("CROWDTWIST_DEMO_DIR", "/tmp/crowdtwist-demo")
MEMBERS_URL = os.environ.get("CROWDTWIST_MEMBERS_URL", f"file://{WORK_DIR}/members.csv")

# Sent only on a change of status; ``crowdtwist_alert`` is in the templates' context then.
alert = CrowdTwistAlertNotifier(
    SmtpNotifier(
        to=os.environ.get("CROWDTWIST_ALERT_TO", "loyalty-oncall@example.com"),
        from_email=os.environ.get("CROWDTWIST_ALERT_FROM", "airflow@example.com"),
        subject="CrowdTwist sync {{ crowdtwist_alert.kind }}: {{ ti.dag_id }}.{{ ti.task_id }} ({{ ds }})",
        html_content="<p>{{ crowdtwist_alert.text }}</p>",
    )
)

with DAG(
    dag_id="crowdtwist_member_sync_alerts",
    description="Member sync from a CSV export that mails when its status changes (SMTP notifier)",
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
        on_success_callback=alert,
        on_failure_callback=alert,
        retries=0,
    )
