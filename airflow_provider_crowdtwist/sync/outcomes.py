"""What happened to one row: the outcome vocabulary shared by every sync.

Why it is built this way: ``docs/sync-design.md``, section ``sync/outcomes.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar, Union

from airflow_provider_crowdtwist.formats import TextEnum

#: What a row's outcome may be: an :class:`Outcome`, or a member of a sync's own ``str`` enum of extra
#: outcomes (declared to :class:`~.run.SyncRun`, e.g. ``deactivated``), or its plain string value.
OutcomeLike = Union["Outcome", Enum, str]
_R = TypeVar("_R", bound="RowResult")
#: What ``column_of`` is asked for the member identifier (a "member not found" names its column).
IDENTIFIER = "<identifier>"


def outcome_key(outcome: OutcomeLike) -> str:
    """The plain string an outcome is counted and written under."""
    return str(outcome.value) if isinstance(outcome, Enum) else str(outcome)


class Outcome(TextEnum):
    """The final state of one source row."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    CREDITED = "credited"
    SKIPPED = "skipped"
    REJECTED = "rejected"
    FAILED = "failed"
    UNKNOWN = "unknown"


#: Outcomes written to the rejects file: the rows a human has to look at.
PROBLEM_OUTCOMES: frozenset[Outcome] = frozenset({Outcome.REJECTED, Outcome.FAILED, Outcome.UNKNOWN})

#: Outcomes in the order the summary table lists them.
OUTCOME_ORDER: tuple[Outcome, ...] = (
    Outcome.CREATED,
    Outcome.UPDATED,
    Outcome.UNCHANGED,
    Outcome.CREDITED,
    Outcome.SKIPPED,
    Outcome.REJECTED,
    Outcome.FAILED,
    Outcome.UNKNOWN,
)


@dataclass(frozen=True)
class Answer:
    """What one request ended in, before it is a row's result (whose message gets ``row N: ``)."""

    outcome: Outcome
    message: str | None = None
    code: str | None = None
    status: int | None = None


@dataclass
class RowResult:
    """The outcome of one row, with enough context to explain it."""

    row_number: int
    identifier: str | None
    outcome: OutcomeLike
    code: str | None = None
    message: str | None = None
    payload: dict[str, Any] | None = None
    status: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def at(
        cls: type[_R],
        row_number: int,
        identifier: str | None,
        outcome: OutcomeLike,
        reason: str | None = None,
        **fields: Any,
    ) -> _R:
        """A result whose message (if any) starts with ``row N: `` like every message of a sync."""
        message = f"row {row_number}: {reason}" if reason is not None else None
        return cls(row_number, identifier, outcome, message=message, **fields)

    @property
    def is_problem(self) -> bool:
        """True for rows that go to the rejects file (rejected, failed, unknown)."""
        return self.outcome in PROBLEM_OUTCOMES
