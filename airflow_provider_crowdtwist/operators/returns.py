"""``CrowdTwistReturnOperator``: refunds in the warehouse -> ``POST /return`` (and voids), once per return.

A thin adapter like the purchase operator (``operators/purchase.py``): config, source, POS client,
one call of the engine (``sync.purchases.sync_returns``), its summary as the XCom.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_crowdtwist.assets import RETURNS
from airflow_provider_crowdtwist.operators._pos import CrowdTwistPosOperatorBase
from airflow_provider_crowdtwist.sync.purchases import ReturnSyncConfig, sync_returns
from airflow_provider_crowdtwist.sync.purchases.config import PosSyncConfig


class CrowdTwistReturnOperator(CrowdTwistPosOperatorBase):
    """Send refunds to CrowdTwist as returns (points deducted), and voids of returns (points back).

    Rows are return lines (one item each), grouped by ``return_id`` wherever they are in the source.
    ``return_id`` is the idempotency key, as ``receipt_id`` is for purchases: a "not unique" answer after
    an ambiguous send proves the return landed (``recorded``), on a first send that an earlier run
    recorded it (``skipped``). A line whose ``void_column`` is yes voids the return instead
    (``DELETE /return/{return_id}``, outcome ``voided``); voids are sent after every return of the run.
    Same source, connection and member arguments as :class:`CrowdTwistPurchaseOperator`.

    :param return_id_column: the return's id (default ``return_id``).
    :param return_type_column: CrowdTwist's return type, 1-9 (O:Return); types 4 and 9 take no
        non-member return, which is checked before sending.
    :param original_receipt_id_column: the receipt the items came from; without it a member
        (``user_id_column`` or ``user_attributes``) is required (O:Return).
    :param date_returned_column: the return time (default ``date_returned``), read like
        ``date_purchased``.
    :param void_column: a yes/no column: yes voids the return of that ``return_id``.
    """

    ui_color = "#f4d6d6"
    asset_object = RETURNS

    def __init__(
        self,
        *,
        return_id_column: str = "return_id",
        return_type_column: str | None = None,
        original_receipt_id_column: str | None = None,
        date_returned_column: str = "date_returned",
        void_column: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.return_id_column = return_id_column
        self.return_type_column = return_type_column
        self.original_receipt_id_column = original_receipt_id_column
        self.date_returned_column = date_returned_column
        self.void_column = void_column
        self._validate_arguments()

    def _config_class(self) -> type[PosSyncConfig]:
        return ReturnSyncConfig

    def _own_config(self, parse_time: bool) -> dict[str, Any]:
        return {
            "return_id_column": self.return_id_column,
            "return_type_column": self.return_type_column,
            "original_receipt_id_column": self.original_receipt_id_column,
            "date_returned_column": self.date_returned_column,
            "void_column": self.void_column,
        }

    def execute(self, context: Any) -> dict[str, Any]:
        """Read, group, send returns then voids; return the summary dict (XCom)."""
        return self._run(context, sync_returns, "returns")
