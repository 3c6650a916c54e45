"""``CrowdTwistActivityCreditOperator``: warehouse rows -> activity credits, exactly once per dedupe key.

A thin adapter, like the member operator: it checks arguments, turns the source arguments into
DataFrame chunks (``_source.py``), gets ONE rate-limited client from the hook and calls the engine
(``sync.credits.sync.sync_credits``) with the ledger's location (a local file or an object-storage URL),
which the engine opens. It returns the engine's summary as its XCom: counts by outcome
(``credited``, ``skipped``, ``rejected``, ``failed``, ``unknown``), the ledger location and counts, and
the first ``unknown`` dedupe keys -- never rows.

Run the member sync first in the DAG: a credit for a member CrowdTwist does not know is ``rejected``
("member not found"), and is sent again by the next run once the member exists.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_crowdtwist.assets import ACTIVITIES, activity_asset_uri
from airflow_provider_crowdtwist.operators._base import SOURCE_TEMPLATE_FIELDS, CrowdTwistSyncOperatorBase
from airflow_provider_crowdtwist.operators._common import fail_task, parse_time_config, push_failure
from airflow_provider_crowdtwist.operators._source import resolve_path
from airflow_provider_crowdtwist.operators._synclog import with_run_services
from airflow_provider_crowdtwist.sync.credits.config import ledger_problem
from airflow_provider_crowdtwist.sync.credits.ledger import LedgerBrokenError, LedgerError
from airflow_provider_crowdtwist.sync.credits.mapping import DEFAULT_DEDUPE_EXTRA_KEY
from airflow_provider_crowdtwist.sync.credits.settle import DEFAULT_VERIFY_DELAY, DEFAULT_VERIFY_RESENDS
from airflow_provider_crowdtwist.sync.credits.sync import CreditSyncConfig, sync_credits
from airflow_provider_crowdtwist.sync.summary import SyncError


class CrowdTwistActivityCreditOperator(CrowdTwistSyncOperatorBase):
    """Credit CrowdTwist activities from rows, each dedupe key at most once across retries and reruns.

    CrowdTwist has no idempotency key: a credit sent twice can award points twice. The ledger
    (``ledger_path``) records every dedupe key before its request is sent and what became of it, so a
    retried task, a rerun of the DAG or a worker killed mid-run never credits a key twice. Every credit
    carries its dedupe key in ``extra_data`` (``dedupe_extra_key``); a credit whose answer was
    ambiguous (a timeout after the request was sent, a dropped connection, a 5xx, "Event already
    processed") is looked up in the member's activity history after ``verify_delay`` seconds: found
    means ``credited``, absent means it is sent again (same key), at most ``verify_resends`` times.
    What that cannot settle stays ``unknown`` and is settled first by the next run.

    Source (exactly one): ``sql`` + ``sql_conn_id`` (any common.sql connection; ``.sql`` files allowed;
    read in chunks), ``rows`` (a DataFrame, a list of dicts, or an XCom), or ``source_path`` (CSV / JSON
    lines / Parquet, local or an object-storage URL; read in chunks).

    :param crowdtwist_conn_id: the CrowdTwist connection.
    :param id_column: the column holding each member's identifier (default ``user_id``).
    :param id_type: what the identifier is (``email``, ``third_party_id``...); default: the connection's.
    :param activity_id: the activity credited for every row; or
    :param activity_id_column: the column holding each row's activity id.
    :param points_column: optional column of points (``num_points``; whole numbers >= 0). Empty:
        the activity's default points.
    :param activity_date_column: optional column of dates (any date form -> epoch seconds).
    :param extra_data_columns: columns sent in ``extra_data``: a list, or a mapping column -> key.
    :param dedupe_key_column: the column that identifies a credit (an order id, an event id). Without
        it the key is a SHA-256 of member, activity, points, date and extra data: identical rows are
        then one credit.
    :param ledger_path: the ledger (a SQLite file): a local path or an object-storage URL
        (``s3://...``, ``file://...``). Required unless ``allow_duplicates=True``.
    :param allow_duplicates: credit without a ledger. Must be set explicitly: a retry may credit twice.
    :param resend_unknown: where verification cannot work (the history cannot be read, or
        ``dedupe_extra_key=None``), send ``unknown`` credits again without proof.
    :param fail_on_unknown: fail the task when any credit is still ``unknown`` after verification
        (default True; a retry settles them first). The summary is pushed to XCom (key ``summary``) first.
    :param verify_delay: seconds between an ambiguous answer and the look-up in the member's activity
        history (default 30: Oracle says awards are applied "generally within seconds"). It must
        outlast CrowdTwist's award delay: a credit not visible yet is taken as absent and sent again.
    :param verify_resends: how many times one credit verified absent is sent again in one run
        (default 3).
    :param dedupe_extra_key: the ``extra_data`` key that carries each credit's dedupe key (default
        ``ct_dedupe_key``; a column mapped to it in ``extra_data_columns`` is a configuration error).
        ``None`` turns it off: ambiguous credits then cannot be verified, and exactly-once rests on
        CrowdTwist's undocumented duplicate window.
    :param rebuild_ledger: recovery of a ledger that lost its content (a run refuses an empty,
        truncated or corrupt ledger, naming it) or was lost: the broken file is kept as
        ``<ledger>.broken-<UTC time>`` and a new ledger started; before a credit is sent, its member's
        activity history is read (once per member) and every credit found there by its dedupe key is
        recorded ``credited``, not sent again. Default False; turn it off again afterwards.
    :param validate_activities: fetch the program's active activities once at start and reject rows
        naming another one (default True).
    :param remote_ledger_batch: with an object-storage ledger, how many credits have their intents
        uploaded together before they are sent (default 1,000): the most a killed worker can leave
        ``unknown``, at the cost of one upload of the ledger file per batch.
    :param max_workers: concurrent requests (default 16), all paced by one rate limiter.
    :param requests_per_minute: the rate cap; default: the connection's extra (10,000 if unset).
    :param rate_limit_conn_id: a Redis connection: every task of the program shares one pace at the
        whole cap (docs/scale-out.md); default: the connection's extra; ``""``: this task alone.
    :param max_failed_rows: fail the task when failed + rejected rows exceed this.
    :param max_failed_ratio: fail the task when (failed + rejected) / rows read exceeds this.
        With neither set: any failed row fails the task, rejected rows are tolerated.
    :param fail_when_nothing_landed: fail the task when every row (at least one) was rejected or
        failed, whatever the thresholds say (default True).
    :param degraded_rejected_ratio: a run that succeeds with more than this share of its rows
        rejected (or with failed rows tolerated) ends with status ``degraded`` (default 0.1; ``None``:
        the ratio is off).
    :param rejects_path: where to write rejected/failed/unknown rows as JSON lines.
    :param dry_run: map, validate and look up the ledger, but send nothing and write no credit.
    :param chunksize: rows per chunk read from the source (default 10,000).
    :param on_bad_lines: a CSV / JSON-lines line that cannot be read: ``fail`` (default) fails the
        task naming the line; ``reject`` makes it a rejected row and credits the rest of the file.
    """

    template_fields: Sequence[str] = (*SOURCE_TEMPLATE_FIELDS, "ledger_path", "activity_id")
    ui_color = "#f7e6c4"
    asset_object = ACTIVITIES

    def __init__(
        self,
        *,
        activity_id: str | None = None,
        activity_id_column: str | None = None,
        points_column: str | None = None,
        activity_date_column: str | None = None,
        extra_data_columns: Sequence[str] | Mapping[str, str] | None = None,
        dedupe_key_column: str | None = None,
        ledger_path: Any = None,
        allow_duplicates: bool = False,
        resend_unknown: bool = False,
        fail_on_unknown: bool = True,
        validate_activities: bool = True,
        remote_ledger_batch: int = 1000,
        verify_delay: float = DEFAULT_VERIFY_DELAY,
        verify_resends: int = DEFAULT_VERIFY_RESENDS,
        dedupe_extra_key: str | None = DEFAULT_DEDUPE_EXTRA_KEY,
        rebuild_ledger: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.activity_id = activity_id
        self.activity_id_column = activity_id_column
        self.points_column = points_column
        self.activity_date_column = activity_date_column
        self.extra_data_columns = extra_data_columns
        self.dedupe_key_column = dedupe_key_column
        self.ledger_path = ledger_path
        self.allow_duplicates = allow_duplicates
        self.resend_unknown = resend_unknown
        self.fail_on_unknown = fail_on_unknown
        self.validate_activities = validate_activities
        self.remote_ledger_batch = remote_ledger_batch
        self.verify_delay = verify_delay
        self.verify_resends = verify_resends
        self.dedupe_extra_key = dedupe_extra_key
        self.rebuild_ledger = rebuild_ledger
        self._validate_arguments()

    # ------------------------------------------------------------------ arguments

    def _ledger_location(self) -> Any:
        """``ledger_path``, a blank (e.g. a template rendering to nothing) meaning none."""
        return self.ledger_path if self.ledger_path not in ("", None) else None

    def _validate_arguments(self) -> None:
        """Fail at DAG parse time on arguments that are not template fields (those wait for execute)."""
        self._validate_shared_arguments()
        self._check_ledger_given()
        parse_time_config(self._sync_config(self.id_type, parse_time=True))

    def _check_ledger_given(self) -> None:
        problem = ledger_problem(self._ledger_location(), self.allow_duplicates)
        if problem:
            raise ValueError(problem)

    def _sync_config(self, id_type: str | None, *, parse_time: bool = False) -> CreditSyncConfig:
        """The engine's config; at parse time without the template fields' content (not rendered yet)."""
        activity_id = self.activity_id
        if parse_time and activity_id is not None:
            activity_id = "templated"  # whether one is given matters here; its value once rendered
        return CreditSyncConfig(
            id_column=self.id_column,
            id_type=id_type,
            activity_id=activity_id,
            activity_id_column=self.activity_id_column,
            points_column=self.points_column,
            activity_date_column=self.activity_date_column,
            extra_data_columns=self.extra_data_columns,
            dedupe_key_column=self.dedupe_key_column,
            validate_activities=self.validate_activities,
            remote_ledger_batch=self.remote_ledger_batch,
            verify_delay=self.verify_delay,
            verify_resends=self.verify_resends,
            dedupe_extra_key=self.dedupe_extra_key,
            rebuild_ledger=self.rebuild_ledger,
            resend_unknown=self.resend_unknown,
            allow_duplicates=self.allow_duplicates,
            fail_on_unknown=self.fail_on_unknown,
            rejects_path=resolve_path(self.rejects_path) if self.rejects_path and not parse_time else None,
            **self._run_config_kwargs(parse_time=parse_time),
        )

    @staticmethod
    def _run_id(context: Any) -> str:
        """Who wrote a ledger row: DAG, task, run and try, so a human can trace it."""
        context = context if hasattr(context, "get") else {}
        ti = context.get("ti")
        run_id = context.get("run_id") or getattr(ti, "run_id", None)
        parts = [
            str(getattr(ti, "dag_id", None) or "?"),
            str(getattr(ti, "task_id", None) or "?"),
            str(run_id or "?"),
        ]
        try_number = getattr(ti, "try_number", None)
        if try_number is not None:
            parts.append(f"try{try_number}")
        return "/".join(parts)

    # ------------------------------------------------------------------ run

    def execute(self, context: Any) -> dict[str, Any]:
        """Read, map, validate, dedupe and send; return the summary dict (XCom)."""
        from airflow_provider_crowdtwist._compat import AirflowException

        self._stop = threading.Event()
        try:
            self._check_ledger_given()
            config = self._sync_config(self.id_type)
            config.run_id = self._run_id(context)
            location = self._ledger_location()
            config.ledger_path = resolve_path(location) if location is not None else None
            client = self._build_client()
            config = with_run_services(self, config, client, context, "credits")
            chunks = self._source_chunks()
        except ValueError as exc:
            raise fail_task(exc, context) from None
        with client:
            self.log.info(
                "Crediting CrowdTwist activities: max_workers=%d, %s, ledger %s%s",
                self.max_workers,
                self._pace_text(client),
                location if location is not None else "none (allow_duplicates=True)",
                ", dry run" if self.dry_run else "",
            )
            try:
                summary = sync_credits(client, chunks, config, log=self.log)
            except (SyncError, ValueError) as exc:
                # The summary goes to XCom first; thresholds (and unknown credits) are ordinary
                # failures, aborts and bad configuration fail without retry.
                raise fail_task(exc, context) from None
            except LedgerBrokenError as exc:  # a retry cannot help: the message names the way out
                raise fail_task(exc, context) from None
            except LedgerError as exc:
                # Not a configuration error: the ledger may be busy or storage briefly down; a retry helps.
                push_failure(context, exc)
                raise AirflowException(str(exc)) from None
        return self._complete(summary.to_dict(), context)

    def _asset_uri(self, base_url: str) -> str:
        """``crowdtwist://<host>/activities/<id>``; ``.../activities`` when the rows name the activity."""
        return activity_asset_uri(base_url, self.activity_id if not self.activity_id_column else None)
