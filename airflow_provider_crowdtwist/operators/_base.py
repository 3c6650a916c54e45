"""``CrowdTwistSyncOperatorBase``: what both sync operators take and do the same way.

Both operators read the same sources, pace the same client, write the same rejects file and apply
the same failure thresholds; only the engine they call differs. Keeping the shared arguments here
means a DAG author meets one vocabulary, and a fix to source handling or argument checks lands in
both operators at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_crowdtwist.assets import MEMBERS
from airflow_provider_crowdtwist.client.client import CrowdTwistClient
from airflow_provider_crowdtwist.operators._common import (
    push_summary,
    validate_requests_per_minute,
)
from airflow_provider_crowdtwist.operators._outcome import (
    alias_name,
    asset_extra,
    default_outlets,
    emit_asset_event,
)
from airflow_provider_crowdtwist.operators._source import source_chunks, validate_source_args
from airflow_provider_crowdtwist.operators._synclog import validate_log_arguments
from airflow_provider_crowdtwist.operators.links import CrowdTwistRunLink
from airflow_provider_crowdtwist.sync.partition import active_partition
from airflow_provider_crowdtwist.sync.sources import DEFAULT_CHUNKSIZE, SourceItem
from airflow_provider_crowdtwist.sync.summary import (
    DEFAULT_DEGRADED_REJECTED_RATIO,
    summary_text,
    too_few_rows,
    too_many_rejected,
    validate_volume_checks,
)

SOURCE_TEMPLATE_FIELDS: tuple[str, ...] = (
    "crowdtwist_conn_id",
    "rate_limit_conn_id",
    "sql",
    "sql_conn_id",
    "sql_hook_params",
    "parameters",
    "rows",
    "source_path",
    "rejects_path",
    "log_conn_id",
    "log_table_prefix",
    "calls_path",
)


class CrowdTwistSyncOperatorBase(BaseOperator):
    """Shared arguments of the sync operators (see either operator's docstring for their meaning).

    The operators declare only their own arguments and pass the rest here through ``**kwargs``,
    so a shared argument has one default, one check and one place to change.

    ``partition=(i, n)``: sync only the members that hash to ``i`` of ``n``, with this partition's own
    state / ledger / rejects files and ``1/n`` of the cap; for ``.expand(partition=partitions(n))``
    (docs/scale-out.md).

    ``rate_limit_conn_id``: a Redis connection (conn type ``redis``) through which every task of the
    program shares one pace at the whole cap, partitions included (docs/scale-out.md); default: the
    CrowdTwist connection's ``rate_limit_conn_id`` extra; ``""``: this task paces on its own.

    Source (exactly one): ``sql`` + ``sql_conn_id`` (any common.sql connection; ``.sql`` files
    allowed; read in chunks), ``rows`` (a DataFrame, a list of dicts, or an XCom), or ``source_path``
    (CSV / JSON lines / Parquet, local or an object-storage URL; read in chunks). ``on_bad_lines``:
    a CSV / JSON-lines line that cannot be read fails the task naming the line (``fail``, the
    default) or is a rejected row while the rest of the file is synced (``reject``).

    How a run ends (the summary's ``status``: ``ok``, ``degraded`` or ``failed``, judged by the
    engine): ``fail_when_nothing_landed=True`` (default) fails a run in which every row was rejected
    or failed; a run that succeeds with more than ``degraded_rejected_ratio`` (default 0.1) of its rows
    rejected, or with failed rows tolerated, is ``degraded``. ``max_rejected_ratio`` fails the task
    above its share of rejected rows. The summary also carries ``previous_status``, the status of the
    task's previous run (``_common.push_summary``), for ``CrowdTwistAlertNotifier``.
    """

    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers = {"sql": "sql", "parameters": "json", "sql_hook_params": "json"}
    #: What the task writes in CrowdTwist: the object part of its asset URI (``assets.py``).
    asset_object: str = MEMBERS
    #: The "CrowdTwist run" button: the task's CrowdTwist tab on Airflow 3.1+ (``operators/links.py``).
    operator_extra_links = (CrowdTwistRunLink(),)

    def __init__(
        self,
        *,
        crowdtwist_conn_id: str = "crowdtwist_default",
        sql: str | None = None,
        sql_conn_id: str | None = None,
        sql_hook_params: dict[str, Any] | None = None,
        parameters: Any = None,
        rows: Any = None,
        source_path: Any = None,
        file_format: str | None = None,
        chunksize: int = DEFAULT_CHUNKSIZE,
        id_column: str = "user_id",
        id_type: str | None = None,
        max_workers: int = 16,
        requests_per_minute: int | None = None,
        rate_limit_conn_id: str | None = None,
        max_failed_rows: int | None = None,
        max_failed_ratio: float | None = None,
        rejects_path: Any = None,
        dry_run: bool = False,
        on_bad_lines: str = "fail",
        partition: Any = None,
        progress_interval: float = 10.0,
        min_rows: int = 1,
        min_rows_action: str = "warn",
        max_rejected_ratio: float | None = None,
        log_conn_id: str | None = None,
        log_table_prefix: str = "crowdtwist_sync",
        log_unchanged: bool = False,
        calls_path: Any = None,
        calls_per_class: int = 10,
        calls_pii: bool = False,
        degraded_rejected_ratio: float | None = DEFAULT_DEGRADED_REJECTED_RATIO,
        fail_when_nothing_landed: bool = True,
        **kwargs: Any,
    ) -> None:
        # Our asset event only for the outlets we chose: a user's own outlets get Airflow's own events.
        self._default_outlets = kwargs.get("outlets") is None
        if self._default_outlets:
            kwargs["outlets"] = default_outlets(crowdtwist_conn_id, self.asset_object)
        super().__init__(**kwargs)
        self.crowdtwist_conn_id = crowdtwist_conn_id
        self.sql = sql
        self.sql_conn_id = sql_conn_id
        self.parameters = parameters
        self.rows = rows
        self.source_path = source_path
        self.file_format = file_format
        self.chunksize = chunksize
        self.id_column = id_column
        self.id_type = id_type
        self.max_workers = max_workers
        self.requests_per_minute = requests_per_minute
        self.rate_limit_conn_id = rate_limit_conn_id
        self.max_failed_rows = max_failed_rows
        self.max_failed_ratio = max_failed_ratio
        self.rejects_path = rejects_path
        self.dry_run = dry_run
        self.on_bad_lines = on_bad_lines
        self.partition = partition
        self.sql_hook_params = sql_hook_params
        self.progress_interval = progress_interval
        self.min_rows = min_rows
        self.min_rows_action = min_rows_action
        self.max_rejected_ratio = max_rejected_ratio
        # The sync log and the calls sample (docs/sync-log.md, operators/_synclog.py).
        self.log_conn_id = log_conn_id
        self.log_table_prefix = log_table_prefix
        self.log_unchanged = log_unchanged
        self.calls_path = calls_path
        self.calls_per_class = calls_per_class
        self.calls_pii = calls_pii
        self.degraded_rejected_ratio = degraded_rejected_ratio
        self.fail_when_nothing_landed = fail_when_nothing_landed
        # Set in execute, read by _complete and the OpenLineage method.
        self._base_url: str | None = None
        self._summary: dict[str, Any] | None = None
        # Made in execute (an Event cannot be deep-copied with the task); set by on_kill.
        self._stop: threading.Event | None = None

    def on_kill(self) -> None:
        """Stop sending: requests in flight finish and are recorded, the rest are reported not sent."""
        if self._stop is not None:
            self._stop.set()

    def _validate_shared_arguments(self) -> None:
        """Fail at DAG parse time on shared arguments that are not template fields.

        Only whether a source is given is looked at, never its (unrendered) content.
        """
        validate_source_args(
            sql=self.sql,
            sql_conn_id=self.sql_conn_id,
            rows=self.rows,
            source_path=self.source_path,
            chunksize=self.chunksize,
        )
        validate_requests_per_minute(self.requests_per_minute)
        if self.rate_limit_conn_id is not None and not isinstance(self.rate_limit_conn_id, str):
            raise ValueError(
                f"rate_limit_conn_id must be a connection id (text) or None, got {self.rate_limit_conn_id!r}"
            )
        validate_volume_checks(self.min_rows, self.min_rows_action, self.max_rejected_ratio)
        validate_log_arguments(self.log_table_prefix, self.calls_per_class)
        # partition, progress_interval and the other engine settings: the engine config's own
        # validation, called by each operator's parse_time_config (one rule, one message)

    def _run_config_kwargs(self, *, parse_time: bool = False) -> dict[str, Any]:
        """The :class:`~..sync.config.RunConfig` settings every sync operator passes the same way."""
        return {
            "max_workers": self.max_workers,
            "max_failed_rows": self.max_failed_rows,
            "max_failed_ratio": self.max_failed_ratio,
            "degraded_rejected_ratio": self.degraded_rejected_ratio,
            "fail_when_nothing_landed": self.fail_when_nothing_landed,
            "dry_run": self.dry_run,
            "on_bad_lines": self.on_bad_lines,
            "partition": self.partition,
            "progress_interval": self.progress_interval,
            "stop_event": None if parse_time else self._stop,
        }

    def _build_client(self) -> CrowdTwistClient:
        """ONE client with ONE rate limiter for all workers of this task, from the connection."""
        from airflow_provider_crowdtwist.hooks.crowdtwist import CrowdTwistHook

        hook = CrowdTwistHook(crowdtwist_conn_id=self.crowdtwist_conn_id)
        part = active_partition(self.partition)
        # requests_per_minute on the task overrides the connection's extra; a partition paces at its share
        given = {} if self.requests_per_minute is None else {"requests_per_minute": self.requests_per_minute}
        client = hook.new_client(
            max_workers=self.max_workers,
            pace=part.share if part is not None else None,
            rate_limit_conn_id=self.rate_limit_conn_id,
            **given,
        )
        self._base_url = client.config.base_url
        return client

    @staticmethod
    def _pace_text(client: CrowdTwistClient) -> str:
        """How the task is paced, for its first log line: its own cap, or the program's shared one."""
        limiter = client.rate_limiter
        stats = limiter.stats() if limiter is not None else {}
        if stats.get("shared_limiter") and not stats.get("shared_limiter_fallback"):
            cap = stats.get("configured_requests_per_minute")
            return f"{cap} requests/min shared by every task of the program ({stats['shared_limiter']})"
        return f"{client.config.requests_per_minute or 'unlimited'} requests/min"

    def _source_chunks(self) -> Iterator[SourceItem]:
        """The rendered source arguments -> DataFrame chunks (nothing is read until iterated)."""
        return source_chunks(
            sql=self.sql,
            sql_conn_id=self.sql_conn_id,
            sql_hook_params=self.sql_hook_params,
            parameters=self.parameters,
            rows=self.rows,
            source_path=self.source_path,
            chunksize=self.chunksize,
            file_format=self.file_format,
            on_bad_lines=self.on_bad_lines,  # type: ignore[arg-type]  # checked by the engine config
        )

    # ------------------------------------------------------------------ how a run ends

    def _asset_uri(self, base_url: str) -> str:
        """The asset this task's rows went to (``crowdtwist://<host>/members`` here)."""
        from airflow_provider_crowdtwist.assets import member_asset_uri

        return member_asset_uri(base_url)

    def _complete(self, summary: dict[str, Any], context: Any) -> dict[str, Any]:
        """Volume checks, the one-line text, the ``summary`` XCom and the asset event; the summary back.

        A mostly rejected run (``max_rejected_ratio``) and, with ``min_rows_action="fail"``, a source
        with fewer than ``min_rows`` rows fail the task without retry (a retry reads the same source);
        the summary is pushed first either way.
        """
        from airflow_provider_crowdtwist._compat import AirflowFailException

        few = too_few_rows(summary, self.min_rows)
        problem = too_many_rejected(summary, self.max_rejected_ratio)
        if few and self.min_rows_action == "fail":
            problem = problem or few
        elif few:
            self.log.warning("%s: %s (min_rows_action='warn')", self.task_id, few)
            summary["warnings"] = [few]
        if problem:
            summary["status"], summary["status_reason"] = "failed", problem
        summary["text"] = summary_text(self.task_id, summary, problem, None if problem else few)
        self._summary = summary
        push_summary(context, summary)
        self.log.info("%s", summary["text"])
        if problem:
            raise AirflowFailException(summary["text"])
        if self._default_outlets and not summary.get("dry_run") and self._base_url:
            self.outlets = emit_asset_event(
                context,
                list(self.outlets or []),
                alias_name(self.crowdtwist_conn_id, self.asset_object),
                self._asset_uri(self._base_url),
                asset_extra(summary),
            )
        return summary

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the source as input, the CrowdTwist program (and the rejects file) as outputs.

        Called by the openlineage provider only; it is imported here, so the operators work without it.
        """
        from airflow_provider_crowdtwist.operators._lineage import operator_lineage

        return operator_lineage(self)
