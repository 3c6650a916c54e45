"""429 storm: a program whose real limit is below what the connection says, today's limiter beside it.

Run: ``python benchmarks/rate_limit_storm.py [--rows 3000] [--real-limit 3000] [--configured 10000]
[--latency-ms 100] [--workers 64]``

The sandbox (``SandboxProcess``, its own interpreter) limits the program to ``--real-limit`` requests
a minute and answers 429 past it; the connection says ``--configured``. Each pass is a member sync
of ``--rows`` existing members (one ``PUT`` a row) in a child process of its own, once with
``Retry-After`` on the 429s and once without (the contract leaves open whether CrowdTwist sends it):

* ``baseline``: the package at ``--baseline-rev`` (the plain token bucket: a 429 only pauses);
* ``current``: this working tree (the adaptive limiter).

Columns: rows/s as a share of the real limit, the share of requests answered 429 (counted by the
sandbox), and the rate the limiter learned. Targets (issue 16): >= 97% of the real limit and <= 2% of
requests answered 429, with and without ``Retry-After``. Nothing is asserted; it prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))

from _harness import BASELINE_REV, ROOT, export_baseline, member_rows, print_table, run_child  # noqa: E402

TARGET_SHARE = 0.97
TARGET_429 = 0.02


def make_rows(n: int, generation: int) -> Any:
    return member_rows("storm", n, generation)


def child(args: argparse.Namespace) -> int:
    """One sync in this process; prints one JSON line."""
    import logging

    from airflow_provider_crowdtwist.client.client import CrowdTwistClient
    from airflow_provider_crowdtwist.client.config import ClientConfig
    from airflow_provider_crowdtwist.client.ratelimit import RateLimiter
    from airflow_provider_crowdtwist.sync.members.sync import MemberSyncConfig, sync_members

    config = ClientConfig(
        base_url=args.base_url,
        api_key=args.api_key,
        requests_per_minute=args.configured,
        pool_size=args.workers,
        max_retries=20,
        max_retry_wait=600.0,
    )
    quiet = logging.getLogger("bench.quiet")
    quiet.setLevel(logging.ERROR)
    logging.getLogger("airflow_provider_crowdtwist").setLevel(logging.ERROR)
    limiter = RateLimiter(args.configured)
    with CrowdTwistClient(config, rate_limiter=limiter) as client:
        started = time.perf_counter()
        summary = sync_members(
            client, [make_rows(args.rows, args.generation)], MemberSyncConfig(max_workers=args.workers), quiet
        )
        elapsed = time.perf_counter() - started
    learned = getattr(limiter, "learned_requests_per_minute", None)
    print(
        json.dumps(
            {
                "updated": summary.count("updated"),
                "rows": summary.rows_read,
                "wall_s": elapsed,
                "learned": learned,
            }
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--real-limit", type=int, default=3000, help="the sandbox's limit, requests/min")
    parser.add_argument("--configured", type=int, default=10_000, help="the connection's cap, requests/min")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument(
        "--mode", default=None, help="the sandbox's rate_limit_mode (bucket | window); default: the sandbox's"
    )
    parser.add_argument("--window-s", type=float, default=None, help="the sandbox's rate_limit_window_s")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--api-key", help=argparse.SUPPRESS)
    parser.add_argument("--generation", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    sys.path.insert(0, str(ROOT))
    from airflow_provider_crowdtwist.sandbox.process import SandboxProcess

    results: list[dict[str, Any]] = []
    real_rate = args.real_limit / 60.0
    with tempfile.TemporaryDirectory() as tmp, SandboxProcess() as sandbox:
        admin = sandbox.admin
        baseline_path = export_baseline(args.baseline_rev, Path(tmp))
        common = ["--base-url", sandbox.base_url, "--api-key", sandbox.api_key, "--rows", str(args.rows)]
        # the members exist first (unlimited, not timed): each measured pass is one PUT a row
        run_child(HERE, [*common, "--configured", "0", "--workers", "32"], ROOT)
        generation = 0
        for retry_after in (True, False):
            for label, path in ((f"baseline ({args.baseline_rev})", baseline_path), ("current", ROOT)):
                generation += 1
                # a fresh bucket for every pass: turn the limit off, then on, and let it fill
                admin.set_faults(rate_limit_per_minute=0)
                limit: dict[str, Any] = {"rate_limit_per_minute": args.real_limit, "retry_after": retry_after}
                if args.mode is not None:
                    limit["rate_limit_mode"] = args.mode
                if args.window_s is not None:
                    limit["rate_limit_window_s"] = args.window_s
                admin.set_faults(latency_ms=args.latency_ms, **limit)
                time.sleep(1.5)
                before = admin.stats()
                result = run_child(
                    HERE,
                    [
                        *common,
                        "--configured",
                        str(args.configured),
                        "--workers",
                        str(args.workers),
                        "--generation",
                        str(generation),
                    ],
                    path,
                )
                after = admin.stats()
                requests = after["total"] - before["total"]
                limited = after["by_status"].get("429", 0) - before["by_status"].get("429", 0)
                rate = result["rows"] / result["wall_s"]
                row = {
                    "run": f"{label}, {'with' if retry_after else 'no'} Retry-After",
                    "rows_per_s": rate,
                    "of_real_limit": rate / real_rate,
                    "requests": requests,
                    "answered_429": limited,
                    "share_429": limited / requests if requests else 0.0,
                    "learned_per_min": result["learned"],
                    "updated": result["updated"],
                }
                results.append(row)
                print(f"{row['run']}: {rate:.1f} rows/s, {limited} x 429", file=sys.stderr, flush=True)
    for i in range(0, len(results), 2):
        base, current = results[i], results[i + 1]
        for row in (base, current):
            row["429_vs_baseline"] = row["share_429"] / base["share_429"] if base["share_429"] else None
            row["rate_vs_baseline"] = row["rows_per_s"] / base["rows_per_s"]
            row["meets_target"] = (
                "yes" if row["of_real_limit"] >= TARGET_SHARE and row["share_429"] <= TARGET_429 else "no"
            )
    print_table(
        f"429 storm: {args.rows} rows, real limit {args.real_limit}/min"
        f"{f' ({args.mode})' if args.mode else ''}, configured {args.configured}/min, "
        f"{args.latency_ms:.0f} ms latency, {args.workers} workers; target >= {TARGET_SHARE:.0%} of the real "
        f"limit and <= {TARGET_429:.0%} answered 429",
        [
            ("run", ""),
            ("rows_per_s", ".1f"),
            ("of_real_limit", ".1%"),
            ("requests", "d"),
            ("answered_429", "d"),
            ("share_429", ".2%"),
            ("learned_per_min", ".0f"),
            ("updated", "d"),
            ("rate_vs_baseline", ".2f"),
            ("429_vs_baseline", ".2f"),
            ("meets_target", ""),
        ],
        results,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
