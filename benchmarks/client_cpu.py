"""Client CPU per row: a member sync at 64 workers, 50 ms latency, no rate cap, today's code beside it.

Run: ``python benchmarks/client_cpu.py [--rows 6000] [--workers 64] [--latency-ms 50] [--profile]``

One sandbox (``SandboxProcess``, its own interpreter) serves both runs. The members are created once
first (not timed), so each measured pass is the steady state of a nightly sync: one ``PUT`` a row. Each
pass is a child process of its own that reports its own CPU time (``time.process_time``: every
thread of the engine and the client, user + system) and the wall time of ``sync_members``:

* ``baseline``: the package as it was at ``--baseline-rev`` (today's client, exported from git);
* ``current``: this working tree;
* ``bare http.client (ceiling)``: no engine and no client, one ``http.client`` connection per thread
  sending the same ``PUT``s: what this machine and this sandbox allow at all, so a rows/s figure can
  be read against it (64 workers at 50 ms cannot pass 1,280 rows/s whatever the client costs).

``read_s`` is the engine's reading phase (source -> spool, before the first request: duplicates are
settled on the whole source, "last row wins"), from the time of its "Read N row(s)" log line;
``send_rows_per_s`` is the rate of the sending phase alone.

``--profile`` runs each pass under ``cProfile`` timed by each thread's own CPU clock (one profiler per
worker thread plus the main thread, merged; a wall clock would charge every thread's wait for the GIL
to whatever it was blocked in) and prints the top entries by own time -- the tables in
docs/performance.md. Profiling slows everything down, so its timings are not the benchmark's figures.

Targets (issue 16): <= 0.6 ms of CPU per row and >= 1,200 rows/s. Nothing is asserted; it prints a
table. The machine may be shared: say so when quoting the figures.
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

TARGET_CPU_MS = 0.6
TARGET_ROWS_S = 1200.0


def make_rows(n: int, generation: int) -> Any:
    return member_rows("cpu", n, generation)


def _profiled(client: Any, profilers: list[Any]) -> None:
    """Wrap the per-row client calls so each worker thread records into its own profiler."""
    import cProfile
    import threading

    local = threading.local()
    for name in ("update_user", "create_user", "upsert_user"):
        original = getattr(client, name)

        def wrapper(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            profiler = getattr(local, "profiler", None)
            if profiler is None:
                profiler = local.profiler = cProfile.Profile(time.thread_time)
                profilers.append(profiler)
            if getattr(local, "depth", 0):
                return _original(*args, **kwargs)
            local.depth = 1
            profiler.enable()
            try:
                return _original(*args, **kwargs)
            finally:
                profiler.disable()
                local.depth = 0

        setattr(client, name, wrapper)


def child(args: argparse.Namespace) -> int:
    """One measured pass in this process; prints one JSON line."""
    import logging

    from airflow_provider_crowdtwist.client.client import CrowdTwistClient
    from airflow_provider_crowdtwist.client.config import ClientConfig
    from airflow_provider_crowdtwist.client.ratelimit import RateLimiter
    from airflow_provider_crowdtwist.sync.members.sync import MemberSyncConfig, sync_members

    if args.bare:
        return bare_child(args)
    config = ClientConfig(
        base_url=args.base_url, api_key=args.api_key, requests_per_minute=0, pool_size=args.workers
    )
    rows = make_rows(args.rows, args.generation)
    quiet = logging.getLogger("bench.quiet")
    quiet.setLevel(logging.INFO)
    quiet.propagate = False
    read_done: list[float] = []

    class _ReadPhase(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if not read_done and record.getMessage().startswith("Read "):
                read_done.append(time.perf_counter())

    quiet.addHandler(_ReadPhase())
    profilers: list[Any] = []
    with CrowdTwistClient(config, rate_limiter=RateLimiter(0)) as client:
        main_profiler = None
        if args.profile:
            import cProfile

            _profiled(client, profilers)
            main_profiler = cProfile.Profile(time.thread_time)
            main_profiler.enable()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        summary = sync_members(client, [rows], MemberSyncConfig(max_workers=args.workers), quiet)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        if main_profiler is not None:
            main_profiler.disable()
            profilers.append(main_profiler)
    if profilers:
        import io
        import pstats

        out = io.StringIO()
        stats = pstats.Stats(profilers[0], stream=out)
        for extra in profilers[1:]:
            stats.add(extra)
        stats.sort_stats("tottime").print_stats(args.profile_top)
        sys.stderr.write(f"\n==== profile ({args.label}) ====\n" + _trim(out.getvalue()))
    print(
        json.dumps(
            {
                "rows": summary.rows_read,
                "updated": summary.count("updated"),
                "requests": summary.requests_sent,
                "cpu_s": cpu,
                "wall_s": wall,
                "read_s": (read_done[0] - wall0) if read_done else None,
            }
        )
    )
    return 0


def bare_child(args: argparse.Namespace) -> int:
    """The ceiling: ``args.rows`` PUTs over bare ``http.client``, one kept-alive connection per thread."""
    import http.client
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from urllib.parse import urlsplit

    parts = urlsplit(args.base_url)
    local = threading.local()
    headers = {"X-CT-Authorization": f"CTApiKey {args.api_key}", "Content-Type": "application/json"}

    def put(i: int) -> int:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        body = json.dumps({"last_name": f"Bare{args.generation}"}).encode()
        conn.request("PUT", f"/v2/users/cpu{i}%40example.com?id_type=email", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status

    cpu0, wall0 = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(args.workers) as pool:
        statuses = list(pool.map(put, range(args.rows)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    updated = statuses.count(200)
    result = {"rows": args.rows, "updated": updated, "requests": args.rows, "cpu_s": cpu, "wall_s": wall}
    print(json.dumps(result))
    return 0


def _trim(text: str) -> str:
    """Keep the profile's table, drop pstats' preamble lines."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
    return "\n".join(lines[max(0, start - 1) :]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--profile", action="store_true", help="print cProfile's top entries per pass")
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--api-key", help=argparse.SUPPRESS)
    parser.add_argument("--generation", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--label", default="", help=argparse.SUPPRESS)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    sys.path.insert(0, str(ROOT))
    from airflow_provider_crowdtwist.sandbox.process import SandboxProcess

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, SandboxProcess() as sandbox:
        baseline_path = export_baseline(args.baseline_rev, Path(tmp))
        common = ["--base-url", sandbox.base_url, "--api-key", sandbox.api_key, "--rows", str(args.rows)]
        # create the members once, fast, so every measured pass is one PUT per row
        run_child(HERE, [*common, "--workers", "32", "--label", "create"], ROOT)
        sandbox.admin.set_faults(latency_ms=args.latency_ms)
        passes = [
            (f"baseline ({args.baseline_rev})", baseline_path, False),
            ("current", ROOT, False),
            ("bare http.client (ceiling)", ROOT, True),
        ]
        for generation, (label, path, bare) in enumerate(passes, start=1):
            extra = ["--workers", str(args.workers), "--generation", str(generation), "--label", label]
            if bare:
                extra.append("--bare")
            elif args.profile:
                extra += ["--profile", "--profile-top", str(args.profile_top)]
            result = run_child(HERE, [*common, *extra], path)
            result["run"] = label
            result["cpu_ms_per_row"] = 1000 * result["cpu_s"] / result["rows"]
            result["rows_per_s"] = result["rows"] / result["wall_s"]
            result["req_per_row"] = result["requests"] / result["rows"]
            if result.get("read_s") is not None:
                result["send_rows_per_s"] = result["rows"] / (result["wall_s"] - result["read_s"])
            results.append(result)
            print(f"{label}: {result['rows_per_s']:.0f} rows/s", file=sys.stderr, flush=True)
    base = results[0]
    for result in results[:2]:  # the ceiling row is not a client
        result["cpu_vs_baseline"] = result["cpu_ms_per_row"] / base["cpu_ms_per_row"]
        result["rate_vs_baseline"] = result["rows_per_s"] / base["rows_per_s"]
        result["meets_target"] = (
            "yes"
            if result["cpu_ms_per_row"] <= TARGET_CPU_MS and result["rows_per_s"] >= TARGET_ROWS_S
            else "no"
        )
    print_table(
        f"Client CPU per row: {args.rows} rows, {args.workers} workers, {args.latency_ms:.0f} ms latency, "
        f"no cap{' (profiled: timings not representative)' if args.profile else ''}; "
        f"target <= {TARGET_CPU_MS} ms/row and >= {TARGET_ROWS_S:.0f} rows/s",
        [
            ("run", ""),
            ("cpu_ms_per_row", ".3f"),
            ("rows_per_s", ".0f"),
            ("read_s", ".2f"),
            ("send_rows_per_s", ".0f"),
            ("req_per_row", ".3f"),
            ("updated", "d"),
            ("cpu_vs_baseline", ".2f"),
            ("rate_vs_baseline", ".2f"),
            ("meets_target", ""),
        ],
        results,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
