"""Tolerant parsing of CrowdTwist responses.

The contract says new JSON properties may appear at any time, and public sources show more than one
shape for the same list (a bare list, or an object wrapping it). Parsing therefore looks for the
known names, ignores the rest, and never fails on an unknown field.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

from airflow_provider_crowdtwist.formats import NO_WORDS, YES_WORDS

_LIST_KEYS = ("activities", "data", "items", "results")
_TRUE_WORDS = YES_WORDS | {"active", "enabled"}
_FALSE_WORDS = NO_WORDS | {"inactive", "disabled", "archived", "deleted"}


@dataclass(frozen=True)
class Activity:
    """One activity of the program (what can be credited to a member), with Oracle's field names.

    O:Activities lists ``id``, ``name``, ``title``, ``description``, ``num_points``, ``type_id``,
    ``category_id``, ``freq_cap``, ``freq_period_id``, ``date_start``, ``date_end``. ``points`` is kept
    as an alias of ``num_points`` for callers written before the names were checked.
    """

    id: str
    name: str | None = None
    num_points: int | None = None
    active: bool = True
    title: str | None = None
    description: str | None = None
    type_id: int | None = None
    category_id: int | None = None
    freq_cap: int | None = None
    freq_period_id: int | None = None
    date_start: Any = None
    date_end: Any = None
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def points(self) -> int | None:
        """The activity's default points (``num_points``)."""
        return self.num_points


@dataclass(frozen=True)
class ActivityPage:
    """One page of ``GET /v2.1/activities/extended`` (O:Activities-Extended21).

    ``next_page``/``prev_page`` are the page numbers read out of the ``paging`` URLs (None at an end).
    """

    activities: list[Activity]
    total: int | None = None
    pages: int | None = None
    next_page: int | None = None
    prev_page: int | None = None


DELETION_QUEUED = "Queued"


@dataclass(frozen=True)
class DeletionRequest:
    """CrowdTwist's answer to ``DELETE /v2/users/{id}`` (O:UserDelete): the deletion is *queued*.

    ``user_id`` is CrowdTwist's member id; ``status`` is ``"Queued"`` on success (the member is removed
    later; ``GET`` the deletion status to follow it).
    """

    user_id: str | None
    status: str | None
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def queued(self) -> bool:
        return (self.status or "").strip().lower() == DELETION_QUEUED.lower()


def _first(item: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in item and item[key] is not None:
            return item[key]
    return None


def _to_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return None
        return int(number) if number.is_integer() else None
    return None


def _to_bool(value: Any, default: bool = True) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    return default


def parse_activity(item: Mapping[str, Any]) -> Activity | None:
    """One activity from Oracle's names (``id``, ``name``, ``title``, ``num_points``, ``type_id``, ...),
    tolerating older spellings (``activity_id``, ``points``/``default_points``, ``is_active``/``active``/
    ``status``); None when the entry has no id at all."""
    raw_id = _first(item, "id", "activity_id")
    if raw_id is None or isinstance(raw_id, (dict, list)) or str(raw_id).strip() == "":
        return None
    name = _first(item, "name", "title")
    title = _first(item, "title")
    description = _first(item, "description")
    return Activity(
        id=str(raw_id),
        name=str(name) if name is not None else None,
        num_points=_to_int(_first(item, "num_points", "points", "default_points")),
        # GET /v2/activities lists active activities, so an entry without a flag is active.
        active=_to_bool(_first(item, "is_active", "active", "status"), default=True),
        title=str(title) if title is not None else None,
        description=str(description) if description is not None else None,
        type_id=_to_int(item.get("type_id")),
        category_id=_to_int(item.get("category_id")),
        freq_cap=_to_int(item.get("freq_cap")),
        freq_period_id=_to_int(item.get("freq_period_id")),
        date_start=item.get("date_start"),
        date_end=item.get("date_end"),
        raw=dict(item),
    )


def parse_activities(payload: Any) -> list[Activity]:
    """Activities from a bare JSON list or an object with ``activities``/``data``/``items``."""
    items: Any = payload
    if isinstance(payload, Mapping):
        items = None
        for key in _LIST_KEYS:
            if isinstance(payload.get(key), list):
                items = payload[key]
                break
        if items is None:
            # Some responses nest once more, e.g. {"data": {"activities": [...]}}.
            for key in _LIST_KEYS:
                if isinstance(payload.get(key), Mapping):
                    return parse_activities(payload[key])
            return []
    if not isinstance(items, list):
        return []
    parsed = (parse_activity(item) for item in items if isinstance(item, Mapping))
    return [activity for activity in parsed if activity is not None]


def page_number(link: Any, param: str = "page") -> int | None:
    """The page a ``paging`` link points at: a URL's ``page`` query value (Oracle sends URLs), or a
    bare number (tolerated); None for no link or one that names no page."""
    if link is None or isinstance(link, bool):
        return None
    if isinstance(link, int):
        return link if link >= 1 else None
    text = str(link).strip()
    if text.isdigit():
        return int(text) or None
    values = parse_qs(urlsplit(text).query).get(param)
    if values and values[-1].strip().isdigit():
        return int(values[-1].strip()) or None
    return None


def parse_activity_page(payload: Any) -> ActivityPage:
    """A v2.1 extended page: ``{"activities": [...], "paging": {total, pages, next_page, prev_page}}``."""
    paging = payload.get("paging") if isinstance(payload, Mapping) else None
    paging = paging if isinstance(paging, Mapping) else {}
    return ActivityPage(
        activities=parse_activities(payload),
        total=_to_int(paging.get("total")),
        pages=_to_int(paging.get("pages")),
        next_page=page_number(paging.get("next_page")),
        prev_page=page_number(paging.get("prev_page")),
    )


def parse_deletion(payload: Any) -> DeletionRequest:
    """``{"user_id": N, "status": "Queued"}`` (O:UserDelete), tolerating an empty or odd body."""
    data = dict(payload) if isinstance(payload, Mapping) else {}
    user_id = data.get("user_id", data.get("id"))
    status = data.get("status")
    return DeletionRequest(
        user_id=str(user_id) if user_id is not None and not isinstance(user_id, (dict, list)) else None,
        status=str(status) if status is not None and not isinstance(status, (dict, list)) else None,
        raw=data,
    )


@dataclass(frozen=True)
class ActivityHistoryItem:
    """One activity a member completed, as ``GET /v2/users/{id}/activity_history`` lists it.

    ``extra_data`` is what the credit carried ("Extra data set via User Activity Credit API",
    O:UserActivityHistory): the credit sync finds its dedupe key there. Dates are epoch seconds, or
    None when absent or unreadable.
    """

    activity_id: str | None
    name: str | None = None
    num_points: int | None = None
    date_created: float | None = None
    date_awarded: float | None = None
    extra_data: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class HistoryPage:
    """One page of an activity history and what its envelope says about the pages after it."""

    items: list[ActivityHistoryItem]
    total_pages: int | None = None  # from ``paging.pages``, when the envelope has one
    has_next: bool | None = None  # from ``paging.next_page``, when the envelope has one

    def is_last(self, number: int) -> bool:
        """True when no page follows page ``number``: an empty page, or the paging block says so.

        A short page is *not* taken as the end: a server may serve fewer items than asked for.
        """
        if not self.items:
            return True
        if self.has_next is not None:
            return not self.has_next
        return self.total_pages is not None and number >= self.total_pages

    def reaches_before(self, since: float) -> bool:
        """True when the page is newest-first and ends before ``since``: later pages are all older.

        The order of the history is not documented; a page that is not in non-increasing date order
        (or has an item without a date) proves nothing, and paging goes on.
        """
        dates = [item.date_created for item in self.items]
        if not dates or any(d is None for d in dates):
            return False
        known = [d for d in dates if d is not None]
        newest_first = all(a >= b for a, b in itertools.pairwise(known))
        return newest_first and known[-1] < since


def _to_epoch(value: Any) -> float | None:
    """Epoch seconds from a number, a digit string, or an ISO 8601 date-time (UTC when naive)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            return parsed.timestamp()
    else:
        return None
    if number != number or number in (float("inf"), float("-inf")):
        return None
    return number / 1000.0 if number > 1e11 else number  # milliseconds, as some APIs send


def _extra_data(value: Any) -> dict:
    """``extra_data`` as an object; a JSON text holding an object is read too, anything else is {}."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return dict(value) if isinstance(value, Mapping) else {}


def parse_history_item(item: Mapping[str, Any]) -> ActivityHistoryItem:
    """One history entry from its known names; unknown fields are kept in ``raw`` and ignored."""
    raw_id = _first(item, "activity_id", "id")
    name = _first(item, "name", "title")
    return ActivityHistoryItem(
        activity_id=str(raw_id) if raw_id is not None and not isinstance(raw_id, (dict, list)) else None,
        name=str(name) if name is not None else None,
        num_points=_to_int(_first(item, "num_points", "points")),
        date_created=_to_epoch(_first(item, "date_created", "activity_date")),
        date_awarded=_to_epoch(item.get("date_awarded")),
        extra_data=_extra_data(item.get("extra_data")),
        raw=dict(item),
    )


def parse_activity_history(payload: Any) -> HistoryPage:
    """A history page from either envelope: a bare list, or ``{"paging": ..., "activities": [...]}``.

    The list may also sit under ``data``/``items``/``results`` (tolerated as for activities). In the
    paging block, ``next_page`` (a URL or a number; null on the last page) and ``pages`` are read.
    """
    items: Any = payload
    paging: Any = None
    if isinstance(payload, Mapping):
        paging = payload.get("paging")
        items = next((payload[k] for k in _LIST_KEYS if isinstance(payload.get(k), list)), [])
    if not isinstance(items, list):
        items = []
    parsed = [parse_history_item(i) for i in items if isinstance(i, Mapping)]
    total_pages: int | None = None
    has_next: bool | None = None
    if isinstance(paging, Mapping):
        total_pages = _to_int(paging.get("pages"))
        if "next_page" in paging:
            has_next = paging["next_page"] not in (None, "", False)
    return HistoryPage(parsed, total_pages=total_pages, has_next=has_next)


def parse_error_body(text: str | bytes | None, limit: int | None = None) -> tuple[str | None, str]:
    """``(code, message)`` from an error body: ``{"error": CODE, "message": TEXT}`` and variants.

    Tolerates ``{"error": {"code":..,"message":..}}``, ``{"errors": [...]}``, plain text and HTML
    (whitespace collapsed) and an empty body. ``limit`` cuts the message; the client cuts only
    *after* redaction, so that a cut can never leave half a secret behind.
    """
    if text is None:
        return None, ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    stripped = text.strip()
    code: str | None = None
    message: str | None = None
    try:
        data = json.loads(stripped) if stripped else None
    except ValueError:
        data = None
    if isinstance(data, Mapping):
        error = data.get("error")
        if isinstance(error, Mapping):
            code = _str_or_none(_first(error, "code", "error", "type"))
            message = _str_or_none(_first(error, "message", "description", "detail"))
        else:
            code = _str_or_none(error if not isinstance(error, (list, bool)) else None)
        if message is None:
            message = _str_or_none(_first(data, "message", "error_description", "detail", "msg"))
        if message is None and isinstance(data.get("errors"), list):
            parts = [
                _str_or_none(_first(e, "message", "detail")) if isinstance(e, Mapping) else _str_or_none(e)
                for e in data["errors"]
            ]
            message = "; ".join(p for p in parts if p) or None
        if code is None:
            code = _str_or_none(data.get("code")) if not isinstance(data.get("code"), bool) else None
        if code is None and isinstance(data.get("reason"), str):
            code = data["reason"]  # the POS host's envelope: {"system", "reason", "description", "message"}
    elif isinstance(data, str):
        message = data
    if message is None:
        message = " ".join(stripped.split()) if data is None else ""
    return code, _cut(message, limit)


def _cut(message: str, limit: int | None) -> str:
    if limit is not None and len(message) > limit:
        return message[: limit - 3] + "..."
    return message


def _str_or_none(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


__all__ = [
    "DELETION_QUEUED",
    "Activity",
    "ActivityHistoryItem",
    "ActivityPage",
    "DeletionRequest",
    "HistoryPage",
    "page_number",
    "parse_activities",
    "parse_activity",
    "parse_activity_history",
    "parse_activity_page",
    "parse_deletion",
    "parse_error_body",
    "parse_history_item",
]
