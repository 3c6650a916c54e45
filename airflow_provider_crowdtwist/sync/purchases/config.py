"""The settings of the purchase and return syncs, checked before the first request.

Both syncs read lines (one row per item) and send documents (a receipt, a return) grouped by their
id; what they share -- the member columns, the item mapping, the time zone of offset-less times, the
ledger -- is :class:`PosSyncConfig`. Column names are checked against the source's first chunk by the
mapping (``sync/purchases/mapping.py``); here only what the arguments alone can prove.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_crowdtwist.sync.config import RunConfig
from airflow_provider_crowdtwist.sync.summary import SyncConfigError

#: The keys of ``user_attributes`` CrowdTwist matches, in its order: the first match wins (O:Purchase, CT).
USER_ATTRIBUTE_KEYS: tuple[str, ...] = ("email_address", "phone_number", "third_party_id")
#: The item fields every line carries by default (``item_mapping``): CrowdTwist field -> column.
DEFAULT_ITEM_MAPPING: dict[str, str] = {"sku": "sku", "price": "price", "quantity": "quantity"}
#: Item fields that must be numbers (a non-numeric value rejects the receipt, naming row and column).
NUMERIC_ITEM_FIELDS: tuple[str, ...] = ("price", "quantity")
#: Return types (O:Return): 1-9; for these "non-member returns are not accepted". O:Return lists 4, 5
#: and 9, CT's copy 4 and 9: only what both say is checked before sending (never stricter than CrowdTwist).
RETURN_TYPES: tuple[int, ...] = tuple(range(1, 10))
MEMBER_ONLY_RETURN_TYPES: tuple[int, ...] = (4, 9)


@dataclass(kw_only=True)
class PosSyncConfig(RunConfig):
    """What the purchase and return syncs share (docs/purchases.md)."""

    #: The member's CrowdTwist id (``user_id``); it takes precedence over ``user_attributes`` (O:Return).
    user_id_column: str | None = None
    #: CrowdTwist key -> column (``{"email_address": "email"}``), or a list of columns named as the keys.
    user_attributes: Any = None
    #: Item field -> column; None: ``sku``, ``price``, ``quantity`` from columns of those names.
    item_mapping: Any = None
    #: The zone of a date-time without an offset (an IANA name); sent with its offset.
    timezone: str = "UTC"
    #: An SQLite file of the documents recorded: a rerun skips them without a request.
    ledger_path: Any = None
    #: How often one document is sent again in this run after an ambiguous failure (same id).
    max_resends: int = 3

    def validate_sync(self) -> None:
        self.user_attribute_columns()
        self.item_columns()
        self.zone()
        if self.max_resends < 0:
            raise SyncConfigError(f"max_resends must be >= 0, got {self.max_resends!r}", "max_resends")

    def user_attribute_columns(self) -> dict[str, str]:
        """``user_attributes`` as CrowdTwist key -> column."""
        value = self.user_attributes
        if value is None:
            return {}
        if isinstance(value, str):
            value = [value]
        if isinstance(value, Mapping):
            pairs = {str(k): v for k, v in value.items()}
        elif isinstance(value, Sequence):
            pairs = {str(v): v for v in value}
        else:
            raise SyncConfigError(
                "user_attributes must map CrowdTwist keys to columns, e.g. {'email_address': 'email'}",
                "user_attributes",
            )
        unknown = sorted(set(pairs) - set(USER_ATTRIBUTE_KEYS))
        if unknown:
            raise SyncConfigError(
                f"user_attributes: {', '.join(repr(k) for k in unknown)} is not a member attribute the POS "
                f"host matches; use {', '.join(USER_ATTRIBUTE_KEYS)}",
                "user_attributes",
            )
        for key, column in pairs.items():
            if not isinstance(column, str) or not column:
                raise SyncConfigError(f"user_attributes[{key!r}] must be a column name", "user_attributes")
        return pairs

    def item_columns(self) -> dict[str, str]:
        """``item_mapping`` as item field -> column (``sku``, ``price``, ``quantity`` by default)."""
        value = DEFAULT_ITEM_MAPPING if self.item_mapping is None else self.item_mapping
        if not isinstance(value, Mapping):
            raise SyncConfigError("item_mapping must map item fields to columns", "item_mapping")
        out = {}
        for field, column in value.items():
            if not isinstance(field, str) or not field or not isinstance(column, str) or not column:
                raise SyncConfigError(
                    f"item_mapping: {field!r} -> {column!r} must be a field name and a column name",
                    "item_mapping",
                )
            out[field] = column
        if out and "sku" not in out:
            raise SyncConfigError(
                "item_mapping must name the column of 'sku' (O:Purchase items)", "item_mapping"
            )
        return out

    def zone(self) -> Any:
        """``timezone`` as a ``ZoneInfo``."""
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SyncConfigError(
                f"timezone {self.timezone!r} is not a time zone name (e.g. 'UTC', 'America/New_York')",
                "timezone",
            ) from None


@dataclass(kw_only=True)
class PurchaseSyncConfig(PosSyncConfig):
    """``CrowdTwistPurchaseOperator``'s settings: one receipt per ``receipt_id``."""

    receipt_id_column: str = "receipt_id"
    date_purchased_column: str = "date_purchased"
    total_column: str = "total"
    subtotal_column: str | None = None
    order_id_column: str | None = None
    currency_column: str | None = None


@dataclass(kw_only=True)
class ReturnSyncConfig(PosSyncConfig):
    """``CrowdTwistReturnOperator``'s settings: one return (or one void) per ``return_id``."""

    return_id_column: str = "return_id"
    return_type_column: str | None = None
    original_receipt_id_column: str | None = None
    date_returned_column: str = "date_returned"
    #: A yes/no column: yes voids the return (``DELETE /return/{return_id}``) instead of creating it.
    void_column: str | None = None
