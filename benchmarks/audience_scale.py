"""The audience sync at a million members: an unchanged rerun, then a run with 1% churn, over real HTTP.

Run: ``python benchmarks/audience_scale.py [--members 1000000] [--churn 0.01]``

Targets (issue 25): the unchanged rerun takes <= 10 s and sends nothing; the churn run sends exactly
the churn (half the churn leaves, half joins: one PUT each); peak RSS <= 300 MB in every phase. A
last phase reruns the churned audience: nothing changed, nothing is sent.

Setup (not measured as a sync): a sandbox in its own process, with no latency and no rate limit
(``requests_per_minute=0`` on the client too), holding the members who will leave or join; and the
audience state of a million members as a first run would have left it, written through
``AudienceState`` directly (a real first run is a million PUTs: minutes of the sandbox, not the
engine). Each phase then runs ``sync_audience`` in a child process of its own, so its peak RSS
(``ru_maxrss``) is that phase's alone; the source is generated lazily in 10,000-row chunks, as a SQL
cursor gives them, and the time to generate it is measured alone. The script prints a table and
asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

CHUNK = 10_000
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ATTRIBUTE = "recent_buyer"


def email(i: int) -> str:
    return f"member{i}@example.com"


def leaving(i: int, every: int) -> bool:
    return i % every == 0


def source(members: int, churn: float, phase: str) -> Iterator[Any]:
    """The audience of ``phase``: all members, or (``churn``) without the leavers and with the joiners."""
    import pandas as pd

    every = max(1, round(2 / churn))  # half the churn leaves ...
    joiners = members // every  # ... and as many join
    for start in range(0, members, CHUNK):
        ids = range(start, min(members, start + CHUNK))
        if phase == "churn":
            ids = [i for i in ids if not leaving(i, every)]
        yield pd.DataFrame({"email": [email(i) for i in ids]})
    if phase == "churn":
        for start in range(0, joiners, CHUNK):
            yield pd.DataFrame(
                {"email": [email(members + i) for i in range(start, min(joiners, start + CHUNK))]}
            )


def child(args: argparse.Namespace) -> None:
    """One phase: ``sync_audience`` with a real client; prints one JSON line."""
    from airflow_provider_crowdtwist.client.client import CrowdTwistClient
    from airflow_provider_crowdtwist.client.config import ClientConfig
    from airflow_provider_crowdtwist.sync.audience.config import AudienceSyncConfig
    from airflow_provider_crowdtwist.sync.audience.sync import sync_audience

    started = time.perf_counter()
    rows = sum(len(chunk) for chunk in source(args.members, args.churn, args.phase))
    generate_s = time.perf_counter() - started
    client = CrowdTwistClient(
        ClientConfig(base_url=args.base_url, api_key="sandbox-api-key", requests_per_minute=0, pool_size=16)
    )
    config = AudienceSyncConfig(
        id_column="email",
        id_type="email",
        attribute=ATTRIBUTE,
        state_path=args.state,
        max_workers=16,
        progress_interval=3600.0,
    )
    started = time.perf_counter()
    with client:
        summary = sync_audience(
            client, source(args.members, args.churn, args.phase), config, logging.getLogger()
        )
    wall = time.perf_counter() - started
    print(
        json.dumps(
            {
                "phase": args.phase,
                "rows": rows,
                "wall_s": round(wall, 2),
                "generate_s": round(generate_s, 2),
                "requests": summary.requests_sent,
                "counts": {k: v for k, v in summary.counts.items() if v},
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


def seed_state(path: str, members: int) -> float:
    """The state a first run of ``members`` would leave (each member entered once)."""
    import numpy as np

    from airflow_provider_crowdtwist.sync.audience.identifiers import audience_keys
    from airflow_provider_crowdtwist.sync.audience.state import AudienceState

    started = time.perf_counter()
    identity = {"id_type": "email", "mode": "traits", "attribute": ATTRIBUTE, "values": [True, False]}
    with AudienceState(path, identity=identity) as state:
        for start in range(0, members, CHUNK):
            batch = [email(i) for i in range(start, min(members, start + CHUNK))]
            k1, k2 = audience_keys(np.array(batch, dtype=object))
            for a, b, identifier in zip(k1.tolist(), k2.tolist(), batch, strict=True):
                state.record_entered(a, b, identifier)
    return time.perf_counter() - started


def seed_sandbox(base_url: str, members: int, churn: float) -> int:
    """Create the members who will leave or join (the only ones the churn run writes to)."""
    from airflow_provider_crowdtwist.client.client import CrowdTwistClient
    from airflow_provider_crowdtwist.client.config import ClientConfig

    every = max(1, round(2 / churn))
    ids = [i for i in range(members) if leaving(i, every)] + [members + i for i in range(members // every)]
    client = CrowdTwistClient(
        ClientConfig(base_url=base_url, api_key="sandbox-api-key", requests_per_minute=0, pool_size=16)
    )

    def create(i: int) -> None:
        client.create_user(
            {"email_address": email(i), "first_name": "Bench", "last_name": "Mark", "postal_code": "10001"}
        )

    with client, ThreadPoolExecutor(16) as pool:
        list(pool.map(create, ids))
    return len(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--churn", type=float, default=0.01)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--phase", default="unchanged", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from airflow_provider_crowdtwist.sandbox.process import SandboxProcess

    with tempfile.TemporaryDirectory(prefix="audience-bench-") as tmp, SandboxProcess() as sandbox:
        state = os.path.join(tmp, "audience.sqlite")
        seeded = seed_sandbox(sandbox.base_url, args.members, args.churn)
        seed_s = seed_state(state, args.members)
        print(
            f"setup: {seeded} sandbox members (leavers and joiners), state of {args.members:,} members "
            f"written in {seed_s:.1f} s ({os.path.getsize(state) / 1e6:.0f} MB)",
            flush=True,
        )
        print(
            f"{'phase':<10} {'rows':>9} {'wall s':>7} {'source s':>8} {'requests':>9} {'RSS MB':>7}  counts"
        )
        # the churned audience twice: the second time nothing changed
        for label, phase in (("unchanged", "unchanged"), ("churn", "churn"), ("rerun", "churn")):
            before = int(sandbox.admin.stats()["total"])
            command = [
                sys.executable,
                os.path.abspath(__file__),
                "--child",
                f"--phase={phase}",
                f"--members={args.members}",
                f"--churn={args.churn}",
                f"--state={state}",
                f"--base-url={sandbox.base_url}",
            ]
            env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
            out = subprocess.run(command, check=True, capture_output=True, text=True, env=env, timeout=1800)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            served = int(sandbox.admin.stats()["total"]) - before
            print(
                f"{label:<10} {result['rows']:>9,} {result['wall_s']:>7} {result['generate_s']:>8} "
                f"{served:>9,} {result['peak_rss_mb']:>7}  {result['counts']}",
                flush=True,
            )
        print(
            f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)"
        )


if __name__ == "__main__":
    main()
