"""Member sync throughput against a sandbox with simulated latency: rows/s and requests/row.

Run: ``python benchmarks/member_sync_throughput.py [--rows 10000] [--workers 1,8,32,64]
[--latency-ms 100] [--cap 10000] [--baseline-rows 1000] [--engine-rows 100000]``.

What it measures, all in the same run against the same child-process sandbox (its own interpreter,
so the engine and the server do not share a GIL):

* the members are created once first (at zero latency, not timed), so every measured pass is the
  steady state of a nightly sync: one ``PUT`` per row (``upsert`` on existing members);
* for each ``max_workers``: rows/s, requests/row (counted by the sandbox), and the achievable limit
  ``min(cap/60, workers / latency)`` beside it, with the ratio measured/limit;
* the engine alone (no network: a client that answers at once), on ``--engine-rows`` rows -- its
  per-row cost, which must stay far below what the rate cap allows;
* a plain sequential ``requests`` loop (one PUT per row, one session), on ``--baseline-rows`` rows
  -- its rate does not depend on the row count, and 10,000 rows at 100 ms would take 17 minutes.

The target from the issue: at 64 workers, 100 ms latency and a 10,000/min cap, >= 90% of the cap.
Nothing here is asserted; it prints a table.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

import pandas as pd
import requests

from airflow_provider_crowdtwist.client.client import CrowdTwistClient
from airflow_provider_crowdtwist.client.config import ClientConfig
from airflow_provider_crowdtwist.client.ratelimit import RateLimiter
from airflow_provider_crowdtwist.sandbox.process import SandboxProcess
from airflow_provider_crowdtwist.sync.members.sync import MemberSyncConfig, sync_members


def make_rows(n: int, generation: int) -> pd.DataFrame:
    """``n`` members; ``generation`` changes a field so that each pass really updates something."""
    return pd.DataFrame(
        {
            "user_id": [f"bench{i}@example.com" for i in range(n)],
            "first_name": [f"First{i}" for i in range(n)],
            "last_name": [f"Last{generation}" for _ in range(n)],
            "postal_code": ["10001"] * n,
            "date_of_birth": ["1985-06-15"] * n,
        }
    )


def run_sync(base_url: str, api_key: str, rows: pd.DataFrame, workers: int, cap: int) -> tuple[float, Any]:
    config = ClientConfig(
        base_url=base_url, api_key=api_key, requests_per_minute=cap, pool_size=max(64, workers)
    )
    with CrowdTwistClient(config, rate_limiter=RateLimiter(cap)) as client:
        quiet = logging.getLogger("bench.quiet")
        quiet.setLevel(logging.WARNING)
        started = time.perf_counter()
        summary = sync_members(
            client, [rows], MemberSyncConfig(max_workers=workers, progress_interval=30.0), quiet
        )
        return time.perf_counter() - started, summary


class NullClient:
    """Answers every update instantly: what is left is the engine's own per-row cost."""

    class config:  # mimics the ClientConfig attributes the engine reads
        id_type = "email"
        api_key = None
        hmac_private_key = None

    requests_sent = 0

    def update_user(self, user_id: str, fields: Any, id_type: str | None = None) -> dict:
        return {}


def engine_ceiling(n: int, workers: int = 16) -> float:
    """rows/s of the whole engine (read, map, validate, spool, threads, accounting) with no network."""
    quiet = logging.getLogger("bench.quiet")
    quiet.setLevel(logging.WARNING)
    started = time.perf_counter()
    sync_members(NullClient(), [make_rows(n, 0)], MemberSyncConfig(max_workers=workers), quiet)
    return n / (time.perf_counter() - started)


def sequential_baseline(base_url: str, api_key: str, n: int) -> float:
    """rows/s of the obvious loop: one session, one PUT after another."""
    session = requests.Session()
    session.headers["X-CT-Authorization"] = f"CTApiKey {api_key}"
    started = time.perf_counter()
    for i in range(n):
        response = session.put(
            f"{base_url}/v2/users/bench{i}@example.com",
            params={"id_type": "email"},
            json={"first_name": f"First{i}", "last_name": "Baseline"},
            timeout=30,
        )
        response.raise_for_status()
    session.close()
    return n / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--workers", default="1,8,32,64", help="comma-separated max_workers values")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--cap", type=int, default=10_000, help="requests per minute (the program's cap)")
    parser.add_argument(
        "--baseline-rows", type=int, default=1_000, help="rows for the sequential loop (0: skip)"
    )
    parser.add_argument(
        "--engine-rows", type=int, default=100_000, help="rows for the no-network engine ceiling (0: skip)"
    )
    args = parser.parse_args(argv)
    workers_list = [int(w) for w in args.workers.split(",") if w.strip()]
    latency = args.latency_ms / 1000.0

    with SandboxProcess() as sandbox:
        admin = sandbox.admin
        # create the members once, fast, so every measured pass is one PUT per row
        run_sync(sandbox.base_url, sandbox.api_key, make_rows(args.rows, 0), 32, 0)
        admin.set_faults(latency_ms=args.latency_ms)
        results: list[tuple[str, float, float, float, str]] = []
        baseline_rate = None
        if args.baseline_rows > 0:
            total_before = admin.stats()["total"]
            baseline_rate = sequential_baseline(
                sandbox.base_url, sandbox.api_key, min(args.baseline_rows, args.rows)
            )
            per_row = (admin.stats()["total"] - total_before) / min(args.baseline_rows, args.rows)
            limit = 1 / latency if latency > 0 else float("inf")
            results.append(("sequential requests loop", baseline_rate, per_row, limit, "-"))
            print(f"baseline: {baseline_rate:.1f} rows/s", file=sys.stderr, flush=True)
        for generation, workers in enumerate(workers_list, start=1):
            total_before = admin.stats()["total"]
            elapsed, summary = run_sync(
                sandbox.base_url, sandbox.api_key, make_rows(args.rows, generation), workers, args.cap
            )
            per_row = (admin.stats()["total"] - total_before) / args.rows
            rate = summary.rows_read / elapsed
            cap_rate = args.cap / 60.0 if args.cap > 0 else float("inf")
            limit = min(cap_rate, workers / latency if latency > 0 else float("inf"))
            note = "" if summary.count("updated") == args.rows else f" (updated {summary.count('updated')})"
            results.append((f"sync_members, {workers} workers{note}", rate, per_row, limit, ""))
            print(f"{workers} workers: {rate:.1f} rows/s in {elapsed:.1f}s", file=sys.stderr, flush=True)

    if args.engine_rows > 0:
        ceiling = engine_ceiling(args.engine_rows)
        results.append(
            (f"engine alone, no network ({args.engine_rows} rows)", ceiling, 0.0, float("inf"), "")
        )

    print()
    print(
        f"Member sync throughput: {args.rows} rows, {args.latency_ms:.0f} ms latency, "
        f"cap {args.cap}/min ({args.cap / 60:.1f}/s)"
    )
    header = f"{'run':<40} {'rows/s':>9} {'req/row':>8} {'limit/s':>9} {'% limit':>8} {'x baseline':>11}"
    print(header)
    print("-" * len(header))
    for name, rate, per_row, limit, _ in results:
        pct = f"{100 * rate / limit:.1f}%" if limit not in (0, float("inf")) else "-"
        vs = f"{rate / baseline_rate:.1f}x" if baseline_rate else "-"
        print(f"{name:<40} {rate:>9.1f} {per_row:>8.3f} {limit:>9.1f} {pct:>8} {vs:>11}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
