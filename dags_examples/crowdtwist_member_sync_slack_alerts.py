"""A member sync that posts to Slack once when its status changes: the Slack provider's notifier, wrapped.

``CrowdTwistAlertNotifier`` wraps ``SlackNotifier`` (``apache-airflow-providers-slack``) and is given as
both ``on_success_callback`` and ``on_failure_callback``: one message when the sync's status (``ok``,
``degraded``, ``failed``) changes, nothing while it repeats, one "recovered" message when it is ``ok``
again (see ``crowdtwist_member_sync_alerts`` for the same with mail). Any Airflow notifier works the
same way (``PagerdutyNotifier``, ``SnsNotifier``...).

The Slack provider is optional: without it this DAG still parses and runs, and the alert it would have
posted is written to the task log with a warning saying what to install (``pip install
apache-airflow-providers-slack``), so copying the file never breaks a DAG folder.

Settings (environment variables with working defaults):

=============================  ==================================  =================================
variable                       default                             what
=============================  ==================================  =================================
``CROWDTWIST_CONN_ID``         ``crowdtwist_default``              the CrowdTwist connection
``CROWDTWIST_DEMO_DIR``        ``/tmp/crowdtwist-demo``            where rejects go
``CROWDTWIST_MEMBERS_URL``     ``file://<DEMO_DIR>/members.csv``   the export to sync
``CROWDTWIST_SLACK_CONN_ID``   ``slack_api_default``               the Slack API connection
``CROWDTWIST_SLACK_CHANNEL``   ``#loyalty-oncall``                 where the message goes
=============================  ==================================  =================================
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

from airflow_provider_crowdtwist.notifications import CrowdTwistAlertNotifier
from airflow_provider_crowdtwist.operators.user_sync import CrowdTwistUserSyncOperator

CROWDTWIST_CONN_ID = os.environ.get("CROWDTWIST_CONN_ID", "crowdtwist_default")
WORK_DIR = os.environ.get("CROWDTWIST_DEMO_DIR", "/tmp/crowdtwist-demo")
MEMBERS_URL = os.environ.get("CROWDTWIST_MEMBERS_URL", f"file://{WORK_DIR}/members.csv")

MESSAGE = (
    ":rotating_light: CrowdTwist sync {{ crowdtwist_alert.kind }}: {{ ti.dag_id }}.{{ ti.task_id }} "
    "({{ ds }})\n{{ crowdtwist_alert.text }}"
)


def log_instead_of_slack(context: Any) -> None:
    """The fallback when the Slack provider is missing: the alert goes to the task log instead."""
    alert = context["crowdtwist_alert"]
    logging.getLogger(__name__).warning(
        "apache-airflow-providers-slack is not installed: this alert was not posted to Slack "
        "(pip install apache-airflow-providers-slack). CrowdTwist sync %s: %s",
        alert["kind"],
        alert["text"],
    )


try:
    from airflow.providers.slack.notifications.slack import SlackNotifier
except ImportError:  # the provider is optional: the DAG parses and runs, the alert is logged
    slack: Any = log_instead_of_slack
else:
    slack = SlackNotifier(
        slack_conn_id=os.environ.get("CROWDTWIST_SLACK_CONN_ID", "slack_api_default"),
        channel=os.environ.get("CROWDTWIST_SLACK_CHANNEL", "#loyalty-oncall"),
        text=MESSAGE,
    )

alert = CrowdTwistAlertNotifier(slack)

with DAG(
    dag_id="crowdtwist_member_sync_slack_alerts",
    description="Member sync from a CSV export that posts to Slack when its status changes",
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
        max_rejected_ratio=0.2,
        rejects_path=f"{WORK_DIR}/rejects/slack-alerted-members-{{{{ ds }}}}.jsonl",
        on_success_callback=alert,
        on_failure_callback=alert,
        retries=0,
    )
