"""How a landed push becomes a warehouse row: one column per documented field, typed.

Profiles follow CrowdTwist's "Live Push User Profile" page (with Tiers v2): camelCase at the top, and
``tierInfo`` flattened into ``tier_*`` columns. Oracle's own sample writes some ``tierInfo`` keys in
snake_case (``timeframe_score``), so every key is looked up in both spellings. Activities follow
O:LivePushUserActivity. Fields nobody documented land in ``extra_fields`` (JSON), never dropped.

Dates: epoch seconds (``dateCreated``) and ISO 8601 strings (``tierInfo.dateReached``) both become
timestamps (UTC). A value that cannot be what its column holds rejects the row with the column named;
it is never coerced into something else. ``rows.py`` turns a push into a row of these columns.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

INT, NUM, TEXT, TS, JSON = "int", "num", "text", "ts", "json"


class ValueRejected(ValueError):
    pass


@functools.cache
def snake(name: str) -> str:
    """``tierScore`` -> ``tier_score``: CrowdTwist's camelCase key in the snake_case some samples use."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    source: tuple[str, ...]  # path of camelCase keys; each is also looked up in snake_case

    @property
    def label(self) -> str:
        return ".".join(self.source)


def _c(name: str, kind: str, *source: str) -> Column:
    return Column(name, kind, source)


_PROFILE_FIELDS: tuple[tuple[str, str], ...] = (
    ("emailAddress", TEXT), ("userName", TEXT), ("firstName", TEXT), ("middleName", TEXT),
    ("lastName", TEXT), ("thirdPartyId", TEXT), ("mobilePhoneNumber", TEXT), ("gender", TEXT),
    ("dateOfBirth", TS), ("country", TEXT), ("state", TEXT), ("region", TEXT), ("city", TEXT),
    ("postalCode", TEXT), ("streetAddress1", TEXT), ("streetAddress2", TEXT), ("langPref", TEXT),
    ("isActive", INT), ("emailIsVerified", INT), ("receiveEmailUpdates", INT),
    ("receiveSmsMessages", INT), ("passwordGenerated", INT), ("activityStreamOptIn", TEXT),
    ("redeemablePoints", NUM), ("totalPoints", NUM), ("monthlyPoints", NUM), ("weeklyPoints", NUM),
    ("numPointsPurchased", NUM), ("fanRank", INT), ("fanLevelName", TEXT), ("signUpTypeId", INT),
    ("signUpChannelId", INT), ("signUpCampaign", TEXT), ("clientBrandingId", TEXT),
    ("dateCreated", TS), ("dateLastUpdated", TS), ("dateLastLogin", TS), ("dateMobileVerified", TEXT),
    ("facebookUserId", TEXT), ("twitterUserId", TEXT), ("googleUserId", TEXT), ("yahooUserId", TEXT),
    ("fsqUserId", TEXT), ("instUserId", TEXT), ("numFacebookFriends", INT),
    ("numTwitterFollowers", INT), ("ipAddress", TEXT), ("hashAlgorithmId", TEXT), ("customData", JSON),
)  # fmt: skip
_TIER_FIELDS: tuple[tuple[str, str], ...] = (
    ("score", NUM), ("tierScore", NUM), ("timeframeScore", NUM), ("scoreNeededToReach", NUM),
    ("scoreNeededToMaintain", NUM), ("assignedByEvent", TEXT), ("dateReached", TS),
    ("dateAssigned", TS), ("resetDate", TS), ("expirationDate", TS), ("daysUntilResetDate", INT),
    ("daysUntilExpirationDate", INT),
)  # fmt: skip
_LEVEL_FIELDS: tuple[tuple[str, str], ...] = (("title", TEXT), ("minValue", NUM), ("maxValue", NUM))

PROFILE_KEY = _c("member_id", INT, "id")
PROFILE_COLUMNS: tuple[Column, ...] = (
    PROFILE_KEY,
    *(_c(snake(key), kind, key) for key, kind in _PROFILE_FIELDS),
    *(_c(f"tier_{snake(key)}", kind, "tierInfo", key) for key, kind in _TIER_FIELDS),
    *(
        _c(f"tier_{snake(level)}_{snake(key)}", kind, "tierInfo", level, key)
        for level in ("currentLevel", "nextLevel")
        for key, kind in _LEVEL_FIELDS
    ),
)

_ACTIVITY_FIELDS: tuple[tuple[str, str], ...] = (
    ("activityId", TEXT), ("activityName", TEXT), ("title", TEXT), ("points", NUM), ("notes", TEXT),
    ("referenceId", TEXT), ("activityExtraData", JSON), ("thirdPartyId", TEXT), ("userId", INT),
    ("emailAddress", TEXT), ("userName", TEXT), ("dateCreated", TS),
)  # fmt: skip
ACTIVITY_KEY = _c("user_activity_id", TEXT, "userActivityId")
ACTIVITY_COLUMNS: tuple[Column, ...] = (
    ACTIVITY_KEY,
    *(_c(snake(key), kind, key) for key, kind in _ACTIVITY_FIELDS),
)

# Every table also has: extra_fields (JSON of undocumented fields), received_at, source_file.
META_COLUMNS: tuple[Column, ...] = (
    Column("extra_fields", JSON, ()),
    Column("received_at", TS, ()),
    Column("source_file", TEXT, ()),
)


def feed_columns(feed: str) -> tuple[Column, ...]:
    return (PROFILE_COLUMNS if feed == "profile" else ACTIVITY_COLUMNS) + META_COLUMNS


def known_tree(columns: tuple[Column, ...]) -> dict[str, Any]:
    """The documented keys as a tree, in both spellings, so leftovers can be found quickly."""
    tree: dict[str, Any] = {}
    for column in columns:
        node = tree
        for i, key in enumerate(column.source):
            if i == len(column.source) - 1:
                node[key] = node[snake(key)] = None
            else:
                child = node.setdefault(key, {})
                node[snake(key)] = child
                node = child
    return tree


def extras_of(obj: Mapping[str, Any], tree: Mapping[str, Any]) -> dict[str, Any]:
    """What ``obj`` holds beyond the documented keys (nested objects keep their path)."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key not in tree:
            out[key] = value
        elif isinstance(tree[key], dict) and isinstance(value, Mapping):
            sub = extras_of(value, tree[key])
            if sub:
                out[key] = sub
    return out


KeySets = tuple[frozenset[str], tuple[tuple[str, Any], ...]]


def key_sets(tree: Mapping[str, Any]) -> KeySets:
    """The known-key tree as frozensets, for a fast "anything undocumented here?" check."""
    return frozenset(tree), tuple((k, key_sets(v)) for k, v in tree.items() if isinstance(v, dict))


def has_unknown(obj: dict[str, Any], known: KeySets) -> bool:
    keys, children = known
    if not keys.issuperset(obj):
        return True
    for key, child in children:
        value = obj.get(key)
        if type(value) is dict and has_unknown(value, child):
            return True
    return False


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    raise ValueRejected(f"not an integer: {value!r}")


def to_num(value: Any) -> int | float:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return int(value) if re.fullmatch(r"-?\d+", value.strip()) else float(value)
        except ValueError:
            pass
    raise ValueRejected(f"not a number: {value!r}")


def to_timestamp(value: Any) -> datetime:
    """Epoch seconds (int, float or digits) or an ISO 8601 string -> an aware UTC datetime."""
    try:
        if type(value) is int or type(value) is float:
            return datetime.fromtimestamp(value, timezone.utc)
        if isinstance(value, str):
            text = value.strip()
            if re.fullmatch(r"-?\d+(\.\d+)?", text):
                return datetime.fromtimestamp(float(text), timezone.utc)
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            # in UTC: SQLite keeps the text, which must sort like the instant it names
            return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError, OSError):
        pass
    raise ValueRejected(f"not a timestamp (epoch seconds or ISO 8601): {value!r}")


# One encoder for every JSON value: ``json.dumps`` with keyword arguments builds a new encoder per call,
# which cost more than encoding a small ``customData`` object (once per profile).
_encode_json = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode


def to_text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return _encode_json(value)
    if isinstance(value, bool):
        return str(int(value))
    return str(value)


def to_json(value: Any) -> str:
    return _encode_json(value)


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    INT: to_int,
    NUM: to_num,
    TEXT: to_text,
    TS: to_timestamp,
    JSON: to_json,
}
