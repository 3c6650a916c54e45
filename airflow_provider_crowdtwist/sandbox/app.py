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
from typing import Any
from urllib.parse import unquote

from airflow_provider_crowdtwist.sandbox import auth, validation
from airflow_provider_crowdtwist.sandbox.errors import (
    ApiError,
    forbidden,
    input_error,
    not_found,
    param_error,
)
from airflow_provider_crowdtwist.sandbox.faults import FaultInjector
from airflow_provider_crowdtwist.sandbox.http import DROP, Request, Response, _Drop
from airflow_provider_crowdtwist.sandbox.settings import SandboxSettings
from airflow_provider_crowdtwist.sandbox.state import ID_TYPES, SandboxState

access_log = logging.getLogger("airflow_provider_crowdtwist.sandbox.access")

MAX_PAGE_SIZE = 25

ROUTE_CREATE = "POST /v2/users"
ROUTE_GET = "GET /v2/users/{user_id}"
ROUTE_UPDATE = "PUT /v2/users/{user_id}"
ROUTE_DELETE = "DELETE /v2/users/{user_id}"
ROUTE_CREDIT = "POST /v2/users/{user_id}/activities"
ROUTE_ACTIVITIES = "GET /v2/activities"
ROUTE_EXTENDED = "GET /v2.1/activities/extended"
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
}


def _route(method: str, segments: list[str]) -> str:
    n = len(segments)
    if n >= 2 and segments[0] == "v2" and segments[1] == "users":
        if n == 2 and method == "POST":
            return ROUTE_CREATE
        if n == 3:
            return {"GET": ROUTE_GET, "PUT": ROUTE_UPDATE, "DELETE": ROUTE_DELETE}.get(method, ROUTE_UNKNOWN)
        if n == 4 and segments[3] == "activities" and method == "POST":
            return ROUTE_CREDIT
    if method == "GET" and segments == ["v2", "activities"]:
        return ROUTE_ACTIVITIES
    if method == "GET" and segments == ["v2.1", "activities", "extended"]:
        return ROUTE_EXTENDED
    return ROUTE_UNKNOWN


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
        self.settings = settings
        self.state = state or SandboxState(settings.first_member_id)
        self.faults = FaultInjector(settings.faults)
        self.clock = clock
        self.access_log_enabled = access_log_enabled

    def reset(self) -> None:
        """Members, credits and counts cleared; faults back to the start-up settings."""
        self.state.reset()
        self.faults.configure(self.settings.faults)

    async def __call__(self, request: Request) -> Response | _Drop:
        if request.path.startswith("/_admin"):
            return self._admin(request)
        return await self._api(request)

    # ---- API -----------------------------------------------------------------------------------

    async def _api(self, request: Request) -> Response | _Drop:
        segments = [unquote(s) for s in request.path.split("/")[1:]]
        route = _route(request.method, segments)
        user = self._user_key(route, segments, request)
        stats = self.state.stats
        stats.started(route, user)
        status = "dropped"
        try:
            response = await self._api_inner(request, route, segments)
            if isinstance(response, Response):
                status = str(response.status)
            return response
        finally:
            stats.finished(status)
            if self.access_log_enabled:
                access_log.info("%s %s -> %s", request.method, _redacted_target(request.target), status)

    async def _api_inner(self, request: Request, route: str, segments: list[str]) -> Response | _Drop:
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
            mode = auth.verify(
                method=request.method,
                target=request.target,
                headers=request.headers,
                query=query,
                body=request.body,
                settings=self.settings,
                now=self.clock(),
            )
            self.state.stats.auth_modes[mode] += 1
            status, payload = self._dispatch(request, route, segments, query)
        except ApiError as exc:
            return Response.json(exc.status, exc.body(), exc.headers or None)
        if decision.applied_then_503:
            return self._fault_status(503)
        if decision.applied_then_drop:
            return DROP
        return Response.json(status, payload)

    @staticmethod
    def _fault_status(status: int) -> Response:
        if status == 503:
            return Response.json(
                503, {"error": "service_unavailable", "message": "Service temporarily unavailable."}
            )
        return Response.json(status, {"error": "internal_error", "message": "An internal error occurred."})

    @staticmethod
    def _user_key(route: str, segments: list[str], request: Request) -> str | None:
        """The row identifier a request is about, for per-row request counts."""
        if route in (ROUTE_GET, ROUTE_UPDATE, ROUTE_DELETE, ROUTE_CREDIT):
            return segments[2]
        if route == ROUTE_CREATE:
            try:
                body = json.loads(request.body)
            except ValueError:
                return None
            email = body.get("email_address") if isinstance(body, dict) else None
            return email if isinstance(email, str) else None
        return None

    def _dispatch(
        self, request: Request, route: str, segments: list[str], query: dict[str, str]
    ) -> tuple[int, Any]:
        if route == ROUTE_ACTIVITIES:
            active = [a.as_dict() for a in self.settings.activities if a.is_active]
            return 200, {"activities": active}
        if route == ROUTE_EXTENDED:
            return 200, self._extended(query)
        if route == ROUTE_UNKNOWN:
            raise ApiError(404, "page_not_found", f"No such endpoint: {request.method} {request.path}")
        if route == ROUTE_CREATE:
            return 200, self._create(self._json_body(request))
        member_id = self._lookup(segments[2], query)
        if route == ROUTE_GET:
            return 200, self.state.public_view(member_id)
        if route == ROUTE_UPDATE:
            return 200, self._update(member_id, self._json_body(request))
        if route == ROUTE_DELETE:
            self.state.delete(member_id)
            return 200, {"deleted": True, "id": member_id}
        return 200, self._credit(member_id, self._json_body(request))

    @staticmethod
    def _json_body(request: Request) -> Any:
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise input_error("Content-Type must be application/json")
        try:
            return json.loads(request.body)
        except ValueError:
            raise input_error("Request body is not valid JSON") from None

    def _lookup(self, user_id: str, query: dict[str, str]) -> int:
        id_type = query.get("id_type") or "id"
        if id_type not in ID_TYPES:
            raise param_error(f"Invalid id_type '{id_type}'; expected one of {', '.join(ID_TYPES)}")
        member_id = self.state.find(user_id, id_type)
        if member_id is None:
            raise not_found()
        return member_id

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
        if changes.get("remove_points", 0) > current["redeemable_points"]:
            raise input_error("remove_points is more than the member's redeemable points")
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
        self.state.apply_credit(member_id, credit, points, key, now, self.settings.dedupe_window_s)
        return {"awarded": True}

    def _extended(self, query: dict[str, str]) -> dict[str, Any]:
        try:
            page = int(query.get("page") or 1)
            page_size = int(query.get("page_size") or MAX_PAGE_SIZE)
        except ValueError:
            raise param_error("page and page_size must be integers") from None
        if page < 1:
            raise param_error("page must be >= 1")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise param_error(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        items = [a.as_dict() for a in self.settings.activities]
        total = len(items)
        pages = max(1, -(-total // page_size))
        start = (page - 1) * page_size
        return {
            "activities": items[start : start + page_size],
            "paging": {
                "total": total,
                "pages": pages,
                "page": page,
                "page_size": page_size,
                "next_page": page + 1 if page < pages else None,
                "prev_page": page - 1 if page > 1 else None,
            },
        }

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
        if method == "GET" and action == "stats":
            return Response.json(200, self.state.stats.as_dict())
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
