"""The purchase and return syncs: receipt lines to ``POST /purchase``, refunds to ``POST /return`` and
``DELETE /return/{id}``, exactly once by CrowdTwist's own ids (docs/purchases.md).

``sync_purchases`` / ``sync_returns`` run the plug-in (:class:`~.sync.PosSync`) on the frame.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from airflow_provider_crowdtwist.sync.purchases.config import (
    PosSyncConfig,
    PurchaseSyncConfig,
    ReturnSyncConfig,
)
from airflow_provider_crowdtwist.sync.purchases.sync import PosClient, PosOutcome, PosSync, PosSyncSummary
from airflow_provider_crowdtwist.sync.run import SyncRun

__all__ = [
    "PosOutcome",
    "PosSync",
    "PosSyncConfig",
    "PosSyncSummary",
    "PurchaseSyncConfig",
    "ReturnSyncConfig",
    "sync_purchases",
    "sync_returns",
]


def sync_purchases(
    client: PosClient, chunks: Iterable[Any], config: PurchaseSyncConfig, log: logging.Logger | None = None
) -> PosSyncSummary:
    """Send the receipts the source's lines make; every receipt ends in one outcome."""
    return SyncRun.execute(PosSync(client, config), chunks, log)


def sync_returns(
    client: PosClient, chunks: Iterable[Any], config: ReturnSyncConfig, log: logging.Logger | None = None
) -> PosSyncSummary:
    """Send the returns (and voids) the source's lines make; every return ends in one outcome."""
    return SyncRun.execute(PosSync(client, config), chunks, log)
