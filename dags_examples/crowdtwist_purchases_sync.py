"""Daily points for orders: members first, then the day's orders as purchases, then the day's refunds.

    sync_members  ->  send_orders  ->  send_refunds

* ``sync_members``: the member sync (as in ``crowdtwist_loyalty_sync``), so that a purchase names a
  member CrowdTwist knows -- a receipt whose member is not found is stored without points.
* ``send_orders``: the day's order lines (one row per item, the run's data interval) sent as purchases
  to the POS host, grouped by ``order_id`` wherever the lines come in the query. ``receipt_id`` is
  CrowdTwist's own idempotency key: a retry, a rerun of the day or a worker killed mid-run never awards
  a receipt twice, and the ledger makes a rerun send nothing at all.
* ``send_refunds``: the day's refund lines sent as returns (points deducted, by the original receipt),
  and refunds cancelled in the shop (``cancelled``) as voids of their return (points credited back).

The CrowdTwist connection needs the extra ``pos_host`` (the POS base URL,
``https://{env}pos{client_id}.crowdtwist.com``) and an API key: the POS host takes no HMAC.

=================================  ==========================  ==============================
variable                           default                     what
=================================  ==========================  ==============================
``CROWDTWIST_CONN_ID``             ``crowdtwist_default``      the CrowdTwist connection
``CROWDTWIST_WAREHOUSE_CONN_ID``   ``warehouse``               any common.sql connection
``CROWDTWIST_DEMO_DIR``            ``/tmp/crowdtwist-demo``    where rejects and the ledgers go
``CROWDTWIST_SHOP_TIMEZONE``       ``America/New_York``        the zone of the shop's clock
=================================  ==========================  ==============================
"""

from __future__ import annotations

import os

import pendulum
from airflow.timetables.interval import CronDataIntervalTimetable

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG

from airflow_provider_crowdtwist.operators.purchase import CrowdTwistPurchaseOperator
from airflow_provider_crowdtwist.operators.returns import CrowdTwistReturnOperator
from airflow_provider_crowdtwist.operators.user_sync import CrowdTwistUserSyncOperator

CROWDTWIST_CONN_ID = os.environ.get("CROWDTWIST_CONN_ID", "crowdtwist_default")
WAREHOUSE_CONN_ID = os.environ.get("CROWDTWIST_WAREHOUSE_CONN_ID", "warehouse")
WORK_DIR = os.environ.get("CROWDTWIST_DEMO_DIR", "/tmp/crowdtwist-demo")
SHOP_TIMEZONE = os.environ.get("CROWDTWIST_SHOP_TIMEZONE", "America/New_York")

MEMBERS_SQL = """
SELECT user_id, first_name, last_name, postal_code, country_code, city_name
FROM members
ORDER BY updated_at, user_id
"""
# One row per order line; the shop's clock has no offset, hence ``timezone`` below.
ORDERS_SQL = """
SELECT order_id, user_email, ordered_at, order_total, currency, sku, unit_price, quantity
FROM order_lines
WHERE ordered_at >= '{{ data_interval_start.strftime("%Y-%m-%d %H:%M:%S") }}'
  AND ordered_at <  '{{ data_interval_end.strftime("%Y-%m-%d %H:%M:%S") }}'
"""
REFUNDS_SQL = """
SELECT refund_id, order_id, refund_type, refunded_at, sku, unit_price, quantity, cancelled
FROM refund_lines
WHERE refunded_at >= '{{ data_interval_start.strftime("%Y-%m-%d %H:%M:%S") }}'
  AND refunded_at <  '{{ data_interval_end.strftime("%Y-%m-%d %H:%M:%S") }}'
"""
ITEMS = {"sku": "sku", "price": "unit_price", "quantity": "quantity"}

with DAG(
    dag_id="crowdtwist_purchases_sync",
    description="Members, then the day's orders as purchases, then the day's refunds as returns",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # runs share the ledgers
    tags=["crowdtwist", "example"],
    doc_md=__doc__,
) as dag:
    sync_members = CrowdTwistUserSyncOperator(
        task_id="sync_members",
        crowdtwist_conn_id=CROWDTWIST_CONN_ID,
        sql=MEMBERS_SQL,
        sql_conn_id=WAREHOUSE_CONN_ID,
        id_column="user_id",
        id_type="email",
        max_failed_ratio=0.05,
        rejects_path=f"{WORK_DIR}/rejects/shop-members-{{{{ ds }}}}.jsonl",
    )

    send_orders = CrowdTwistPurchaseOperator(
        task_id="send_orders",
        crowdtwist_conn_id=CROWDTWIST_CONN_ID,
        sql=ORDERS_SQL,
        sql_conn_id=WAREHOUSE_CONN_ID,
        receipt_id_column="order_id",
        order_id_column="order_id",
        user_attributes={"email_address": "user_email"},
        date_purchased_column="ordered_at",
        total_column="order_total",
        currency_column="currency",
        item_mapping=ITEMS,
        timezone=SHOP_TIMEZONE,
        ledger_path=f"{WORK_DIR}/state/receipts.sqlite",
        rejects_path=f"{WORK_DIR}/rejects/orders-{{{{ ds }}}}.jsonl",
        max_failed_ratio=0.02,
    )

    send_refunds = CrowdTwistReturnOperator(
        task_id="send_refunds",
        crowdtwist_conn_id=CROWDTWIST_CONN_ID,
        sql=REFUNDS_SQL,
        sql_conn_id=WAREHOUSE_CONN_ID,
        return_id_column="refund_id",
        original_receipt_id_column="order_id",
        return_type_column="refund_type",
        date_returned_column="refunded_at",
        void_column="cancelled",
        item_mapping=ITEMS,
        timezone=SHOP_TIMEZONE,
        ledger_path=f"{WORK_DIR}/state/returns.sqlite",
        rejects_path=f"{WORK_DIR}/rejects/refunds-{{{{ ds }}}}.jsonl",
        max_failed_ratio=0.02,
    )

    sync_members >> send_orders >> send_refunds
