"""The credit sync's settings, its summary and its failure rule: what ``sync_credits`` is asked and says.

``unknown`` credits are judged apart from the thresholds (:func:`credit_threshold_violation`); what
each outcome means and what a later run does is tabled in ``docs/activity-credits.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_crowdtwist.sync.config import RunConfig
from airflow_provider_crowdtwist.sync.credits.mapping import DEFAULT_DEDUPE_EXTRA_KEY, CreditMapping
from airflow_provider_crowdtwist.sync.credits.settle import (
    DEFAULT_VERIFY_DELAY,
    DEFAULT_VERIFY_RESENDS,
    SendAnswer,
    check_verify_settings,
)
from airflow_provider_crowdtwist.sync.outcomes import Outcome, RowResult
from airflow_provider_crowdtwist.sync.summary import SyncConfigError, SyncSummary, threshold_violation

#: The request counter of activity-history reads (``summary.request_counts``).
HISTORY_REQUESTS = "history"


def ledger_problem(location: Any, allow_duplicates: object) -> str | None:
    """Why these ledger settings cannot work, or None (checked by the operator at parse time, and by
    the credit sync before it opens anything): the ledger is what keeps each credit exactly once."""
    if not isinstance(allow_duplicates, bool):
        return f"allow_duplicates must be True or False, got {allow_duplicates!r}"
    if location in (None, "") and not allow_duplicates:
        return (
            "ledger_path is required: the ledger keeps each credit exactly once across retries and "
            "reruns (CrowdTwist has no idempotency key). Give a local path or an object-storage URL, "
            "or set allow_duplicates=True explicitly to credit without one"
        )
    if location not in (None, "") and allow_duplicates:
        return "allow_duplicates=True and a ledger_path contradict each other; give one"
    return None


@dataclass(kw_only=True)
class CreditSyncConfig(RunConfig):
    """Everything a credit sync needs besides the client, the rows and the ledger.

    Column arguments are those of :class:`CreditMapping`. ``allow_duplicates`` runs without a ledger
    (an in-memory one stands in, so duplicates *within* the run are still skipped); it must be asked
    for explicitly because a retried task may then credit twice. The shared settings (workers,
    thresholds, rejects, dry run, stop event, ``id_type``) are those of ``RunConfig``.
    """

    id_column: str
    #: The ledger (a SQLite file, local or object storage), opened by the sync; this partition's when
    #: partitioned. Required unless ``allow_duplicates``.
    ledger_path: Any = None
    activity_id: str | None = None
    activity_id_column: str | None = None
    points_column: str | None = None
    activity_date_column: str | None = None
    extra_data_columns: str | Sequence[str] | Mapping[str, str] | None = None
    dedupe_key_column: str | None = None
    validate_activities: bool = True
    resend_unknown: bool = False
    allow_duplicates: bool = False
    fail_on_unknown: bool = True
    run_id: str | None = None
    #: With an object-storage ledger: credits whose intents are uploaded together before they are sent
    #: (the most a killed worker can leave 'unknown'; each batch costs one upload of the ledger file).
    remote_ledger_batch: int = 1000
    #: Seconds after an ambiguous answer before the credit is looked up in the member's activity
    #: history (Oracle: awards are applied "generally within seconds"). Not found then: sent again.
    verify_delay: float = DEFAULT_VERIFY_DELAY
    #: How many times one credit verified absent is sent again in one run (each resend waits for
    #: ``verify_delay`` and is verified again); what is still open after that stays ``unknown``.
    verify_resends: int = DEFAULT_VERIFY_RESENDS
    #: The ``extra_data`` key that carries each credit's dedupe key; None turns it off explicitly
    #: (exactly-once then rests on CrowdTwist's undocumented duplicate window).
    dedupe_extra_key: str | None = DEFAULT_DEDUPE_EXTRA_KEY

    def validate_sync(self) -> None:
        if self.remote_ledger_batch < 1:
            raise SyncConfigError(
                f"remote_ledger_batch must be a positive integer, got {self.remote_ledger_batch!r}",
                "remote_ledger_batch",
            )
        try:
            check_verify_settings(self.verify_delay, self.verify_resends)
        except ValueError as exc:
            field_name = "verify_delay" if "verify_delay" in str(exc) else "verify_resends"
            raise SyncConfigError(str(exc), field_name) from None
        self.build_mapping()  # its constructor raises SyncConfigError naming the argument

    def build_mapping(self) -> CreditMapping:
        """The row mapping (its constructor checks the column arguments)."""
        return CreditMapping(
            id_column=self.id_column,
            id_type=self.id_type or "email",
            activity_id=self.activity_id,
            activity_id_column=self.activity_id_column,
            points_column=self.points_column,
            activity_date_column=self.activity_date_column,
            extra_data_columns=self.extra_data_columns,
            dedupe_key_column=self.dedupe_key_column,
            dedupe_extra_key=self.dedupe_extra_key,
        )


@dataclass
class CreditSyncSummary(SyncSummary):
    """The sync summary plus what the ledger says: where it is, its counts, the keys to look at."""

    ledger_path: str | None = None
    ledger_counts: dict[str, int] = field(default_factory=dict)
    unknown_keys: list[str] = field(default_factory=list)
    recovered_unknown: int = 0
    already_processed: int = 0
    not_awarded: int = 0
    #: Credits proven by their key in the member's activity history (after an ambiguous answer).
    verified: int = 0
    #: Sends of credits verified absent after the settle delay (the same key, the same body).
    resent: int = 0
    #: ``unknown`` keys of earlier runs settled before this run sent anything, by final state.
    reconciled: dict[str, int] = field(default_factory=dict)

    @property
    def history_requests(self) -> int:
        """Requests that read activity histories: the cost of verification, part of ``requests_sent``."""
        return self.request_counts.get(HISTORY_REQUESTS, 0)

    def to_dict(self) -> dict[str, Any]:
        """The XCom: counts, ``unknown`` count and keys, the ledger's location. Never rows or secrets."""
        return {**super().to_dict(), "unknown": self.count(Outcome.UNKNOWN)}


@dataclass
class CreditResult(RowResult):
    """A credit's result with what its send said besides the outcome (typed, not ``extra`` flags)."""

    #: The send's answer (its message without the ``row N: `` prefix), for the settler.
    answer: SendAnswer | None = None
    #: An ambiguous credit that carries its key: settled later by looking, not recorded now.
    settle: bool = False


def credit_threshold_violation(
    summary: SyncSummary,
    *,
    max_failed_rows: int | None = None,
    max_failed_ratio: float | None = None,
    fail_on_unknown: bool = True,
) -> str | None:
    """Why the task should fail, or None."""
    unknown = summary.count(Outcome.UNKNOWN)
    if isinstance(summary, CreditSyncSummary):
        unknown += summary.reconciled.get(Outcome.UNKNOWN.value, 0)
    if fail_on_unknown and unknown:
        return (
            f"{unknown} credit(s) are 'unknown': verification in the members' activity histories could not "
            "settle them (see their messages in the rejects file and the ledger, state 'unknown'). The "
            "next run (or a retry of this task) looks them up again first; set fail_on_unknown=False to "
            "tolerate them meanwhile"
        )
    shadow = SyncSummary(counts=dict(summary.counts), rows_read=summary.rows_read)
    shadow.counts[Outcome.UNKNOWN.value] = 0
    return threshold_violation(shadow, max_failed_rows, max_failed_ratio)


def credit_notes(summary: CreditSyncSummary, config: CreditSyncConfig) -> str:
    """What the summary table does not show: verification, awarded=false, the ledger."""
    extra = []
    if summary.verified or summary.resent or summary.history_requests:
        extra.append(
            f"verification: {summary.verified} credit(s) proven in the activity history, {summary.resent} "
            f"sent again after being verified absent, {summary.history_requests} history request(s)"
        )
    if summary.already_processed:
        extra.append(
            f"{summary.already_processed} 'Event already processed' answer(s), each verified, not believed"
        )
    if summary.reconciled:
        counts = ", ".join(f"{k}={v}" for k, v in sorted(summary.reconciled.items()))
        extra.append(f"unknown credits of earlier runs reconciled first: {counts}")
    if summary.not_awarded:
        extra.append(f"{summary.not_awarded} credit(s) accepted with awarded=false")
    if config.allow_duplicates:
        extra.append("no ledger (allow_duplicates=True): a rerun may credit these rows again")
    else:
        counts = ", ".join(f"{k}={v}" for k, v in summary.ledger_counts.items())
        extra.append(f"ledger {summary.ledger_path}: {counts}")
    if summary.unknown_keys:
        extra.append(
            f"unknown dedupe keys (first {len(summary.unknown_keys)}): {', '.join(summary.unknown_keys)}"
            " -- inspect with: sqlite3 LEDGER \"select * from credits where state='unknown'\""
        )
    return "\n".join(extra)
