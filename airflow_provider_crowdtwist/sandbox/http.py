"""A small asyncio HTTP/1.1 server: just enough protocol for a JSON API, and fast on two cores.

``http.server`` spends a thread per connection and re-parses headers with the email package; on a 2-core
machine it tops out well below the 2,000 requests/s the provider's benchmarks need, and 256 requests held
200 ms each would need 256 threads. An ``asyncio.Protocol`` parses with a few byte-string calls, holds a
request's latency as a sleeping coroutine, and keeps connections alive the way ``requests`` expects.

Supported: request line, headers, ``Content-Length`` bodies, keep-alive (HTTP/1.1 default, HTTP/1.0 on
request). Not supported: chunked request bodies (answered 501), pipelining beyond buffering the next
request until the current one is answered, TLS.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024

REASONS = {
    103: "Early Hints",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class Request:
    """One parsed request. ``target`` is the request URI exactly as sent (HMAC signs it verbatim)."""

    __slots__ = ("body", "headers", "keep_alive", "method", "path", "peer", "query_string", "target")

    def __init__(
        self, method: str, target: str, headers: dict[str, str], body: bytes, keep_alive: bool, peer: Any
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.peer = peer
        path, _, query = target.partition("?")
        self.path = path
        self.query_string = query

    def query(self) -> dict[str, str]:
        """Query parameters, decoded; the last value wins for a repeated name."""
        return dict(parse_qsl(self.query_string, keep_blank_values=True))


class Response:
    """One answer; ``interim`` is written before it as is (e.g. a ``103 Early Hints`` head)."""

    __slots__ = ("body", "content_type", "headers", "interim", "status")

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        content_type: str = "application/json",
        interim: bytes = b"",
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers
        self.content_type = content_type
        self.interim = interim

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(payload, separators=(",", ":")).encode(), headers)

    def encode(self, keep_alive: bool) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Unknown')}",
            "Server: crowdtwist-sandbox",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
        ]
        if self.headers:
            lines.extend(f"{k}: {v}" for k, v in self.headers.items())
        if not keep_alive:
            lines.append("Connection: close")
        return self.interim + ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


class _Drop:
    """Returned by a handler to close the connection without any answer (a dropped connection)."""

    def __repr__(self) -> str:
        return "DROP"


DROP = _Drop()
Handler = Callable[[Request], Awaitable["Response | _Drop"]]


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class HttpProtocol(asyncio.Protocol):
    """One connection: parse a request, run the handler as a task, answer, then parse the next."""

    def __init__(
        self,
        handler: Handler,
        on_open: Callable[[HttpProtocol], None] | None = None,
        on_close: Callable[[HttpProtocol], None] | None = None,
    ) -> None:
        self._handler = handler
        self._on_open = on_open
        self._on_close = on_close
        self._buffer = bytearray()
        self._busy = False
        self._closed = False
        self._continued = False
        self._transport: asyncio.Transport | None = None
        self._peer: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._peer = transport.get_extra_info("peername")
        if self._on_open:
            self._on_open(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._on_close:
            self._on_close(self)

    def close(self) -> None:
        if self._transport is not None and not self._closed:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._next()

    def _next(self) -> None:
        try:
            request = self._parse()
        except _BadRequest as exc:
            self._answer_and_close(exc.status, exc.message)
            return
        if request is None:
            return
        self._busy = True
        asyncio.get_running_loop().create_task(self._run(request))

    def _answer_and_close(self, status: int, message: str) -> None:
        assert self._transport is not None
        body = Response.json(status, {"error": "input_error", "message": message})
        self._transport.write(body.encode(keep_alive=False))
        self._transport.close()
        self._closed = True

    def _parse(self) -> Request | None:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise _BadRequest(431, "Request head too large")
            return None
        head = bytes(buffer[:end]).decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequest(400, "Malformed request line")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise _BadRequest(400, "Malformed header line")
            headers[name.strip().lower()] = value.strip()
        if "transfer-encoding" in headers:
            raise _BadRequest(501, "Chunked request bodies are not supported; send Content-Length")
        length_text = headers.get("content-length", "0")
        if not length_text.isdigit():
            raise _BadRequest(400, "Invalid Content-Length")
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            raise _BadRequest(413, "Request body too large")
        total = end + 4 + length
        if len(buffer) < total:
            # curl sends "Expect: 100-continue" for bodies over 1 KiB and waits a second without it.
            if headers.get("expect", "").lower() == "100-continue" and not self._continued:
                self._continued = True
                assert self._transport is not None
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            return None
        self._continued = False
        body = bytes(buffer[end + 4 : total])
        del buffer[:total]
        connection = headers.get("connection", "").lower()
        # HTTP/1.1 keeps the connection unless told otherwise; HTTP/1.0 only when asked to.
        keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        return Request(method, target, headers, body, keep_alive, self._peer)

    async def _run(self, request: Request) -> None:
        try:
            response = await self._handler(request)
        except Exception:  # a bug in a handler must not take the server down
            log.exception("sandbox handler failed for %s %s", request.method, request.path)
            response = Response.json(500, {"error": "internal_error", "message": "Sandbox handler failed"})
        if self._closed or self._transport is None:
            return
        if response is DROP:
            self._transport.abort()
            self._closed = True
            return
        assert isinstance(response, Response)
        self._transport.write(response.encode(request.keep_alive))
        if not request.keep_alive:
            self._transport.close()
            self._closed = True
            return
        self._busy = False
        if self._buffer:
            self._next()


class HttpServer:
    """The listening socket plus the set of open connections, so ``close()`` ends them all."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._connections: set[HttpProtocol] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HttpProtocol(self._handler, self._connections.add, self._connections.discard),
            host,
            port,
            backlog=2048,
            reuse_address=True,
        )
        return self._server.sockets[0].getsockname()[1]

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for connection in list(self._connections):
            connection.close()
        await self._server.wait_closed()
