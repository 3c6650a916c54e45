"""Routing: which endpoint a request is, in what order faults, auth and rules apply, and the answer.

The order is the one a real deployment has: the network (latency, dropped connections) and the gateway
(rate limit, 5xx) act before authentication, authentication before validation, and "applied, then
answered 503" strikes only after the change is stored -- which is exactly what makes it dangerous.
Admin routes (``/_admin/...``) skip all of that: no auth, no faults, loopback peers only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote, urlencode

from airflow_provider_crowdtwist.sandbox import auth, validation
from airflow_provider_crowdtwist.sandbox.errors import (
    ApiError,
    forbidden,
    input_error,
    invalid_api_key,
    not_found,
    param_error,
)
from airflow_provider_crowdtwist.sandbox.faults import FaultInjector, odd_answer
from airflow_provider_crowdtwist.sandbox.http import DROP, Request, Response, _Drop
from airflow_provider_crowdtwist.sandbox.pos import POS_PREFIX, PosApi
from airflow_provider_crowdtwist.sandbox.push import LivePusher
from airflow_provider_crowdtwist.sandbox.settings import RUNTIME_SETTINGS, SandboxSettings
from airflow_provider_crowdtwist.sandbox.state import (
    ARRIVAL_TICK_S,
    CREDIT_ID_TYPES,
    DELETION_QUEUED,
    ID_TYPES,
    SandboxState,
)

access_log = logging.getLogger("airflow_provider_crowdtwist.sandbox.access")

MAX_PAGE_SIZE = 25  # O:Activities-Extended21
DEFAULT_PAGE_SIZE = 10
PII_FREE_ID_TYPES = ("id", "third_party_id")  # O:UserProfile: pii=false works with these only

ROUTE_CREATE = "POST /v2/users"
ROUTE_GET = "GET /v2/users/{user_id}"
ROUTE_UPDATE = "PUT /v2/users/{user_id}"
ROUTE_DELETE = "DELETE /v2/users/{user_id}"
ROUTE_CREDIT = "POST /v2/users/{user_id}/activities"
ROUTE_ACTIVITIES = "GET /v2/activities"
ROUTE_EXTENDED = "GET /v2.1/activities/extended"
ROUTE_HISTORY = "GET /v2/users/{user_id}/activity_history"
ROUTE_HISTORY_21 = "GET /v2.1/users/{user_id}/activity_history"
ROUTE_DELETION_STATUS = "GET deletion status"
ROUTE_UNKNOWN = "unknown"
# The short names ``fault_routes`` uses.
ROUTE_SHORT_NAMES = {
    ROUTE_CREATE: "create",
    ROUTE_GET: "get",
    ROUTE_UPDATE: "update",
    ROUTE_DELETE: "delete",
    ROUTE_CREDIT: "credit",
    ROUTE_ACTIVITIES: "activities",
    ROUTE_EXTENDED: "extended",
    ROUTE_HISTORY: "history",
    ROUTE_HISTORY_21: "history",
    ROUTE_DELETION_STATUS: "deletion_status",
}


def _route(method: str, segments: list[str], deletion_status_path: str) -> tuple[str, int | None]:
    """The route and the index of the segment naming the member (None when no member is named)."""
    n = len(segments)
    if method == "GET" and n == 4 and segments[:3] == ["v2", "users", "delete"]:
        if deletion_status_path == "users/delete":
            return ROUTE_DELETION_STATUS, 3
    elif method == "GET" and n == 3 and segments[:2] == ["v2", "user_deletion"]:
        if deletion_status_path == "user_deletion":
            return ROUTE_DELETION_STATUS, 2
    elif n >= 2 and segments[0] == "v2" and segments[1] == "users":
        if n == 2 and method == "POST":
            return ROUTE_CREATE, None
        if n == 3 and method in ("GET", "PUT", "DELETE"):
            return {"GET": ROUTE_GET, "PUT": ROUTE_UPDATE, "DELETE": ROUTE_DELETE}[method], 2
        if n == 4 and segments[3] == "activities" and method == "POST":
            return ROUTE_CREDIT, 2
        if n == 4 and segments[3] == "activity_history" and method == "GET":
            return ROUTE_HISTORY, 2
    elif method == "GET" and n == 4 and segments[:2] == ["v2.1", "users"]:
        if segments[3] != "activity_history":
            return ROUTE_UNKNOWN, None
        return ROUTE_HISTORY_21, 2
    elif method == "GET" and segments == ["v2", "activities"]:
        return ROUTE_ACTIVITIES, None
    elif method == "GET" and segments == ["v2.1", "activities", "extended"]:
        return ROUTE_EXTENDED, None
    return ROUTE_UNKNOWN, None


def _positive_int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() and int(text) >= 1 else None


def _epoch(name: str, text: str | None) -> int | None:
    """A ``date_start``/``date_end`` filter: epoch seconds, or an ISO 8601 date or date-time (UTC)."""
    if text in (None, ""):
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise param_error(f"{name} must be epoch seconds or an ISO 8601 date, got {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp())


def _is_loopback(peer: Any) -> bool:
    try:
        return ipaddress.ip_address(peer[0]).is_loopback
    except (TypeError, ValueError, IndexError):
        return False


def _redacted_target(target: str) -> str:
    """The request line for the access log, with any ``api_key`` value cut out."""
    path, sep, query = target.partition("?")
    if not sep:
        return path
    parts = [("api_key=***" if p.startswith("api_key=") else p) for p in query.split("&")]
    return f"{path}?{'&'.join(parts)}"


class SandboxApp:
    """The request handler: ``await app(request)`` returns a ``Response`` or ``DROP``."""

    def __init__(
        self,
        settings: SandboxSettings,
        state: SandboxState | None = None,
        *,
        clock: Callable[[], float] = time.time,
        access_log_enabled: bool = False,
    ) -> None:
        settings.validate()
        self.initial_settings = settings
        self.settings = settings
        self.state = state or SandboxState(settings.first_member_id)
        self.faults = FaultInjector(settings.faults)
        self.clock = clock
        self.access_log_enabled = access_log_enabled
        self.pos = PosApi(self)  # the POS host's routes, under /pos
        # CrowdTwist's live push: every applied change is pushed to the configured endpoints.
        self.pusher = (
            LivePusher(settings.push, on_third_party_id=self._store_third_party_id)
            if settings.push.enabled
            else None
        )
        if self.pusher is not None:
            self.state.add_listener(self.pusher.on_event)

    def _store_third_party_id(self, member_id: int, value: str) -> None:
        """CrowdTwist keeps the third_party_id a profile endpoint answered (unless another member has it)."""
        with self.state.lock:
            record = self.state.members.get(member_id)
            if record is None or record.get("third_party_id") == value:
                return
            if self.state.owner_of("third_party_id", value) not in (None, member_id):
                return
        self.state.update(member_id, {"third_party_id": value})

    def close(self) -> None:
        """Stop the pusher's thread (pushes still queued are dropped, as on a shut-down program)."""
        if self.pusher is not None:
            self.pusher.stop()

    def reset(self) -> None:
        """Members, credits and counts cleared; settings and faults back to the start-up ones."""
        self.state.reset()
        self.pos.ledger.reset()
        self.settings = self.initial_settings
        self.faults.configure(self.settings.faults)

    def configure(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Switch readings at runtime (``POST /_admin/settings``): any of ``RUNTIME_SETTINGS`` or fault knob.

        Validated as a whole before anything changes, so a bad value leaves the sandbox as it was.
        """
        fault_names = set(self.faults.settings.as_dict())
        fixed = sorted(set(changes) - set(RUNTIME_SETTINGS) - fault_names)
        if fixed:
            raise ValueError(
                f"not a runtime setting: {', '.join(fixed)}; runtime settings: "
                f"{', '.join(sorted(set(RUNTIME_SETTINGS) | fault_names))}"
            )
        own = {k: v for k, v in changes.items() if k in RUNTIME_SETTINGS}
        faults = {k: v for k, v in changes.items() if k in fault_names}
        new = self.settings.with_overrides(**own)
        self.faults.settings.updated(faults)  # validate before changing anything
        self.settings = new
        self.faults.update(faults)
        return self.readings()

    def readings(self) -> dict[str, Any]:
        return {**self.settings.readings(), **self.faults.settings.as_dict()}

    async def __call__(self, request: Request) -> Response | _Drop:
        self.state.settle(self.clock())
        if request.path.startswith("/_admin"):
            return self._admin(request)
        if request.path == POS_PREFIX or request.path.startswith(POS_PREFIX + "/"):
            response = await self.pos(request)
            if self.access_log_enabled:
                shown = response.status if isinstance(response, Response) else "dropped"
                access_log.info("%s %s -> %s", request.method, _redacted_target(request.target), shown)
            return response
        return await self._api(request)

    def _settle_later(self, delay_s: float) -> None:
        """Apply queued work when it falls due even if no request comes (listeners hear it on time)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the server (a unit test driving the app directly)
            return
        loop.call_later(delay_s + 0.001, self.state.settle)

    # ---- API -----------------------------------------------------------------------------------

    async def _api(self, request: Request) -> Response | _Drop:
        segments = [unquote(s) for s in request.path.split("/")[1:]]
        route, user_index = _route(request.method, segments, self.settings.deletion_status_path)
        user = self._user_key(route, segments, user_index, request)
        stats = self.state.stats
        stats.started(route, user)
        status = "dropped"
        try:
            response = await self._api_inner(request, route, segments, user_index)
            if isinstance(response, Response):
                status = str(response.status)
            return response
        finally:
            stats.finished(status)
            if self.access_log_enabled:
                access_log.info("%s %s -> %s", request.method, _redacted_target(request.target), status)

    async def _api_inner(
        self, request: Request, route: str, segments: list[str], user_index: int | None
    ) -> Response | _Drop:
        if self.faults.latency_s:
            await asyncio.sleep(self.faults.latency_s)
        decision = self.faults.decide(ROUTE_SHORT_NAMES.get(route))
        if decision.rate_limited_for:
            headers = (
                {"Retry-After": FaultInjector.retry_after_header(decision.rate_limited_for)}
                if self.faults.settings.retry_after
                else None
            )
            return Response.json(
                429, {"error": "rate_limited", "message": "Rate limit exceeded. Try again later."}, headers
            )
        if decision.drop:
            return DROP
        if decision.error_status:
            return self._fault_status(decision.error_status)
        try:
            query = request.query()
            mode = self._authenticate(request, query)
            self.state.stats.auth_modes[mode] += 1
            user_id = segments[user_index] if user_index is not None else ""
            status, payload = self._dispatch(request, route, user_id, query)
        except ApiError as exc:
            return Response.json(exc.status, exc.body(), exc.headers or None)
        if decision.applied_then_503:
            return self._fault_status(503)
        if decision.applied_then_drop:
            return DROP
        if decision.odd_answer and 200 <= status < 300:
            return odd_answer(decision.odd_answer, status, payload)
        return Response.json(status, payload)

    def _authenticate(self, request: Request, query: dict[str, str]) -> str:
        """The auth mode, or the credential failure in the configured reading (OPEN: 401 or 403)."""
        try:
            return auth.verify(
                method=request.method,
                target=request.target,
                headers=request.headers,
                query=query,
                body=request.body,
                settings=self.settings,
                now=self.clock(),
            )
        except ApiError as exc:
            if self.settings.bad_credentials_status == 403:
                raise invalid_api_key() from None
            raise exc from None

    @staticmethod
    def _fault_status(status: int) -> Response:
        if status == 503:
            return Response.json(
                503, {"error": "service_unavailable", "message": "Service temporarily unavailable."}
            )
        return Response.json(status, {"error": "internal_error", "message": "An internal error occurred."})

    @staticmethod
    def _user_key(route: str, segments: list[str], user_index: int | None, request: Request) -> str | None:
        """The row identifier a request is about, for per-row request counts."""
        if user_index is not None:
            return segments[user_index]
        if route == ROUTE_CREATE:
            try:
                body = json.loads(request.body)
            except ValueError:
                return None
            email = body.get("email_address") if isinstance(body, dict) else None
            return email if isinstance(email, str) else None
        return None

    def _dispatch(self, request: Request, route: str, user_id: str, query: dict[str, str]) -> tuple[int, Any]:
        if route == ROUTE_ACTIVITIES:
            return 200, {"activities": self._active_activities()}
        if route == ROUTE_EXTENDED:
            return 200, self._extended(request, query)
        if route == ROUTE_UNKNOWN:
            raise ApiError(404, "page_not_found", f"No such endpoint: {request.method} {request.path}")
        if route == ROUTE_CREATE:
            return 200, self._create(self._json_body(request))
        if route == ROUTE_DELETE:
            return 200, self._delete(user_id, query)
        if route == ROUTE_DELETION_STATUS:
            return 200, self._deletion_status(user_id, query)
        if route == ROUTE_GET:
            return 200, self._get(user_id, query)
        if route == ROUTE_CREDIT:
            member_id = self._lookup(user_id, query, CREDIT_ID_TYPES)
            return 200, self._credit(member_id, self._json_body(request))
        member_id = self._lookup(user_id, query)
        if route == ROUTE_UPDATE:
            return 200, self._update(member_id, self._json_body(request))
        return 200, self._history(request, member_id, query, filtered=route == ROUTE_HISTORY_21)

    @staticmethod
    def _json_body(request: Request) -> Any:
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise input_error("Content-Type must be application/json")
        try:
            return json.loads(request.body)
        except ValueError:
            raise input_error("Request body is not valid JSON") from None

    @staticmethod
    def _id_type(query: dict[str, str], allowed: tuple[str, ...] = ID_TYPES) -> str:
        id_type = query.get("id_type") or "id"
        if id_type not in allowed:
            raise param_error(f"Invalid id_type '{id_type}'; expected one of {', '.join(allowed)}")
        return id_type

    def _lookup(self, user_id: str, query: dict[str, str], allowed: tuple[str, ...] = ID_TYPES) -> int:
        member_id = self.state.find(user_id, self._id_type(query, allowed))
        if member_id is None:
            raise not_found()
        return member_id

    def _get(self, user_id: str, query: dict[str, str]) -> dict[str, Any]:
        """The profile; ``pii=false`` only with the ``id``/``third_party_id`` id types, and without PII."""
        if query.get("pii", "").lower() != "false":
            return self.state.public_view(self._lookup(user_id, query))
        if self._id_type(query) not in PII_FREE_ID_TYPES:
            raise param_error(f"pii=false works only with id_type {' or '.join(PII_FREE_ID_TYPES)}")
        return self.state.non_pii_view(self._lookup(user_id, query))

    def _deletion_target(self, user_id: str, query: dict[str, str]) -> str:
        """The id_type of a delete or deletion-status call; a malformed CrowdTwist id is its own 404."""
        id_type = self._id_type(query)
        if id_type == "id" and not user_id.isdigit():
            raise not_found(validation.MEMBER_ID_INVALID)
        return id_type

    def _delete(self, user_id: str, query: dict[str, str]) -> dict[str, Any]:
        """Queue a deletion (O:UserDelete) with its documented refusals."""
        member_id = self.state.find(user_id, self._deletion_target(user_id, query))
        if member_id is None:
            raise not_found(validation.MEMBER_NOT_FOUND)
        deletion = self.state.deletions.get(member_id)
        if deletion is not None and deletion["status"] == DELETION_QUEUED:
            raise input_error(validation.DELETION_NOT_INITIATED)
        record = self.state.members[member_id]
        if record.get("is_active", 1) == 0 and record.get("redeemable_points", 0) > 0:
            raise input_error(validation.INACTIVE_WITH_POINTS)
        lag = self.settings.deletion_lag_s
        self.state.queue_deletion(member_id, self.clock(), lag)
        if lag > 0:
            self._settle_later(lag)
        else:
            self.state.settle(self.clock())
        return {"user_id": member_id, "status": DELETION_QUEUED}

    def _deletion_status(self, user_id: str, query: dict[str, str]) -> dict[str, Any]:
        deletion = self.state.deletion_of(user_id, self._deletion_target(user_id, query))
        if deletion is None:
            raise not_found(validation.MEMBER_NOT_FOUND)
        return {"user_id": deletion["user_id"], "status": deletion["status"]}

    def _check_unique(self, attrs: dict[str, Any], member_id: int | None) -> None:
        for id_type, attribute, message in (
            ("email", "email_address", validation.EMAIL_TAKEN),
            ("username", "username", "username already taken"),
            ("third_party_id", "third_party_id", "third_party_id already taken"),
            ("mobile_phone_number", "mobile_phone_number", "mobile_phone_number already taken"),
        ):
            if attribute in attrs:
                owner = self.state.owner_of(id_type, attrs[attribute])
                if owner is not None and owner != member_id:
                    raise input_error(message)

    def _create(self, body: Any) -> dict[str, Any]:
        attrs = validation.validate_create(body, self.settings)
        self._check_unique(attrs, None)
        record = self.state.create(attrs)
        return self.state.public_view(record["id"])

    def _update(self, member_id: int, body: Any) -> dict[str, Any]:
        current = self.state.members[member_id]
        changes = validation.validate_update(body, current, self.settings)
        self._check_unique(changes, member_id)
        self.state.update(member_id, changes)
        return self.state.public_view(member_id)

    def _credit(self, member_id: int, body: Any) -> dict[str, Any]:
        credit = validation.validate_credit(body, self.settings)
        activity = self.settings.activity(credit["activity_id"])
        if activity is None:
            raise input_error(f"Unknown activity_id '{credit['activity_id']}'")
        if not activity.is_active:
            raise input_error(f"Activity '{activity.id}' is not active")
        if self.state.members[member_id].get("is_active", 1) == 0:
            raise forbidden("User is inactive.")
        now = self.clock()
        key = self.state.credit_key(member_id, credit)
        if self.state.is_duplicate(key, self.settings.dedupe_window_s, now):
            raise input_error(validation.EVENT_ALREADY_PROCESSED)
        points = credit["num_points"] if credit["num_points"] is not None else activity.points
        lag = self.settings.award_lag_s
        self.state.queue_credit(
            member_id, credit, activity, points, key, now, self.settings.dedupe_window_s, lag
        )
        if lag > 0:
            self._settle_later(lag)
        return {"awarded": True}

    def _active_activities(self) -> list[dict[str, Any]]:
        return [a.as_dict() for a in self.settings.activities if a.is_active]

    def _extended(self, request: Request, query: dict[str, str]) -> dict[str, Any]:
        """v2.1 paged activities: page_size <= 25 (default 10; larger is cut to 25), never an error."""
        page_size = min(_positive_int(query.get("page_size")) or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        items, paging = self._page(request, query, self._active_activities(), "page", page_size)
        return {"activities": items, "paging": paging}

    def _history(self, request: Request, member_id: int, query: dict[str, str], *, filtered: bool) -> Any:
        """The member's applied awards, newest first, in the configured envelope (OPEN: list or paged).

        The v2.1 form filters on ``date_created`` with inclusive ``date_start``/``date_end``.
        """
        items = self.state.history_of(member_id)
        if filtered:
            start = _epoch("date_start", query.get("date_start"))
            end = _epoch("date_end", query.get("date_end"))
            items = [
                item
                for item in items
                if (start is None or item["date_created"] >= start)
                and (end is None or item["date_created"] <= end)
            ]
        page_size = _positive_int(query.get("page_size")) or DEFAULT_PAGE_SIZE
        page_items, paging = self._page(request, query, items, "page_number", page_size)
        if self.settings.history_envelope == "list":
            return page_items
        return {"paging": paging, "activities": page_items}

    @staticmethod
    def _page(
        request: Request, query: dict[str, str], items: list[Any], page_param: str, page_size: int
    ) -> tuple[list[Any], dict[str, Any]]:
        """One page and ``paging{total,pages,next_page,prev_page}`` with the neighbours as URLs.

        A page that is not a positive integer is page 1; a page past the end is an empty list. The URLs
        repeat the query as sent except ``api_key`` (a secret is never echoed).
        """
        page = _positive_int(query.get(page_param)) or 1
        total = len(items)
        pages = max(1, -(-total // page_size))
        start = (page - 1) * page_size
        base = f"http://{request.headers.get('host', '127.0.0.1')}{request.path}"

        def url(number: int) -> str:
            params = {k: v for k, v in query.items() if k != "api_key"}
            params.update({page_param: str(number), "page_size": str(page_size)})
            return f"{base}?{urlencode(params)}"

        paging = {
            "total": total,
            "pages": pages,
            "next_page": url(page + 1) if page < pages else None,
            "prev_page": url(page - 1) if 1 < page <= pages + 1 else None,
        }
        return items[start : start + page_size], paging

    # ---- admin ---------------------------------------------------------------------------------

    def _admin(self, request: Request) -> Response:
        if not _is_loopback(request.peer):
            return Response.json(
                403, {"error": "forbidden", "message": "Admin endpoints answer loopback only."}
            )
        action = request.path[len("/_admin") :].strip("/")
        method = request.method
        if method == "GET" and action == "members":
            return Response.json(200, self.state.admin_view())
        if method == "GET" and action == "credits":
            return Response.json(200, self.state.credits_view())
        if method == "GET" and action == "pending":
            return Response.json(200, self.state.pending_view())
        if method == "GET" and action == "deletions":
            return Response.json(200, self.state.deletions_view())
        if method == "GET" and action == "pos":
            return Response.json(200, self.pos.ledger.view())
        if method == "POST" and action == "settle":
            self.state.settle(self.clock(), everything=True)
            return Response.json(200, {"settled": True})
        if method == "GET" and action == "settings":
            return Response.json(200, self.readings())
        if method == "POST" and action == "settings":
            try:
                changes = json.loads(request.body or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("the body must be a JSON object of settings")
                return Response.json(200, self.configure(changes))
            except (ValueError, TypeError) as exc:
                return Response.json(400, {"error": "input_error", "message": str(exc)})
        if method == "GET" and action == "stats":
            return Response.json(
                200, {**self.state.stats.as_dict(), "pending_credits": len(self.state.pending)}
            )
        if method == "GET" and action == "arrivals":
            counts = dict(self.state.stats.arrivals)
            return Response.json(
                200, {"tick_s": ARRIVAL_TICK_S, "counts": {str(t): n for t, n in counts.items()}}
            )
        if method == "GET" and action == "faults":
            return Response.json(200, self.faults.settings.as_dict())
        if method == "GET" and action == "health":
            return Response.json(200, {"ok": True})
        if method == "POST" and action == "reset":
            self.reset()
            return Response.json(200, {"reset": True})
        if method == "POST" and action == "faults":
            try:
                changes = json.loads(request.body or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("the body must be a JSON object of fault settings")
                self.faults.update(changes)
            except (ValueError, TypeError) as exc:
                return Response.json(400, {"error": "input_error", "message": str(exc)})
            return Response.json(200, self.faults.settings.as_dict())
        return Response.json(
            404, {"error": "page_not_found", "message": f"No admin endpoint {method} {request.path}"}
        )
