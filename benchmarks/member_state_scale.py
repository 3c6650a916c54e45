"""The member state at a million members: today's state code next to the new one, in one run.

Run: ``python benchmarks/member_state_scale.py [--rows 1000000] [--baseline-rev caaa19d]``
(from a git checkout: the baseline is the package as it was at ``--baseline-rev``, exported with
``git archive`` into a temporary directory and imported from there).

Each phase runs in a child process of its own, so its peak RSS (``ru_maxrss``) is that phase's alone.
The client answers every request at once and counts them: what is measured is the engine (read, map,
hash, look up, spool, send, record), not the network. The source is generated lazily in 10,000-row
chunks, as a SQL cursor would give them; the time to generate it is measured alone and subtracted
("engine s").

Phases, each on the state the previous one left:

1. **full run**: an empty state, every member sent once;
2. **rerun, nothing changed**: target <= 10 s for 1,000,000 rows, 0 requests;
3. **rerun, 1% changed and 1% removed** (``on_removed="deactivate"``; today's code cannot remove,
   it only sends the changed rows): target engine time <= 15 s, requests = changed + removed.

Targets (issue #13): peak RSS <= 300 MB in every phase, state file <= 100 MB. Nothing is asserted;
the script prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd

CHUNK = 10_000
PHASES = ("full", "unchanged", "changed")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def source(rows: int, phase: str) -> Iterator[pd.DataFrame]:
    """The members of ``phase``: in "changed", every 100th has a new last name, another 1% is gone."""
    changed = phase == "changed"
    for start in range(0, rows, CHUNK):
        ids = range(start, min(rows, start + CHUNK))
        if changed:
            ids = [i for i in ids if i % 100 != 50]  # 1% removed
        yield pd.DataFrame(
            {
                "user_id": [f"member{i}@example.com" for i in ids],
                "first_name": [f"First{i}" for i in ids],
                "last_name": ["Changed" if changed and i % 100 == 0 else "Last" for i in ids],
                "postal_code": ["10001"] * len(ids),
                "date_of_birth": ["1985-06-15"] * len(ids),
                "password": [f"secret-{i}" for i in ids],
            }
        )


class InstantClient:
    """Answers every request at once and counts the requests."""

    class config:  # the ClientConfig attributes the engine reads
        id_type = "email"
        api_key = "benchmark-api-key"
        hmac_private_key = None

    def __init__(self) -> None:
        self.requests_sent = 0
        self._lock = threading.Lock()

    def _count(self) -> dict:
        with self._lock:
            self.requests_sent += 1
        return {}

    def create_user(self, fields: Any) -> dict:
        return self._count()

    def update_user(self, user_id: str, fields: Any, id_type: str | None = None) -> dict:
        return self._count()

    def delete_user(self, user_id: str, id_type: str | None = None) -> dict:
        return self._count()

    def get_user(self, user_id: str, id_type: str | None = None) -> dict:
        return self._count()


def child(phase: str, rows: int, state_path: str) -> dict[str, Any]:
    """One phase in this process; returns its figures."""
    from airflow_provider_crowdtwist.sync.members.sync import MemberSyncConfig, sync_members

    started = time.perf_counter()
    for _ in source(rows, phase):
        pass
    source_seconds = time.perf_counter() - started

    fields = {f.name for f in dataclasses.fields(MemberSyncConfig)}
    settings: dict[str, Any] = {"state_path": state_path, "progress_interval": 3600.0}
    if phase == "changed" and "on_removed" in fields:
        settings["on_removed"] = "deactivate"
    quiet = logging.getLogger("benchmark")
    quiet.setLevel(logging.ERROR)
    client = InstantClient()
    started = time.perf_counter()
    summary = sync_members(client, source(rows, phase), MemberSyncConfig(**settings), quiet)
    seconds = time.perf_counter() - started
    counts = {k: v for k, v in summary.to_dict()["counts"].items() if v}
    return {
        "seconds": seconds,
        "engine_seconds": seconds - source_seconds,
        "requests": client.requests_sent,
        "counts": counts,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_phase(code_dir: str, phase: str, rows: int, state_path: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": code_dir}
    out = subprocess.run(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            phase,
            "--rows",
            str(rows),
            "--state",
            state_path,
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    figures["state_mb"] = (
        sum(os.path.getsize(p) for p in (state_path, state_path + "-wal") if os.path.exists(p)) / 1e6
    )
    return figures


def export_baseline(rev: str, into: str) -> str:
    archive = subprocess.run(
        ["git", "-C", REPO, "archive", rev, "airflow_provider_crowdtwist"], check=True, capture_output=True
    ).stdout
    os.makedirs(into, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    return into


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline-rev", default="caaa19d", help="git revision of today's state code")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--child", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.rows, args.state)))
        return 0

    work = tempfile.mkdtemp(prefix="member-state-bench-")
    try:
        variants = [("new", REPO)]
        if not args.skip_baseline:
            variants.insert(0, ("today", export_baseline(args.baseline_rev, os.path.join(work, "baseline"))))
        results: list[tuple[str, str, dict[str, Any]]] = []
        for name, code in variants:
            state_path = os.path.join(work, f"{name}.sqlite")
            for phase in PHASES:
                figures = run_phase(code, phase, args.rows, state_path)
                results.append((name, phase, figures))
                print(f"{name} {phase}: {figures}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nMember state, {args.rows:,} rows, instant client (2-core machine shared with other work)\n")
    print("| code | phase | total s | engine s | requests | peak RSS MB | state MB | outcomes |")
    print("|---|---|---|---|---|---|---|---|")
    for name, phase, f in results:
        outcomes = ", ".join(f"{k}={v:,}" for k, v in f["counts"].items())
        print(
            f"| {name} | {phase} | {f['seconds']:.1f} | {f['engine_seconds']:.1f} | {f['requests']:,} | "
            f"{f['rss_mb']:.0f} | {f['state_mb']:.1f} | {outcomes} |"
        )
    print(
        "\nTargets: unchanged rerun <= 10 s (0 requests); 1% changed + 1% removed engine <= 15 s, "
        "requests = changed + removed; peak RSS <= 300 MB; state file <= 100 MB."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
