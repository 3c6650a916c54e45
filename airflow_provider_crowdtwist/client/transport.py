"""The client's one HTTP transport: a ``urllib3`` pool to the API's origin, made hard to fool.

``urllib3`` keeps connections, TLS, proxies, framing and ``gzip``/``x-gzip``/``deflate`` decoding;
proxies and CA bundles come from the environment as ``requests`` resolves them (``requests.utils``).
Added is what an exactly-once credit needs: **interim answers skipped** (``http.client`` skips only
``100``: a ``103`` taken as the answer made an applied credit look refused); **a cap on the decoded
size** (decoded in bounded slices: a gzip bomb stops at ``max_answer_bytes``); **a deadline per
attempt** (a read timeout bounds one ``recv``; a server trickling bytes is stopped here); and each
failure **classified by its phase**: before the request's first byte is handed to the socket nothing
can have been applied; after it, a timeout, reset, close, cap or deadline is ambiguous.
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
from typing import Any
from urllib.parse import urlsplit

import urllib3
from requests.utils import get_auth_from_url, get_environ_proxies, select_proxy
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import NameResolutionError, ProtocolError, ProxyError, ReadTimeoutError

from airflow_provider_crowdtwist.client.retry import TransportFailure

#: The codings urllib3 decodes without optional libraries (what ``requests`` sends, less br/zstd).
ACCEPT_ENCODING = "gzip, deflate"
#: A CrowdTwist answer is a few KB; anything near this is not one.
DEFAULT_MAX_ANSWER_BYTES = 8 * 1024 * 1024
_SLICE = 64 * 1024
#: Never a retry or a redirect behind the client's back (built once: ``retries=False`` builds one per call).
_NO_RETRY = urllib3.Retry(total=False, redirect=False, raise_on_redirect=False)

#: Per thread: the deadline (``time.monotonic``) of the attempt in flight, and whether it was sent.
_ATTEMPT = threading.local()


class Answer:
    """What the client reads of an answer; built once per answer with no other work."""

    __slots__ = ("content", "headers", "reason", "status_code", "url")

    def __init__(self, status_code: int, reason: str, headers: Any, content: bytes, url: str) -> None:
        self.status_code = status_code
        self.reason = reason
        self.headers = headers  # case-insensitive .get()
        self.content = content  # decoded
        self.url = url


class TransportFailed(Exception):
    """One attempt failed below HTTP: ``failure`` says whether it may have been applied."""

    def __init__(self, failure: TransportFailure, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure
        self.detail = detail


class DeadlinePassed(TimeoutError):
    """The attempt's overall deadline passed while waiting for the answer."""


class AnswerTooLarge(Exception):
    """The answer passed ``max_answer_bytes``."""


class _Response(http.client.HTTPResponse):
    """``http.client``'s response, reading through :class:`_DeadlineIO` and skipping every interim
    answer (1xx) but ``101 Switching Protocols``, which is final."""

    def __init__(self, sock: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(_Shim(sock), *args, **kwargs)  # type: ignore[arg-type]

    def _read_status(self) -> tuple[str, int, str]:
        while True:
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not 100 < status < 200 or status == 101:
                return version, status, reason
            http.client._read_headers(self.fp)  # type: ignore[attr-defined]


class _Shim:
    def __init__(self, sock: Any) -> None:
        self.sock = sock

    def makefile(self, mode: str) -> io.BufferedReader:
        self.sock._io_refs += 1  # as socket.makefile(): the socket stays open while the reader is
        return io.BufferedReader(_DeadlineIO(self.sock, "rb"))


class _DeadlineIO(socket.SocketIO):
    """``socket.makefile()``'s reader; no ``recv`` waits past the attempt's deadline."""

    def __init__(self, sock: Any, mode: Any) -> None:
        super().__init__(sock, mode)
        self._socket, self._timeout = sock, sock.gettimeout()

    def readinto(self, buffer: Any) -> int:
        deadline = getattr(_ATTEMPT, "deadline", None)
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlinePassed("the attempt's deadline passed")
            if self._timeout is None or left < self._timeout:  # (else the read timeout is the nearer)
                self._socket.settimeout(left)
        try:
            return super().readinto(buffer) or 0
        except TimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlinePassed("the attempt's deadline passed") from None
            raise


class _Phase:
    """Writes a request with one ``send`` (``http.client`` writes head and body apart: two system calls,
    two GIL hand-overs), after connecting; the attempt is marked sent just before it."""

    sock: Any
    _gathered: list[bytes] | None = None

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._gathered = []
        try:
            super().request(*args, **kwargs)  # type: ignore[misc]
            data = b"".join(self._gathered)
        finally:
            self._gathered = None
        if self.sock is None:
            self.connect()  # type: ignore[attr-defined]  # a failure here left nothing on the wire
        _ATTEMPT.sent = True
        super().send(data)  # type: ignore[misc]

    def send(self, data: Any) -> None:
        if self._gathered is not None and isinstance(data, bytes):
            self._gathered.append(data)
            return
        if self.sock is None:
            self.connect()  # type: ignore[attr-defined]
        _ATTEMPT.sent = True
        super().send(data)  # type: ignore[misc]


_Connection = type("_Connection", (_Phase, HTTPConnection), {"response_class": _Response})
_TLSConnection = type("_TLSConnection", (_Phase, HTTPSConnection), {"response_class": _Response})
_POOLS = {
    "http": type("_Pool", (HTTPConnectionPool,), {"ConnectionCls": _Connection}),
    "https": type("_TLSPool", (HTTPSConnectionPool,), {"ConnectionCls": _TLSConnection}),
}


def tls_context(verify: bool | str, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """The TLS settings ``requests`` would use for ``verify``, with the client certificate loaded."""
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


def _connect_failure(exc: BaseException) -> TransportFailure:
    """Nothing was sent: never ambiguous."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError, urllib3.exceptions.SSLError)):
        return TransportFailure("TLS error", retryable=False, ambiguous=False, problem="tls")
    if isinstance(exc, NameResolutionError) or isinstance(cause, socket.gaierror):
        return TransportFailure("could not connect: the host name does not resolve (DNS)", True, False, "dns")
    if isinstance(exc, ProxyError):
        return TransportFailure("proxy error", retryable=True, ambiguous=False)
    if isinstance(exc, ConnectionRefusedError) or isinstance(cause, ConnectionRefusedError):
        return TransportFailure("could not connect: connection refused", True, False, "refused")
    if isinstance(exc, (TimeoutError, urllib3.exceptions.ConnectTimeoutError)):
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
    if isinstance(exc, urllib3.exceptions.DecodeError) or isinstance(inner, (zlib.error, EOFError)):
        return TransportFailure("the response could not be decoded", retryable=False, ambiguous=True)
    return TransportFailure("connection error", retryable=True, ambiguous=True)


def _describe(exc: BaseException) -> str:
    """Type names only: ``urllib3``'s texts may quote the URL (and with it a key in the query)."""
    inner = exc.args[1] if isinstance(exc, ProtocolError) and len(exc.args) > 1 else None
    return f"{type(exc).__name__}: {type(inner).__name__}" if inner is not None else type(exc).__name__


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
        self.proxy = select_proxy(self.origin + "/", get_environ_proxies(self.origin + "/", no_proxy=None))
        if verify is True:
            verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self.verify, self.connect_timeout, self.read_timeout = verify, connect_timeout, read_timeout
        self._deadline = deadline if deadline is not None else connect_timeout + read_timeout
        self._max = max_answer_bytes
        timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        options: dict[str, Any] = {"maxsize": max_idle, "timeout": timeout}
        if parts.scheme == "https":
            options["ssl_context"] = tls_context(verify, cert, key)
            if verify is False:
                options.update(cert_reqs="CERT_NONE", assert_hostname=False)
        manager: urllib3.PoolManager
        if self.proxy:
            if not self.proxy.startswith(("http://", "https://")):
                raise ValueError("only http(s) proxies are supported (HTTPS_PROXY / HTTP_PROXY)")
            user, password = get_auth_from_url(self.proxy)
            auth = urllib3.make_headers(proxy_basic_auth=f"{user}:{password}") if user else None
            manager = urllib3.ProxyManager(self.proxy, proxy_headers=auth, **options)
        else:
            manager = urllib3.PoolManager(**options)
        manager.pool_classes_by_scheme = _POOLS
        self._manager = manager
        self._pool = manager.connection_from_url(self.origin)
        # Through a forwarding (plain http) proxy the request line carries the whole URL.
        self._absolute = bool(self.proxy) and parts.scheme == "http"
        self._extra = (getattr(manager, "proxy_headers", None) or {}) if self._absolute else {}

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Answer:
        """One attempt; raises :class:`TransportFailed` (never with the URL or a header in its text)."""
        if not url.startswith(self.origin):
            raise ValueError("the URL is not on this transport's origin")
        target = url if self._absolute else (url[len(self.origin) :] or "/")
        _ATTEMPT.sent = False
        _ATTEMPT.deadline = time.monotonic() + self._deadline
        failure: TransportFailed | None = None
        response: Any = None
        try:
            response = self._pool.urlopen(
                method,
                target,
                body=body,
                headers={**headers, **self._extra} if self._extra else headers,
                retries=_NO_RETRY,
                redirect=False,
                preload_content=False,
                assert_same_host=False,
            )
            content = self._read(response)
        except _FAILURES as exc:
            kind = _sent_failure(exc) if _ATTEMPT.sent else _connect_failure(exc)
            failure = TransportFailed(kind, _describe(exc))
        except ValueError as exc:  # http.client refused to build the request: nothing was sent
            failure = TransportFailed(TransportFailure("invalid request", False, False), type(exc).__name__)
        finally:
            _ATTEMPT.deadline = None
        if failure is not None:  # raised outside the except block: no __context__ to leak
            if response is not None:
                response.close()
                response.release_conn()
            raise failure
        return Answer(response.status, response.reason or "", response.headers, content, url)

    def _read(self, response: Any) -> bytes:
        """The body, decoded a slice at a time within the cap; the connection goes back to the pool."""
        headers = response.headers
        length = headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self._max:
            raise AnswerTooLarge("the answer announces more than max_answer_bytes")
        if length.isdigit() and "Content-Encoding" not in headers:  # the common case: one read
            content: bytes = response.read(decode_content=False)
            response.release_conn()
            return content
        parts: list[bytes] = []
        size = 0
        while True:
            data = response.read(_SLICE)
            if not data:
                break
            size += len(data)
            if size > self._max:
                raise AnswerTooLarge("the decoded answer passed max_answer_bytes")
            parts.append(data)
        response.release_conn()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        self._manager.clear()


__all__ = ["ACCEPT_ENCODING", "Answer", "AnswerTooLarge", "DeadlinePassed", "Transport", "TransportFailed"]
