"""``CrowdTwistPurchaseOperator``: receipt lines in the warehouse -> ``POST /purchase``, once per receipt.

A thin adapter: arguments to a ``PurchaseSyncConfig``, the source to chunks, the POS client from the
hook, one call of the engine (``sync.purchases.sync_purchases``); its summary (counts by outcome:
``recorded``, ``skipped``, ``rejected``, ``failed``, ``unknown``) is the XCom, never rows.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_crowdtwist.assets import PURCHASES
from airflow_provider_crowdtwist.operators._pos import CrowdTwistPosOperatorBase
from airflow_provider_crowdtwist.sync.purchases import PurchaseSyncConfig, sync_purchases
from airflow_provider_crowdtwist.sync.purchases.config import PosSyncConfig


class CrowdTwistPurchaseOperator(CrowdTwistPosOperatorBase):
    """Send the orders of a source to CrowdTwist as purchases: points for receipts, each exactly once.

    Rows are receipt lines (one item each); the lines of one ``receipt_id`` are grouped wherever they
    are in the source and sent as one receipt. ``receipt_id`` is CrowdTwist's idempotency key, so a
    receipt whose send was ambiguous is sent again with the same id, and CrowdTwist's "not unique"
    answer proves it landed (``recorded``), or that an earlier run recorded it (``skipped``).

    Source (exactly one): ``sql`` + ``sql_conn_id``, ``rows``, or ``source_path`` (as the other syncs).
    The connection needs the extra ``pos_host`` (the POS base URL) and an API key (the POS host takes no
    HMAC). Details: docs/purchases.md.

    :param receipt_id_column: the receipt's id (default ``receipt_id``); an empty one rejects the line.
    :param user_id_column: the member's CrowdTwist id (it takes precedence over ``user_attributes``).
    :param user_attributes: the member by attributes: ``{"email_address": "email_column",
        "phone_number": ..., "third_party_id": ...}`` (CrowdTwist matches them in that order), or a
        list of columns named as the keys. Neither: the receipt is stored without a member.
    :param date_purchased_column: the purchase time (default ``date_purchased``): ISO-8601 text or a
        timestamp column; without an offset it is read in ``timezone`` and sent with the offset.
    :param total_column: the receipt's total (default ``total``); ``subtotal_column``,
        ``order_id_column``, ``currency_column``: optional.
    :param item_mapping: item field -> column (default ``{"sku": "sku", "price": "price",
        "quantity": "quantity"}``); ``price`` and ``quantity`` must be numbers.
    :param timezone: the zone of offset-less times (default ``UTC``; an IANA name). Templated.
    :param ledger_path: an SQLite file of the receipts recorded (local or object storage): a rerun
        skips them without a request. Templated.
    :param max_resends: sends of one receipt after an ambiguous failure, in one run (default 3).
    """

    ui_color = "#d9f0d3"
    asset_object = PURCHASES

    def __init__(
        self,
        *,
        receipt_id_column: str = "receipt_id",
        date_purchased_column: str = "date_purchased",
        total_column: str = "total",
        subtotal_column: str | None = None,
        order_id_column: str | None = None,
        currency_column: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.receipt_id_column = receipt_id_column
        self.date_purchased_column = date_purchased_column
        self.total_column = total_column
        self.subtotal_column = subtotal_column
        self.order_id_column = order_id_column
        self.currency_column = currency_column
        self._validate_arguments()

    def _config_class(self) -> type[PosSyncConfig]:
        return PurchaseSyncConfig

    def _own_config(self, parse_time: bool) -> dict[str, Any]:
        return {
            "receipt_id_column": self.receipt_id_column,
            "date_purchased_column": self.date_purchased_column,
            "total_column": self.total_column,
            "subtotal_column": self.subtotal_column,
            "order_id_column": self.order_id_column,
            "currency_column": self.currency_column,
        }

    def execute(self, context: Any) -> dict[str, Any]:
        """Read, group, send; return the summary dict (XCom)."""
        return self._run(context, sync_purchases, "receipts")
