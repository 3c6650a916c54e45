"""Transport CPU per request: the client's one transport (``urllib3``) beside the pool it replaced.

Run: ``python benchmarks/transport_cpu.py [--requests 4000] [--workers 64] [--latency-ms 50]``

64 threads send the same ``PUT /v2/users/...`` to one sandbox (its own process, 50 ms latency, no
cap); each row is one way of sending it, measured in this process by ``time.process_time`` (every
thread, user + system):

* ``CrowdTwistClient (hand-written pool)``: the client over the ``http.client`` pool it used before
  issue 21 (``benchmarks/_direct_pool.py``, through the client's ``transport=`` seam) -- the baseline;
* ``urllib3 pool``: a bare ``urllib3.HTTPConnectionPool.urlopen``, no client around it;
* ``http.client``: a bare kept-alive ``http.client`` connection per thread, no client around it;
* ``CrowdTwistClient (urllib3 transport)``: the client as it runs, over ``client/transport.py``.

The two bare rows are floors, not clients: they skip auth headers, retries, rate limiting and the
JSON decoding of answers. Nothing is asserted; it prints a table. The machine may be shared: say so
when quoting the figures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parents[1]))

from _harness import print_table  # noqa: E402

MEMBER = "transport@example.com"
PATH = "/v2/users/transport%40example.com?id_type=email"


def measure(label: str, send: Callable[[], int], n: int, workers: int) -> dict[str, Any]:
    statuses: list[int] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        statuses = list(pool.map(lambda _: send(), range(n)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    ok = statuses.count(200)
    return {"run": label, "cpu_ms": 1000 * cpu / n, "per_s": n / wall, "ok": ok}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()

    import urllib3
    from _direct_pool import DirectTransport

    from airflow_provider_crowdtwist.client import ClientConfig, CrowdTwistClient
    from airflow_provider_crowdtwist.sandbox.process import SandboxProcess

    with SandboxProcess(latency_ms=args.latency_ms, rate_limit_per_minute=0) as sandbox:
        config = ClientConfig(
            base_url=sandbox.base_url, api_key=sandbox.api_key, requests_per_minute=0, pool_size=args.workers
        )
        fields = {"email_address": MEMBER, "first_name": "T", "last_name": "P", "postal_code": "10001"}
        direct = CrowdTwistClient(config)
        direct.create_user(fields)
        pool_transport = DirectTransport(
            config.api_root, verify=True, connect_timeout=5.0, read_timeout=30.0, max_idle=args.workers
        )
        forced = CrowdTwistClient(config, transport=pool_transport)
        body = json.dumps({"first_name": "U"}).encode()
        headers = {
            "X-CT-Authorization": f"CTApiKey {sandbox.api_key}",
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
        }
        pool = urllib3.HTTPConnectionPool("127.0.0.1", sandbox.port, maxsize=args.workers)
        local = threading.local()

        def via_client(client: CrowdTwistClient) -> Callable[[], int]:
            def send() -> int:
                client.update_user(MEMBER, {"first_name": "U"}, id_type="email")
                return 200

            return send

        def via_urllib3() -> int:
            return pool.urlopen("PUT", PATH, body=body, headers=headers, retries=False).status

        def via_http_client() -> int:
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=30)
            conn.request("PUT", PATH, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status

        rows = []
        for label, send in [
            ("CrowdTwistClient (hand-written pool)", via_client(forced)),
            ("urllib3 pool (floor)", via_urllib3),
            ("http.client (floor)", via_http_client),
            ("CrowdTwistClient (urllib3 transport)", via_client(direct)),
        ]:
            rows.append(measure(label, send, args.requests, args.workers))
            print(f"{label}: {rows[-1]['cpu_ms']:.3f} ms/request", file=sys.stderr, flush=True)
        direct.close()
        forced.close()
    base = rows[0]["cpu_ms"]
    for row in rows:
        row["cpu_vs_pool"] = row["cpu_ms"] / base
    print_table(
        f"Transport CPU per request: {args.requests} PUTs, {args.workers} threads, "
        f"{args.latency_ms:.0f} ms latency, no cap",
        [("run", ""), ("cpu_ms", ".3f"), ("per_s", ".0f"), ("ok", "d"), ("cpu_vs_pool", ".2f")],
        rows,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
