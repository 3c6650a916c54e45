"""Serving the app with uvicorn: one socket bound before the ready line, and a guard against slow headers.

uvicorn (httptools and uvloop where installed, else h11 and asyncio's loop) times out idle keep-alive
connections but not a client that trickles its request *headers* (a byte a second holds the connection
forever). Each request therefore gets a deadline for its request line and headers: the first one from
the moment the connection opens, every later one on a kept-alive connection from its first byte
(uvicorn cancels its keep-alive timer on that byte, so without ours, one quick ``GET /health`` would
let the next request's headers trickle forever). The body has its own deadline in the app (a 408).
Neither can stop the receiver, which serves every other connection meanwhile, but without the guard
such connections would pile up until the process runs out of file descriptors.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import sys
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from airflow_provider_crowdtwist.livepush.app import LivePushApp

READY_PREFIX = "CrowdTwist live push receiver listening on "
HEADER_TIMEOUT_S = 10.0
PARENT_POLL_S = 0.25


class HeaderDeadline:
    """Mixed into a uvicorn HTTP protocol: close a connection whose request headers are not in on time.

    Both of uvicorn's protocols make a new ``cycle`` (request-response) the moment a request's headers
    are complete, inside ``data_received``: a new cycle ends the wait. Bytes that arrive while no
    request is running (none yet, or the last one answered) start it. A request that arrives whole in
    one read costs one comparison.
    """

    header_timeout_s = HEADER_TIMEOUT_S
    cycle: Any
    transport: Any

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._header_timer: asyncio.TimerHandle | None = None
        self._start_header_deadline()

    def _start_header_deadline(self) -> None:
        loop = asyncio.get_running_loop()
        self._header_timer = loop.call_later(self.header_timeout_s, self._header_deadline)

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)  # type: ignore[misc]
        if self.cycle is not cycle:  # a request's headers are complete
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
        elif self._header_timer is None and (cycle is None or cycle.response_complete):
            self._start_header_deadline()  # a new request has begun on a kept-alive connection

    def _header_deadline(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)  # type: ignore[misc]


def protocol_class(header_timeout_s: float) -> type:
    """uvicorn's httptools protocol (C parser, faster) when installed, else its pure-Python h11 one."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        base: type = HttpToolsProtocol
    except ImportError:  # httptools is optional (Airflow 3 brings it, Airflow 2 does not)
        base = H11Protocol
    return type(f"Guarded{base.__name__}", (HeaderDeadline, base), {"header_timeout_s": header_timeout_s})


class _Server(uvicorn.Server):
    parent_pid: int | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        # Everything alive now (modules, uvicorn, the app) lives as long as the process. Frozen, it is
        # out of the collector's reach, so a full collection no longer walks ~25,000 objects (3-7 ms
        # on a small VM) while pushes wait for their answers.
        gc.collect()
        gc.freeze()
        if self.parent_pid is not None:
            self._watch_parent()
        if not self.should_exit and sockets:
            host, port = sockets[0].getsockname()[:2]
            print(f"{READY_PREFIX}http://{host}:{port}", flush=True)

    def _watch_parent(self) -> None:
        """A test's receiver ends with the test session: when the parent is gone, exit (cleanly)."""
        if os.getppid() != self.parent_pid:
            self.should_exit = True
        else:
            asyncio.get_running_loop().call_later(PARENT_POLL_S, self._watch_parent)


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def build_server(app: LivePushApp, *, header_timeout_s: float = HEADER_TIMEOUT_S) -> _Server:
    config = uvicorn.Config(
        app,
        http=protocol_class(header_timeout_s),
        lifespan="on",
        loop="auto",  # uvloop where installed (uvicorn[standard], Airflow 3), else asyncio's own loop
        log_level="warning",
        access_log=False,  # an access log would show nothing secret, but it costs ~10% of throughput
        timeout_keep_alive=30,
        backlog=2048,
    )
    return _Server(config)


def run(
    app: LivePushApp,
    host: str,
    port: int,
    *,
    header_timeout_s: float = HEADER_TIMEOUT_S,
    parent_pid: int | None = None,
) -> int:
    sock = bind(host, port)
    server = build_server(app, header_timeout_s=header_timeout_s)
    server.parent_pid = parent_pid
    server.run(sockets=[sock])
    if not server.started:
        print("crowdtwist-live-push: the receiver did not start (see the errors above)", file=sys.stderr)
        return 1
    return 0
