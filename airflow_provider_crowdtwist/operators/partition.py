"""What a DAG needs to fan a sync out over workers: the ``expand()`` arguments and the combined summary.

Re-exported from :mod:`airflow_provider_crowdtwist.sync.partition` (no Airflow there), under the
operators package where DAG authors look::

    from airflow_provider_crowdtwist.operators.partition import combine_summaries, partitions

    sync = CrowdTwistUserSyncOperator.partial(task_id="sync_members", ...).expand(partition=partitions(4))

See docs/scale-out.md for when one worker is enough and when to split.
"""

from __future__ import annotations

from airflow_provider_crowdtwist.sync.partition import (
    Partition,
    PartitionError,
    combine_summaries,
    combined_violation,
    expand_arguments,
    partitions,
)

__all__ = [
    "Partition",
    "PartitionError",
    "combine_summaries",
    "combined_violation",
    "expand_arguments",
    "partitions",
]
