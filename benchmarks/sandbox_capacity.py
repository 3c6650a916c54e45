"""How much load the CrowdTwist sandbox takes on this machine, so it is never the benchmarks' bottleneck.

Run: ``.venv/bin/python benchmarks/sandbox_capacity.py [--seconds 3]``

The sandbox runs as a child process (``SandboxProcess``) and the load comes from another child process:
an asyncio keep-alive client on raw sockets, so neither steals the other's interpreter. Each scenario
runs for a fixed time and reports completed requests per second; the in-flight figure is the server's
own high-water mark (``/_admin/stats``), not the client's intention.

The baseline, measured in the same run with the same load generator, is the standard library's
``ThreadingHTTPServer`` answering a fixed JSON body with no auth and no logic -- what a naive emulator
would be. Targets (issue 3): >= 2,000 requests/s at 0 ms latency; >= 256 requests in flight at 200 ms
latency (about 1,000 requests/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from airflow_provider_crowdtwist.sandbox.admin import SandboxAdmin
from airflow_provider_crowdtwist.sandbox.process import SandboxProcess

API_KEY = "sandbox-api-key"
TARGET_RPS = 2000.0
TARGET_IN_FLIGHT = 256


# ---- load generator (runs in its own process) -----------------------------------------------------


def _request_bytes(method: str, path: str, body: bytes | None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"X-CT-Authorization: CTApiKey {API_KEY}"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


async def _connection(port: int, kind: str, stop_at: float, conn_id: int, counts: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    try:
        while time.monotonic() < stop_at:
            if kind == "credit":
                # unique extra_data so CrowdTwist's duplicate check does not refuse them
                body = json.dumps({"activity_id": "purchase", "extra_data": {"c": conn_id, "n": n}}).encode()
                raw = _request_bytes("POST", "/v2/users/bench%40example.com/activities?id_type=email", body)
            else:
                raw = _request_bytes("GET", "/v2/activities", None)
            n += 1
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12].decode()
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            counts[status] = counts.get(status, 0) + 1
    finally:
        writer.close()


async def _load(port: int, kind: str, connections: int, seconds: float) -> dict[str, Any]:
    counts: dict[str, int] = {}
    start = time.monotonic()
    stop_at = start + seconds
    results = await asyncio.gather(
        *(_connection(port, kind, stop_at, i, counts) for i in range(connections)), return_exceptions=True
    )
    elapsed = time.monotonic() - start
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    return {"counts": counts, "elapsed": elapsed, "errors": errors[:3], "failed_connections": len(errors)}


def run_load(port: int, kind: str, connections: int, seconds: float) -> dict[str, Any]:
    """Drive load from a separate interpreter and return its JSON report."""
    out = subprocess.run(
        [sys.executable, __file__, "--load", json.dumps([port, kind, connections, seconds])],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    return json.loads(out.stdout)


# ---- the baseline server ----------------------------------------------------------------------------


class _FixedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = json.dumps({"activities": [{"id": "purchase", "name": "Purchase", "points": 10}]}).encode()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


def serve_baseline() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FixedHandler)
    server.daemon_threads = True
    print(f"listening {server.server_address[1]}", flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), server.shutdown()), daemon=True).start()
    server.serve_forever()


# ---- the benchmark ----------------------------------------------------------------------------------


def scenario(
    name: str, port: int, kind: str, connections: int, seconds: float, admin: SandboxAdmin | None
) -> dict[str, Any]:
    if admin is not None:
        before = admin.stats()["total"]
    report = run_load(port, kind, connections, seconds)
    ok = sum(v for k, v in report["counts"].items() if k.startswith("2"))
    total = sum(report["counts"].values())
    row = {
        "name": name,
        "connections": connections,
        "requests": total,
        "ok": ok,
        "rps": total / report["elapsed"],
        "statuses": report["counts"],
        "failed_connections": report["failed_connections"],
        "max_in_flight": None,
    }
    if admin is not None:
        stats = admin.stats()
        row["max_in_flight"] = stats["max_in_flight"]
        row["server_counted"] = stats["total"] - before
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each scenario")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections at 0 ms latency")
    parser.add_argument("--held-connections", type=int, default=300, help="connections at 200 ms latency")
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        port, kind, connections, seconds = json.loads(args.load)
        print(json.dumps(asyncio.run(_load(port, kind, connections, seconds))))
        return 0
    if args.baseline_server:
        serve_baseline()
        return 0

    rows: list[dict[str, Any]] = []
    baseline = subprocess.Popen(
        [sys.executable, __file__, "--baseline-server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert baseline.stdout is not None
        baseline_port = int(baseline.stdout.readline().split()[1])
        rows.append(
            scenario(
                "baseline: http.server, fixed JSON",
                baseline_port,
                "get",
                args.connections,
                args.seconds,
                None,
            )
        )
    finally:
        baseline.kill()
        baseline.wait()

    start = time.monotonic()
    with SandboxProcess(dedupe_window_s=0) as sandbox:
        startup = time.monotonic() - start
        admin = sandbox.admin
        port = sandbox.port
        assert port is not None
        rows.append(
            scenario("sandbox GET /v2/activities, 0 ms", port, "get", args.connections, args.seconds, admin)
        )
        _create_bench_member(sandbox.base_url)
        admin.reset()
        _create_bench_member(sandbox.base_url)
        rows.append(
            scenario("sandbox POST credit, 0 ms", port, "credit", args.connections, args.seconds, admin)
        )
        credits = len(admin.credits())
        admin.reset()
        admin.set_faults(latency_ms=200)
        rows.append(
            scenario("sandbox GET, 200 ms latency", port, "get", args.held_connections, args.seconds, admin)
        )

    base_rps = rows[0]["rps"]
    print(f"\nSandbox capacity ({args.seconds:.0f} s per scenario; sandbox started in {startup:.2f} s)\n")
    header = (
        f"{'scenario':<36} {'conns':>5} {'requests':>9} {'req/s':>8} {'vs base':>8} {'in flight':>9}  target"
    )
    print(header)
    print("-" * len(header) + "-" * 12)
    for i, row in enumerate(rows):
        if i == 0:
            target = "(baseline)"
        elif "200 ms" in row["name"]:
            target = f">= {TARGET_IN_FLIGHT} in flight: {row['max_in_flight'] / TARGET_IN_FLIGHT:.2f}x"
        else:
            target = f">= {TARGET_RPS:.0f} req/s: {row['rps'] / TARGET_RPS:.2f}x"
        in_flight = "-" if row["max_in_flight"] is None else str(row["max_in_flight"])
        print(
            f"{row['name']:<36} {row['connections']:>5} {row['requests']:>9} {row['rps']:>8.0f} "
            f"{row['rps'] / base_rps:>7.2f}x {in_flight:>9}  {target}"
        )
    print()
    for row in rows:
        non_ok = {k: v for k, v in row["statuses"].items() if not k.startswith("2")}
        if non_ok or row["failed_connections"]:
            print(f"note: {row['name']}: non-2xx {non_ok}, failed connections {row['failed_connections']}")
    print(f"credits stored by the credit scenario: {credits}")
    return 0


def _create_bench_member(base_url: str) -> None:
    import urllib.request

    body = json.dumps(
        {
            "first_name": "Bench",
            "last_name": "Mark",
            "email_address": "bench@example.com",
            "postal_code": "10001",
        }
    ).encode()
    request = urllib.request.Request(
        f"{base_url}/v2/users",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "X-CT-Authorization": f"CTApiKey {API_KEY}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


if __name__ == "__main__":
    raise SystemExit(main())
