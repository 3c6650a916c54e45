"""The sandbox's POS host: ``POST /purchase``, ``POST /return``, ``DELETE /return/{return_id}``.

CrowdTwist serves commerce on a host of its own (``https://{env}pos{client_id}.crowdtwist.com``); the
sandbox serves it in the same process under the path prefix ``/pos`` (``SandboxAddresses.pos_url``),
so one port, one state and one fault injector serve both and a test needs no second server.

What the contract leaves OPEN (``crowdtwist-api.md``, "The POS host") is a setting each, with the
emulator's reading as default and every other reading one switch away (``PosSettings``; the CLI's
``--pos-*`` flags; ``POST /_admin/settings`` with ``pos_*`` names). The order of a request is the API's:
latency and the gateway's faults, then authentication (the API key header only: HMAC and a query key
are refused, O:HMACAuthentication, O:Purchase), then the rules, then "applied, then 503/drop".
Errors use the POS envelope ``{"system", "reason", "description", "message"}`` (O:VoidReturn-PostVoid).
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
import re
import threading
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from airflow_provider_crowdtwist.sandbox.http import DROP, Request, Response, _Drop
from airflow_provider_crowdtwist.sandbox.pos_settings import NON_MEMBER_RETURN_TYPES, PosSettings

if TYPE_CHECKING:
    from airflow_provider_crowdtwist.sandbox.app import SandboxApp

POS_PREFIX = "/pos"
ROUTE_PURCHASE = "POST /purchase"
ROUTE_RETURN = "POST /return"
ROUTE_VOID = "DELETE /return/{return_id}"
ROUTE_POS_UNKNOWN = "pos unknown"
#: The names ``fault_routes`` uses for the POS routes.
POS_ROUTE_SHORT_NAMES = {ROUTE_PURCHASE: "purchase", ROUTE_RETURN: "return", ROUTE_VOID: "void"}


USER_ATTRIBUTE_ORDER = ("email_address", "phone_number", "third_party_id")  # O:Purchase, CT
_MEMBER_INDEX = {
    "email_address": "email",
    "phone_number": "mobile_phone_number",
    "third_party_id": "third_party_id",
}
_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class PosError(Exception):
    """An answer in the POS envelope (O:VoidReturn-PostVoid's sample)."""

    def __init__(self, status: int, reason: str, description: str, message: str | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.reason = reason
        self.description = description
        self.message = message or description

    def body(self) -> dict[str, str]:
        return {
            "system": "pos",
            "reason": self.reason,
            "description": self.description,
            "message": self.message,
        }


def _missing(field: str) -> PosError:
    return PosError(400, "missing_data", f'Required field ["{field}"] is missing.')


def _invalid(description: str) -> PosError:
    return PosError(400, "invalid", description)


class PosLedger:
    """What the POS host stored: receipts, returns, voids, the points each moved; counts of repeats.

    Tests read it (``GET /_admin/pos``) to assert exactly-once: each id is stored once, ``requests``
    counts every request that named it, ``duplicates`` the ones answered as repeats.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.receipts: dict[str, dict[str, Any]] = {}
            self.returns: dict[str, dict[str, Any]] = {}
            self.voided: dict[str, dict[str, Any]] = {}  # return_id -> the voided return (reused ids: last)
            self.requests: dict[str, int] = {}
            self.duplicates: dict[str, int] = {}
            self.next_receipt = 5_000_001
            self.next_return = 7_000_001

    def view(self) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(
                {
                    "receipts": list(self.receipts.values()),
                    "returns": list(self.returns.values()),
                    "voided": list(self.voided.values()),
                    "requests": dict(self.requests),
                    "duplicates": dict(self.duplicates),
                }
            )


def _decimal(value: Any, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _invalid(f"{field} must be a decimal number.")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise _invalid(f"{field} must be a decimal number.") from None
    if not number.is_finite():
        raise _invalid(f"{field} must be a decimal number.")
    return number


def _date(value: Any, field: str, label: str) -> str:
    """ISO-8601 "with offset appended" (O:Purchase, O:Return); anything else is refused."""
    if not isinstance(value, str) or not value:
        raise _missing(field)
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid(f"{label} is in incorrect format.") from None
    if parsed.tzinfo is None or not _OFFSET.search(text):
        raise _invalid(f"{label} is in incorrect format.")
    return text


class PosApi:
    """The POS routes of one ``SandboxApp`` (its state, faults, clock and settings)."""

    def __init__(self, app: SandboxApp) -> None:
        self.app = app
        self.ledger = PosLedger()

    @property
    def settings(self) -> PosSettings:
        return self.app.settings.pos

    # ---- routing ------------------------------------------------------------------------------

    @staticmethod
    def route(method: str, path: str) -> tuple[str, str | None]:
        segments = [unquote(s) for s in path[len(POS_PREFIX) :].split("/")[1:]]
        if method == "POST" and segments == ["purchase"]:
            return ROUTE_PURCHASE, None
        if method == "POST" and segments == ["return"]:
            return ROUTE_RETURN, None
        if method == "DELETE" and len(segments) == 2 and segments[0] == "return" and segments[1]:
            return ROUTE_VOID, segments[1]
        return ROUTE_POS_UNKNOWN, None

    async def __call__(self, request: Request) -> Response | _Drop:
        route, return_id = self.route(request.method, request.path)
        key = return_id if route == ROUTE_VOID else self._body_key(route, request)
        stats = self.app.state.stats
        stats.started(route, key)
        status = "dropped"
        try:
            response = await self._handle(request, route, return_id, key)
            if isinstance(response, Response):
                status = str(response.status)
            return response
        finally:
            stats.finished(status)

    @staticmethod
    def _body_key(route: str, request: Request) -> str | None:
        """The receipt or return id a request names, for per-id request counts."""
        field = {ROUTE_PURCHASE: "receipt_id", ROUTE_RETURN: "return_id"}.get(route)
        if field is None:
            return None
        try:
            body = json.loads(request.body)
        except ValueError:
            return None
        value = body.get(field) if isinstance(body, dict) else None
        return str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None

    async def _handle(
        self, request: Request, route: str, return_id: str | None, key: str | None
    ) -> Response | _Drop:
        faults = self.app.faults
        if faults.latency_s:
            await asyncio.sleep(faults.latency_s)
        decision = faults.decide(POS_ROUTE_SHORT_NAMES.get(route))
        if decision.rate_limited_for:
            headers = (
                {"Retry-After": faults.retry_after_header(decision.rate_limited_for)}
                if faults.settings.retry_after
                else None
            )
            error = PosError(429, "rate_limited", "Rate limit exceeded. Try again later.")
            return Response.json(429, error.body(), headers)
        if decision.drop:
            return DROP
        if decision.error_status:
            return self._server_error(decision.error_status)
        try:
            self._authenticate(request)
            if key is not None and route != ROUTE_VOID:
                with self.ledger.lock:
                    self.ledger.requests[key] = self.ledger.requests.get(key, 0) + 1
            status, payload = self._dispatch(request, route, return_id)
        except PosError as exc:
            return Response.json(exc.status, exc.body())
        if decision.applied_then_503:
            return self._server_error(503)
        if decision.applied_then_drop:
            return DROP
        return Response.json(status, payload)

    @staticmethod
    def _server_error(status: int) -> Response:
        return Response.json(
            status, PosError(status, "server_error", "Service temporarily unavailable.").body()
        )

    def _authenticate(self, request: Request) -> None:
        """``X-CT-Authorization: CTApiKey KEY`` only: HMAC and ``?api_key=`` are not supported here."""
        status = self.settings.refused_auth_status
        header = request.headers.get("x-ct-authorization")
        if header is not None and header.startswith("CTApiV2Auth "):
            raise PosError(status, "not_supported", "HMAC authentication is not supported on the POS host.")
        if header is None:
            if "api_key" in request.query():
                raise PosError(
                    status, "not_supported", "This request does not support URL or query parameters."
                )
            raise PosError(status, "auth_error", "Missing authentication: send X-CT-Authorization.")
        if not header.startswith("CTApiKey "):
            raise PosError(
                status, "auth_error", "Unsupported X-CT-Authorization scheme (expected 'CTApiKey KEY')."
            )
        if not hmac.compare_digest(header[len("CTApiKey ") :].encode(), self.app.settings.api_key.encode()):
            raise PosError(status, "auth_error", "Invalid API key")

    def _dispatch(self, request: Request, route: str, return_id: str | None) -> tuple[int, Any]:
        if route == ROUTE_POS_UNKNOWN:
            raise PosError(405, "not_supported", f"{request.method} {request.path} is not supported.")
        if route == ROUTE_VOID:
            assert return_id is not None
            return 200, self._void(return_id)
        body = self._json_body(request)
        if route == ROUTE_PURCHASE:
            return 200, self._purchase(body)
        return 200, self._return(body)

    @staticmethod
    def _json_body(request: Request) -> dict[str, Any]:
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise _invalid("Content-Type must be application/json.")
        try:
            body = json.loads(request.body)
        except ValueError:
            raise _invalid("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise _invalid("The request body must be a JSON object.")
        return body

    # ---- members and points -------------------------------------------------------------------

    def _member(self, body: dict[str, Any], *, unknown_user: str) -> int | None:
        """``user_id`` first (it takes precedence, O:Return), then email, phone, third-party id."""
        state = self.app.state
        user_id = body.get("user_id")
        if user_id not in (None, ""):
            text = str(user_id)
            if isinstance(user_id, bool) or not text.isdigit():
                raise _invalid("user_id must be an integer.")
            member_id = state.find(text, "id")
            if member_id is None and unknown_user == "reject":
                raise PosError(400, "user_not_found", f"User with id [{text}] can not be found.")
            return member_id
        attributes = body.get("user_attributes")
        if attributes in (None, {}):
            return None
        if not isinstance(attributes, dict):
            raise _invalid("user_attributes must be an object.")
        for name in USER_ATTRIBUTE_ORDER:
            value = attributes.get(name)
            if value not in (None, ""):
                member_id = state.find(str(value), _MEMBER_INDEX[name])
                if member_id is not None:
                    return member_id
        return None  # "we continue processing the receipt and award no user" (O:Purchase)

    def _check_active(self, member_id: int | None) -> None:
        if member_id is None or self.settings.inactive_member == "award":
            return
        if self.app.state.members[member_id].get("is_active", 1) == 0:
            raise PosError(403, "invalid", "User is inactive.")

    def _round(self, value: Decimal) -> int:
        mode = {"natural": ROUND_HALF_UP, "up": ROUND_CEILING, "down": ROUND_FLOOR}[self.settings.rounding]
        return int(value.quantize(Decimal(1), rounding=mode))

    def _items(self, body: dict[str, Any], *, required: bool) -> list[dict[str, Any]]:
        items = body.get("items")
        if items in (None, []):
            if required:
                raise _missing("items")
            return []
        if not isinstance(items, list):
            raise _invalid("items must be a list.")
        out = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise _invalid(f"items[{index}] must be an object.")
            sku = item.get("sku")
            if sku in (None, ""):
                raise _missing(f"items[{index}].sku")
            for field in ("price", "quantity"):
                if item.get(field) is None:
                    raise _missing(f"items[{index}].{field}")
            price = _decimal(item["price"], f"items[{index}].price")
            quantity = _decimal(item["quantity"], f"items[{index}].quantity")
            if quantity <= 0:
                raise PosError(400, "invalid", f"items[{index}].quantity must be greater than 0.")
            out.append({**copy.deepcopy(item), "sku": str(sku), "_price": price, "_quantity": quantity})
        return out

    def _line_points(self, items: list[dict[str, Any]]) -> tuple[list[int], int]:
        """Points per line and in all: price (per unit, or the line's) times rate, rounded as configured."""
        rate = Decimal(str(self.settings.points_per_unit))
        raw = []
        for item in items:
            amount = (
                item["_price"] * item["_quantity"] if self.settings.price_is == "unit" else item["_price"]
            )
            raw.append(amount * rate)
        if self.settings.rounding_scope == "line":
            per_line = [self._round(value) for value in raw]
            return per_line, sum(per_line)
        return [self._round(value) for value in raw], self._round(sum(raw, Decimal(0)))

    def _move_points(self, member_id: int | None, points: int) -> int:
        """Add (or take, when negative) points; returns what moved (a floor may take less)."""
        if member_id is None or points == 0:
            return points
        state = self.app.state
        with state.lock:
            record = state.members[member_id]
            current = int(record.get("redeemable_points", 0))
            if points < 0 and self.settings.negative_balance == "floor":
                points = -min(-points, max(current, 0))
            record["redeemable_points"] = current + points
            record["total_points"] = int(record.get("total_points", 0)) + points
        return points

    def _duplicate(self, key: str, stored: dict[str, Any] | None, what: str) -> dict[str, Any]:
        with self.ledger.lock:
            self.ledger.duplicates[key] = self.ledger.duplicates.get(key, 0) + 1
        status = self.settings.duplicate_status
        if status == 200 and stored is not None:
            return copy.deepcopy(stored["answer"])
        raise PosError(
            status if status != 200 else 400,
            "not_unique",
            f"{what} id is not unique.",
            f"{what} id [{key}] is not unique.",
        )

    def _answer(
        self,
        ct_id: int,
        points: int,
        member_id: int | None,
        lines: list[dict[str, Any]],
        per_line: list[int],
        key_name: str,
    ) -> dict[str, Any]:
        """OPEN 3: Fulfillment-like (O:Fulfillment), plus the items' points, or nothing."""
        if self.settings.answer == "empty":
            return {}
        answer: dict[str, Any] = {
            key_name: ct_id,
            "total_points_awarded": points,
            "bonus_points_awarded": 0,
            "user_id": member_id,
        }
        if self.settings.answer == "items":
            answer["items"] = [
                {"sku": line["sku"], "quantity": _plain(line["_quantity"]), "points_awarded": p}
                for line, p in zip(lines, per_line, strict=True)
            ]
        return answer

    # ---- purchase -----------------------------------------------------------------------------

    def _purchase(self, body: dict[str, Any]) -> dict[str, Any]:
        receipt_id = body.get("receipt_id")
        if receipt_id in (None, "") or isinstance(receipt_id, (bool, dict, list)):
            raise _missing("receipt_id")
        key = str(receipt_id)
        with self.ledger.lock:
            stored = self.ledger.receipts.get(key)
        if stored is not None:
            return self._duplicate(key, stored, "Receipt")
        if body.get("total") is None:
            raise _missing("total")
        total = _decimal(body["total"], "total")
        if body.get("subtotal") is not None:
            _decimal(body["subtotal"], "subtotal")
        date = _date(body.get("date_purchased"), "date_purchased", "Date purchased")
        currency = body.get("currency")
        if currency is not None:
            if not isinstance(currency, str) or not _CURRENCY.match(currency):
                raise PosError(
                    400, "invalid_currency", f"Currency [{currency}] is not a valid ISO-4217 code."
                )
            if currency not in self.settings.currencies:
                raise PosError(400, "currency_not_configured", f"Currency [{currency}] is not configured.")
        items = self._items(body, required=self.settings.items == "required")
        member_id = self._member(body, unknown_user=self.settings.unknown_user)
        self._check_active(member_id)
        per_line, points = self._line_points(items)
        moved = self._move_points(member_id, points)
        with self.ledger.lock:
            ct_id = self.ledger.next_receipt
            self.ledger.next_receipt += 1
            answer = self._answer(ct_id, moved, member_id, items, per_line, "receipt_id")
            self.ledger.receipts[key] = {
                "receipt_id": key,
                "id": ct_id,
                "user_id": member_id,
                "points": moved,
                "total": _plain(total),
                "date_purchased": date,
                "order_id": body.get("order_id"),
                "currency": currency,
                "items": [
                    {
                        "sku": line["sku"],
                        "price": _plain(line["_price"]),
                        "quantity": _plain(line["_quantity"]),
                        "points": p,
                        "returned": 0,
                    }
                    for line, p in zip(items, per_line, strict=True)
                ],
                "answer": answer,
            }
        return answer

    # ---- return and void ----------------------------------------------------------------------

    def _return(self, body: dict[str, Any]) -> dict[str, Any]:
        return_id = body.get("return_id")
        if return_id in (None, "") or isinstance(return_id, (bool, dict, list)):
            raise _missing("return_id")
        key = str(return_id)
        with self.ledger.lock:
            stored = self.ledger.returns.get(key)
            voided = key in self.ledger.voided
        if stored is not None or (voided and self.settings.voided_return_id == "taken"):
            return self._duplicate(key, stored, "Return")
        return_type = body.get("return_type")
        if return_type is not None and (
            isinstance(return_type, bool) or str(return_type) not in {str(n) for n in range(1, 10)}
        ):
            raise _invalid("return_type must be an integer from 1 to 9.")
        date = _date(body.get("date_returned"), "date_returned", "Date returned")
        items = self._items(body, required=True)
        original_id = body.get("original_receipt_id")
        receipt = None
        if original_id not in (None, ""):
            with self.ledger.lock:
                receipt = self.ledger.receipts.get(str(original_id))
            if receipt is None:
                raise PosError(
                    self.settings.not_found_status,
                    "receipt_not_found",
                    "Receipt not found",
                    f"Receipt [{original_id}] cannot be found",
                )
        elif not body.get("user_attributes") and body.get("user_id") in (None, ""):
            raise _missing("user_attributes")  # "at least one user_attribute field is required" (O:Return)
        member_id = self._member(body, unknown_user="store")
        if member_id is None and receipt is not None:
            member_id = receipt["user_id"]
        if member_id is None and return_type is not None and int(return_type) in NON_MEMBER_RETURN_TYPES:
            raise _invalid("Non-member returns are not accepted for this return type.")
        per_line, taken = self._return_points(items, receipt)
        points = sum(per_line)
        moved = -self._move_points(member_id, -points)
        with self.ledger.lock:
            self._mark_returned(receipt, [item["sku"] for item in items], taken, 1)
            ct_id = self.ledger.next_return
            self.ledger.next_return += 1
            answer = self._answer(ct_id, -moved, member_id, items, [-p for p in per_line], "return_id")
            self.ledger.returns[key] = {
                "return_id": key,
                "id": ct_id,
                "user_id": member_id,
                "points": moved,
                "original_receipt_id": None if receipt is None else receipt["receipt_id"],
                "return_type": return_type,
                "date_returned": date,
                "items": [
                    {
                        "sku": line["sku"],
                        "quantity": _plain(line["_quantity"]),
                        "taken": _plain(q),
                        "points": p,
                    }
                    for line, p, q in zip(items, per_line, taken, strict=True)
                ],
                "answer": answer,
            }
        return answer

    def _return_points(
        self, items: list[dict[str, Any]], receipt: dict[str, Any] | None
    ) -> tuple[list[int], list[Decimal]]:
        """OPEN 4: each returned unit takes its share of its SKU's points, capped at what was bought.

        Returns the points and the quantities taken per line; nothing is changed until the return is
        stored (a refused line leaves the receipt as it was).
        """
        if receipt is None:
            return self._line_points(items)[0], [item["_quantity"] for item in items]
        points_out: list[int] = []
        taken: list[Decimal] = []
        pending: dict[str, Decimal] = {}
        for item in items:
            sku = item["sku"]
            lines = [line for line in receipt["items"] if line["sku"] == sku]
            if not lines:
                raise PosError(400, "sku_not_found", f"SKU [{sku}] is not on the receipt.")
            bought = sum((Decimal(str(line["quantity"])) for line in lines), Decimal(0))
            returned = sum((Decimal(str(line["returned"])) for line in lines), Decimal(0)) + pending.get(
                sku, Decimal(0)
            )
            quantity = item["_quantity"]
            if quantity > bought - returned:
                if self.settings.return_excess == "refuse":
                    raise PosError(400, "quantity_too_large", f"Quantity of SKU [{sku}] is too large.")
                quantity = max(bought - returned, Decimal(0))
            points = sum((Decimal(line["points"]) for line in lines), Decimal(0))
            points_out.append(self._round(points * quantity / bought) if bought else 0)
            taken.append(quantity)
            pending[sku] = pending.get(sku, Decimal(0)) + quantity
        return points_out, taken

    @staticmethod
    def _mark_returned(
        receipt: dict[str, Any] | None, skus: list[str], quantities: list[Any], sign: int
    ) -> None:
        if receipt is None:
            return
        for sku, quantity in zip(skus, quantities, strict=True):
            line = next(line for line in receipt["items"] if line["sku"] == sku)
            line["returned"] = _plain(Decimal(str(line["returned"])) + sign * Decimal(str(quantity)))

    def _void(self, return_id: str) -> dict[str, Any]:
        """Delete a return and credit back the points it took (O:VoidReturn-PostVoid)."""
        with self.ledger.lock:
            stored = self.ledger.returns.pop(return_id, None)
            if stored is None:
                earlier = self.ledger.voided.get(return_id)
                if earlier is not None and self.settings.second_void == "replay":
                    return copy.deepcopy(earlier["void_answer"])
                raise PosError(
                    self.settings.not_found_status,
                    "return not found",
                    "Return not found",
                    "Return third party id cannot be found",
                )
        credited = self._move_points(stored["user_id"], stored["points"])
        with self.ledger.lock:
            receipt = self.ledger.receipts.get(stored["original_receipt_id"] or "")
            items = stored["items"]
            self._mark_returned(receipt, [i["sku"] for i in items], [i["taken"] for i in items], -1)
        answer = {"return_id": stored["id"], "total_points_awarded": credited, "user_id": stored["user_id"]}
        with self.ledger.lock:
            self.ledger.voided[return_id] = {**stored, "void_answer": answer}
        return answer


def _plain(value: Decimal) -> int | float:
    """A Decimal as the JSON number it was (an integer stays an integer)."""
    return int(value) if value == value.to_integral_value() else float(value)
