"""Shared pieces of the purchase and return integration tests: members, orders, clients, the truth.

The truth is the sandbox's POS ledger (``GET /_admin/pos``): receipts stored once each by id, the
points each moved, and how many requests named each id.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow_provider_crowdtwist.client.config import ClientConfig
from airflow_provider_crowdtwist.client.pos import CrowdTwistPosClient
from tests.conftest import FAST_RETRIES

MEMBERS = 40


def pos_client(sandbox: Any, **overrides: Any) -> CrowdTwistPosClient:
    """A POS client for the sandbox's ``/pos`` host (fast retries; the caller closes it)."""
    options: dict[str, Any] = {"base_url": sandbox.base_url, "api_key": sandbox.api_key, **FAST_RETRIES}
    options.update(overrides)
    return CrowdTwistPosClient(ClientConfig(**options), sandbox.pos_url)


def create_members(client: Any, n: int = MEMBERS) -> list[str]:
    emails = [f"buyer{i}@example.com" for i in range(n)]

    def make(email: str) -> None:
        client.create_user(
            {"first_name": "Test", "last_name": "Buyer", "email_address": email, "postal_code": "02134"}
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(make, emails))
    return emails


def order_lines(
    receipts: int, emails: list[str], *, seed: int = 7, prefix: str = "R"
) -> list[dict[str, Any]]:
    """``receipts`` receipts of 1-5 lines each, shuffled: a receipt's lines are spread over the source.

    Prices are whole units so that every rounding reading gives the same points per line.
    """
    rng = random.Random(seed)
    lines = []
    for n in range(receipts):
        receipt_id = f"{prefix}{n:06d}"
        count = rng.randint(1, 5)
        items = [
            (f"SKU{rng.randint(1, 30)}-{k}", rng.randint(1, 40), rng.randint(1, 3)) for k in range(count)
        ]
        total = sum(price * quantity for _, price, quantity in items)
        for sku, price, quantity in items:
            lines.append(
                {
                    "receipt_id": receipt_id,
                    "email": emails[n % len(emails)],
                    "date_purchased": f"2026-12-07 {9 + n % 10:02d}:{n % 60:02d}:00",
                    "total": total,
                    "sku": sku,
                    "price": price,
                    "quantity": quantity,
                }
            )
    rng.shuffle(lines)
    return lines


def expected_points(lines: list[dict[str, Any]]) -> dict[str, int]:
    """Points per receipt at the sandbox's default rate (1 per unit, whole prices)."""
    out: dict[str, int] = {}
    for line in lines:
        out[line["receipt_id"]] = out.get(line["receipt_id"], 0) + line["price"] * line["quantity"]
    return out


def pos_ledger(sandbox: Any) -> dict[str, Any]:
    return sandbox.admin.pos()


def receipts_by_id(sandbox: Any) -> dict[str, dict[str, Any]]:
    return {r["receipt_id"]: r for r in pos_ledger(sandbox)["receipts"]}
