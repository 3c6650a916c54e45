"""Runs whenever members were synced into the CrowdTwist program: scheduled on the member asset.

Every successful member sync (``CrowdTwistUserSyncOperator``, any DAG) adds an event for the asset
``crowdtwist://<program host>/members`` with the run's counts in its ``extra``. This DAG is scheduled
on that asset, so it starts after each member sync without knowing which DAG ran it, and reads what
happened from the triggering events -- e.g. to refresh a loyalty dashboard only when members changed.

``CROWDTWIST_PROGRAM_HOST`` is the host of the connection's API base URL (``host[:port]``; the
default port 443 is left out, as the operator leaves it out).
"""

from __future__ import annotations

import os

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG, Asset, task
except ImportError:  # Airflow 2: assets are called datasets
    from airflow import DAG
    from airflow.datasets import Dataset as Asset
    from airflow.decorators import task

PROGRAM_HOST = os.environ.get("CROWDTWIST_PROGRAM_HOST", "sbapi123.crowdtwist.com")
MEMBERS = Asset(f"crowdtwist://{PROGRAM_HOST}/members")

with DAG(
    dag_id="crowdtwist_after_member_sync",
    description="Runs after each member sync into the CrowdTwist program (asset-scheduled)",
    schedule=[MEMBERS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["crowdtwist", "example"],
    doc_md=__doc__,
) as dag:

    @task(inlets=[MEMBERS])
    def report_member_sync(inlet_events: dict) -> dict:
        """What the latest member sync did, from its asset event's extra: one count per outcome
        (created, updated, rejected, ...) plus rows_read, requests_sent and rejects_written."""
        events = inlet_events[MEMBERS]
        extra = dict(events[-1].extra or {}) if len(events) else {}
        changed = {k: v for k, v in extra.items() if v and k in ("created", "updated", "deactivated")}
        print(f"latest member sync: {extra.get('rows_read', 0)} rows read, {changed or 'no changes'}")
        return extra

    report_member_sync()
