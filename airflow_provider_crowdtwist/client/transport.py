"""The client's direct HTTP/1.1 transport: persistent ``http.client`` connections, reused LIFO.

Why not ``requests`` for every request: at 64 worker threads, of the CPU a request costs the client
process, ``http.client`` with one kept-alive connection per worker is the only path that leaves room
for the engine's and the client's own bookkeeping under the per-row target (the figures, measured with
``benchmarks/transport_cpu.py``, are in docs/performance.md). ``http.client`` is the standard
library's HTTP client, which ``urllib3`` itself builds its connections on; what is left here is only
the part ``requests`` and ``urllib3`` add that a single-host JSON API needs:

* a small stack of idle keep-alive connections, each checked for a close by the server before it is
  reused (as ``urllib3`` does), so a stale connection never turns a request into an ambiguous one;
* connect and read timeouts apart (the socket gets the connect timeout, then the read timeout);
* TLS with the same CA choice as ``requests``: ``verify=True`` is ``certifi``'s bundle, a string is a
  CA file or directory (``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` are resolved by the client first),
  ``False`` checks nothing;
* ``gzip``/``deflate`` answers decoded, as ``requests`` would;
* each failure classified by the *phase* it happened in, which is more exact than guessing it from an
  exception type: nothing left the machine when the connect (DNS, TCP, TLS handshake) failed, so it is
  not ambiguous; after the request was written, a timeout, reset or close may have been applied.

The client falls back to ``requests`` (``Session.send``) whenever this transport cannot do exactly
what ``requests`` would: a proxy is configured for the host, the caller passed a session of its own,
or ``Session.send`` is patched (``requests_mock`` in unit tests). See ``CrowdTwistClient._direct``.
"""

from __future__ import annotations

import gzip
import http.client
import os
import select
import socket
import ssl
import threading
import zlib
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_crowdtwist.client.retry import TransportFailure

#: What ``requests`` sends by default, limited to the codings decoded here.
ACCEPT_ENCODING = "gzip, deflate"


class Answer:
    """The parts of ``requests.Response`` the client reads: ``status_code``, ``reason``, ``headers``
    (case-insensitive ``.get``), ``content``; built once per answer with no other work."""

    __slots__ = ("content", "headers", "reason", "status_code", "url")

    def __init__(self, status_code: int, reason: str, headers: Any, content: bytes, url: str) -> None:
        self.status_code = status_code
        self.reason = reason
        self.headers = headers
        self.content = content
        self.url = url


class TransportFailed(Exception):
    """One attempt failed below HTTP: ``failure`` says whether it may have been applied."""

    def __init__(self, failure: TransportFailure, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail


class _ConnectionMixin:
    """Connect under the connect timeout, then read under the read timeout; watch the idle socket;
    write a request with one system call."""

    connect_timeout: float
    read_timeout: float
    sock: Any
    timeout: Any
    idle_poll: Any = None

    _gathered: list[bytes] | None = None

    def connect(self) -> None:
        self.timeout = self.connect_timeout
        super().connect()  # type: ignore[misc]
        self.sock.settimeout(self.read_timeout)
        # Registered once per socket, so the check before each reuse is one poll(0) system call.
        self.idle_poll = select.poll()
        self.idle_poll.register(self.sock, select.POLLIN | select.POLLERR | select.POLLHUP)

    def send(self, data: Any) -> None:
        if self._gathered is not None and isinstance(data, bytes):
            self._gathered.append(data)
            return
        super().send(data)  # type: ignore[misc]

    def render(self, method: str, target: str, body: bytes | None, headers: dict[str, str]) -> bytes:
        """The request's bytes, as ``request()`` builds them, without sending any; ``send()`` them next.

        ``http.client`` sends the head and the body with a ``send()`` each: two system calls, two TCP
        segments, and -- with 64 worker threads -- two hand-overs of the GIL per request, each a
        chance for another thread to run first. Gathered, a request is one write. And whatever
        ``request()`` refuses (a header value with a line break, a bad method) is refused before a
        byte left, so it is certainly not applied.
        """
        self._gathered = []
        try:
            self.request(method, target, body=body, headers=headers)  # type: ignore[attr-defined]
            return b"".join(self._gathered)
        finally:
            self._gathered = None


class _HTTPConnection(_ConnectionMixin, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_ConnectionMixin, http.client.HTTPSConnection):
    pass


def tls_context(verify: bool | str) -> ssl.SSLContext:
    """The TLS settings ``requests`` would use for ``verify`` (already resolved from the environment)."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if verify is True:
        import certifi  # a dependency of requests: the bundle requests verifies against

        return ssl.create_default_context(cafile=certifi.where())
    if os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify)


def _dropped(conn: _HTTPConnection | _HTTPSConnection) -> bool:
    """True when an idle connection was closed by the server (readable while idle means EOF)."""
    if conn.sock is None or conn.idle_poll is None:
        return True
    try:
        return bool(conn.idle_poll.poll(0))
    except (OSError, ValueError):
        return True


def _decode(content: bytes, coding: str | None) -> bytes:
    if not coding or not content:
        return content
    coding = coding.strip().lower()
    if coding == "gzip":
        return gzip.decompress(content)
    if coding == "deflate":
        try:
            return zlib.decompress(content)
        except zlib.error:
            return zlib.decompress(content, -zlib.MAX_WBITS)  # raw deflate, as some servers send it
    return content


def _describe(exc: BaseException) -> str:
    """``Type: text``, short: the text of a socket or ``http.client`` error names no URL or header."""
    text = str(exc)
    if isinstance(exc, http.client.IncompleteRead):
        text = f"{len(exc.partial)} bytes read, {exc.expected} more expected"
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _connect_failure(exc: BaseException) -> TransportFailure:
    """Nothing was sent: never ambiguous."""
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
        return TransportFailure("TLS error", retryable=False, ambiguous=False, problem="tls")
    if isinstance(exc, socket.gaierror):
        return TransportFailure("could not connect: the host name does not resolve (DNS)", True, False, "dns")
    if isinstance(exc, ConnectionRefusedError):
        return TransportFailure("could not connect: connection refused", True, False, "refused")
    if isinstance(exc, TimeoutError):
        return TransportFailure("could not connect: connect timeout", True, False, "timeout")
    return TransportFailure("could not connect: no connection", True, False, "other")


def _sent_failure(exc: BaseException) -> TransportFailure:
    """The request was (at least partly) written: it may have been applied."""
    if isinstance(exc, TimeoutError):
        return TransportFailure("read timeout", retryable=True, ambiguous=True, problem="timeout")
    if isinstance(exc, http.client.RemoteDisconnected):  # (a subclass of ConnectionResetError)
        return TransportFailure("connection error: closed without an answer", True, True, "closed")
    if isinstance(exc, ConnectionResetError):
        return TransportFailure("connection error: the connection was reset", True, True, "reset")
    if isinstance(exc, http.client.IncompleteRead):
        return TransportFailure("connection broken while reading the response", True, True, "closed")
    if isinstance(exc, (zlib.error, EOFError, gzip.BadGzipFile)):
        return TransportFailure("the response could not be decoded", retryable=False, ambiguous=True)
    return TransportFailure("connection error", retryable=True, ambiguous=True)


class DirectTransport:
    """Requests to one origin (``scheme://host:port``) over reused connections; thread-safe."""

    def __init__(
        self,
        base_url: str,
        *,
        verify: bool | str,
        connect_timeout: float,
        read_timeout: float,
        max_idle: int,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._context = tls_context(verify) if self._https else None
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_idle = max(1, max_idle)
        self._idle: list[_HTTPConnection | _HTTPSConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _new(self) -> _HTTPConnection | _HTTPSConnection:
        conn: _HTTPConnection | _HTTPSConnection
        if self._https:
            conn = _HTTPSConnection(self._host, self._port, context=self._context)
        else:
            conn = _HTTPConnection(self._host, self._port)
        conn.connect_timeout = self._connect_timeout
        conn.read_timeout = self._read_timeout
        return conn

    def _checkout(self) -> _HTTPConnection | _HTTPSConnection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._new()
            if not _dropped(conn):
                return conn
            conn.close()

    def _checkin(self, conn: _HTTPConnection | _HTTPSConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Answer:
        """One attempt; raises :class:`TransportFailed` (never with the URL or a header in its text)."""
        if not url.startswith(self.origin):
            raise ValueError("the URL is not on this transport's origin")
        target = url[len(self.origin) :] or "/"
        conn = self._checkout()
        failure: TransportFailed | None = None
        if conn.sock is None:
            try:
                conn.connect()
            except (OSError, http.client.HTTPException) as exc:
                failure = TransportFailed(_connect_failure(exc), _describe(exc))
        data = b""
        if failure is None:
            try:
                data = conn.render(method, target, body, headers)
            except (ValueError, http.client.HTTPException) as exc:  # its text may quote a header value
                refused = TransportFailure("invalid request", retryable=False, ambiguous=False)
                failure = TransportFailed(refused, type(exc).__name__)
        if failure is None:
            try:
                conn.send(data)
                response = conn.getresponse()
                content = _decode(response.read(), response.getheader("Content-Encoding"))
            except (OSError, http.client.HTTPException, zlib.error, EOFError) as exc:
                failure = TransportFailed(_sent_failure(exc), _describe(exc))
        if failure is not None:  # raised outside the except block: no __context__ to leak
            conn.close()
            raise failure
        if response.will_close:
            conn.close()
        else:
            self._checkin(conn)
        return Answer(response.status, response.reason, response.msg, content, url)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


__all__ = ["ACCEPT_ENCODING", "Answer", "DirectTransport", "TransportFailed", "tls_context"]
