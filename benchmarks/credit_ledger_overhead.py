"""What the credit ledger costs: credit throughput with and without it, and the ledger's own capacity.

Run: ``python benchmarks/credit_ledger_overhead.py [--rows 3000] [--workers 32] [--latency-ms 20]
[--cap-rows 1500]``.

Measured in the same run against the same child-process sandbox (its own interpreter, so the server
does not share the engine's GIL):

* baseline: a bare thread pool calling ``client.credit_activity`` once per row (no engine, no ledger);
* ``sync_credits`` with ``allow_duplicates=True`` (the engine with an in-memory ledger);
* ``sync_credits`` with a ledger file (two commits per credit: the intent, then the result);
* the same with the program's cap of 10,000 requests/min: rows/s against the 166.7/s the cap allows;
* the ledger alone: intent + result pairs per second, 1 thread and 16 threads, against the 166.7/s
  that a 10,000/min sync needs.

Nothing is asserted; it prints a table with the ratio of each figure to its baseline.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd

from airflow_provider_crowdtwist.client.client import CrowdTwistClient
from airflow_provider_crowdtwist.client.config import ClientConfig
from airflow_provider_crowdtwist.client.ratelimit import RateLimiter
from airflow_provider_crowdtwist.sandbox.process import SandboxProcess
from airflow_provider_crowdtwist.sync.credits.ledger import CreditIntent, CreditLedger
from airflow_provider_crowdtwist.sync.credits.sync import CreditSyncConfig, sync_credits

MEMBERS = 500
CAP_PER_S = 10_000 / 60


def make_rows(n: int, tag: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "email": [f"bench{i % MEMBERS}@example.com" for i in range(n)],
            "order_id": [f"{tag}-{i}" for i in range(n)],
            "points": [i % 40 for i in range(n)],
        }
    )


def client_for(sandbox: SandboxProcess, workers: int, cap: int = 0) -> CrowdTwistClient:
    config = ClientConfig(
        base_url=sandbox.base_url,
        api_key=sandbox.api_key,
        requests_per_minute=cap,
        pool_size=max(64, workers),
    )
    return CrowdTwistClient(config, rate_limiter=RateLimiter(cap) if cap else None)


def create_members(sandbox: SandboxProcess) -> None:
    """The ``MEMBERS`` members the benchmark rows credit (``bench{i}@example.com``)."""
    with client_for(sandbox, 16) as client, ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda i: client.create_user(
                    {
                        "first_name": "Bench",
                        "last_name": "Member",
                        "email_address": f"bench{i}@example.com",
                        "postal_code": "10001",
                    }
                ),
                range(MEMBERS),
            )
        )


def baseline(sandbox: SandboxProcess, rows: pd.DataFrame, workers: int) -> float:
    with client_for(sandbox, workers) as client, ThreadPoolExecutor(workers) as pool:
        records = rows.to_dict("records")
        started = time.perf_counter()
        list(
            pool.map(
                lambda r: client.credit_activity(
                    r["email"],
                    "purchase",
                    id_type="email",
                    num_points=r["points"],
                    extra_data={"o": r["order_id"]},
                ),
                records,
            )
        )
        return len(records) / (time.perf_counter() - started)


def quiet_log() -> logging.Logger:
    """A logger that keeps the engine's progress and tables out of the benchmark's output."""
    quiet = logging.getLogger("bench.quiet")
    quiet.setLevel(logging.ERROR)
    return quiet


def bench_config(workers: int, **overrides: Any) -> CreditSyncConfig:
    """The benchmark rows' credit config: one activity, points, the order id as the dedupe key."""
    options: dict[str, Any] = {
        "id_column": "email",
        "activity_id": "purchase",
        "points_column": "points",
        "dedupe_key_column": "order_id",
        "max_workers": workers,
        "progress_interval": 3600,
    }
    return CreditSyncConfig(**{**options, **overrides})


def engine(
    sandbox: SandboxProcess, rows: pd.DataFrame, workers: int, ledger_path: Any, cap: int = 0
) -> float:
    quiet = quiet_log()
    config = bench_config(workers, extra_data_columns=["order_id"], allow_duplicates=ledger_path is None)
    with client_for(sandbox, workers, cap) as client:
        ledger = CreditLedger.open(ledger_path, run_id="bench") if ledger_path is not None else None
        try:
            started = time.perf_counter()
            summary = sync_credits(client, [rows], config, ledger, quiet)
            elapsed = time.perf_counter() - started
        finally:
            if ledger is not None:
                ledger.close()
    assert summary.count("credited") == len(rows), summary.counts
    return len(rows) / elapsed


def ledger_alone(path: pathlib.Path, pairs: int, threads: int) -> float:
    with CreditLedger.open(path, run_id="micro") as ledger:
        per_thread = pairs // threads

        def work(t: int) -> None:
            for i in range(per_thread):
                key = f"t{t}-{i}"
                ledger.mark_pending([CreditIntent(key, "someone@example.com", "purchase", 10)])
                ledger.record(key, "credited")

        started = time.perf_counter()
        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return per_thread * threads / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--cap-rows", type=int, default=1500, help="rows for the pass at 10,000/min")
    parser.add_argument("--ledger-pairs", type=int, default=20_000)
    args = parser.parse_args()

    table: list[tuple[str, float, str, str]] = []
    with SandboxProcess() as sandbox, tempfile.TemporaryDirectory() as tmp:
        create_members(sandbox)
        sandbox.set_faults(latency_ms=args.latency_ms)
        base = baseline(sandbox, make_rows(args.rows, "base"), args.workers)
        table.append(("bare thread pool, no engine, no ledger", base, "1.00", "baseline"))
        mem = engine(sandbox, make_rows(args.rows, "mem"), args.workers, None)
        table.append(
            ("sync_credits, in-memory ledger (allow_duplicates)", mem, f"{mem / base:.2f}", "vs baseline")
        )
        disk = engine(
            sandbox, make_rows(args.rows, "disk"), args.workers, pathlib.Path(tmp) / "ledger.sqlite"
        )
        table.append(("sync_credits, ledger file", disk, f"{disk / base:.2f}", "vs baseline"))
        table.append(("  ledger file vs in-memory ledger", disk, f"{disk / mem:.2f}", "vs in-memory"))
        capped = engine(
            sandbox,
            make_rows(args.cap_rows, "cap"),
            args.workers,
            pathlib.Path(tmp) / "ledger.sqlite",
            cap=10_000,
        )
        table.append(
            (
                "sync_credits, ledger file, cap 10,000/min",
                capped,
                f"{capped / CAP_PER_S:.2f}",
                "vs cap 166.7/s",
            )
        )
        for threads in (1, 16):
            rate = ledger_alone(pathlib.Path(tmp) / f"micro{threads}.sqlite", args.ledger_pairs, threads)
            table.append(
                (
                    f"ledger alone: intent+result pairs, {threads} thread(s)",
                    rate,
                    f"{rate / CAP_PER_S:.0f}",
                    "vs cap 166.7/s",
                )
            )

    print(
        f"\nCredit ledger overhead: {args.rows} rows, {args.workers} workers, "
        f"{args.latency_ms:g} ms latency per request (sandbox in a child process)\n"
    )
    width = max(len(r[0]) for r in table)
    print(f"{'what':<{width}} | {'rows/s':>9} | {'ratio':>6} | against")
    print(f"{'-' * width}-+-{'-' * 9}-+-{'-' * 6}-+-{'-' * 14}")
    for name, rate, ratio, against in table:
        print(f"{name:<{width}} | {rate:>9.1f} | {ratio:>6} | {against}")


if __name__ == "__main__":
    main()
