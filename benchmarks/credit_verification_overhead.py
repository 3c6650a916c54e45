"""What verifying credits costs: activity-history requests per credit at 0%, 1% and 5% ambiguous answers.

Run: ``python benchmarks/credit_verification_overhead.py [--rows 3000] [--workers 32] [--latency-ms 20]
[--verify-delay 1.5] [--award-lag 0.5]``.

Measured in the same run against the same child-process sandbox (its own interpreter), with no
duplicate detection at all (``dedupe_window_s=0``, the reading under which a blind resend would award
twice) and awards applied after ``--award-lag`` seconds:

* baseline: a bare thread pool calling ``client.credit_activity`` once per row (no engine, no ledger,
  no verification) -- the bare credit rate;
* ``sync_credits`` with a ledger file at 0%, 1% and 5% ambiguous answers on the credit route; half of
  them applied-then-503 (the credit landed: found in the history, not resent), half 503 before anything
  was applied (absent: resent with the same key). For each: history requests per credit and per
  ambiguous credit, resends, wall time (which includes one settle delay whenever anything was
  ambiguous), and that every key was awarded exactly once.

Nothing is asserted beyond the exactly-once check; it prints a table.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import tempfile
import time

import pandas as pd
from credit_ledger_overhead import baseline, bench_config, client_for, create_members, make_rows, quiet_log

from airflow_provider_crowdtwist.sandbox.process import SandboxProcess
from airflow_provider_crowdtwist.sync.credits.ledger import CreditLedger
from airflow_provider_crowdtwist.sync.credits.sync import sync_credits

AMBIGUOUS = (0.0, 0.01, 0.05)


def verified_run(
    sandbox: SandboxProcess, rows: pd.DataFrame, workers: int, ledger: pathlib.Path, verify_delay: float
) -> dict[str, float]:
    quiet = quiet_log()
    config = bench_config(workers, verify_delay=verify_delay, fail_on_unknown=False)
    with client_for(sandbox, workers) as client, CreditLedger.open(ledger, run_id="bench") as led:
        started = time.perf_counter()
        summary = sync_credits(client, [rows], config, led, quiet)
        elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "credited": summary.count("credited"),
        "unknown": summary.count("unknown"),
        "history": summary.history_requests,
        "verified": summary.verified,
        "resent": summary.resent,
        "requests": summary.requests_sent,
    }


def awards_per_key(sandbox: SandboxProcess, prefix: str) -> collections.Counter[str]:
    sandbox.admin.wait_settled(timeout=60)
    return collections.Counter(
        str((c.get("extra_data") or {}).get("ct_dedupe_key"))
        for c in sandbox.admin.credits()
        if str((c.get("extra_data") or {}).get("ct_dedupe_key", "")).startswith(prefix)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--verify-delay", type=float, default=1.5)
    parser.add_argument("--award-lag", type=float, default=0.5)
    args = parser.parse_args()

    lines: list[str] = []
    with (
        SandboxProcess(dedupe_window_s=0, award_lag_s=args.award_lag) as sandbox,
        tempfile.TemporaryDirectory() as tmp,
    ):
        create_members(sandbox)
        sandbox.set_faults(latency_ms=args.latency_ms)
        base = baseline(sandbox, make_rows(args.rows, "bare"), args.workers)
        lines.append(
            f"{'bare credit_activity pool (baseline)':<38} | {base:>8.1f} | {'-':>7} | {'-':>8} | "
            f"{'-':>8} | {'-':>6} | {'-':>7} | -"
        )
        for rate in AMBIGUOUS:
            tag = f"amb{int(rate * 100)}"
            sandbox.set_faults(
                applied_then_503_rate=rate / 2,
                error_rate=rate / 2,
                error_status=503,
                fault_routes=["credit"],
                seed=20261201,
            )
            rows = make_rows(args.rows, tag)
            got = verified_run(
                sandbox, rows, args.workers, pathlib.Path(tmp) / f"{tag}.sqlite", args.verify_delay
            )
            sandbox.set_faults(applied_then_503_rate=0.0, error_rate=0.0)
            awards = awards_per_key(sandbox, f"{tag}-")
            exact = len(awards) == args.rows and set(awards.values()) == {1}
            ambiguous = got["verified"] + got["resent"]  # each ambiguous credit is found or resent
            per_ambiguous = got["history"] / ambiguous if ambiguous else 0.0
            lines.append(
                f"{f'sync_credits, {rate:.0%} ambiguous':<38} | {args.rows / got['seconds']:>8.1f} | "
                f"{got['history'] / args.rows:>7.3f} | {per_ambiguous:>8.2f} | {int(got['verified']):>8} | "
                f"{int(got['resent']):>6} | {got['seconds']:>7.2f} | "
                f"{'yes' if exact else 'NO'} ({int(got['unknown'])} unknown)"
            )

    print(
        f"\nCredit verification overhead: {args.rows} credits, {args.workers} workers, "
        f"{args.latency_ms:g} ms latency, no duplicate detection, award lag {args.award_lag:g} s, "
        f"verify_delay {args.verify_delay:g} s (sandbox in a child process)\n"
    )
    print(
        f"{'what':<38} | {'rows/s':>8} | {'hist/cr':>7} | {'hist/amb':>8} | {'verified':>8} | "
        f"{'resent':>6} | {'seconds':>7} | each key awarded exactly once"
    )
    print("-" * 118)
    for line in lines:
        print(line)
    print(
        "\nhist/cr: activity-history requests per credit; hist/amb: per ambiguous credit. Wall time "
        "includes one settle delay when anything was ambiguous (the run waits verify_delay, then looks)."
    )


if __name__ == "__main__":
    main()
