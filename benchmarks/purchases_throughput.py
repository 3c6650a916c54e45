"""Purchase sync throughput at the program's cap: receipts/min against a sandbox with 100 ms latency.

Run: ``python benchmarks/purchases_throughput.py [--receipts 5000] [--workers 64] [--latency-ms 100]
[--cap 10000]``.

A child-process sandbox (its own interpreter: the engine and the server do not share a GIL) answers
every POS request after ``--latency-ms``; the sync sends ``--receipts`` receipts of 1-5 lines each,
shuffled in the source, through one client paced at ``--cap`` requests/min. Printed, all from the same
run: the whole run's receipts/min (reading, grouping and sending), the sending phase's (first request to
last answer, as the sandbox saw them), requests per receipt, and both as a share of the cap. The target
from the issue: >= 97% of a 10,000/min cap at 100 ms. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd

from airflow_provider_crowdtwist.client.client import CrowdTwistClient
from airflow_provider_crowdtwist.client.config import ClientConfig
from airflow_provider_crowdtwist.client.pos import CrowdTwistPosClient
from airflow_provider_crowdtwist.client.ratelimit import RateLimiter
from airflow_provider_crowdtwist.sandbox.process import SandboxProcess
from airflow_provider_crowdtwist.sync.purchases import PurchaseSyncConfig, sync_purchases


def order_lines(receipts: int, members: int, seed: int = 1) -> pd.DataFrame:
    rng = random.Random(seed)
    lines = []
    for n in range(receipts):
        items = rng.randint(1, 5)
        prices = [rng.randint(1, 50) for _ in range(items)]
        for k, price in enumerate(prices):
            lines.append(
                {
                    "receipt_id": f"B{n:07d}",
                    "email": f"bench{n % members}@example.com",
                    "date_purchased": "2026-12-07 10:00:00",
                    "total": sum(prices),
                    "sku": f"SKU-{k}",
                    "price": price,
                    "quantity": 1,
                }
            )
    rng.shuffle(lines)
    return pd.DataFrame(lines)


def create_members(base_url: str, api_key: str, members: int) -> None:
    with CrowdTwistClient(ClientConfig(base_url=base_url, api_key=api_key, requests_per_minute=0)) as client:

        def make(i: int) -> None:
            client.create_user(
                {
                    "first_name": "B",
                    "last_name": "M",
                    "email_address": f"bench{i}@example.com",
                    "postal_code": "10001",
                }
            )

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(make, range(members)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--receipts", type=int, default=5_000)
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--cap", type=int, default=10_000, help="requests per minute (the program's cap)")
    args = parser.parse_args(argv)
    lines = order_lines(args.receipts, args.members)
    with SandboxProcess() as sandbox:
        create_members(sandbox.base_url, sandbox.api_key, args.members)
        sandbox.admin.set_faults(latency_ms=args.latency_ms)
        config = ClientConfig(
            base_url=sandbox.base_url,
            api_key=sandbox.api_key,
            requests_per_minute=args.cap,
            pool_size=max(64, args.workers),
        )
        quiet = logging.getLogger("bench.quiet")
        quiet.setLevel(logging.WARNING)
        with Timed(config, sandbox.pos_url, rate_limiter=RateLimiter(args.cap)) as client:
            started = time.perf_counter()
            summary = sync_purchases(
                client,
                [lines[i : i + 10_000] for i in range(0, len(lines), 10_000)],
                PurchaseSyncConfig(
                    user_attributes={"email_address": "email"},
                    max_workers=args.workers,
                    progress_interval=60.0,
                ),
                quiet,
            )
            elapsed = time.perf_counter() - started
        stats = sandbox.admin.stats()
        sent = int(stats["by_route"].get("POST /purchase", 0))
        stored = len(sandbox.admin.pos()["receipts"])
    cap_per_min = float(args.cap)
    whole = summary.rows_read / elapsed * 60
    sending = sent / max(client.last - client.first, 1e-9) * 60
    before_first = client.first - started
    load = os.getloadavg()
    print(
        f"Purchase sync: {args.receipts} receipts ({len(lines)} lines), {args.workers} workers, "
        f"{args.latency_ms:.0f} ms latency, cap {args.cap}/min; "
        f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"{'measure':<44} {'value':>12} {'% of cap':>9}")
    print(
        f"{'receipts/min, whole run (read+group+send)':<44} {whole:>12.0f} {100 * whole / cap_per_min:>8.1f}%"
    )
    print(f"{'requests/min, sending phase':<44} {sending:>12.0f} {100 * sending / cap_per_min:>8.1f}%")
    print(f"{'before the first request (read, spool), s':<44} {before_first:>12.2f}")
    print(f"{'wall time, s':<44} {elapsed:>12.2f}")
    print(f"{'requests per receipt':<44} {sent / max(summary.rows_read, 1):>12.3f}")
    print(f"{'outcomes':<44} {summary.counts['recorded']:>12} recorded, {stored} stored by the sandbox")
    return 0


class Timed(CrowdTwistPosClient):
    """The POS client, noting when the first purchase left and the last answer came (the sending phase)."""

    first = math.inf
    last = 0.0

    def purchase(self, body: Any) -> dict[str, Any]:
        started = time.perf_counter()
        self.first = min(self.first, started)  # a race between workers moves it by microseconds only
        try:
            return super().purchase(body)
        finally:
            self.last = max(self.last, time.perf_counter())


if __name__ == "__main__":
    raise SystemExit(main())
