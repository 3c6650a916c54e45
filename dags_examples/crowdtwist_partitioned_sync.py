"""One program, split over several workers: the daily loyalty sync as mapped tasks.

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

The queries and the syncs' arguments are ``crowdtwist_loyalty_sync``'s (imported from it): only the
files and the mapping differ. Settings (environment variables): ``CROWDTWIST_CONN_ID``,
``CROWDTWIST_WAREHOUSE_CONN_ID``, ``CROWDTWIST_DEMO_DIR`` as in ``crowdtwist_loyalty_sync``, and
``CROWDTWIST_PARTITIONS`` (default 4).
"""

from __future__ import annotations

import os

import pendulum
from airflow import DAG
from airflow.timetables.interval import CronDataIntervalTimetable

try:  # Airflow 3
    from airflow.sdk import task
except ImportError:  # Airflow 2
    from airflow.decorators import task

# The loyalty DAG's queries and arguments: this is the same sync, mapped (Airflow puts the dags folder
# on sys.path; when copying this file, copy those two dicts with it).
from crowdtwist_loyalty_sync import CREDIT_EVENTS, MEMBER_SYNC

from airflow_provider_crowdtwist.operators.activity_credit import CrowdTwistActivityCreditOperator
from airflow_provider_crowdtwist.operators.partition import combine_summaries, combined_violation, partitions
from airflow_provider_crowdtwist.operators.user_sync import CrowdTwistUserSyncOperator

WORK_DIR = os.environ.get("CROWDTWIST_DEMO_DIR", "/tmp/crowdtwist-demo")
PARTITIONS = int(os.environ.get("CROWDTWIST_PARTITIONS", "4"))

with DAG(
    dag_id="crowdtwist_partitioned_sync",
    description="Members and credits into one CrowdTwist program, split over workers by member",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["crowdtwist", "example"],
    doc_md=__doc__,
) as dag:
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
