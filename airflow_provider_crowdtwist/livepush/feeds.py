"""What a push of each feed must be, and how it is written down as one JSON line.

The checks are the least the warehouse needs, never more ("never stricter than CrowdTwist"): a JSON
object carrying the key its table is keyed on (a profile's member ``id``, an activity's
``userActivityId``). Everything else, unknown fields included, lands as sent, because CrowdTwist adds
fields without notice. The one exception is a profile's ``password`` and ``salt``: CrowdTwist documents
them as null, and should a value ever arrive it must not reach a landed file, so they are dropped.

What the loader could not load is refused here, with a 400 that says why, rather than acknowledged
and then stuck in a file: JSON nested deeper than ``MAX_DEPTH`` objects/arrays (CrowdTwist's pushes
are three deep; Python's JSON parser and encoder recurse, and a task's stack ends near 1,000), a lone
UTF-16 surrogate (``"\\ud800"`` is valid JSON text but no character: it cannot be written as
UTF-8), and a profile ``id`` beyond 64 bits (the table's key is a BIGINT).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

FEEDS = ("profile", "activity")
MAX_DEPTH = 100  # objects/arrays nested in a push; documented in docs/live-push.md
INT64 = range(-(2**63), 2**63)
SECRET_PROFILE_FIELDS = ("password", "salt")


class PushRejected(ValueError):
    """The body is not a push of the feed; ``str(e)`` is the reason given back with the 400."""


@dataclass(frozen=True)
class Push:
    feed: str
    body: dict[str, Any]
    key: str


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def nesting_error(raw: bytes, limit: int = MAX_DEPTH) -> str | None:
    """Where ``raw`` nests objects/arrays deeper than ``limit``, as "line L column C", else None.

    A byte scan (strings and escapes skipped), so it never recurses whatever the depth. Only run when
    the body holds more than ``limit`` brackets at all, which no real push does.
    """
    depth = 0
    in_string = escaped = False
    line, line_start = 1, 0
    for offset, byte in enumerate(raw):
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):  # { [
            depth += 1
            if depth > limit:
                return f"line {line} column {offset - line_start + 1}"
        elif byte in (0x7D, 0x5D):
            depth -= 1
        elif byte == 0x0A:
            line, line_start = line + 1, offset + 1
    return None


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def deeper_than(raw: bytes, limit: int) -> bool:
    """Whether ``raw`` may nest deeper than ``limit``: at C speed, never a Python loop over bytes.

    Strings removed and only the brackets kept, each ``replace("[]", "")`` peels exactly one level
    off a balanced text, so ``limit`` peels leave nothing unless it is deeper. An unbalanced text
    (invalid JSON) that stops peeling counts as possibly deep, for the exact scan to decide.
    """
    brackets = _STRING.sub(b"", raw).translate(_BRACKETS, _NOT_BRACKETS)
    for _ in range(limit):
        if not brackets:
            return False
        peeled = brackets.replace(b"[]", b"")
        if len(peeled) == len(brackets):
            return True
        brackets = peeled
    return bool(brackets)


def too_deep(raw: bytes, limit: int = MAX_DEPTH) -> str | None:
    """The reason ``raw`` is nested too deeply to load, or None (the common case costs two counts)."""
    if raw.count(b"{") + raw.count(b"[") <= limit or not deeper_than(raw, limit):
        return None
    where = nesting_error(raw, limit)  # exact, and it stops where the limit is crossed
    return None if where is None else f"JSON nested deeper than {limit} objects/arrays at {where}"


def parse_push(feed: str, raw: bytes) -> Push:
    """The body as a push of ``feed``, or ``PushRejected`` saying why not."""
    deep = too_deep(raw)
    if deep is not None:
        raise PushRejected(f"body cannot be loaded: {deep}")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PushRejected(f"body is not JSON: {exc}") from None
    except RecursionError:  # not reached after too_deep; kept so that no body can answer 500
        raise PushRejected(f"body cannot be loaded: JSON nested deeper than {MAX_DEPTH}") from None
    if not isinstance(body, dict):
        raise PushRejected(f"body must be a JSON object, got {type(body).__name__}")
    if feed == "profile":
        member_id = body.get("id")
        if not (_is_int(member_id) or (isinstance(member_id, str) and member_id.isdigit())):
            raise PushRejected(
                f"profile push: field 'id' must be the member's CrowdTwist id (an integer), got {member_id!r}"
            )
        if int(member_id) not in INT64:
            raise PushRejected(f"profile push: field 'id' is beyond 64 bits: {member_id}")
        for name in SECRET_PROFILE_FIELDS:
            body.pop(name, None)
        return Push(feed, body, str(member_id))
    activity_id = body.get("userActivityId")
    if not (_is_int(activity_id) or (isinstance(activity_id, str) and activity_id.strip())):
        raise PushRejected(
            "activity push: field 'userActivityId' must identify the activity completion, "
            f"got {activity_id!r}"
        )
    return Push(feed, body, str(activity_id))


def encode_line(push: Push, received_at: float | None = None) -> bytes:
    """One landed line: when the receiver got the push, and the push as sent (minus secrets).

    ``PushRejected`` when the push holds a lone surrogate, which no UTF-8 file (or database) can hold.
    """
    when = time.time() if received_at is None else received_at
    text = json.dumps(
        {"received_at": round(when, 6), "push": push.body}, separators=(",", ":"), ensure_ascii=False
    )
    try:
        return text.encode() + b"\n"
    except UnicodeEncodeError as exc:
        bad = text[exc.start : exc.end].encode("unicode_escape").decode()
        raise PushRejected(
            f"body holds a lone UTF-16 surrogate ({bad}), which is not a character and cannot be stored"
        ) from None
