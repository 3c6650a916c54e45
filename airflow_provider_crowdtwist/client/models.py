"""Tolerant parsing of CrowdTwist responses.

The contract says new JSON properties may appear at any time, and public sources show more than one
shape for the same list (a bare list, or an object wrapping it). Parsing therefore looks for the
known names, ignores the rest, and never fails on an unknown field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_crowdtwist.formats import NO_WORDS, YES_WORDS

_LIST_KEYS = ("activities", "data", "items", "results")
_TRUE_WORDS = YES_WORDS | {"active", "enabled"}
_FALSE_WORDS = NO_WORDS | {"inactive", "disabled", "archived", "deleted"}


@dataclass(frozen=True)
class Activity:
    """One activity of the program (what can be credited to a member)."""

    id: str
    name: str | None = None
    points: int | None = None
    active: bool = True
    raw: dict = field(default_factory=dict, compare=False, repr=False)


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
    """One activity from ``id``/``activity_id``, ``name``/``title``, ``num_points`` (Oracle's name) or
    ``points``/``default_points``, ``is_active``/``active``/``status``; None when the entry has no id."""
    raw_id = _first(item, "id", "activity_id")
    if raw_id is None or isinstance(raw_id, (dict, list)) or str(raw_id).strip() == "":
        return None
    name = _first(item, "name", "title")
    return Activity(
        id=str(raw_id),
        name=str(name) if name is not None else None,
        points=_to_int(_first(item, "num_points", "points", "default_points")),
        # GET /v2/activities lists active activities, so an entry without a flag is active.
        active=_to_bool(_first(item, "is_active", "active", "status"), default=True),
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
    activities = []
    for item in items:
        if isinstance(item, Mapping):
            activity = parse_activity(item)
            if activity is not None:
                activities.append(activity)
    return activities


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


__all__ = ["Activity", "parse_activities", "parse_activity", "parse_error_body"]
