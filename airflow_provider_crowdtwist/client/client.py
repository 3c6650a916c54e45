"""``CrowdTwistClient``: one ``requests.Session`` shared by many worker threads.

Design points (see docs/architecture.md for the contract):

* Configuration is validated in ``__init__``: bad settings fail before the first request.
* Every attempt, retries included, first takes a token from the shared :class:`RateLimiter` and is
  counted in ``requests_sent``; every answer is reported back to it (a 429 with its ``Retry-After``
  and the time the request left), so the limiter learns the program's real rate and every worker
  slows down, not only the one that got the 429.
* Retries follow :mod:`.retry` (only 429, 5xx, connection errors; backoff with full jitter,
  ``Retry-After`` honoured, total wait capped) in a plain loop.
* The hot path does per run what can be done per run (see docs/performance.md): the header template
  (with the API key), the environment's proxy and CA-bundle settings, the retry plans. Requests go
  over :class:`~.transport.DirectTransport` (kept-alive ``http.client`` connections: less CPU a
  request than ``Session.send``, figures in docs/performance.md) unless a proxy
  is configured for the host, the caller passed a session of its own, or ``Session.send`` is patched
  (``requests_mock``); then the client builds the ``PreparedRequest`` itself and hands it to
  ``Session.send``, skipping ``Session.request``'s re-parsing, hook and environment lookups.
  Cookies are not kept: the API is stateless and authenticates every request by key.
* Errors are typed and carry ``ambiguous``; they are built *outside* any ``except`` block from
  redacted text, so neither their text nor ``__cause__``/``__context__`` can hold a ``requests``
  exception whose message embeds a URL with the API key.
* Redirects are not followed: a redirect to another host would carry the ``X-CT-Authorization``
  header there.
"""

from __future__ import annotations

import json as jsonlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict
from requests.utils import default_headers

from airflow_provider_crowdtwist import __version__
from airflow_provider_crowdtwist.client.auth import ApiKeyAuth, HmacAuth
from airflow_provider_crowdtwist.client.config import (
    CREDIT_ID_TYPES,
    ID_TYPE_ATTRIBUTES,
    ID_TYPES,
    PII_FREE_ID_TYPES,
    UPDATE_ONLY_FIELDS,
    ClientConfig,
    id_type_problem,
)
from airflow_provider_crowdtwist.client.errors import (
    CrowdTwistAlreadyProcessedError,
    CrowdTwistConfigError,
    CrowdTwistConnectionError,
    CrowdTwistDeletionNotFoundError,
    CrowdTwistDeletionRefusedError,
    CrowdTwistError,
    CrowdTwistNotFoundError,
    CrowdTwistValidationError,
    error_class_for_status,
)
from airflow_provider_crowdtwist.client.models import (
    Activity,
    ActivityHistoryItem,
    ActivityPage,
    DeletionRequest,
    parse_activities,
    parse_activity_history,
    parse_activity_page,
    parse_deletion,
    parse_error_body,
)
from airflow_provider_crowdtwist.client.ratelimit import Pacer, RateLimiter
from airflow_provider_crowdtwist.client.redact import GLOBAL_REDACTOR, Redactor, install_urllib3_filter
from airflow_provider_crowdtwist.client.retry import (
    AttemptResult,
    ResponseLike,
    RetryPlan,
    classify_transport_error,
    is_ambiguous_status,
    is_retryable_status,
    parse_retry_after,
)
from airflow_provider_crowdtwist.client.transport import (
    ACCEPT_ENCODING,
    Answer,
    DirectTransport,
    TransportFailed,
)

USER_AGENT = f"airflow-provider-crowdtwist/{__version__} python-requests/{requests.__version__}"

ALREADY_PROCESSED = "already processed"
#: O:Activities-Extended21: at most 25 activities a page.
MAX_EXTENDED_PAGE_SIZE = 25
#: The deletion-status path is an OPEN point: O:UserDeletionStatus names the first, its own sample
#: the second. Both are tried (the one that answered is remembered).
DELETION_STATUS_PATHS: tuple[str, ...] = ("/v2/users/delete/{}", "/v2/user_deletion/{}")
#: 404 messages that are about the member, not about the path (so the other path is not tried).
_MEMBER_404 = ("member not found", "member id is invalid", "user does not exist")
#: The body encoder, built once (``json.dumps`` with options builds a new encoder on every call).
_JSON = jsonlib.JSONEncoder(separators=(",", ":"), allow_nan=False)
#: Activities asked per history page; a server may serve fewer (the end is an empty page, not a short one).
HISTORY_PAGE_SIZE = 100
#: A history look-up that needs more pages than this gives up (it cannot conclude) rather than loop.
HISTORY_MAX_PAGES = 200
_MESSAGE_LIMIT = 300
_ALREADY_TAKEN = ("already taken", "already exists")


class _NoCookies(RequestsCookieJar):
    """A cookie jar that keeps nothing: the API is stateless, and parsing cookies costs CPU per row."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def set_cookie(self, cookie: Any, *args: Any, **kwargs: Any) -> None:
        return None


_NO_COOKIES = _NoCookies()


class _LeanAdapter(HTTPAdapter):
    """``HTTPAdapter`` minus the per-request work that gives the same answer every time.

    The connection pool for ``scheme://host:port`` and its TLS settings are looked up once, not
    re-parsed from the URL (and the CA bundle ``stat``-ed) per request; responses carry no cookie jar.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pools: dict[tuple[str, Any, Any], Any] = {}

    def get_connection_with_tls_context(
        self, request: requests.PreparedRequest, verify: Any, proxies: Any = None, cert: Any = None
    ) -> Any:
        if proxies:
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        url = request.url or ""
        key = (url[: url.find("/", url.find("//") + 2)], verify, cert)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = super().get_connection_with_tls_context(request, verify, proxies, cert)
        return pool

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        if getattr(conn, "_crowdtwist_tls", None) != (verify, cert):
            super().cert_verify(conn, url, verify, cert)
            conn._crowdtwist_tls = (verify, cert)

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = getattr(resp, "status", None)  # type: ignore[assignment]
        response.headers = CaseInsensitiveDict(getattr(resp, "headers", {}))
        response.encoding = requests.utils.get_encoding_from_headers(response.headers)
        response.raw = resp
        response.reason = response.raw.reason
        response.url = req.url or ""
        response.request = req
        response.connection = self
        return response


def _as_requests_response(answer: ResponseLike) -> requests.Response:
    """``request()`` promises a ``requests.Response``; a direct answer is turned into one."""
    if isinstance(answer, requests.Response):
        return answer
    response = requests.Response()
    response.status_code = answer.status_code
    response.reason = answer.reason
    response.headers = CaseInsensitiveDict(answer.headers.items())
    response._content = answer.content
    response.encoding = requests.utils.get_encoding_from_headers(response.headers)
    response.url = getattr(answer, "url", "")
    return response


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
    last: AttemptResult | None = None


class CrowdTwistClient:
    """Talks to the CrowdTwist REST API v2; safe to share between threads."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        rate_limiter: Pacer | None = None,
        session: requests.Session | None = None,
        logger: logging.Logger | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: Callable[[float, float], float] = random.uniform,
    ) -> None:
        config.validate()
        self.config = config
        # Every client honours the program's cap: without a shared limiter given, it paces itself.
        if rate_limiter is None:
            rate_limiter = RateLimiter(config.requests_per_minute)
        self.rate_limiter = rate_limiter
        self.log = logger or logging.getLogger(__name__)
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng
        secrets = [config.api_key, config.hmac_private_key]
        self._redactor = Redactor(secrets)
        for secret in secrets:
            GLOBAL_REDACTOR.add(secret)
        install_urllib3_filter()
        self._auth: ApiKeyAuth | HmacAuth
        self._signer: HmacAuth | None = None
        if config.auth_type == "hmac":
            self._auth = self._signer = HmacAuth(
                config.hmac_public_key or "",
                config.hmac_private_key or "",
                config.hmac_timestamp_unit,
                clock=wall_clock,
            )
        else:
            self._auth = ApiKeyAuth(config.api_key or "", config.api_key_in)
        self._owns_session = session is None
        self._session = session if session is not None else self._new_session(config)
        self._counter_lock = threading.Lock()
        self._requests_sent = 0
        self._deletion_status_paths: tuple[str, ...] = DELETION_STATUS_PATHS
        self._root = config.api_root
        self._headers, self._auth_query, self._send_settings = self._request_template()
        self._direct = self._direct_transport()
        self._queries: dict[tuple[tuple[str, str], ...], str] = {}  # encoded query strings, by params
        self._plan = RetryPlan(
            max_retries=config.max_retries,
            max_retry_wait=config.max_retry_wait,
            backoff_base=config.backoff_base,
            backoff_max=config.backoff_max,
            rng=rng,
        )
        self._credit_plan = replace(self._plan, credit_mode=True)
        self._history_requests_sent = 0
        #: None until the first history read tells whether the program serves the v2.1 date filter.
        self._history_date_filter: bool | None = None

    def _request_template(self) -> tuple[dict[str, str], str, dict[str, Any]]:
        """Once per client: the headers of every request, the query of every request, send()'s settings.

        The session's own headers, proxies and TLS settings and the environment's (``HTTPS_PROXY``,
        ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``, ...) are resolved here, as ``Session.request`` would
        resolve them on every request; every request goes to the same host.
        """
        headers: CaseInsensitiveDict[Any] = CaseInsensitiveDict(default_headers())
        headers.update(self._session.headers)
        headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        # The codings both transports decode (requests would add br/zstd when those libraries exist).
        headers["Accept-Encoding"] = ACCEPT_ENCODING
        query: dict[str, str] = {}
        if isinstance(self._auth, ApiKeyAuth):
            headers.update(self._auth.headers())
            query = self._auth.query()
        settings = self._session.merge_environment_settings(
            self.config.api_root + "/", {}, None, self.config.verify, None
        )
        send = {
            "timeout": (self.config.connect_timeout, self.config.read_timeout),
            "allow_redirects": False,
            **settings,
        }
        return dict(headers.items()), urlencode(query), send

    def _direct_transport(self) -> DirectTransport | None:
        """The direct transport, when it does exactly what ``Session.send`` would do for this host.

        Not with a session the caller passed (it may carry adapters, hooks or mounts of its own), nor
        with a proxy for the API's host (``HTTPS_PROXY`` etc., already resolved with ``NO_PROXY`` by
        ``_request_template``), nor with a client certificate.
        """
        if not self._owns_session or self._send_settings.get("proxies") or self._send_settings.get("cert"):
            return None
        return DirectTransport(
            self._root,
            verify=self._send_settings.get("verify", True),
            connect_timeout=self.config.connect_timeout,
            read_timeout=self.config.read_timeout,
            max_idle=self.config.pool_size,
        )

    def _use_direct(self) -> bool:
        """False while ``Session.send`` is patched (``requests_mock``): the patch must see the request."""
        send = type(self._session).send
        return (
            self._direct is not None
            and getattr(send, "__module__", "") == "requests.sessions"
            and "send" not in vars(self._session)
        )

    @staticmethod
    def _new_session(config: ClientConfig) -> requests.Session:
        session = requests.Session()
        session.cookies = _NoCookies()
        # Our own retries decide; urllib3 must not resend anything behind our back.
        adapter = _LeanAdapter(
            pool_connections=4,
            pool_maxsize=config.pool_size,
            max_retries=urllib3.util.Retry(total=0, read=False, redirect=False),
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def __repr__(self) -> str:
        return f"CrowdTwistClient(base_url={self.config.base_url!r}, auth={self._auth!r})"

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
        if self._direct is not None:
            self._direct.close()
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> CrowdTwistClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def redact(self, text: object) -> str:
        """Mask this client's secrets in ``text`` (for callers that log texts of their own)."""
        return self._redactor.redact(text)

    # -- the generic request -------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> requests.Response:
        """Send one logical request (with retries) and return the 2xx response, else raise.

        ``path`` is already URL-encoded (see :func:`quote_path_value`), relative to the base URL.
        """
        return _as_requests_response(self._call(method, path, params=params, body=json))

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
            self._log_retry(ctx, result, retries, wait)
            self._sleep(wait)
        response = result.response
        if response is not None and 200 <= response.status_code < 300:
            return response
        raise self._error(ctx, result)

    def _log_retry(self, ctx: _CallContext, result: AttemptResult, attempt: int, wait: float) -> None:
        what = str(result.status) if result.status is not None else _short(result.error)
        self.log.warning(
            "CrowdTwist %s %s -> %s; retry %d of %d in %.2f s",
            ctx.method,
            ctx.shown,
            what,
            attempt,
            self.config.max_retries,
            wait,
        )

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
        extras = tuple(s for s in extra_secrets if isinstance(s, str) and s)
        query = self._encode_query(clean_params) if clean_params else ""
        shown = path + ("?" + query if query else "")
        if self._auth_query:
            query = query + ("&" if query else "") + self._auth_query
        headers = self._headers.copy()
        data: bytes | None = None
        if body is not None:
            # Serialised once: the HMAC MD5 must be of exactly the bytes that are sent.
            try:
                data = _JSON.encode(body).encode("utf-8")
            except (TypeError, ValueError) as exc:
                problem = type(exc).__name__
                detail = str(exc) if isinstance(exc, TypeError) else "NaN or infinite number"
            else:
                problem = ""
            if problem:
                raise CrowdTwistValidationError(
                    f"request body is not valid JSON ({problem}: {self._redactor.redact(detail, extras)})",
                    method=method,
                    path=self._redactor.redact(shown, extras),
                ) from None
            headers["Content-Type"] = "application/json"
            headers["Content-Length"] = str(len(data or b""))
        elif method not in ("GET", "HEAD"):
            headers["Content-Length"] = "0"
        return _CallContext(
            method=method,
            url=self._root + path + ("?" + query if query else ""),
            shown=self._redactor.redact(shown, extras),
            body=data,
            headers=headers,
            credit=credit,
            extra_secrets=extras,
        )

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
        failure = None
        detail = ""
        try:
            if self._use_direct():
                response = self._send_direct(ctx)
            else:
                response = self._session.send(self._prepare(ctx), **self._send_settings)
        except TransportFailed as exc:
            failure = exc.failure
            detail = self._redactor.redact(exc.detail, ctx.extra_secrets)
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            failure = classify_transport_error(exc)
            detail = self._redactor.redact(f"{type(exc).__name__}: {exc}", ctx.extra_secrets)
        finished = self._clock()
        if failure is not None or response is None:
            assert failure is not None
            if len(detail) > 2 * _MESSAGE_LIMIT:
                detail = detail[: 2 * _MESSAGE_LIMIT - 3] + "..."
            error = CrowdTwistConnectionError(
                f"{failure.description} ({detail})",
                method=ctx.method,
                path=ctx.shown,
                ambiguous=failure.ambiguous,
                problem=failure.problem,
            )
            result = AttemptResult(
                error=error,
                retryable=failure.retryable,
                ambiguous=failure.ambiguous,
                finished_at=finished,
            )
            self.log.debug("CrowdTwist %s %s -> %s", ctx.method, ctx.shown, failure.description)
        else:
            status = response.status_code
            retryable = is_retryable_status(status)
            retry_after = (
                parse_retry_after(response.headers.get("Retry-After"), self._wall_clock)
                if retryable
                else None
            )
            result = AttemptResult(
                response=response,
                retryable=retryable,
                ambiguous=is_ambiguous_status(status),
                retry_after=retry_after,
                finished_at=finished,
            )
            if self.rate_limiter is not None:
                if status == 429:
                    self.rate_limiter.record_rate_limited(retry_after, sent_at=started)
                else:
                    self.rate_limiter.record_success()
            if self.log.isEnabledFor(logging.DEBUG):
                self.log.debug(
                    "CrowdTwist %s %s -> %d in %.0f ms",
                    ctx.method,
                    ctx.shown,
                    status,
                    (finished - started) * 1000,
                )
        if result.ambiguous:
            ctx.any_ambiguous = True
        ctx.last = result
        return result

    def _send_direct(self, ctx: _CallContext) -> Answer:
        assert self._direct is not None
        headers = ctx.headers
        if self._signer is not None:  # signed per attempt: a fresh timestamp each time
            path_url = ctx.url[len(self._direct.origin) :]
            content_type = headers.get("Content-Type", "")
            headers = {**headers, **self._signer.sign(ctx.method, path_url, ctx.body, content_type)}
        return self._direct.send(ctx.method, ctx.url, headers, ctx.body)

    def _prepare(self, ctx: _CallContext) -> requests.PreparedRequest:
        """The request as it goes on the wire, built directly: URL and body are final already."""
        prepared = requests.PreparedRequest()
        prepared.method = ctx.method
        prepared.url = ctx.url
        prepared.headers = CaseInsensitiveDict(ctx.headers)
        prepared.body = ctx.body
        prepared._cookies = _NO_COOKIES  # type: ignore[attr-defined]  # (copied, never changed, on a redirect)
        if self._signer is not None:
            self._signer(prepared)  # signed per attempt: a fresh timestamp each time
        return prepared

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
            if len(message) > _MESSAGE_LIMIT:  # cut only after redaction: never half a secret
                message = message[: _MESSAGE_LIMIT - 3] + "..."
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

    def _json(self, response: ResponseLike, method: str, path: str) -> Any:
        if not response.content or not response.content.strip():
            return {}
        try:
            return jsonlib.loads(response.content)
        except ValueError:
            pass
        raise CrowdTwistError(
            "the response is not JSON",
            status=response.status_code,
            method=method,
            path=self._redactor.redact(path),
        )

    # -- id helpers ----------------------------------------------------------------------------

    def _id_type(self, id_type: str | None, allowed: tuple[str, ...] = ID_TYPES) -> str:
        chosen = id_type or self.config.id_type
        problem = id_type_problem(chosen, allowed)
        if problem:
            raise CrowdTwistConfigError(problem)
        return chosen

    @staticmethod
    def _member_path(user_id: Any, suffix: str = "") -> str:
        if user_id is None or str(user_id).strip() == "":
            raise CrowdTwistValidationError("user_id is empty")
        return f"/v2/users/{quote_path_value(user_id)}{suffix}"

    # -- API calls -----------------------------------------------------------------------------

    def list_activities(self) -> list[Activity]:
        """``GET /v2/activities``: the program's active activities (also the connection test)."""
        response = self._call("GET", "/v2/activities")
        return parse_activities(self._json(response, "GET", "/v2/activities"))

    def activities_page(self, page: int = 1, page_size: int = 10) -> ActivityPage:
        """``GET /v2.1/activities/extended?page=&page_size=``: one page (O:Activities-Extended21)."""
        if (
            isinstance(page_size, bool)
            or not isinstance(page_size, int)
            or not (1 <= page_size <= MAX_EXTENDED_PAGE_SIZE)
        ):
            raise CrowdTwistConfigError(
                f"page_size must be a whole number from 1 to {MAX_EXTENDED_PAGE_SIZE}; got {page_size!r}"
            )
        path = "/v2.1/activities/extended"
        response = self._call("GET", path, params={"page": page, "page_size": page_size})
        return parse_activity_page(self._json(response, "GET", path))

    def list_activities_extended(self, page_size: int = MAX_EXTENDED_PAGE_SIZE) -> list[Activity]:
        """Every active activity through the v2.1 paged list, page by page.

        ``paging.next_page`` is a URL (O:Activities-Extended21): only its page number is used, and the
        request is built here, so a link naming another host never receives the credentials. A bad
        page is "page 1 or an empty list, not an error", so the walk stops on an empty page, on a page
        that repeats page 1, and after ``paging.pages`` pages -- it cannot loop.
        """
        activities: list[Activity] = []
        seen: set[str] = set()
        first_ids: tuple[str, ...] | None = None
        page, pages_read = 1, 0
        while True:
            result = self.activities_page(page, page_size)
            pages_read += 1
            ids = tuple(a.id for a in result.activities)
            if not ids or (first_ids is not None and ids == first_ids):
                break
            if first_ids is None:
                first_ids = ids
            for activity in result.activities:
                if activity.id not in seen:
                    seen.add(activity.id)
                    activities.append(activity)
            following = result.next_page
            if following is None or following <= page:
                following = page + 1 if result.pages is not None and page < result.pages else None
            limit = result.pages if result.pages is not None else (result.total or len(seen)) + 1
            if following is None or pages_read >= max(limit, 1):
                break
            page = following
        return activities

    def get_user(self, user_id: str, id_type: str | None = None, *, pii: bool = True) -> dict:
        """``GET /v2/users/{user_id}?id_type=T``: the member's profile.

        ``pii=False`` sends ``pii=false`` (O:UserProfile): no personal data comes back, and only the
        ``id`` and ``third_party_id`` id types take it -- for reads that need only those.
        """
        path = self._member_path(user_id)
        chosen = self._id_type(id_type)
        params = {"id_type": chosen}
        if not pii:
            if chosen not in PII_FREE_ID_TYPES:
                raise CrowdTwistConfigError(
                    f"pii=false works only with id_type {' or '.join(PII_FREE_ID_TYPES)}; got {chosen!r}"
                )
            params["pii"] = "false"
        return _as_dict(self._json(self._call("GET", path, params=params), "GET", path))

    def create_user(self, fields: Mapping[str, Any]) -> dict:
        """``POST /v2/users``: a new member."""
        body = dict(fields)
        response = self._call("POST", "/v2/users", body=body, extra_secrets=_body_secrets(body))
        return _as_dict(self._json(response, "POST", "/v2/users"))

    def update_user(self, user_id: str, fields: Mapping[str, Any], id_type: str | None = None) -> dict:
        """``PUT /v2/users/{user_id}?id_type=T``; 404 (:class:`CrowdTwistNotFoundError`) when unknown."""
        path = self._member_path(user_id)
        params = {"id_type": self._id_type(id_type)}
        body = dict(fields)
        response = self._call("PUT", path, params=params, body=body, extra_secrets=_body_secrets(body))
        return _as_dict(self._json(response, "PUT", path))

    def upsert_user(
        self, user_id: str, fields: Mapping[str, Any], id_type: str | None = None
    ) -> tuple[str, dict]:
        """PUT first (one request in the common case); POST on 404.

        The create carries the identifier it was looked up by (e.g. ``email_address`` for
        ``id_type=email``) when the fields lack it, so that the next PUT finds the member.
        If the POST is refused as "already taken", either our own earlier, ambiguous attempt
        created the member (then the profile is read back and "created" returned) or another
        writer created it meanwhile (then the update is applied once more).
        """
        chosen = self._id_type(id_type)
        try:
            return "updated", self.update_user(user_id, fields, chosen)
        except CrowdTwistNotFoundError:
            pass
        body, update_only = split_update_only(fields)
        attribute = ID_TYPE_ATTRIBUTES.get(chosen)
        if attribute and body.get(attribute) in (None, ""):
            body[attribute] = user_id
        taken: CrowdTwistValidationError | None = None
        try:
            created = self.create_user(body)
        except CrowdTwistValidationError as err:
            if not any(word in err.message.lower() for word in _ALREADY_TAKEN):
                raise
            taken = err
        else:
            if update_only:  # is_active & co. are not taken by the create (O:UserUpdate)
                return "created", self.update_user(user_id, update_only, chosen)
            return "created", created
        if taken.ambiguous:  # our own earlier POST landed: it still lacks the update-only fields
            if update_only:
                return "created", self.update_user(user_id, update_only, chosen)
            return "created", self.get_user(user_id, chosen)
        try:
            return "updated", self.update_user(user_id, fields, chosen)
        except CrowdTwistNotFoundError:
            pass
        raise taken

    def delete_user(self, user_id: str, id_type: str | None = None) -> DeletionRequest:
        """``DELETE /v2/users/{user_id}?id_type=T``: *queue* the deletion (O:UserDelete).

        Returns the answer ``{"user_id": N, "status": "Queued"}``. The documented refusals are typed,
        with ``.reason``: 400 :class:`CrowdTwistDeletionRefusedError` ("Unable to initiate deletion",
        "Member is inactive but has redeemable points") and 404
        :class:`CrowdTwistDeletionNotFoundError` ("Member not found", "Member ID is invalid").
        """
        path = self._member_path(user_id)
        refused: CrowdTwistError | None = None
        try:
            response = self._call("DELETE", path, params={"id_type": self._id_type(id_type)})
        except CrowdTwistNotFoundError as err:
            refused = _retyped(CrowdTwistDeletionNotFoundError, err)
        except CrowdTwistValidationError as err:
            refused = _retyped(CrowdTwistDeletionRefusedError, err)
        if refused is not None:
            raise refused
        return parse_deletion(self._json(response, "DELETE", path))

    def deletion_status(self, user_id: str, id_type: str | None = None) -> DeletionRequest:
        """The state of a queued deletion (O:UserDeletionStatus), ``status`` as CrowdTwist words it.

        Which path serves it is OPEN (``/v2/users/delete/{id}`` or ``/v2/user_deletion/{id}``): a 404
        that is not about the member means "no such path", so the other one is tried, and the path
        that answered is tried first from then on.
        """
        params = {"id_type": self._id_type(id_type)}
        quoted = quote_path_value(user_id)
        if not str(user_id).strip():
            raise CrowdTwistValidationError("user_id is empty")
        missing_path: CrowdTwistNotFoundError | None = None
        for template in self._deletion_status_paths:
            path = template.format(quoted)
            try:
                response = self._call("GET", path, params=params)
            except CrowdTwistNotFoundError as err:
                if any(word in err.message.lower() for word in _MEMBER_404):
                    raise _retyped(CrowdTwistDeletionNotFoundError, err) from None
                missing_path = err
                continue
            if template != self._deletion_status_paths[0]:
                self._deletion_status_paths = (template, *(p for p in DELETION_STATUS_PATHS if p != template))
            return parse_deletion(self._json(response, "GET", path))
        assert missing_path is not None
        raise missing_path

    def credit_activity(
        self,
        user_id: str,
        activity_id: str,
        *,
        id_type: str | None = None,
        num_points: int | None = None,
        activity_date: int | None = None,
        extra_data: Mapping | None = None,
    ) -> dict:
        """``POST /v2/users/{user_id}/activities?id_type=T``, sent once.

        CrowdTwist has no idempotency key, and no Oracle page documents a duplicate window. So after an
        attempt that may have been applied (timeout, dropped connection, 5xx) nothing is resent: the
        error has ``ambiguous=True`` and the caller settles it by reading the member's activity history
        (:meth:`activity_history`; the credit sync does that). An "Event already processed" answer
        raises :class:`CrowdTwistAlreadyProcessedError` (also ambiguous): an identical credit was seen
        before, which does not prove that *this* one was applied. Failures that were certainly not
        applied (429, a refused connection) are retried as for any other call.
        """
        if activity_id is None or str(activity_id).strip() == "":
            raise CrowdTwistValidationError("activity_id is empty")
        path = self._member_path(user_id, "/activities")
        params = {"id_type": self._id_type(id_type, CREDIT_ID_TYPES)}
        body: dict[str, Any] = {"activity_id": str(activity_id)}
        if num_points is not None:
            body["num_points"] = num_points
        if activity_date is not None:
            body["activity_date"] = activity_date
        if extra_data is not None:
            body["extra_data"] = dict(extra_data)
        duplicate: CrowdTwistValidationError | None = None
        try:
            response = self._call("POST", path, params=params, body=body, credit=True)
        except CrowdTwistValidationError as err:
            if ALREADY_PROCESSED not in err.message.lower():
                raise
            duplicate = err
        if duplicate is not None:
            raise CrowdTwistAlreadyProcessedError(
                duplicate.message,
                status=duplicate.status,
                code=duplicate.code,
                method=duplicate.method,
                path=duplicate.path,
            )
        data = self._json(response, "POST", path)
        return data if isinstance(data, dict) else {"awarded": True, "response": data}

    def activity_history(
        self,
        user_id: str,
        id_type: str | None = None,
        *,
        since: float | None = None,
        page_size: int = HISTORY_PAGE_SIZE,
        max_pages: int = HISTORY_MAX_PAGES,
    ) -> Iterator[ActivityHistoryItem]:
        """The member's activities (``GET .../activity_history``), page by page, newest pages first.

        ``since`` (epoch seconds) bounds how far back to read. Where the program serves the v2.1 form,
        ``date_start=since`` filters on the server; otherwise (a 404 or a 400 on the v2.1 path, then
        remembered for this client) the v2 list is paged, and paging stops early once a page in
        newest-first order reaches items older than ``since``. The end of the history is an empty page
        or the ``paging`` block saying so -- never a short page, since a server may cap ``page_size``
        below what was asked. Both documented envelopes are read (a bare list, or ``{"paging": ...,
        "activities": [...]}``). Stop iterating as soon as you found what you look for: each page is
        one request, paced by the rate limiter and counted in :attr:`history_requests_sent`.
        More than ``max_pages`` pages raises :class:`CrowdTwistError` (the look-up cannot conclude).
        """
        chosen = self._id_type(id_type)
        path = self._member_path(user_id, "/activity_history")
        filtered = since is not None and self._history_date_filter is not False
        for number in range(1, max_pages + 1):
            params: dict[str, Any] = {"id_type": chosen, "page_size": page_size, "page_number": number}
            if filtered:
                params["date_start"] = int(since)  # type: ignore[arg-type]
                try:
                    response = self._call("GET", "/v2.1" + path[3:], params=params, history=True)
                except (CrowdTwistNotFoundError, CrowdTwistValidationError) as err:
                    if number > 1 or err.ambiguous:
                        raise
                    # No v2.1 history on this program (or no date filter): page the v2 list instead;
                    # a member that really does not exist gets its 404 from the v2 path too.
                    filtered = False
                    del params["date_start"]
                    response = self._call("GET", path, params=params, history=True)
                    self._history_date_filter = False
                    self.log.info(
                        "CrowdTwist: no date-filtered activity history (v2.1 answered %s); paging the v2 "
                        "history instead",
                        err.status,
                    )
                else:
                    self._history_date_filter = True
            else:
                response = self._call("GET", path, params=params, history=True)
            page = parse_activity_history(self._json(response, "GET", path))
            yield from page.items
            if page.is_last(number) or (since is not None and page.reaches_before(since)):
                return
        raise CrowdTwistError(
            f"the activity history has more than {max_pages} pages since {since}; the look-up stopped",
            method="GET",
            path=self._redactor.redact(path),
        )


def quote_path_value(value: Any) -> str:
    """URL-encode a value for one path segment (``a+b@c.com`` -> ``a%2Bb%40c.com``)."""
    return quote(str(value), safe="")


def split_update_only(fields: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(create body, update-only fields)``: the create does not take ``is_active``/``remove_points``
    (O:UserUpdate), so a new member that needs them gets them with the PUT that follows the POST."""
    body = {k: v for k, v in fields.items() if k not in UPDATE_ONLY_FIELDS}
    return body, {k: v for k, v in fields.items() if k in UPDATE_ONLY_FIELDS}


def _retyped(cls: type[CrowdTwistError], err: CrowdTwistError) -> CrowdTwistError:
    """``err`` as the more precise ``cls`` (same redacted message and state)."""
    return cls(err.message, **err._state())


def _as_dict(data: Any) -> dict:
    return data if isinstance(data, dict) else {"response": data}


def _body_secrets(body: Mapping[str, Any]) -> tuple[str | None, ...]:
    password = body.get("password")
    return (password if isinstance(password, str) else None,)


def _short(error: CrowdTwistError | None) -> str:
    return error.message if error is not None else "error"


__all__ = ["USER_AGENT", "CrowdTwistClient", "quote_path_value", "split_update_only"]
