"""Partitions: one member sync split 4 ways, 4 processes at once against one sandbox with a 10,000/min cap.

Run: ``python benchmarks/partitions.py [--rows 10000] [--partitions 4] [--cap 10000] [--latency-ms 100]
[--workers 16]``

The sandbox (``SandboxProcess``) enforces the cap itself (a leaky bucket, 429 past it), so a partition
that took more than its share would show up as 429s. The members are created first (unlimited, not
timed), so each measured pass is one ``PUT`` a row. Measured in the same run:

* ``baseline``: one process, unpartitioned, at the whole cap -- what one Airflow worker does today;
* ``partitioned``: ``--partitions`` child processes started together, partition ``(i, n)`` each, each
  client paced at ``cap // n`` (``Partition.share``), as mapped tasks on n workers would run.

The combined rate is all rows over the time from the first partition's start to the last one's end.
Targets (issue 16): combined >= 95% of the cap, 0 requests answered 429, and the sandbox's end state
equal to the source. Nothing is asserted; it prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))

from _harness import ROOT, member_rows, print_table, run_child  # noqa: E402

TARGET_SHARE = 0.95


def make_rows(n: int, generation: int) -> Any:
    return member_rows("part", n, generation)


def child(args: argparse.Namespace) -> int:
    """One partition (or the whole sync) in this process; prints one JSON line."""
    import logging

    from airflow_provider_crowdtwist.client.client import CrowdTwistClient
    from airflow_provider_crowdtwist.client.config import ClientConfig
    from airflow_provider_crowdtwist.sync.members.sync import MemberSyncConfig, sync_members
    from airflow_provider_crowdtwist.sync.partition import Partition

    partition = Partition(args.index, args.count) if args.count > 1 else None
    cap = partition.share(args.cap) if partition is not None else args.cap
    config = ClientConfig(
        base_url=args.base_url, api_key=args.api_key, requests_per_minute=cap, pool_size=args.workers
    )
    quiet = logging.getLogger("bench.quiet")
    quiet.setLevel(logging.ERROR)
    rows = make_rows(args.rows, args.generation)
    if args.start_at:
        time.sleep(max(0.0, args.start_at - time.time()))  # all partitions start together
    with CrowdTwistClient(config) as client:
        started = time.time()
        summary = sync_members(
            client, [rows], MemberSyncConfig(max_workers=args.workers, partition=partition), quiet
        )
        ended = time.time()
    print(json.dumps({"summary": summary.to_dict(), "started": started, "ended": ended}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--cap", type=int, default=10_000, help="the program's cap, requests/min")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--workers", type=int, default=16, help="max_workers of each partition")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--api-key", help=argparse.SUPPRESS)
    parser.add_argument("--generation", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    sys.path.insert(0, str(ROOT))
    from airflow_provider_crowdtwist.sandbox.process import SandboxProcess
    from airflow_provider_crowdtwist.sync.partition import combine_summaries

    results: list[dict[str, Any]] = []
    with SandboxProcess() as sandbox:
        admin = sandbox.admin
        common = ["--base-url", sandbox.base_url, "--api-key", sandbox.api_key, "--rows", str(args.rows)]
        run_child(HERE, [*common, "--cap", "0", "--workers", "32"], ROOT)  # create the members, untimed
        for generation, count in ((1, 1), (2, args.partitions)):
            admin.set_faults(rate_limit_per_minute=0)
            admin.set_faults(latency_ms=args.latency_ms, rate_limit_per_minute=args.cap, retry_after=True)
            time.sleep(1.5)
            before = admin.stats()
            start_at = time.time() + 3.0  # time for every child to start and import
            procs = [
                subprocess.Popen(
                    [
                        sys.executable,
                        str(HERE),
                        "--child",
                        *common,
                        "--cap",
                        str(args.cap),
                        "--workers",
                        str(args.workers),
                        "--generation",
                        str(generation),
                        "--index",
                        str(i),
                        "--count",
                        str(count),
                        "--start-at",
                        str(start_at),
                    ],
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for i in range(count)
            ]
            outputs = []
            for proc in procs:
                out, err = proc.communicate(timeout=1800)
                if proc.returncode != 0:
                    raise RuntimeError(f"partition failed:\n{err[-3000:]}")
                outputs.append(json.loads(out.strip().splitlines()[-1]))
            after = admin.stats()
            admin.set_faults(rate_limit_per_minute=0, latency_ms=0)
            combined = combine_summaries(o["summary"] for o in outputs)
            span = max(o["ended"] for o in outputs) - min(o["started"] for o in outputs)
            expected = make_rows(args.rows, generation)
            stored = {m["email_address"]: m.get("last_name") for m in admin.members()}
            matches = sum(
                stored.get(u) == ln for u, ln in zip(expected["user_id"], expected["last_name"], strict=True)
            )
            rate = combined["rows_read"] / span
            limited = after["by_status"].get("429", 0) - before["by_status"].get("429", 0)
            results.append(
                {
                    "run": "baseline: 1 process, whole cap"
                    if count == 1
                    else f"{count} partitions, {count} processes",
                    "rows_per_s": rate,
                    "of_cap": rate / (args.cap / 60.0),
                    "requests": after["total"] - before["total"],
                    "answered_429": limited,
                    "updated": combined["counts"].get("updated", 0),
                    "end_state_equals_source": "yes"
                    if matches == args.rows == len(stored)
                    else f"no ({matches})",
                }
            )
            print(f"{results[-1]['run']}: {rate:.1f} rows/s, {limited} x 429", file=sys.stderr, flush=True)
    base = results[0]
    for row in results:
        row["rate_vs_baseline"] = row["rows_per_s"] / base["rows_per_s"]
        row["meets_target"] = (
            "yes"
            if row["of_cap"] >= TARGET_SHARE
            and row["answered_429"] == 0
            and row["end_state_equals_source"] == "yes"
            else "no"
        )
    print_table(
        f"Partitions: {args.rows} rows, cap {args.cap}/min for the program, {args.latency_ms:.0f} ms "
        "latency, "
        f"{args.workers} workers per process; target >= {TARGET_SHARE:.0%} of the cap combined, 0 x 429, "
        "end state = source",
        [
            ("run", ""),
            ("rows_per_s", ".1f"),
            ("of_cap", ".1%"),
            ("requests", "d"),
            ("answered_429", "d"),
            ("updated", "d"),
            ("end_state_equals_source", ""),
            ("rate_vs_baseline", ".2f"),
            ("meets_target", ""),
        ],
        results,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
