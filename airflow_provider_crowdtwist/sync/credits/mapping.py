"""Activity credits: one source row -> one credit request (or a clear rejection), and its dedupe key.

Why it is built this way: ``docs/sync-design.md``, section ``sync/credits/mapping.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_crowdtwist.client.config import CREDIT_ID_TYPES, id_type_problem
from airflow_provider_crowdtwist.sync.convert import (
    MISSING,
    ConversionError,
    to_activity_date,
    to_int,
    to_plain,
    to_text,
)
from airflow_provider_crowdtwist.sync.outcomes import IDENTIFIER, Outcome, RowResult
from airflow_provider_crowdtwist.sync.summary import SyncConfigError

__all__ = ["DEFAULT_DEDUPE_EXTRA_KEY", "CreditMapping", "CreditRequest", "default_dedupe_key"]

#: The ``extra_data`` key that carries each credit's dedupe key unless configured otherwise.
DEFAULT_DEDUPE_EXTRA_KEY = "ct_dedupe_key"

_MAX_LISTED_ACTIVITIES = 10


def default_dedupe_key(
    id_type: str,
    user_id: str,
    activity_id: str,
    num_points: int | None,
    activity_date: int | None,
    extra_data: Mapping[str, Any] | None,
) -> str:
    """SHA-256 (hex) of a canonical JSON of the credit: the same credit gives the same key anywhere."""
    canonical = json.dumps(
        {
            "id_type": id_type,
            "user_id": user_id,
            "activity_id": activity_id,
            "num_points": num_points,
            "activity_date": activity_date,
            "extra_data": dict(extra_data) if extra_data else None,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        default=str,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class CreditRequest:
    """One credit, ready to send: the arguments of ``CrowdTwistClient.credit_activity`` and its key."""

    row_number: int
    dedupe_key: str
    user_id: str
    id_type: str
    activity_id: str
    num_points: int | None = None
    activity_date: int | None = None
    extra_data: dict[str, Any] | None = None
    #: The ``extra_data`` key that carries ``dedupe_key`` (None: the key does not travel, and an
    #: ambiguous credit cannot be verified in the activity history).
    dedupe_extra_key: str | None = None

    @property
    def verifiable(self) -> bool:
        """True when the credit carries its dedupe key, so the activity history can prove it landed."""
        return (
            self.dedupe_extra_key is not None
            and (self.extra_data or {}).get(self.dedupe_extra_key) == self.dedupe_key
        )

    def to_json(self) -> str:
        """The credit as the ledger keeps it: enough to verify it and resend it identically."""
        data = {f: getattr(self, f) for f in _REQUEST_FIELDS}
        return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)

    @classmethod
    def from_json(cls, text: str, row_number: int = 0) -> CreditRequest:
        """Rebuild a credit from :meth:`to_json` (a ledger row); ``row_number`` 0: no source row."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a ledger request must be a JSON object")
        fields: dict[str, Any] = {f: data.get(f) for f in _REQUEST_FIELDS}
        return cls(row_number=row_number, **fields)

    def payload(self) -> dict[str, Any]:
        """The JSON body CrowdTwist receives (for the rejects file and dry runs)."""
        body: dict[str, Any] = {"activity_id": self.activity_id}
        if self.num_points is not None:
            body["num_points"] = self.num_points
        if self.activity_date is not None:
            body["activity_date"] = self.activity_date
        if self.extra_data:
            body["extra_data"] = self.extra_data
        return body


_REQUEST_FIELDS = (
    "dedupe_key",
    "user_id",
    "id_type",
    "activity_id",
    "num_points",
    "activity_date",
    "extra_data",
    "dedupe_extra_key",
)


class _RowRejected(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _name_list(value: str | Sequence[str] | Mapping[str, str] | None, arg: str) -> dict[str, str]:
    """``extra_data_columns`` as {column: extra_data key}; a list keeps the column names."""
    if value is None:
        return {}
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, Sequence):
        pairs = [(c, c) for c in value]
    else:
        raise SyncConfigError(
            f"{arg} must be a list of column names or a mapping column -> key, got {value!r}"
        )
    out: dict[str, str] = {}
    for column, key in pairs:
        if not isinstance(column, str) or not column or not isinstance(key, str) or not key:
            raise SyncConfigError(
                f"{arg}: column names and keys must be non-empty strings, got {column!r}: {key!r}"
            )
        out[column] = key
    return out


def _reserved_key(key: str | None, extra_columns: Mapping[str, str]) -> str | None:
    """Check ``dedupe_extra_key``: a non-empty string no ``extra_data_columns`` entry also writes."""
    if key is None:
        return None
    if not isinstance(key, str) or not key.strip() or key != key.strip():
        raise SyncConfigError(
            f"dedupe_extra_key must be a non-empty extra_data key without surrounding spaces, got {key!r} "
            "(None turns it off: then an ambiguous credit cannot be verified)",
            "dedupe_extra_key",
        )
    clash = [column for column, name in extra_columns.items() if name == key]
    if clash:
        raise SyncConfigError(
            f"extra_data_columns: column {clash[0]!r} would be sent as extra_data.{key}, the key reserved "
            f"for each credit's dedupe key (dedupe_extra_key={key!r}); map the column to another key or "
            "set dedupe_extra_key to another name",
            "extra_data_columns",
        )
    return key


class CreditMapping:
    """Turns source rows into :class:`CreditRequest` objects or rejected :class:`RowResult` objects."""

    def __init__(
        self,
        *,
        id_column: str,
        id_type: str = "email",
        activity_id: str | None = None,
        activity_id_column: str | None = None,
        points_column: str | None = None,
        activity_date_column: str | None = None,
        extra_data_columns: str | Sequence[str] | Mapping[str, str] | None = None,
        dedupe_key_column: str | None = None,
        dedupe_extra_key: str | None = DEFAULT_DEDUPE_EXTRA_KEY,
        known_activities: Collection[str] | None = None,
    ) -> None:
        for arg, value in (
            ("id_column", id_column),
            ("activity_id_column", activity_id_column),
            ("points_column", points_column),
            ("activity_date_column", activity_date_column),
            ("dedupe_key_column", dedupe_key_column),
        ):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise SyncConfigError(f"{arg} must be a non-empty column name, got {value!r}")
        if id_column is None:
            raise SyncConfigError("id_column is required: the column holding the member identifier")
        problem = id_type_problem(id_type, CREDIT_ID_TYPES)  # inst_username too (O:UserActivityCredit)
        if problem:
            raise SyncConfigError(problem)
        if (activity_id is None) == (activity_id_column is None):
            raise SyncConfigError(
                "give exactly one of activity_id (the same activity for every row) or activity_id_column"
            )
        if activity_id is not None:
            if isinstance(activity_id, bool) or not isinstance(activity_id, (str, int)):
                raise SyncConfigError(f"activity_id must be a string, got {activity_id!r}")
            activity_id = str(activity_id).strip()
            if not activity_id:
                raise SyncConfigError("activity_id must not be empty")
        self.id_column = id_column
        self.id_type = id_type
        self.activity_id = activity_id
        self.activity_id_column = activity_id_column
        self.points_column = points_column
        self.activity_date_column = activity_date_column
        self.extra_data_columns = _name_list(extra_data_columns, "extra_data_columns")
        self.dedupe_key_column = dedupe_key_column
        self.dedupe_extra_key = _reserved_key(dedupe_extra_key, self.extra_data_columns)
        self.known_activities: frozenset[str] | None = None
        if known_activities is not None:
            self.set_known_activities(known_activities)

    def set_known_activities(self, activity_ids: Collection[str]) -> None:
        """Use the program's active activities to reject unknown ids before sending."""
        self.known_activities = frozenset(str(a) for a in activity_ids)
        if self.activity_id is not None and self.activity_id not in self.known_activities:
            raise SyncConfigError(
                f"activity_id {self.activity_id!r} is not an active activity of the program "
                f"({self._known_listing()}); check the id or set validate_activities=False"
            )

    def _known_listing(self) -> str:
        known = sorted(self.known_activities or ())
        shown = ", ".join(known[:_MAX_LISTED_ACTIVITIES])
        more = f", ... ({len(known)} in all)" if len(known) > _MAX_LISTED_ACTIVITIES else ""
        return f"active: {shown}{more}" if known else "the program has no active activities"

    @property
    def required_columns(self) -> list[str]:
        """Columns that must exist in the source."""
        cols = [self.id_column]
        for col in (
            self.activity_id_column,
            self.points_column,
            self.activity_date_column,
            self.dedupe_key_column,
        ):
            if col is not None:
                cols.append(col)
        cols.extend(self.extra_data_columns)
        return cols

    def column_of(self, attribute: str) -> str | None:
        """The source column behind an attribute of the credit body (``extra_data.<key>`` for extras),
        so that a refusal naming the attribute names the column; ``None`` for a fixed ``activity_id``."""
        fixed = {
            IDENTIFIER: self.id_column,
            "activity_id": self.activity_id_column,
            "num_points": self.points_column,
            "activity_date": self.activity_date_column,
        }
        if attribute in fixed:
            return fixed[attribute]
        key = attribute.removeprefix("extra_data.")
        return next((c for c, k in self.extra_data_columns.items() if k == key and key != attribute), None)

    def check_columns(self, columns: Collection[str]) -> None:
        """Fail with every missing column named (a configuration error, before the first request)."""
        present = {str(c) for c in columns}
        missing = [c for c in self.required_columns if c not in present]
        if missing:
            raise SyncConfigError(
                f"the source has no column(s) {', '.join(repr(c) for c in missing)} "
                f"(columns found: {', '.join(sorted(present)) or 'none'})"
            )

    # ------------------------------------------------------------------ rows

    def map_row(self, row_number: int, record: Mapping[str, Any]) -> CreditRequest | RowResult:
        """A credit request, or a ``rejected`` :class:`RowResult` whose message names the row and field."""
        identifier: str | None = None
        try:
            identifier = self._text(record, self.id_column, "member identifier", required=True)
            activity_id = self._activity(record)
            num_points = self._points(record)
            activity_date = self._date(record)
            extra_data = self._extra(record)
            if self.dedupe_key_column is not None:
                dedupe_key = self._text(record, self.dedupe_key_column, "dedupe key", required=True)
            else:
                dedupe_key = default_dedupe_key(
                    self.id_type, identifier, activity_id, num_points, activity_date, extra_data
                )
            if self.dedupe_extra_key is not None:
                extra_data = {**(extra_data or {}), self.dedupe_extra_key: dedupe_key}
        except _RowRejected as rej:
            return RowResult.at(
                row_number,
                identifier,
                Outcome.REJECTED,
                rej.message,
                code="invalid_row",
                extra={"field": rej.field},
            )
        return CreditRequest(
            row_number=row_number,
            dedupe_key=dedupe_key,
            user_id=identifier,
            id_type=self.id_type,
            activity_id=activity_id,
            num_points=num_points,
            activity_date=activity_date,
            extra_data=extra_data,
            dedupe_extra_key=self.dedupe_extra_key,
        )

    def _text(self, record: Mapping[str, Any], column: str, what: str, *, required: bool) -> Any:
        try:
            value = to_text(record.get(column))
        except ConversionError as exc:
            raise _RowRejected(column, f"column {column!r} ({what}): {exc}") from None
        if value is MISSING:
            if required:
                raise _RowRejected(column, f"column {column!r} ({what}) is empty")
            return None
        return value

    def _activity(self, record: Mapping[str, Any]) -> str:
        if self.activity_id is not None:
            return self.activity_id
        assert self.activity_id_column is not None
        activity_id = self._text(record, self.activity_id_column, "activity_id", required=True)
        if self.known_activities is not None and activity_id not in self.known_activities:
            raise _RowRejected(
                self.activity_id_column,
                f"column {self.activity_id_column!r}: activity_id {activity_id!r} is not an active "
                f"activity of the program ({self._known_listing()})",
            )
        return activity_id

    def _points(self, record: Mapping[str, Any]) -> int | None:
        column = self.points_column
        if column is None:
            return None
        raw = record.get(column)
        if isinstance(raw, bool):
            raise _RowRejected(
                column, f"column {column!r} (num_points): expected a whole number, got {raw!r}"
            )
        try:
            value = to_int(raw)
        except ConversionError as exc:
            raise _RowRejected(column, f"column {column!r} (num_points): {exc}") from None
        if value is MISSING:
            return None  # the activity's default points
        # A negative count is sent as given: no documented rule refuses it (docs/contract.md).
        return int(value)

    def _date(self, record: Mapping[str, Any]) -> int | None:
        column = self.activity_date_column
        if column is None:
            return None
        try:
            value = to_activity_date(record.get(column))
        except ConversionError as exc:
            raise _RowRejected(column, f"column {column!r} (activity_date): {exc}") from None
        return None if value is MISSING else int(value)

    def _extra(self, record: Mapping[str, Any]) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for column, key in self.extra_data_columns.items():
            try:
                value = to_plain(record.get(column))
            except ConversionError as exc:
                raise _RowRejected(column, f"column {column!r} (extra_data.{key}): {exc}") from None
            if value is not MISSING:
                out[key] = value
        return out or None
