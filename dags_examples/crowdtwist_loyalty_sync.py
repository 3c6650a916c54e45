"""Daily loyalty sync: warehouse members into CrowdTwist, then points for yesterday's events.

    wait_for_crowdtwist  ->  sync_members  ->  credit_events  ->  report

(This file also holds ``crowdtwist_partitioned_sync``, the same two syncs split over workers: see the
end of the file and docs/scale-out.md.)

* ``wait_for_crowdtwist`` (sensor): the program answers and has the activities the credits use, so a
  CrowdTwist outage or a renamed activity stops the run before anything is sent.
* ``sync_members``: upserts every member from a SQL query (update when CrowdTwist knows the email,
  create otherwise). Rows CrowdTwist would refuse -- a broken email, a US member with no postal code --
  are *rejected* with a row-level reason into a rejects file; the run fails only when more than 5 % of
  the rows are bad. A state file remembers what was sent, so members whose data did not change since
  the last run are not sent again (outcome ``unchanged``).
* ``credit_events``: credits an activity for each event of the run's data interval (the query uses
  ``data_interval_start``/``data_interval_end``), and only after the members exist: the task depends
  on ``sync_members``. ``event_id`` is the dedupe key kept in a ledger file, so a retry or a rerun of
  the same day never awards the same points twice.
* ``report``: reads both tasks' summaries (their XComs: counts by outcome, rows/s, where the rejects
  went) and logs them, one line each -- the place to alert on rejects, for example.

Settings come from environment variables with working defaults, so the file runs unchanged in the demo
(``bash scripts/demo``), in the tests and in a real deployment:

=================================  ==========================  ==============================
variable                           default                     what
=================================  ==========================  ==============================
``CROWDTWIST_CONN_ID``             ``crowdtwist_default``      the CrowdTwist connection
``CROWDTWIST_WAREHOUSE_CONN_ID``   ``warehouse``               any common.sql connection
``CROWDTWIST_DEMO_DIR``            ``/tmp/crowdtwist-demo``    where rejects and the ledger go
=================================  ==========================  ==============================

The schedule is a ``CronDataIntervalTimetable`` rather than the string ``"@daily"`` on purpose: since
Airflow 3 a cron string gets a zero-length data interval by default, and the events query needs the
whole previous day on Airflow 2 and 3 alike.
"""

from __future__ import annotations

import os

import pendulum
from airflow.timetables.interval import CronDataIntervalTimetable

try:  # Airflow 3
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task

from airflow_provider_crowdtwist.operators.activity_credit import CrowdTwistActivityCreditOperator
from airflow_provider_crowdtwist.operators.partition import combine_summaries, combined_violation, partitions
from airflow_provider_crowdtwist.operators.user_sync import CrowdTwistUserSyncOperator
from airflow_provider_crowdtwist.sensors.crowdtwist import CrowdTwistApiSensor

CROWDTWIST_CONN_ID = os.environ.get("CROWDTWIST_CONN_ID", "crowdtwist_default")
WAREHOUSE_CONN_ID = os.environ.get("CROWDTWIST_WAREHOUSE_CONN_ID", "warehouse")
WORK_DIR = os.environ.get("CROWDTWIST_DEMO_DIR", "/tmp/crowdtwist-demo")

ACTIVITIES = ["purchase", "signup", "review", "birthday"]

# Columns named like CrowdTwist attributes (first_name, postal_code, ...) are sent as they are; the
# program's custom attributes are mapped explicitly. A member listed twice is sent once, with the row
# that comes last: ordering by updated_at makes that the most recent one on every database.
MEMBERS_SQL = """
SELECT user_id, first_name, last_name, postal_code, country_code, city_name, date_of_birth,
       receive_email_updates, favorite_store, loyalty_segment, preferred_channel, lifetime_value
FROM members
ORDER BY updated_at, user_id
"""
CUSTOM_ATTRIBUTES = {
    "favorite_store": "custom_data.favorite_store",
    "loyalty_segment": "custom_data.loyalty_segment",
    "preferred_channel": "custom_data.preferred_channel",
    "lifetime_value": "custom_data.lifetime_value",
}

# The events of this run's data interval only. Written as comparisons with timestamp literals, so the
# same query runs on SQLite (text timestamps) and PostgreSQL (TIMESTAMP columns).
EVENTS_SQL = """
SELECT event_id, user_email, activity_id, points, event_time, store
FROM events
WHERE event_time >= '{{ data_interval_start.strftime("%Y-%m-%d %H:%M:%S") }}'
  AND event_time <  '{{ data_interval_end.strftime("%Y-%m-%d %H:%M:%S") }}'
ORDER BY event_time, event_id
"""

# The two syncs' arguments, apart from their files (also used by crowdtwist_partitioned_sync below).
MEMBER_SYNC = {
    "crowdtwist_conn_id": CROWDTWIST_CONN_ID,
    "sql": MEMBERS_SQL,
    "sql_conn_id": WAREHOUSE_CONN_ID,
    "id_column": "user_id",
    "id_type": "email",
    "field_mapping": CUSTOM_ATTRIBUTES,
    "mode": "upsert",
    "max_workers": 16,
    "max_failed_ratio": 0.05,
}
CREDIT_EVENTS = {
    "crowdtwist_conn_id": CROWDTWIST_CONN_ID,
    "sql": EVENTS_SQL,
    "sql_conn_id": WAREHOUSE_CONN_ID,
    "id_column": "user_email",
    "id_type": "email",
    "activity_id_column": "activity_id",
    "points_column": "points",
    "activity_date_column": "event_time",
    "extra_data_columns": {"event_id": "order_id", "store": "store"},
    "dedupe_key_column": "event_id",
    "max_workers": 16,
    "max_failed_ratio": 0.02,
}

with DAG(
    dag_id="crowdtwist_loyalty_sync",
    description="Members upsert, then activity credits for the day's events, into CrowdTwist",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # runs share the credit ledger; one at a time keeps the story simple
    tags=["crowdtwist", "example"],
    doc_md=__doc__,
) as dag:
    wait_for_crowdtwist = CrowdTwistApiSensor(
        task_id="wait_for_crowdtwist",
        crowdtwist_conn_id=CROWDTWIST_CONN_ID,
        activity_ids=ACTIVITIES,
        poke_interval=30,
        timeout=30 * 60,
    )

    sync_members = CrowdTwistUserSyncOperator(
        task_id="sync_members",
        **MEMBER_SYNC,
        rejects_path=f"{WORK_DIR}/rejects/members-{{{{ ds }}}}.jsonl",
        # Remembers what was last sent per member: tomorrow, only members whose data changed are sent.
        state_path=f"{WORK_DIR}/state/member-state.sqlite",
    )

    credit_events = CrowdTwistActivityCreditOperator(
        task_id="credit_events",
        **CREDIT_EVENTS,
        ledger_path=f"{WORK_DIR}/state/credit-ledger.sqlite",
        rejects_path=f"{WORK_DIR}/rejects/credits-{{{{ ds }}}}.jsonl",
    )

    @task
    def report(members: dict | None, credits: dict | None) -> None:
        """Log one line per summary, and where its rejected rows went: the place to alert from."""
        for name, summary in (("members", members), ("credits", credits)):
            if not summary:
                print(f"{name}: no summary")
                continue
            counts = ", ".join(f"{k}={v}" for k, v in summary["counts"].items() if v)
            print(
                f"{name}: {summary['rows_read']} rows -> {counts or 'nothing'}; "
                f"{summary.get('rows_per_second', 0):.0f} rows/s"
            )
            if summary.get("rejects_path"):
                written = summary.get("rejects_written", 0)
                print(f"{name}: {written} rows to look at in {summary['rejects_path']}")

    wait_for_crowdtwist >> sync_members >> credit_events
    report(sync_members.output, credit_events.output)


# --------------------------------------------------------------------------------------------------
# The same two syncs, split over workers: crowdtwist_partitioned_sync (docs/scale-out.md).

PARTITIONS = int(os.environ.get("CROWDTWIST_PARTITIONS", "4"))
PARTITIONED_DOC = """One program, split over several workers: the daily loyalty sync as mapped tasks.

    sync_members[0..n-1]  ->  credit_events[0..n-1]
         |                          |
    members_total              credits_total

One worker sends a program's standard 10,000 requests a minute with CPU to spare, so most programs
need no partitions (docs/scale-out.md). A program with a higher negotiated cap, or a worker shared by
many syncs, can split a sync into ``n`` partitions that Airflow's executor (Celery, Kubernetes) runs on
different workers, by dynamic task mapping:

* ``.expand(partition=partitions(n))`` makes ``n`` task instances; instance ``i`` keeps the source rows
  whose member identifier hashes to ``i`` (stable across processes and runs; one member is always in
  one partition, so its rows keep their order and its credits their ledger);
* each partition has its own state, ledger and rejects file (``name.part-i-of-n.ext``) and paces itself
  at the program's cap divided by ``n``: together they stay under the cap;
* ``combine_summaries`` adds the partitions' summaries into one (``members_total``, ``credits_total``).

Keep ``n`` fixed for a program once its credit ledger exists: a run with another ``n`` refuses to start
rather than miss credits recorded under the old layout.

The queries and the syncs' arguments are ``crowdtwist_loyalty_sync``'s (this file, above): only the
files, the mapping and where the failure ratio is judged differ. ``CROWDTWIST_PARTITIONS`` (default 4)
sets ``n``.
"""

with DAG(
    dag_id="crowdtwist_partitioned_sync",
    description="Members and credits into one CrowdTwist program, split over workers by member",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["crowdtwist", "example"],
    doc_md=PARTITIONED_DOC,
) as partitioned_dag:
    # The failure ratio is judged on the combined summary (a partition's share of bad rows scatters
    # around the whole's); each partition still fails on any failed row.
    sync_members = CrowdTwistUserSyncOperator.partial(
        task_id="sync_members",
        **{**MEMBER_SYNC, "max_failed_ratio": None},
        rejects_path=f"{WORK_DIR}/rejects/partitioned-members-{{{{ ds }}}}.jsonl",
        state_path=f"{WORK_DIR}/state/partitioned-member-state.sqlite",
    ).expand(partition=partitions(PARTITIONS))

    credit_events = CrowdTwistActivityCreditOperator.partial(
        task_id="credit_events",
        **{**CREDIT_EVENTS, "max_failed_ratio": None},
        ledger_path=f"{WORK_DIR}/state/partitioned-credit-ledger.sqlite",
        rejects_path=f"{WORK_DIR}/rejects/partitioned-credits-{{{{ ds }}}}.jsonl",
    ).expand(partition=partitions(PARTITIONS))

    @task
    def combine(summaries: list[dict], max_failed_ratio: float) -> dict:
        """The partitions' summaries as one, judged by the sync's failure ratio: what to alert on."""
        total = combine_summaries(summaries)
        print(f"{total['partitions']} partitions: {total['rows_read']} rows -> {total['counts']}")
        problem = combined_violation(total, max_failed_ratio=max_failed_ratio)
        if problem:
            raise ValueError(problem)
        return total

    sync_members >> credit_events
    combine.override(task_id="members_total")(sync_members.output, MEMBER_SYNC["max_failed_ratio"])
    combine.override(task_id="credits_total")(credit_events.output, CREDIT_EVENTS["max_failed_ratio"])
