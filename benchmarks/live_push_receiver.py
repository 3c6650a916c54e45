"""Live push receiver and loader benchmark: pushes/s with fsync'd acknowledgements, and a big load.

Receiver: a child process (``crowdtwist-live-push serve``, local output) is pushed at fixed rates by an
open-loop asyncio client over keep-alive connections (a push's latency counts from when it was due, so
queueing shows). The sustained rate is the highest one whose p99 stays under 50 ms; the receiver's CPU
time per push (from ``/proc``) does not depend on how busy the machine is: 1 s / that is what one core
sustains when the CPU is the limit. The baselines, measured in the same run, are the same receiver with
one fsync per push (``--max-batch 1``, no group commit), the same again without fsync (not durable: the
ceiling the HTTP layer allows), and the bare disk: one line written and ``fdatasync``'d at the same
rate, in the same directory, timed the same way (from when it was due). The disk is the floor under
every durable receiver: its fsync stalls are in every fsync'd latency.

The 200 pushes/s point runs ``--repeat`` times (default 3) for ``--point-seconds`` (default 10) each,
the four rows interleaved run by run; every run is printed, and the summary shows all of them. Each
receiver first gets a warm-up of 1 s at 200/s that is not counted (connections, first files, code paths).

Loader: ``--profiles`` profile pushes (default 1,000,000; 5 versions of each member) in one landed file,
as the receiver lands them, loaded into SQLite by ``LiveFeedLoader`` in a child process (its peak RSS is
that child's), next to the baseline of only reading and ``json.loads``-ing the same file.

    python benchmarks/live_push_receiver.py [--rates 200,500,...] [--seconds 3] [--profiles N]
        [--repeat 3] [--point-seconds 10] [--skip-receiver] [--skip-load]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airflow_provider_crowdtwist.livepush.feeds import SECRET_PROFILE_FIELDS, Push, encode_line
from airflow_provider_crowdtwist.livepush.process import ReceiverProcess
from airflow_provider_crowdtwist.livepush.samples import sample_activity, sample_profile

KEY = "bench-key"
P99_LIMIT_MS = 50.0


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    writer.write(raw)
    status_line = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(status_line.split()[1])


async def run_rate(port: int, rate: float, seconds: float, connections: int) -> dict[str, float]:
    """Open loop: push i is due at i / rate; it waits for a free connection if none is."""
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    total = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        nonlocal errors
        due = start + i / rate
        body = json.dumps(sample_activity(i)).encode()
        raw = (
            f"POST /push/activity HTTP/1.1\r\nHost: bench\r\nx-api-key: {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        conn = await pool.get()
        try:
            status = await _request(*conn, raw)
        finally:
            pool.put_nowait(conn)
        if status != 200:
            errors += 1
        latencies.append((time.perf_counter() - due) * 1000)

    tasks = []
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    latencies.sort()
    return {
        "rate": rate,
        "achieved": total / elapsed,
        "p50": statistics.median(latencies),
        "p99": p99(latencies),
        "max": latencies[-1],
        "errors": errors,
    }


def p99(ordered: list[float]) -> float:
    return ordered[max(0, int(len(ordered) * 0.99) - 1)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux ``/proc``): what a push costs whatever the load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare_disk(directory: Path, rate: float, seconds: float) -> dict:
    """One line written and fdatasync'd at a time, line i due at i / rate: the floor under a receiver."""
    line = b"%s\n" % json.dumps({"received_at": 0.0, "push": sample_activity(0)}).encode()
    fd = os.open(directory / "bare-disk.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    total, latencies, fsyncs = int(rate * seconds), [], []
    start = time.perf_counter() + 0.05
    try:
        for i in range(total):
            due = start + i / rate
            if (delay := due - time.perf_counter()) > 0:
                time.sleep(delay)
            os.write(fd, line)
            began = time.perf_counter()
            os.fdatasync(fd)
            done = time.perf_counter()
            fsyncs.append(done - began)
            latencies.append((done - due) * 1000)
    finally:
        os.close(fd)
    latencies.sort()
    achieved = total / (time.perf_counter() - start)
    return {"rate": rate, "achieved": achieved, "p50": statistics.median(latencies), "p99": p99(latencies),
            "max": latencies[-1], "errors": 0, "fsync_max": max(fsyncs) * 1000}  # fmt: skip


def measure(rx: ReceiverProcess, rate: float, seconds: float) -> dict:
    assert rx.port is not None and rx.process is not None
    cpu = cpu_seconds(rx.process.pid)
    row = asyncio.run(run_rate(rx.port, rate, seconds, connections=256))
    row["cpu_us"] = (cpu_seconds(rx.process.pid) - cpu) / (rate * seconds) * 1e6
    return row


def show(label: str, row: dict, note: str = "") -> None:
    cpu = f"  receiver CPU {row['cpu_us']:5.0f} us/push" if "cpu_us" in row else ""
    print(
        f"  {label:<32} {row['rate']:>6.0f}/s offered: {row['achieved']:7.0f}/s  p50 {row['p50']:7.1f} ms  "
        f"p99 {row['p99']:7.1f} ms  max {row['max']:7.1f} ms  errors {row['errors']}{cpu}{note}",
        flush=True,
    )


def sweep(label: str, rx: ReceiverProcess, rates: list[float], seconds: float) -> list[dict]:
    rows = []
    for rate in rates:
        row = measure(rx, rate, seconds)
        show(label, row)
        rows.append(row)
        if row["achieved"] < 0.6 * rate:  # saturated: higher rates only queue more
            break
    return rows


def sustained(rows: list[dict]) -> tuple[float, float | None]:
    """(achieved rate of the highest rate with p99 <= limit, the first offered rate past it)."""
    best, passed = 0.0, None
    for row in rows:
        if row["p99"] <= P99_LIMIT_MS and row["errors"] == 0:
            best = max(best, row["achieved"])
        elif passed is None:
            passed = row["rate"]
    return best, passed


RECEIVERS = (("group commit (fsync)", []), ("one fsync per push", ["--max-batch", "1"]),
             ("no fsync (not durable)", ["--no-fsync"]))  # fmt: skip
DISK = "bare disk (write+fdatasync)"


def bench_receivers(args: argparse.Namespace) -> None:
    rates = [float(r) for r in args.rates.split(",")]
    base_rates = [float(r) for r in args.baseline_rates.split(",")]
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        receivers = {}
        for n, (label, extra) in enumerate(RECEIVERS):
            rx = ReceiverProcess(Path(tmp) / f"rx{n}", api_key=KEY, extra_args=extra)
            receivers[label] = stack.enter_context(rx)
            measure(receivers[label], 200, 1.0)  # warm-up, not counted
        print(f"200 pushes/s, {args.point_seconds:g} s a run, {args.repeat} runs, interleaved:")
        point: dict[str, list[dict]] = {label: [] for label in (DISK, *receivers)}
        for run in range(1, args.repeat + 1):
            point[DISK].append(bare_disk(Path(tmp), 200, args.point_seconds))
            show(DISK, point[DISK][-1], f"  (one fdatasync up to {point[DISK][-1]['fsync_max']:.1f} ms)")
            for label, rx in receivers.items():
                point[label].append(measure(rx, 200, args.point_seconds))
                show(label, point[label][-1])
            print(f"  -- run {run} done, load average {os.getloadavg()[0]:.1f}", flush=True)
        print(f"rate sweep, {args.seconds:g} s a rate:")
        swept = {label: sweep(label, rx, base_rates if "--max-batch" in extra else rates, args.seconds)
                 for (label, extra), rx in zip(RECEIVERS, receivers.values(), strict=True)}  # fmt: skip
    print()
    print(f"{'receiver':<32} {'p50 @200/s, each run':>22} {'p99 @200/s, each run':>26} {'max @200/s':>10} "
          f"{'sustained/s (p99<=50ms)':>24} {'p99 passes 50ms at':>19} {'CPU/push':>9}")  # fmt: skip
    for label, runs in point.items():
        p50s = " / ".join(f"{r['p50']:.1f}" for r in runs)
        p99s = " / ".join(f"{r['p99']:.1f}" for r in runs)
        worst = max(r["max"] for r in runs)
        if label == DISK:
            print(f"{label:<32} {p50s:>19} ms {p99s:>23} ms {worst:>7.1f} ms {'-':>24} {'-':>19} {'-':>9}")
            continue
        rows = swept[label]
        best, passed = sustained(rows)
        past = f">{rows[-1]['rate']:.0f}" if passed is None else f"{passed:.0f}"
        cpu = statistics.median(r["cpu_us"] for r in rows + runs)
        print(
            f"{label:<32} {p50s:>19} ms {p99s:>23} ms {worst:>7.1f} ms {best:>24.0f} {past:>19} {cpu:>7.0f}us"
        )


LOAD_CHILD = r"""
import json, resource, sqlite3, sys, time
sys.path.insert(0, sys.argv[1])
from airflow_provider_crowdtwist.livepush.dialects import SQLITE
from airflow_provider_crowdtwist.livepush.load import LiveFeedLoader
mode, src, db = sys.argv[2], sys.argv[3], sys.argv[4]
t = time.perf_counter()
if mode == "parse":
    n = 0
    with open(src + "/profile-bench.jsonl", "rb") as fh:
        for line in fh:
            json.loads(line); n += 1
    rows = n
else:
    summary = LiveFeedLoader(sqlite3.connect(db), SQLITE, feed="profile", table="profiles").load(src)
    rows = summary.loaded
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": time.perf_counter() - t, "rows": rows, "rss_mb": usage.ru_maxrss / 1024,
                  "cpu_seconds": usage.ru_utime + usage.ru_stime}))
"""


def bench_load(profiles: int) -> list[dict]:
    repo = str(Path(__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "profile"
        src.mkdir()
        members = max(1, profiles // 5)
        t = time.perf_counter()
        with open(src / "profile-bench.jsonl", "wb") as fh:  # lines as the receiver lands them
            for i in range(profiles):
                body = sample_profile(i % members, version=i, points=i)
                for name in SECRET_PROFILE_FIELDS:  # what the receiver drops (feeds.parse_push)
                    del body[name]
                push = Push("profile", body, str(body["id"]))
                fh.write(encode_line(push, received_at=1.7e9 + i / 1000))
        size = (src / "profile-bench.jsonl").stat().st_size
        print(f"  wrote {profiles:,} profile pushes ({size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s")
        results = []
        for mode in ("parse", "load"):
            proc = subprocess.run(
                [sys.executable, "-c", LOAD_CHILD, repo, mode, str(src), str(Path(tmp) / "w.db")],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            result = json.loads(proc.stdout.strip().splitlines()[-1]) | {"mode": mode}
            print(f"  {mode}: {result}", flush=True)
            results.append(result)
        import sqlite3

        count = sqlite3.connect(Path(tmp) / "w.db").execute("SELECT COUNT(*) FROM profiles").fetchone()[0]
        assert count == members, (count, members)
        return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rates", default="200,500,1000,1500,2000,3000,4000")
    p.add_argument("--baseline-rates", default="200,300,500,1000")
    p.add_argument("--seconds", type=float, default=3.0, help="seconds per rate of the sweep")
    p.add_argument("--repeat", type=int, default=3, help="runs of the 200/s point")
    p.add_argument("--point-seconds", type=float, default=10.0, help="seconds per run of the 200/s point")
    p.add_argument("--profiles", type=int, default=1_000_000)
    p.add_argument("--skip-receiver", action="store_true")
    p.add_argument("--skip-load", action="store_true")
    args = p.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    if not args.skip_receiver:
        bench_receivers(args)
    if not args.skip_load:
        print()
        parse, load = bench_load(args.profiles)
        print(
            f"{'loader (SQLite)':<28} {'rows':>10} {'seconds':>8} {'rows/s':>9} {'CPU s':>7} {'peak RSS':>9}"
        )
        for label, r in (("read + json.loads only", parse), ("LiveFeedLoader.load", load)):
            print(
                f"{label:<28} {r['rows']:>10,} {r['seconds']:>8.1f} {r['rows'] / r['seconds']:>9,.0f} "
                f"{r['cpu_seconds']:>7.1f} {r['rss_mb']:>7.0f}MB"
            )
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
