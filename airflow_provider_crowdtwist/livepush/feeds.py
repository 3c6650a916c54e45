"""What a push of each feed must be, and how it is written down as one JSON line.

The checks are the least the warehouse needs, never more ("never stricter than CrowdTwist"): a JSON
object carrying the key its table is keyed on (a profile's member ``id``, an activity's
``userActivityId``). Everything else, unknown fields included, lands as sent, because CrowdTwist adds
fields without notice. The one exception is a profile's ``password`` and ``salt``: CrowdTwist documents
them as null, and should a value ever arrive it must not reach a landed file, so they are dropped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

FEEDS = ("profile", "activity")
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


def parse_push(feed: str, raw: bytes) -> Push:
    """The body as a push of ``feed``, or ``PushRejected`` saying why not."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PushRejected(f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise PushRejected(f"body must be a JSON object, got {type(body).__name__}")
    if feed == "profile":
        member_id = body.get("id")
        if not (_is_int(member_id) or (isinstance(member_id, str) and member_id.isdigit())):
            raise PushRejected(
                f"profile push: field 'id' must be the member's CrowdTwist id (an integer), got {member_id!r}"
            )
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
    """One landed line: when the receiver got the push, and the push as sent (minus secrets)."""
    when = time.time() if received_at is None else received_at
    return (
        json.dumps(
            {"received_at": round(when, 6), "push": push.body},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        + b"\n"
    )
