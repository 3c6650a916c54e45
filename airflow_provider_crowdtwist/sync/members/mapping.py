"""From a source row to a CrowdTwist member payload, or to a row-level rejection.

Why it is built this way: ``docs/sync-design.md``, section ``sync/members/mapping.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from airflow_provider_crowdtwist.client.config import ID_TYPE_ATTRIBUTES, id_type_problem
from airflow_provider_crowdtwist.sync.attributes import (
    CREATE_REQUIRED,
    CUSTOM_DATA_PREFIX,
    NOT_WITH_US_POSTAL_CODE,
    UPDATE_ONLY_ATTRIBUTES,
    attribute_kind,
    is_attribute,
)
from airflow_provider_crowdtwist.sync.config import validate_config
from airflow_provider_crowdtwist.sync.convert import (
    CONVERTERS,
    MISSING,
    ConversionError,
    DigitsFromNumber,
    is_missing,
    to_plain,
    to_text,
    zero_pad_us_postal_code,
)
from airflow_provider_crowdtwist.sync.outcomes import IDENTIFIER, Outcome, RowResult
from airflow_provider_crowdtwist.sync.summary import SyncConfigError
from airflow_provider_crowdtwist.sync.validation import check_create, check_fields, is_us

#: What a member sync does with each row; what it does with columns the mapping does not name;
#: what a null cell means (leave CrowdTwist's value alone, or clear the field).
MemberMode = Literal["upsert", "insert", "update"]
UnmappedPolicy = Literal["custom_data", "ignore", "error"]
NullValues = Literal["skip", "clear"]
MODES: tuple[str, ...] = get_args(MemberMode)
UNMAPPED_POLICIES: tuple[str, ...] = get_args(UnmappedPolicy)
NULL_VALUES: tuple[str, ...] = get_args(NullValues)

# Error codes of row-level rejections made before any request.
MISSING_IDENTIFIER = "missing_identifier"
INVALID_VALUE = "invalid_value"
CREATE_REQUIREMENTS = "create_requirements"
DUPLICATE_IDENTIFIER = "duplicate_identifier"
#: The attributes that make a member's location (the create rule named "location").
_LOCATION = ("postal_code", "country_code", "city_id", "city_name")

# Documented conversions (docs/contract.md), counted per run and logged once, never per row.
ZERO_PADDED = "postal_code_zero_padded"
US_POSTAL_CODE_ONLY = "us_postal_code_only"
_CONVERSION_NOTES = {
    ZERO_PADDED: (
        "{n} row(s) had a numeric postal_code with fewer digits than a US ZIP; the leading zeros a "
        "numeric column drops were put back (2134 -> 02134, to 5 or 9 digits)"
    ),
    US_POSTAL_CODE_ONLY: (
        "{n} row(s) with country_code US were sent without country_code/city_id/city_name: for US "
        "addresses CrowdTwist takes the postal_code only and refuses a city or country alongside it"
    ),
}


class MemberSyncConfigError(SyncConfigError):
    """A member sync setting (or the source's columns) is wrong; raised before the first request."""


@dataclass(frozen=True)
class _Target:
    column: str
    attribute: str  # "custom_data" for custom keys
    kind: str
    custom_key: str | None = None


@dataclass
class MappedRow:
    """A row that passed mapping and validation: ready to spool and send."""

    row_number: int
    identifier: str
    dedupe_key: str
    payload: dict[str, Any]


@dataclass
class _Plan:
    targets: tuple[_Target, ...]
    ignored: tuple[str, ...]
    unmapped_to_custom: tuple[str, ...]


@dataclass
class MemberMapping:
    """Mapping settings for member rows (``docs/sync-design.md``)."""

    id_column: str = "user_id"
    id_type: str = "email"
    field_mapping: Mapping[str, str] | None = None
    unmapped_columns: UnmappedPolicy = "custom_data"
    mode: MemberMode = "upsert"
    null_values: NullValues = "skip"
    _plans: dict[tuple[str, ...], _Plan] = field(default_factory=dict, repr=False)
    _checked_first: bool = field(default=False, repr=False)
    #: How many rows each documented conversion touched (see :meth:`conversion_notes`).
    conversions: dict[str, int] = field(default_factory=dict, repr=False)

    # ---- configuration ---------------------------------------------------------------------

    def validate(self) -> None:
        """Check the settings that do not depend on the source; raise :class:`MemberSyncConfigError`."""
        if not isinstance(self.id_column, str) or not self.id_column.strip():
            raise MemberSyncConfigError(f"id_column must be a non-empty column name, got {self.id_column!r}")
        problem = id_type_problem(self.id_type)
        if problem:
            raise MemberSyncConfigError(problem, "id_type")
        try:
            validate_config(self)  # the Literal choices (mode, unmapped_columns, null_values)
        except SyncConfigError as exc:
            raise MemberSyncConfigError(str(exc), exc.field) from None
        if self.mode == "insert" and self.id_type == "id":
            # CrowdTwist assigns ``id`` itself; a create cannot carry it, so a later run could not find
            # the member again: inserting by id would create duplicates.
            raise MemberSyncConfigError(
                "id_type 'id' cannot be used with mode 'insert': CrowdTwist assigns ids; use 'update'"
            )
        mapping = self.field_mapping or {}
        if not isinstance(mapping, Mapping):
            raise MemberSyncConfigError(
                "field_mapping must be a mapping of source column -> CrowdTwist attribute, "
                f"got {type(mapping).__name__}"
            )
        seen: dict[str, str] = {}
        for column, attribute in mapping.items():
            if not isinstance(column, str) or not isinstance(attribute, str) or not attribute:
                raise MemberSyncConfigError(
                    f"field_mapping: {column!r} -> {attribute!r} must map text to text"
                )
            if attribute.startswith(CUSTOM_DATA_PREFIX):
                if not attribute[len(CUSTOM_DATA_PREFIX) :]:
                    raise MemberSyncConfigError(
                        f"field_mapping: {column!r} -> {attribute!r} names no custom_data key"
                    )
            elif not is_attribute(attribute):
                raise MemberSyncConfigError(
                    f"field_mapping: column {column!r} maps to {attribute!r}, which is not a CrowdTwist "
                    "member attribute (use 'custom_data.<key>' for custom attributes)"
                )
            if attribute in seen:
                raise MemberSyncConfigError(
                    f"field_mapping: columns {seen[attribute]!r} and {column!r} both map to {attribute!r}"
                )
            seen[attribute] = column

    @property
    def identifier_attribute(self) -> str | None:
        """The attribute that stores the identifier (``email_address`` for ``id_type='email'``)."""
        return ID_TYPE_ATTRIBUTES.get(self.id_type)

    def plan(self, columns: Sequence[str]) -> _Plan:
        """Compile (and cache) the column plan for a chunk's columns; raise on column-level config errors."""
        key = tuple(columns)
        cached = self._plans.get(key)
        if cached is not None:
            return cached
        mapping = dict(self.field_mapping or {})
        present = set(columns)
        if not self._checked_first:
            if self.id_column not in present:
                raise MemberSyncConfigError(
                    f"id_column {self.id_column!r} is not a column of the source (columns: {_list(columns)})"
                )
            missing = [c for c in mapping if c not in present]
            if missing:
                raise MemberSyncConfigError(
                    f"field_mapping names column(s) {_list(missing)} that the source does not have "
                    f"(columns: {_list(columns)})"
                )
            self._checked_first = True
        targets: list[_Target] = []
        ignored: list[str] = []
        unmapped: list[str] = []
        mapped_attrs = set(mapping.values())
        for column in columns:
            if column in mapping:
                attribute = mapping[column]
                if attribute.startswith(CUSTOM_DATA_PREFIX):
                    targets.append(
                        _Target(column, "custom_data", "plain", attribute[len(CUSTOM_DATA_PREFIX) :])
                    )
                else:
                    targets.append(_Target(column, attribute, attribute_kind(attribute) or "plain"))
            elif column == self.id_column:
                continue
            elif is_attribute(column) and column not in mapped_attrs:
                targets.append(_Target(column, column, attribute_kind(column) or "plain"))
            elif self.unmapped_columns == "custom_data":
                targets.append(_Target(column, "custom_data", "plain", column))
                unmapped.append(column)
            elif self.unmapped_columns == "ignore":
                ignored.append(column)
            else:
                unmapped.append(column)
        if self.unmapped_columns == "error" and unmapped:
            raise MemberSyncConfigError(
                f"unmapped_columns='error': column(s) {_list(unmapped)} are neither CrowdTwist attributes "
                "nor in field_mapping"
            )
        # custom_data objects first, then single keys, so that explicit keys win over a whole object.
        targets.sort(key=lambda t: 0 if (t.attribute == "custom_data" and t.custom_key is None) else 1)
        plan = _Plan(tuple(targets), tuple(ignored), tuple(unmapped))
        self._plans[key] = plan
        return plan

    # ---- rows ------------------------------------------------------------------------------

    def column_of(self, attribute: str) -> str | None:
        """The source column an attribute of a payload came from (``custom_data.<key>`` for custom keys)."""
        key = attribute[len(CUSTOM_DATA_PREFIX) :] if attribute.startswith(CUSTOM_DATA_PREFIX) else None
        whole_custom = None
        for plan in list(self._plans.values()):
            for target in plan.targets:
                if key is None and target.custom_key is None and target.attribute == attribute:
                    return target.column
                if key is not None and target.custom_key == key:
                    return target.column
                if target.attribute == "custom_data" and target.custom_key is None:
                    whole_custom = target.column
        if key is not None:
            return whole_custom
        return self.id_column if attribute in (self.identifier_attribute, IDENTIFIER) else None

    def field_label(self, attribute: str) -> str:
        """``attribute (column 'c')`` when the column is named differently, for messages. The create
        rule "location" is about every location column the source has."""
        names = _LOCATION if attribute == "location" else (attribute,)
        columns = [c for c in (self.column_of(a) for a in names) if c is not None]
        if columns in ([], [attribute]):
            return attribute
        listed = ", ".join(repr(c) for c in columns)
        return f"{attribute} (column {listed})" if len(columns) == 1 else f"{attribute} (columns {listed})"

    def dedupe_key(self, identifier: str) -> str:
        """Key under which two rows are the same member (emails compare case-insensitively)."""
        return identifier.lower() if self.id_type == "email" else identifier

    def map_record(self, row_number: int, record: Mapping[str, Any], plan: _Plan) -> MappedRow | RowResult:
        """Map one row to a :class:`MappedRow`, or a ``rejected`` :class:`RowResult` naming row and field."""
        raw_id = record.get(self.id_column)
        try:
            identifier = to_text(raw_id)
        except ConversionError as exc:
            return self._reject(row_number, None, MISSING_IDENTIFIER, f"{self.id_column}: {exc}", None)
        if identifier is MISSING:
            return self._reject(
                row_number, None, MISSING_IDENTIFIER, f"{self.id_column}: the identifier is missing", None
            )
        payload: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        for target in plan.targets:
            value = record.get(target.column)
            try:
                if target.custom_key is not None:
                    converted = to_plain(value)
                else:
                    converted = CONVERTERS[target.kind](value)
            except ConversionError as exc:
                where = (
                    f"custom_data.{target.custom_key}" if target.custom_key is not None else target.attribute
                )
                label = where if where == target.column else f"{where} (column {target.column!r})"
                return self._reject(row_number, identifier, INVALID_VALUE, f"{label}: {exc}", payload)
            if converted is MISSING:
                if not (self.null_values == "clear" and is_missing(value) and _clearable(target)):
                    continue
                converted = None  # null_values="clear": a JSON null clears the field in CrowdTwist
            if target.attribute == "custom_data":
                if target.custom_key is None:
                    custom.update(converted)
                else:
                    custom[target.custom_key] = converted
            else:
                payload[target.attribute] = converted
        if custom:
            payload["custom_data"] = custom
        country = payload.get("country_code")
        if isinstance(country, str):
            payload["country_code"] = country.upper()
        id_attr = self.identifier_attribute
        if id_attr is not None and payload.get(id_attr) is None:
            payload[id_attr] = identifier
        for name in CREATE_REQUIRED:
            if name in payload and payload[name] is None:
                return self._reject(
                    row_number,
                    identifier,
                    INVALID_VALUE,
                    f"{name}: the value is empty, and CrowdTwist requires {name} "
                    "(null_values='clear' cannot clear a required field)",
                    payload,
                )
        self._restore_zip_zeros(payload)
        problem = check_fields(payload)
        if problem:
            name, reason = problem
            return self._reject(
                row_number, identifier, INVALID_VALUE, f"{self.field_label(name)}: {reason}", payload
            )
        self._us_postal_code_only(payload)
        if self.mode == "insert":
            problem = check_create(payload)
            if problem:
                name, reason = problem
                label = self.field_label(name)
                return self._reject(
                    row_number, identifier, CREATE_REQUIREMENTS, f"{label}: {reason}", payload
                )
        return MappedRow(row_number, identifier, self.dedupe_key(identifier), payload)

    def _restore_zip_zeros(self, payload: dict[str, Any]) -> None:
        """A numeric postal code of a US (or country-less, i.e. domestic) member gets its zeros back."""
        postal = payload.get("postal_code")
        if not isinstance(postal, DigitsFromNumber):
            return
        country = payload.get("country_code")
        text = str(postal)
        if country is None or is_us(country):
            padded = zero_pad_us_postal_code(text)
            if padded != text:
                self._note(ZERO_PADDED)
            text = padded
        payload["postal_code"] = text

    def _us_postal_code_only(self, payload: dict[str, Any]) -> None:
        """A US member travels with ``postal_code`` only (O:UserCreate); the rest is left out, counted."""
        if not is_us(payload.get("country_code")):
            return
        for name in NOT_WITH_US_POSTAL_CODE:
            payload.pop(name, None)
        self._note(US_POSTAL_CODE_ONLY)

    def _note(self, conversion: str) -> None:
        self.conversions[conversion] = self.conversions.get(conversion, 0) + 1

    def conversion_notes(self) -> list[str]:
        """One line per documented conversion this run applied, for the log (once per run)."""
        return [_CONVERSION_NOTES[name].format(n=count) for name, count in sorted(self.conversions.items())]

    @staticmethod
    def _reject(
        row_number: int, identifier: str | None, code: str, reason: str, payload: dict[str, Any] | None
    ) -> RowResult:
        return RowResult.at(
            row_number, identifier, Outcome.REJECTED, reason, code=code, payload=payload or None
        )


def _clearable(target: _Target) -> bool:
    """A null may clear a scalar attribute or one custom_data key; never a whole object or a flag
    that only makes sense with a value (``is_active``, ``remove_points``)."""
    if target.custom_key is not None:
        return True
    return target.kind != "object" and target.attribute not in UPDATE_ONLY_ATTRIBUTES


def _list(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in list(names)[:20])
    return shown + (", ..." if len(names) > 20 else "")
