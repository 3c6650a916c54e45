"""Members from a file in object storage into CrowdTwist: the warehouse's nightly export, synced.

    sync_members_from_file

Many teams do not give Airflow a database connection: the warehouse unloads a CSV (or JSON lines, or
Parquet) to a bucket every night instead. The operator reads such a file in chunks, so memory stays
flat however large the export is, from any URL Airflow's object storage understands (``s3://``,
``gs://``, ``abfs://`` with the matching provider installed) -- or ``file://`` for a local file, as
here, so that the example runs anywhere.

Settings (environment variables, with working defaults):

* ``CROWDTWIST_MEMBERS_URL`` -- the export; default ``file://$CROWDTWIST_DEMO_DIR/members.csv``
  (``python scripts/make_warehouse.py --members-csv PATH`` writes one).
* ``CROWDTWIST_CONN_ID`` (``crowdtwist_default``), ``CROWDTWIST_DEMO_DIR`` (where rejects go).

It also shows ``unmapped_columns="ignore"``: an export often carries columns CrowdTwist has no use
for (``updated_at`` here); they are left out instead of being sent as custom attributes, and the four
custom attributes the program has are mapped explicitly.
"""

from __future__ import annotations

import os

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

from airflow_provider_crowdtwist.operators.user_sync import CrowdTwistUserSyncOperator

CROWDTWIST_CONN_ID = os.environ.get("CROWDTWIST_CONN_ID", "crowdtwist_default")
WORK_DIR = os.environ.get("CROWDTWIST_DEMO_DIR", "/tmp/crowdtwist-demo")
MEMBERS_URL = os.environ.get("CROWDTWIST_MEMBERS_URL", f"file://{WORK_DIR}/members.csv")

with DAG(
    dag_id="crowdtwist_member_file_sync",
    description="Upsert CrowdTwist members from a CSV export in object storage",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["crowdtwist", "example"],
    doc_md=__doc__,
) as dag:
    CrowdTwistUserSyncOperator(
        task_id="sync_members_from_file",
        crowdtwist_conn_id=CROWDTWIST_CONN_ID,
        source_path=MEMBERS_URL,
        id_column="user_id",
        id_type="email",
        field_mapping={
            "favorite_store": "custom_data.favorite_store",
            "loyalty_segment": "custom_data.loyalty_segment",
            "preferred_channel": "custom_data.preferred_channel",
            "lifetime_value": "custom_data.lifetime_value",
        },
        unmapped_columns="ignore",
        mode="upsert",
        max_failed_ratio=0.05,
        rejects_path=f"{WORK_DIR}/rejects/file-members-{{{{ ds }}}}.jsonl",
    )
