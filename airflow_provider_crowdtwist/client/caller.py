"""One logical API call: rate limit, attempts over the transport, retries, one typed error at the end.

* Configuration is validated first. Every attempt, retries included, takes a token from the shared
  :class:`RateLimiter` and is counted; every answer is reported back to it (a 429 with its
  ``Retry-After`` and the time the request left), so every worker slows down, not only one.
* Retries follow :mod:`.retry`; what is the same for every request (headers with the API key, the
  environment's proxy and CA settings, the retry plans) is done once per client.
* Errors carry ``ambiguous`` and are built outside any ``except`` block from redacted text, so no
  library exception (whose text may hold a URL with the key) rides along as ``__context__``.
* Redirects are not followed: one to another host would carry the ``X-CT-Authorization`` header.
"""

from __future__ import annotations

import json as jsonlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlencode

from airflow_provider_crowdtwist import __version__
from airflow_provider_crowdtwist.client.auth import ApiKeyAuth, HmacAuth
from airflow_provider_crowdtwist.client.config import ClientConfig
from airflow_provider_crowdtwist.client.errors import (
    CrowdTwistConfigError,
    CrowdTwistConnectionError,
    CrowdTwistError,
    CrowdTwistValidationError,
    error_class_for_status,
)
from airflow_provider_crowdtwist.client.models import parse_error_body
from airflow_provider_crowdtwist.client.observe import Call, CallObserver
from airflow_provider_crowdtwist.client.ratelimit import Pacer, RateLimiter
from airflow_provider_crowdtwist.client.redact import (
    GLOBAL_REDACTOR,
    Redactor,
    install_urllib3_filter,
    maskable,
)
from airflow_provider_crowdtwist.client.retry import (
    AttemptResult,
    ResponseLike,
    RetryPlan,
    is_ambiguous_status,
    is_certain_refusal,
    is_retryable_status,
    parse_retry_after,
)
from airflow_provider_crowdtwist.client.transport import ACCEPT_ENCODING, Transport, TransportFailed

USER_AGENT = f"airflow-provider-crowdtwist/{__version__}"
#: The body encoder, built once (``json.dumps`` with options builds a new encoder on every call).
_JSON = jsonlib.JSONEncoder(separators=(",", ":"), allow_nan=False)
MESSAGE_LIMIT = 300


class TransportLike(Protocol):
    """The seam between the client and the wire (the transport, or a fake in unit tests)."""

    origin: str

    def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> ResponseLike: ...
    def close(self) -> None: ...


@dataclass
class _CallContext:
    """State of one logical call across its attempts."""

    method: str
    url: str  # complete: encoded path and query (with the API key when it travels in the query)
    shown: str  # redacted "path?query" for logs and errors
    body: bytes | None
    headers: dict[str, str]
    credit: bool
    extra_secrets: tuple[str, ...]
    history: bool = False  # an activity-history read (counted apart: verification costs requests)
    any_ambiguous: bool = False
    waited: float = 0.0
    attempts: int = 0


class Caller:
    """The request machinery of :class:`~.client.CrowdTwistClient`; safe to share between threads."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        rate_limiter: Pacer | None = None,
        transport: TransportLike | None = None,
        logger: logging.Logger | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: Callable[[float, float], float] = random.uniform,
    ) -> None:
        config.validate()
        self.config, self.log, self._root = config, logger or logging.getLogger(__name__), config.api_root
        # Every client honours the program's cap: without a shared limiter given, it paces itself.
        self.rate_limiter: Pacer = (
            RateLimiter(config.requests_per_minute) if rate_limiter is None else rate_limiter
        )
        self._sleep, self._clock, self._wall_clock = sleep, clock, wall_clock
        self._redactor = Redactor([config.api_key, config.hmac_private_key])
        for secret in (config.api_key, config.hmac_private_key):
            GLOBAL_REDACTOR.add(secret)
        install_urllib3_filter()
        self._auth: ApiKeyAuth | HmacAuth = ApiKeyAuth(config.api_key or "", config.api_key_in)
        self._signer: HmacAuth | None = None
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING, "Accept": "application/json"}
        self._auth_query = ""
        if config.auth_type == "hmac":
            keys = (config.hmac_public_key or "", config.hmac_private_key or "")
            self._auth = self._signer = HmacAuth(*keys, config.hmac_timestamp_unit, clock=wall_clock)
        else:
            headers.update(self._auth.headers())
            self._auth_query = urlencode(self._auth.query())
        self._headers = headers
        self._transport: TransportLike = transport or self._new_transport(config)
        self._counter_lock = threading.Lock()
        self._requests_sent = self._history_requests_sent = 0
        self._queries: dict[tuple[tuple[str, str], ...], str] = {}  # encoded query strings, by params
        self._plan = RetryPlan(
            config.max_retries, config.max_retry_wait, config.backoff_base, config.backoff_max, rng=rng
        )
        self._credit_plan = replace(self._plan, credit_mode=True)
        #: Told of every attempt once it ended (``client/observe.py``): the sync's calls sample.
        self.observer: CallObserver | None = None

    @staticmethod
    def _new_transport(config: ClientConfig) -> Transport:
        try:
            return Transport(
                config.api_root,
                verify=config.verify,
                connect_timeout=config.connect_timeout,
                read_timeout=config.read_timeout,
                max_idle=config.pool_size,
                deadline=config.attempt_deadline,
                max_answer_bytes=config.max_answer_bytes,
                cert=config.client_cert,
                key=config.client_key,
            )
        except (ValueError, OSError) as exc:  # a bad proxy URL, an unreadable CA or certificate file
            problem = f"{type(exc).__name__}: {exc}"
        raise CrowdTwistConfigError(f"cannot set up HTTP(S) to {config.api_root}: {problem}")

    # -- bookkeeping ---------------------------------------------------------------------------

    @property
    def requests_sent(self) -> int:
        """Every HTTP attempt sent so far, retries included."""
        with self._counter_lock:
            return self._requests_sent

    @property
    def history_requests_sent(self) -> int:
        """The part of :attr:`requests_sent` that read activity histories (verifying credits)."""
        with self._counter_lock:
            return self._history_requests_sent

    def _count(self, *, history: bool = False) -> None:
        with self._counter_lock:
            self._requests_sent += 1
            if history:
                self._history_requests_sent += 1

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def redact(self, text: object) -> str:
        """Mask this client's secrets in ``text`` (for callers that log texts of their own)."""
        return self._redactor.redact(text)

    # -- one logical call ----------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        credit: bool = False,
        history: bool = False,
        extra_secrets: tuple[str | None, ...] = (),
    ) -> ResponseLike:
        ctx = self._context(method, path, params, body, credit, extra_secrets)
        ctx.history = history
        plan = self._credit_plan if credit else self._plan
        retries = 0
        while True:
            result = self._attempt(ctx)
            if not result.retryable:
                break
            wait = plan.next_wait(result, retries, ctx.waited, ctx.any_ambiguous)
            if wait is None:
                break
            retries += 1
            ctx.waited += wait
            what = str(result.status) if result.status is not None else _short(result.error)
            self.log.warning(
                "CrowdTwist %s %s -> %s; retry %d of %d in %.2f s",
                *(ctx.method, ctx.shown, what, retries, self.config.max_retries, wait),
            )
            self._sleep(wait)
        response = result.response
        if response is not None and 200 <= response.status_code < 300:
            return response
        raise self._error(ctx, result)

    def _context(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        body: Any,
        credit: bool,
        extra_secrets: tuple[str | None, ...],
    ) -> _CallContext:
        method = method.upper()
        if not path.startswith("/"):
            path = "/" + path
        clean_params = {k: str(v) for k, v in params.items() if v is not None} if params else None
        # a member's password shorter than Airflow's minimum is not masked (client/redact.maskable)
        minimum = self.config.min_length_masked_secret
        extras = tuple(s for s in extra_secrets if isinstance(s, str) and maskable(s, minimum))
        query = self._encode_query(clean_params) if clean_params else ""
        shown = path + ("?" + query if query else "")
        if self._auth_query:
            query = query + ("&" if query else "") + self._auth_query
        headers = self._headers.copy()
        data: bytes | None = None
        problem = ""
        if body is not None:
            try:  # serialised once: the HMAC MD5 must be of exactly the bytes that are sent
                data = _JSON.encode(body).encode("utf-8")
            except (TypeError, ValueError) as exc:
                detail = str(exc) if isinstance(exc, TypeError) else "NaN or infinite number"
                problem = f"request body is not valid JSON ({type(exc).__name__}: {detail})"
            if problem:
                text, where = self._redactor.redact(problem, extras), self._redactor.redact(shown, extras)
                raise CrowdTwistValidationError(text, method=method, path=where)
            headers.update({"Content-Type": "application/json", "Content-Length": str(len(data or b""))})
        elif method not in ("GET", "HEAD"):
            headers["Content-Length"] = "0"
        url = self._root + path + ("?" + query if query else "")
        return _CallContext(method, url, self._redactor.redact(shown, extras), data, headers, credit, extras)

    def _encode_query(self, params: dict[str, str]) -> str:
        """``urlencode`` with a small memo: a sync sends the same ``id_type=...`` on every request."""
        key = tuple(params.items())
        encoded = self._queries.get(key)
        if encoded is None:
            encoded = urlencode(params)
            if len(self._queries) < 64:
                self._queries[key] = encoded
        return encoded

    def _attempt(self, ctx: _CallContext) -> AttemptResult:
        if self.rate_limiter is not None:
            self.rate_limiter.acquire()
        self._count(history=ctx.history)
        started = self._clock()
        response: ResponseLike | None = None
        failed: TransportFailed | None = None
        headers = ctx.headers
        if self._signer is not None:  # signed per attempt: a fresh timestamp each time
            path_url = ctx.url[len(self._transport.origin) :]
            signed = self._signer.sign(ctx.method, path_url, ctx.body, headers.get("Content-Type", ""))
            headers = {**headers, **signed}
        try:
            response = self._transport.send(ctx.method, ctx.url, headers, ctx.body)
        except TransportFailed as exc:
            failed = exc
        finished = self._clock()
        if failed is not None or response is None:
            assert failed is not None
            kind = failed.failure
            detail = self._redactor.redact(failed.detail, ctx.extra_secrets)[: 2 * MESSAGE_LIMIT]
            error = CrowdTwistConnectionError(
                f"{kind.description} ({detail})", method=ctx.method, path=ctx.shown, problem=kind.problem
            )
            result = AttemptResult(error=error, retryable=kind.retryable, ambiguous=kind.ambiguous)
            self.log.debug("CrowdTwist %s %s -> %s", ctx.method, ctx.shown, kind.description)
        else:
            status = response.status_code
            retryable = is_retryable_status(status)
            retry_after = None
            if retryable:
                retry_after = parse_retry_after(response.headers.get("Retry-After"), self._wall_clock)
            # A credit is certainly not applied only on a refusal CrowdTwist documents (see
            # docs/activity-credits.md); a 1xx, 3xx or another 4xx may come after it was applied.
            ambiguous = is_ambiguous_status(status) or (
                ctx.credit and not 200 <= status < 300 and not is_certain_refusal(status)
            )
            result = AttemptResult(response, None, retryable, ambiguous, retry_after)
            if self.rate_limiter is not None:
                if status == 429:
                    self.rate_limiter.record_rate_limited(retry_after, sent_at=started)
                else:
                    self.rate_limiter.record_success()
            if self.log.isEnabledFor(logging.DEBUG):
                elapsed = (finished - started) * 1000
                self.log.debug("CrowdTwist %s %s -> %d in %.0f ms", ctx.method, ctx.shown, status, elapsed)
        if result.ambiguous:
            ctx.any_ambiguous = True
        ctx.attempts += 1
        if self.observer is not None:
            self._observe(ctx, result, finished - started)
        return result

    def _observe(self, ctx: _CallContext, result: AttemptResult, latency: float) -> None:
        """Hand the attempt to the observer; an observer's failure never fails the request."""
        assert self.observer is not None
        response = result.response
        status = response.status_code if response is not None else None
        body = response.content if response is not None else None
        code: str | None
        if result.error is not None:
            code = getattr(result.error, "problem", None)
        elif status is not None and status >= 300 and body:
            code = parse_error_body(body)[0]
        else:
            code = None
        call = Call(
            ctx.method, ctx.shown, ctx.body, status, body, latency, ctx.attempts, result.ambiguous, code
        )
        try:
            self.observer(call)
        except Exception as exc:  # the sample is a debugging aid: it must not cost a row
            self.log.debug("the calls observer failed: %s", type(exc).__name__)

    def _error(self, ctx: _CallContext, result: AttemptResult) -> CrowdTwistError:
        """The typed error for a final failed attempt; ``ambiguous`` if *any* attempt was."""
        if result.error is not None:
            error = result.error
            error.ambiguous = ctx.any_ambiguous
            return error
        response = result.response
        assert response is not None
        status = response.status_code
        if 300 <= status < 400:
            code = None
            location = self._redactor.redact(response.headers.get("Location", "?"), ctx.extra_secrets)
            message = f"unexpected redirect to {location}; check base_url (the API root)"
        else:
            code, message = parse_error_body(response.content)
            message = self._redactor.redact(message or response.reason or "no message", ctx.extra_secrets)
            if len(message) > MESSAGE_LIMIT:  # cut only after redaction: never half a secret
                message = message[: MESSAGE_LIMIT - 3] + "..."
            code = self._redactor.redact(code, ctx.extra_secrets) if code else None
        cls = error_class_for_status(status)
        return cls(
            message,
            status=status,
            code=code,
            method=ctx.method,
            path=ctx.shown,
            ambiguous=ctx.any_ambiguous,
            retry_after=result.retry_after,
        )

    def _json(self, response: ResponseLike, method: str, path: str, *, strict: bool = False) -> Any:
        """The answer's JSON; an empty body is ``{}`` unless ``strict``.

        A 2xx whose body is not JSON (an HTML page, or with ``strict`` an empty body) raises an error
        that is ambiguous for any write: the server said yes to *something* after the request arrived.
        """
        content = response.content
        if content and content.strip():
            try:
                return jsonlib.loads(content)
            except ValueError:
                pass
        elif not strict:
            return {}
        what = "empty" if not content or not content.strip() else "not JSON"
        raise CrowdTwistError(
            f"the response is {what} (HTTP {response.status_code})",
            status=response.status_code,
            method=method,
            path=self._redactor.redact(path),
            ambiguous=method != "GET",
        )


def _short(error: CrowdTwistError | None) -> str:
    return error.message if error is not None else "error"


__all__ = ["USER_AGENT", "Caller", "TransportLike"]
