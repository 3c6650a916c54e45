"""``crowdtwist_purchases_sync`` in a real Airflow (``airflow dags test``) against the sandbox's POS host.

The sample warehouse (members) gets the two tables the DAG reads: the day's order lines (shuffled, a
few outside the data interval) and refund lines (returns of some orders, one cancelled refund). What is
asserted is what CrowdTwist ends up with -- each receipt once, its points, the members' balances after
the returns and the void -- and that a rerun of the day sends nothing to the POS host.
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    E2E_API_KEY,
    AirflowEnv,
    WarehouseRows,
    assert_no_secrets,
    explain,
    files_under,
    make_warehouse,
)

pytestmark = pytest.mark.e2e

DAY = "2026-11-21"  # RUN_DATE's data interval (daily, UTC)


def shop_tables(db: Path, members: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = random.Random(3)
    clean = [m["user_id"] for m in members if make_warehouse._is_clean(m)]
    orders: list[dict[str, Any]] = []
    for n in range(60):
        day = DAY if n < 50 else "2026-11-20"  # 10 orders of the day before: not this run's
        items = [(f"SKU{k}", rng.randint(1, 20), rng.randint(1, 2)) for k in range(rng.randint(1, 4))]
        total = sum(p * q for _, p, q in items)
        for sku, price, quantity in items:
            orders.append(
                {
                    "order_id": f"O{n:03d}",
                    "user_email": clean[n % len(clean)],
                    "ordered_at": f"{day} {8 + n % 12:02d}:{n % 60:02d}:00",
                    "order_total": total,
                    "currency": "USD",
                    "sku": sku,
                    "unit_price": price,
                    "quantity": quantity,
                }
            )
    rng.shuffle(orders)
    refunds = []
    for n in range(5):  # one unit of the first line of orders O000..O004, the last one cancelled
        line = next(o for o in orders if o["order_id"] == f"O{n:03d}" and o["sku"] == "SKU0")
        refunds.append(
            {
                "refund_id": f"F{n}",
                "order_id": line["order_id"],
                "refund_type": 1,
                "refunded_at": f"{DAY} 21:00:00",
                "sku": "SKU0",
                "unit_price": line["unit_price"],
                "quantity": 1,
                "cancelled": 0,
            }
        )
    refunds.append({**refunds[-1], "refunded_at": f"{DAY} 22:00:00", "cancelled": 1})
    with sqlite3.connect(db) as conn:
        for table, rows in (("order_lines", orders), ("refund_lines", refunds)):
            columns = list(rows[0])
            conn.execute(f"CREATE TABLE {table} ({', '.join(columns)})")
            conn.executemany(
                f"INSERT INTO {table} VALUES ({', '.join('?' * len(columns))})",
                [tuple(r[c] for c in columns) for r in rows],
            )
    return orders, refunds


def test_purchases_dag_orders_then_refunds_and_a_rerun_sends_nothing(
    airflow_env: AirflowEnv,
    e2e_sandbox: Any,
    sqlite_warehouse: dict[str, str],
    warehouse_rows: WarehouseRows,
    tmp_path: Path,
) -> None:
    db = Path(json.loads(sqlite_warehouse["AIRFLOW_CONN_WAREHOUSE"])["host"])
    orders, refunds = shop_tables(db, warehouse_rows.members)
    connection = {
        "conn_type": "crowdtwist",
        "host": e2e_sandbox.base_url,
        "password": E2E_API_KEY,
        "extra": {"auth_type": "api_key", "pos_host": e2e_sandbox.pos_url},
    }
    env = {
        **sqlite_warehouse,
        "AIRFLOW_CONN_CROWDTWIST_DEFAULT": json.dumps(connection),
        "CROWDTWIST_DEMO_DIR": str(tmp_path),
        "CROWDTWIST_SHOP_TIMEZONE": "America/New_York",
    }
    proc = airflow_env.dags_test("crowdtwist_purchases_sync", extra_env=env)
    assert proc.returncode == 0, explain(proc)

    day = [o for o in orders if o["ordered_at"].startswith(DAY)]
    points: dict[str, int] = {}
    for line in day:
        points[line["order_id"]] = points.get(line["order_id"], 0) + line["unit_price"] * line["quantity"]
    summaries = airflow_env.summaries("crowdtwist_purchases_sync")
    sent = summaries["send_orders"]
    assert sent["counts"]["recorded"] == 50 and sent["rows_read"] == 50 and sent["lines_read"] == len(day)
    stored = {r["receipt_id"]: r for r in e2e_sandbox.admin.pos()["receipts"]}
    assert {k: r["points"] for k, r in stored.items()} == points
    assert all(
        r["date_purchased"].endswith("-05:00") for r in stored.values()
    )  # the shop's zone, in November
    assert all(r["user_id"] is not None for r in stored.values())

    returned = summaries["send_refunds"]
    assert returned["counts"]["recorded"] == 5 and returned["counts"]["voided"] == 1
    pos = e2e_sandbox.admin.pos()
    assert sorted(r["return_id"] for r in pos["returns"]) == ["F0", "F1", "F2", "F3"]
    assert [v["return_id"] for v in pos["voided"]] == ["F4"]
    balances = {m["email_address"]: m["redeemable_points"] for m in e2e_sandbox.admin.members()}
    owed: dict[str, int] = {}
    for line in day:
        owed[line["user_email"]] = owed.get(line["user_email"], 0) + line["unit_price"] * line["quantity"]
    for refund in refunds[:4]:
        email = next(o["user_email"] for o in orders if o["order_id"] == refund["order_id"])
        owed[email] -= refund["unit_price"]  # one unit's share of its line's points; F4 returned, then voided
    assert {e: balances[e] for e in owed} == owed

    requests_before = sum(pos["requests"].values())
    proc = airflow_env.dags_test("crowdtwist_purchases_sync", extra_env=env)
    assert proc.returncode == 0, explain(proc)
    again = airflow_env.summaries("crowdtwist_purchases_sync")
    assert again["send_orders"]["requests_sent"] == 0 and again["send_orders"]["counts"]["skipped"] == 50
    assert again["send_refunds"]["requests_sent"] == 0 and again["send_refunds"]["counts"]["skipped"] == 6
    assert sum(e2e_sandbox.admin.pos()["requests"].values()) == requests_before
    assert_no_secrets(proc.stdout, proc.stderr, json.dumps(again), paths=files_under(tmp_path))
