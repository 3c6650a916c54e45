"""The client's one HTTP transport: a ``urllib3`` connection pool to the API's origin, hardened.

``urllib3`` (the layer ``requests`` sits on) keeps the connections, TLS, proxies and chunked framing.
What is added here is what an exactly-once credit needs and neither library gives:

* **interim answers skipped**: ``http.client`` skips only ``100 Continue``; a ``103 Early Hints`` (any
  1xx but 101) would be taken as *the* answer and the credit counted failed though it was applied;
* **a cap on the decoded size** (``max_answer_bytes``): the body is read and decoded in slices, so a
  gzip bomb stops at the cap instead of filling memory; ``gzip``, ``x-gzip`` and ``deflate`` decoded;
* **a deadline per attempt**: a socket timeout bounds one ``recv``, so a server trickling one byte at
  a time would hold a request for ever; every read here gets only the time left to the deadline;
* **each failure classified by its phase**: nothing left the machine when the connect (DNS, TCP, TLS,
  proxy tunnel) failed, so it is not ambiguous; once the request was being written, a timeout, reset,
  close, cap or deadline may follow an applied request: ambiguous.

The environment is read as ``requests`` reads it (``requests.utils``: ``HTTPS_PROXY``/``https_proxy``,
``NO_PROXY`` with CIDR and ports, ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``), once per transport.
"""

from __future__ import annotations

import http.client
import io
import os
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import urllib3
from requests.utils import get_auth_from_url, get_environ_proxies, select_proxy
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import (
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
)

from airflow_provider_crowdtwist.client.retry import TransportFailure

#: The codings decoded here (``requests`` would add br/zstd when those libraries exist).
ACCEPT_ENCODING = "gzip, deflate"
#: A CrowdTwist answer is a few KB; anything near this is not one.
DEFAULT_MAX_ANSWER_BYTES = 8 * 1024 * 1024
_SLICE = 64 * 1024
_NO_TIMEOUT = 1e9


class Answer:
    """What the client reads of an answer: ``status_code``, ``reason``, ``headers`` (case-insensitive
    ``.get``), ``content`` (decoded), ``url``; built once per answer with no other work."""

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


class DeadlinePassed(TimeoutError):
    """The attempt's overall deadline passed while reading."""


class AnswerTooLarge(Exception):
    """The answer passed ``max_answer_bytes`` (raw or decoded)."""


#: Per thread: the deadline (``time.monotonic``) of the attempt in flight and whether bytes were sent.
_ATTEMPT = threading.local()


class _DeadlineReader(http.client.HTTPResponse):
    """``http.client``'s response with two changes: every 1xx but 101 is skipped like a 100, and each
    ``recv`` gets at most the time left to the attempt's deadline."""

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(_Shim(sock), *args, **kwargs)  # type: ignore[arg-type]

    def _read_status(self) -> tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not (100 < status < 200) or status == 101:
                return version, status, reason
            http.client._read_headers(self.fp)  # type: ignore[attr-defined]  # an interim answer: next


class _Shim:
    """Hands ``http.client`` a reader that never waits past the deadline, instead of ``makefile()``."""

    __slots__ = ("sock",)

    def __init__(self, sock: Any) -> None:
        self.sock = sock

    def makefile(self, mode: str) -> io.BufferedReader:
        self.sock._io_refs += 1  # as socket.makefile(): the socket stays open while the reader is
        return io.BufferedReader(_DeadlineIO(self.sock, "rb"))


class _DeadlineIO(socket.SocketIO):
    """``socket.makefile()``'s raw reader, never waiting past the deadline in ``_ATTEMPT``."""

    def __init__(self, sock: Any, mode: Any) -> None:
        super().__init__(sock, mode)
        self._socket = sock
        self._timeout = sock.gettimeout()

    def readinto(self, buffer: Any) -> int:
        deadline = getattr(_ATTEMPT, "deadline", None)
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlinePassed("the attempt's deadline passed")
            self._socket.settimeout(min(left, self._timeout or _NO_TIMEOUT))
        try:
            return super().readinto(buffer) or 0
        except TimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlinePassed("the attempt's deadline passed") from None
            raise


class _Phase:
    """Marks the attempt as sent just before its first byte may leave (after a successful connect)."""

    sock: Any

    def send(self, data: Any) -> None:
        if self.sock is None:  # connect first: a failure here left nothing on the wire
            self.connect()  # type: ignore[attr-defined]
        _ATTEMPT.sent = True
        super().send(data)  # type: ignore[misc]


class _Connection(_Phase, HTTPConnection):
    response_class = _DeadlineReader


class _TLSConnection(_Phase, HTTPSConnection):
    response_class = _DeadlineReader


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


def tls_context(verify: bool | str, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """The TLS settings ``requests`` would use for ``verify`` (already resolved from the environment),
    with the client certificate (and its key, when apart) loaded."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif verify is True:
        import certifi  # a dependency of requests: the bundle requests verifies against

        context = ssl.create_default_context(cafile=certifi.where())
    elif os.path.isdir(verify):
        context = ssl.create_default_context(capath=verify)
    else:
        context = ssl.create_default_context(cafile=verify)
    if cert:
        context.load_cert_chain(cert, key)
    return context


def environment(url: str, verify: bool | str) -> tuple[str | None, bool | str]:
    """``(proxy URL or None, verify)`` for ``url`` as ``requests`` resolves them from the environment."""
    proxy = select_proxy(url, get_environ_proxies(url, no_proxy=None)) or None
    if verify is True:
        verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return proxy, verify


class _Decoder:
    """Decodes ``Content-Encoding`` slice by slice, never producing more than ``limit`` bytes."""

    def __init__(self, coding: str | None, limit: int) -> None:
        codings = [c.strip().lower() for c in (coding or "").split(",") if c.strip()]
        self._steps = [c for c in reversed(codings) if c in ("gzip", "x-gzip", "deflate")]
        self._limit = limit
        self._objects = [self._new(step) for step in self._steps]
        self._fed = [False] * len(self._steps)

    @staticmethod
    def _new(step: str) -> Any:
        return zlib.decompressobj(zlib.MAX_WBITS | 32 if step != "deflate" else zlib.MAX_WBITS)

    def feed(self, data: bytes, out: list[bytes], produced: int) -> int:
        if not self._steps:
            out.append(data)
            return produced + len(data)
        for index in range(len(self._objects)):
            data = self._step(index, data, produced if index == len(self._objects) - 1 else 0)
        out.append(data)
        return produced + len(data)

    def _step(self, index: int, data: bytes, produced: int) -> bytes:
        parts: list[bytes] = []
        room = self._limit - produced
        while data:
            obj = self._objects[index]
            try:
                chunk = obj.decompress(data, room + 1)
            except zlib.error:
                if self._steps[index] != "deflate" or self._fed[index]:
                    raise
                obj = self._objects[index] = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate
                chunk = obj.decompress(data, room + 1)
            self._fed[index] = True
            parts.append(chunk)
            room -= len(chunk)
            if room < 0:
                raise AnswerTooLarge("the decoded answer passed the size cap")
            data = obj.unconsumed_tail
            if not data and obj.eof and obj.unused_data:  # another gzip member follows
                data = obj.unused_data
                self._objects[index] = self._new(self._steps[index])
        return b"".join(parts)

    def finish(self) -> None:
        if not all(obj.eof for obj in self._objects):
            raise EOFError("the compressed answer ends early")


def _connect_failure(exc: BaseException) -> TransportFailure:
    """Nothing was sent: never ambiguous."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError, urllib3.exceptions.SSLError)):
        return TransportFailure("TLS error", retryable=False, ambiguous=False, problem="tls")
    if isinstance(exc, NameResolutionError) or isinstance(cause, socket.gaierror):
        return TransportFailure("could not connect: the host name does not resolve (DNS)", True, False, "dns")
    if isinstance(exc, ProxyError):
        return TransportFailure("proxy error", retryable=True, ambiguous=False)
    if isinstance(cause, ConnectionRefusedError) or isinstance(exc, ConnectionRefusedError):
        return TransportFailure("could not connect: connection refused", True, False, "refused")
    if isinstance(exc, (TimeoutError, urllib3.exceptions.ConnectTimeoutError)) and not isinstance(
        exc, NewConnectionError
    ):
        return TransportFailure("could not connect: connect timeout", True, False, "timeout")
    if isinstance(exc, NewConnectionError) and "timed out" in str(exc):
        return TransportFailure("could not connect: connect timeout", True, False, "timeout")
    return TransportFailure("could not connect: no connection", True, False, "other")


def _sent_failure(exc: BaseException) -> TransportFailure:
    """The request was (at least partly) written: it may have been applied."""
    inner = exc.args[1] if isinstance(exc, ProtocolError) and len(exc.args) > 1 else exc
    if isinstance(inner, DeadlinePassed) or isinstance(exc.__context__, DeadlinePassed):
        return TransportFailure("the attempt's deadline passed", True, True, "deadline")
    if isinstance(inner, AnswerTooLarge):
        return TransportFailure("the answer is larger than max_answer_bytes", False, True, "too_large")
    if isinstance(inner, (TimeoutError, ReadTimeoutError)):
        return TransportFailure("read timeout", retryable=True, ambiguous=True, problem="timeout")
    if isinstance(inner, http.client.RemoteDisconnected):  # (a subclass of ConnectionResetError)
        return TransportFailure("connection error: closed without an answer", True, True, "closed")
    if isinstance(inner, ConnectionResetError):
        return TransportFailure("connection error: the connection was reset", True, True, "reset")
    if isinstance(inner, (http.client.IncompleteRead, urllib3.exceptions.IncompleteRead)):
        return TransportFailure("connection broken while reading the response", True, True, "closed")
    if isinstance(inner, (zlib.error, EOFError)):
        return TransportFailure("the response could not be decoded", retryable=False, ambiguous=True)
    return TransportFailure("connection error", retryable=True, ambiguous=True)


def _describe(exc: BaseException) -> str:
    """``Type``, short: urllib3's texts may quote the URL, so only the type travels (and is redacted)."""
    inner = exc.args[1] if isinstance(exc, ProtocolError) and len(exc.args) > 1 else exc
    if isinstance(inner, BaseException) and inner is not exc:
        return f"{type(exc).__name__}: {type(inner).__name__}"
    return type(exc).__name__


_FAILURES = (OSError, Urllib3Error, http.client.HTTPException, zlib.error, EOFError, AnswerTooLarge)


class Transport:
    """Requests to one origin (``scheme://host:port``) over a ``urllib3`` pool; thread-safe."""

    def __init__(
        self,
        base_url: str,
        *,
        verify: bool | str,
        connect_timeout: float,
        read_timeout: float,
        max_idle: int,
        deadline: float | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        cert: str | None = None,
        key: str | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.proxy, self.verify = environment(self.origin + "/", verify)
        verify = self.verify
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self._deadline = deadline if deadline is not None else connect_timeout + read_timeout
        self._max = max_answer_bytes
        timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        tls: dict[str, Any] = {}
        if parts.scheme == "https":
            tls = {
                "ssl_context": tls_context(verify, cert, key),
                "cert_reqs": "CERT_NONE" if verify is False else "CERT_REQUIRED",
                "assert_hostname": False if verify is False else None,
            }
        manager: urllib3.PoolManager
        if self.proxy:
            if not self.proxy.startswith(("http://", "https://")):
                raise ValueError("only http(s) proxies are supported (HTTPS_PROXY / HTTP_PROXY)")
            user, password = get_auth_from_url(self.proxy)
            headers = urllib3.make_headers(proxy_basic_auth=f"{user}:{password}") if user else None
            manager = urllib3.ProxyManager(
                self.proxy, proxy_headers=headers, maxsize=max_idle, timeout=timeout, **tls
            )
        else:
            manager = urllib3.PoolManager(maxsize=max_idle, timeout=timeout, **tls)
        manager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}
        self._manager = manager
        self._pool = manager.connection_from_url(self.origin)
        # Through a forwarding (plain http) proxy the request line carries the whole URL.
        self._absolute = bool(self.proxy) and parts.scheme == "http"
        self._proxy_headers = getattr(manager, "proxy_headers", None) or {} if self._absolute else {}

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Answer:
        """One attempt; raises :class:`TransportFailed` (never with the URL or a header in its text)."""
        if not url.startswith(self.origin):
            raise ValueError("the URL is not on this transport's origin")
        target = url if self._absolute else (url[len(self.origin) :] or "/")
        if self._proxy_headers:
            headers = {**headers, **self._proxy_headers}
        _ATTEMPT.sent = False
        _ATTEMPT.deadline = time.monotonic() + self._deadline
        failure: TransportFailed | None = None
        response: Any = None
        content = b""
        try:
            response = self._pool.urlopen(
                method,
                target,
                body=body,
                headers=headers,
                retries=False,
                redirect=False,
                preload_content=False,
                decode_content=False,
                assert_same_host=False,
            )
            content = self._read(response)
        except _FAILURES as exc:
            kind = _sent_failure(exc) if _ATTEMPT.sent else _connect_failure(exc)
            failure = TransportFailed(kind, _describe(exc))
        except ValueError as exc:  # http.client refused to build the request: nothing was sent
            refused = TransportFailure("invalid request", retryable=False, ambiguous=False)
            failure = TransportFailed(refused, type(exc).__name__)
        finally:
            _ATTEMPT.deadline = None
        if failure is not None:  # raised outside the except block: no __context__ to leak
            if response is not None:
                response.close()
                response.release_conn()
            raise failure
        return Answer(response.status, response.reason or "", response.headers, content, url)

    def _read(self, response: Any) -> bytes:
        """The whole body, decoded, within the cap; the connection goes back to the pool after."""
        decoder = _Decoder(response.headers.get("Content-Encoding"), self._max)
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self._max:
            raise AnswerTooLarge("the answer announces more than the size cap")
        out: list[bytes] = []
        produced = raw = 0
        for data in _slices(response):
            raw += len(data)
            if raw > self._max:
                raise AnswerTooLarge("the answer passed the size cap")
            produced = decoder.feed(data, out, produced)
        if raw:
            decoder.finish()
        response.release_conn()
        return out[0] if len(out) == 1 else b"".join(out)

    def close(self) -> None:
        self._manager.clear()


def _slices(response: Any) -> Iterator[bytes]:
    while True:
        data = response.read(_SLICE, decode_content=False)
        if not data:
            return
        yield data


__all__ = [
    "ACCEPT_ENCODING",
    "DEFAULT_MAX_ANSWER_BYTES",
    "Answer",
    "AnswerTooLarge",
    "DeadlinePassed",
    "Transport",
    "TransportFailed",
    "environment",
    "tls_context",
]
