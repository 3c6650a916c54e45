"""Lines to documents: a source row is one item of a receipt (or return); its id groups them.

A line is mapped on its own (:meth:`DocumentMapping.map_line`: its document-level fields, its item, its
first problem naming row and column) and spooled; once the whole source is read, the lines of one id
-- wherever they were in the source -- become one request body (:meth:`DocumentMapping.assemble`), or
one rejection: a line's problem, lines that disagree on a document-level field (naming the columns),
or a rule the contract documents (O:Purchase: ``total`` and ``date_purchased`` are required; O:Return:
without ``original_receipt_id`` a member is required; return types are 1-9).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_provider_crowdtwist.formats import show
from airflow_provider_crowdtwist.sync.convert import MISSING, ConversionError, to_plain, to_text
from airflow_provider_crowdtwist.sync.purchases.config import (
    MEMBER_ONLY_RETURN_TYPES,
    NUMERIC_ITEM_FIELDS,
    RETURN_TYPES,
    PosSyncConfig,
    PurchaseSyncConfig,
    ReturnSyncConfig,
)
from airflow_provider_crowdtwist.sync.purchases.values import (
    to_decimal,
    to_flag,
    to_identifier,
    to_local_datetime,
)
from airflow_provider_crowdtwist.sync.run import RowRef
from airflow_provider_crowdtwist.sync.summary import SyncConfigError

DocumentKind = Literal["purchase", "return", "void"]
#: Documents are sent in phases: receipts and returns first, voids after every return of the run.
PHASE_DOCUMENT, PHASE_VOID = 0, 1
_SHOWN_ROWS = 5
_MEMO_SIZE = 4096


@dataclass(frozen=True)
class Line:
    """One mapped source row: its document's id, its phase, its fields, and its first problem."""

    key: str
    phase: int
    row_number: int
    header: dict[str, Any]
    item: dict[str, Any] | None = None
    problem: str | None = None


@dataclass
class Document:
    """One request: a receipt, a return or a void, from the lines of one id."""

    kind: DocumentKind
    key: str
    row_numbers: list[int]
    body: dict[str, Any]
    #: An earlier run's attempt may have landed (its ledger says ``unknown``): a "not unique" answer
    #: then proves it was recorded, as after an ambiguous attempt of this run.
    earlier_unknown: bool = False
    resends: int = field(default=0, compare=False)

    @property
    def ref(self) -> RowRef:
        return RowRef(
            self.row_numbers[0],
            self.key,
            self.body,
            label=document_label(self.kind, self.key, self.row_numbers),
        )


def document_label(kind: str, key: str, rows: list[int]) -> str:
    """How messages name a document: ``receipt 'R1' (rows 3, 17)``."""
    what = {"purchase": "receipt", "return": "return", "void": "void of return"}[kind]
    shown = ", ".join(str(n) for n in rows[:_SHOWN_ROWS]) + (", ..." if len(rows) > _SHOWN_ROWS else "")
    return f"{what} {key!r} (row{'s' if len(rows) > 1 else ''} {shown})"


def _columns_text(columns: Iterable[str]) -> str:
    listed = sorted(set(columns))
    quoted = ", ".join(repr(c) for c in listed)
    return f"column {quoted}" if len(listed) == 1 else f"columns {quoted}"


class DocumentMapping:
    """The column rules of one purchase or return sync, checked before the first request."""

    def __init__(self, config: PosSyncConfig) -> None:
        self.config = config
        self.zone = config.zone()
        self.items = config.item_columns()
        self.user_attributes = config.user_attribute_columns()
        self.is_return = isinstance(config, ReturnSyncConfig)
        self._memo: dict[tuple[str, str], tuple[Any, ConversionError | None]] = {}
        self.kind: DocumentKind = "return" if self.is_return else "purchase"
        # document field -> (argument, column), in body order
        self.header: dict[str, tuple[str, str]] = {}
        if isinstance(config, PurchaseSyncConfig):
            self.key_field, self.key_argument = "receipt_id", "receipt_id_column"
            self.key_column = config.receipt_id_column
            self._add("date_purchased", "date_purchased_column", config.date_purchased_column)
            self._add("total", "total_column", config.total_column)
            self._add("subtotal", "subtotal_column", config.subtotal_column)
            self._add("order_id", "order_id_column", config.order_id_column)
            self._add("currency", "currency_column", config.currency_column)
            self.void_column: str | None = None
        elif isinstance(config, ReturnSyncConfig):
            self.key_field, self.key_argument = "return_id", "return_id_column"
            self.key_column = config.return_id_column
            self._add("date_returned", "date_returned_column", config.date_returned_column)
            self._add("return_type", "return_type_column", config.return_type_column)
            self._add("original_receipt_id", "original_receipt_id_column", config.original_receipt_id_column)
            self.void_column = config.void_column
        else:  # pragma: no cover - a new sync must say which documents it sends
            raise TypeError(f"no document mapping for {type(config).__name__}")
        self._add("user_id", "user_id_column", config.user_id_column)

    def _add(self, name: str, argument: str, column: str | None) -> None:
        if column is not None:
            self.header[name] = (argument, column)

    # ------------------------------------------------------------------ before the first request

    def check_columns(self, columns: Iterable[Any]) -> None:
        """Every configured column is in the source (the first chunk's columns); else name the argument."""
        present = {str(c) for c in columns}
        wanted = [(self.key_argument, self.key_column)]
        wanted += [(argument, column) for argument, column in self.header.values()]
        wanted += [(f"user_attributes[{k!r}]", c) for k, c in self.user_attributes.items()]
        wanted += [(f"item_mapping[{k!r}]", c) for k, c in self.items.items()]
        if self.void_column is not None:
            wanted.append(("void_column", self.void_column))
        for argument, column in wanted:
            if column not in present:
                raise SyncConfigError(
                    f"{argument}: the source has no column {column!r} (it has {', '.join(sorted(present))})",
                    argument.split("[")[0],
                )

    def column_of(self, name: str) -> str | None:
        """The source column behind a body field (``items.price`` -> the price column), for messages."""
        if name == self.key_field:
            return self.key_column
        if name in self.header:
            return self.header[name][1]
        if name.startswith("user_attributes."):
            return self.user_attributes.get(name.split(".", 1)[1])
        return self.items.get(name.split(".", 1)[1] if name.startswith("items.") else name)

    # ------------------------------------------------------------------ one line

    def map_line(self, row_number: int, record: Mapping[str, Any]) -> Line:
        """The line's id, phase, fields and first problem (``row N: ... (column 'c')``)."""
        problem: str | None = None

        def note(column: str, reason: str) -> None:
            nonlocal problem
            if problem is None:
                problem = f"row {row_number}: {reason} (column {column!r})"

        try:
            key = to_identifier(record.get(self.key_column))
        except ConversionError as exc:
            key = MISSING
            note(self.key_column, str(exc))
        if key is MISSING or key == "":
            note(self.key_column, f"empty {self.key_field}")
            key = ""
        phase = PHASE_DOCUMENT
        if self.void_column is not None:
            try:
                phase = PHASE_VOID if to_flag(record.get(self.void_column)) else PHASE_DOCUMENT
            except ConversionError as exc:
                note(self.void_column, str(exc))
        if phase == PHASE_VOID:  # a void sends only its return_id: nothing else of the line matters
            return Line(key, phase, row_number, {}, None, problem)
        header: dict[str, Any] = {}
        for name, (_, column) in self.header.items():
            try:
                value = self._header_value(name, record.get(column))
            except ConversionError as exc:
                note(column, f"{name}: {exc}")
                continue
            if value is not MISSING:
                header[name] = value
        attributes = {}
        for name, column in self.user_attributes.items():
            try:
                value = to_text(record.get(column))
            except ConversionError as exc:
                note(column, f"user_attributes.{name}: {exc}")
                continue
            if value is not MISSING:
                attributes[name] = value
        if attributes:
            header["user_attributes"] = attributes
        item = self._item(record, note) if self.items else None
        return Line(key, phase, row_number, header, item, problem)

    def _header_value(self, name: str, value: Any) -> Any:
        """A document-level value as sent; text values are remembered (a day's dates repeat a lot)."""
        if type(value) is not str:
            return self._convert_header(name, value)
        key = (name, value)
        cached = self._memo.get(key)
        if cached is None:
            try:
                cached = (self._convert_header(name, value), None)
            except ConversionError as exc:
                cached = (MISSING, exc)
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = cached
        if cached[1] is not None:
            raise ConversionError(str(cached[1]))  # a fresh one: a re-raised one grows its traceback
        return cached[0]

    def _convert_header(self, name: str, value: Any) -> Any:
        if name in ("date_purchased", "date_returned"):
            return to_local_datetime(value, self.zone)
        if name in ("total", "subtotal"):
            return to_decimal(value)
        if name in ("order_id", "original_receipt_id"):
            return to_identifier(value)
        if name == "currency":
            return to_text(value)
        if name == "user_id":
            number = to_decimal(value)
            if number is not MISSING and not isinstance(number, int):
                raise ConversionError(f"{show(value)} is not a CrowdTwist member id (a whole number)")
            return number
        if name == "return_type":
            number = to_decimal(value)
            if number is not MISSING and number not in RETURN_TYPES:
                raise ConversionError(f"{show(value)} is not a return type (1 to 9, O:Return)")
            return number
        return to_plain(value)  # pragma: no cover - every header field is listed above

    def _item(self, record: Mapping[str, Any], note: Any) -> dict[str, Any]:
        item: dict[str, Any] = {}
        for name, column in self.items.items():
            try:
                if name in NUMERIC_ITEM_FIELDS:
                    value = to_decimal(record.get(column))
                elif name == "sku":
                    value = to_identifier(record.get(column))
                else:
                    value = to_plain(record.get(column))
            except ConversionError as exc:
                note(column, f"{name}: {exc}")
                continue
            if value is not MISSING:
                item[name] = value
        if "sku" not in item:
            note(self.items["sku"], "empty sku")
        return item

    # ------------------------------------------------------------------ one document

    def assemble(self, key: str, phase: int, lines: list[Line]) -> Document | tuple[Document, str]:
        """The lines of one id as a :class:`Document`, or ``(document, why it is rejected)``."""
        rows = [line.row_number for line in lines]
        kind: DocumentKind = "void" if phase == PHASE_VOID else self.kind
        if kind == "void":
            return self._checked(Document(kind, key, rows, {"return_id": key}), lines)
        header = dict(lines[0].header)
        disagree = set()
        for line in lines[1:]:
            for name in set(header) | set(line.header):
                if header.get(name) != line.header.get(name):
                    disagree.add(name)
        body: dict[str, Any] = {self.key_field: key}
        body.update(header)
        if self.items:
            body["items"] = [line.item for line in lines if line.item is not None]
        document = Document(kind, key, rows, body)
        checked = self._checked(document, lines)
        if isinstance(checked, tuple):
            return checked
        if disagree:
            columns = [self._column_named(name) for name in disagree]
            what = "return" if self.is_return else "receipt"
            return document, (
                f"its lines disagree on {_columns_text(columns)}: a {what} has one value of each "
                "(which one is right cannot be told)"
            )
        missing = self._required_missing(body)
        if missing:
            return document, missing
        return document

    def _column_named(self, name: str) -> str:
        if name == "user_attributes":
            return "/".join(self.user_attributes.values())
        return self.header[name][1]

    @staticmethod
    def _checked(document: Document, lines: list[Line]) -> Document | tuple[Document, str]:
        problems = [line.problem for line in lines if line.problem]
        if not problems:
            return document
        more = f"; and {len(problems) - 1} more problem(s) in its lines" if len(problems) > 1 else ""
        return document, problems[0] + more

    def _required_missing(self, body: dict[str, Any]) -> str | None:
        """The documented rules a body must meet before it is sent (none stricter than CrowdTwist)."""
        if not self.is_return:
            for name in ("date_purchased", "total"):  # "required" (O:Purchase)
                if name not in body:
                    return f"empty {name} (column {self.header[name][1]!r}): O:Purchase requires it"
            return None
        member = "user_id" in body or "user_attributes" in body
        if "original_receipt_id" not in body and not member:
            return_type = body.get("return_type")
            if return_type in MEMBER_ONLY_RETURN_TYPES:
                return (
                    f"return type {return_type} does not accept non-member returns (O:Return) and the "
                    "return names no member and no original receipt"
                )
            return (
                "a return without original_receipt_id needs a member: user_id or user_attributes "
                "(O:Return: 'at least one user_attribute field is required')"
            )
        return None
