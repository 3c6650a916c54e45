"""How a landed push becomes a warehouse row: one column per documented field, typed.

Profiles follow CrowdTwist's "Live Push User Profile" page (with Tiers v2): camelCase at the top, and
``tierInfo`` flattened into ``tier_*`` columns. Oracle's own sample writes some ``tierInfo`` keys in
snake_case (``timeframe_score``), so every key is looked up in both spellings. Activities follow
O:LivePushUserActivity. Fields nobody documented land in ``extra_fields`` (JSON), never dropped.

Dates: epoch seconds (``dateCreated``) and ISO 8601 strings (``tierInfo.dateReached``) both become
timestamps (UTC). A value that cannot be what its column holds rejects the row with the column named;
it is never coerced into something else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_provider_crowdtwist.livepush.feeds import SECRET_PROFILE_FIELDS

INT, NUM, TEXT, TS, JSON = "int", "num", "text", "ts", "json"


class ValueRejected(ValueError):
    pass


def _snake(name: str) -> str:
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
    *(_c(_snake(key), kind, key) for key, kind in _PROFILE_FIELDS),
    *(_c(f"tier_{_snake(key)}", kind, "tierInfo", key) for key, kind in _TIER_FIELDS),
    *(
        _c(f"tier_{_snake(level)}_{_snake(key)}", kind, "tierInfo", level, key)
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
    *(_c(_snake(key), kind, key) for key, kind in _ACTIVITY_FIELDS),
)

# Every table also has: extra_fields (JSON of undocumented fields), received_at, source_file.
META_COLUMNS: tuple[Column, ...] = (
    Column("extra_fields", JSON, ()),
    Column("received_at", TS, ()),
    Column("source_file", TEXT, ()),
)


def feed_columns(feed: str) -> tuple[Column, ...]:
    return (PROFILE_COLUMNS if feed == "profile" else ACTIVITY_COLUMNS) + META_COLUMNS


def _known_tree(columns: tuple[Column, ...]) -> dict[str, Any]:
    """The documented keys as a tree, in both spellings, so leftovers can be found quickly."""
    tree: dict[str, Any] = {}
    for column in columns:
        node = tree
        for i, key in enumerate(column.source):
            if i == len(column.source) - 1:
                node[key] = node[_snake(key)] = None
            else:
                child = node.setdefault(key, {})
                node[_snake(key)] = child
                node = child
    return tree


def _lookup(obj: Mapping[str, Any], key: str) -> Any:
    value = obj.get(key)
    if value is None:
        value = obj.get(_snake(key))
    return value


def _extras(obj: Mapping[str, Any], tree: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key not in tree:
            out[key] = value
        elif isinstance(tree[key], dict) and isinstance(value, Mapping):
            sub = _extras(value, tree[key])
            if sub:
                out[key] = sub
    return out


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
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError, OSError):
        pass
    raise ValueRejected(f"not a timestamp (epoch seconds or ISO 8601): {value!r}")


def to_text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    if isinstance(value, bool):
        return str(int(value))
    return str(value)


def to_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    INT: to_int,
    NUM: to_num,
    TEXT: to_text,
    TS: to_timestamp,
    JSON: to_json,
}


_EMPTY: dict[str, Any] = {}
_FAST_TYPES: dict[str, tuple[type, ...]] = {INT: (int,), NUM: (int, float), TEXT: (str,)}


class RowBuilder:
    """Landed line -> a tuple of typed column values; ``ValueRejected`` names the column that failed.

    Written for speed (a million profiles is the benchmark): one precompiled getter per column, and
    values already of the column's type pass without a conversion call. ``timestamp_out`` turns a
    datetime into what the warehouse takes (SQLite: text).
    """

    def __init__(self, feed: str, timestamp_out: Callable[[datetime], Any] | None = None) -> None:
        self.feed = feed
        self.columns = feed_columns(feed)
        self.data_columns = self.columns[: -len(META_COLUMNS)]
        self._tree = _known_tree(self.data_columns)
        if feed == "profile":  # never landed in a column, nor in extra_fields (see feeds.py)
            self._tree.update(dict.fromkeys(SECRET_PROFILE_FIELDS))
        self._known_top = frozenset(self._tree)
        self._nested = tuple(k for k, v in self._tree.items() if isinstance(v, dict))
        out = timestamp_out or (lambda value: value)
        self._ts_out = out
        # parents: every distinct path of dicts a column lives in, fetched once per row
        self._parents = tuple(dict.fromkeys(c.source[:-1] for c in self.data_columns))
        self._plan = tuple(
            (
                column,
                self._parents.index(column.source[:-1]),
                column.source[-1],
                _snake(column.source[-1]),
                _FAST_TYPES.get(column.kind, ()),
                (lambda v, _out=out: _out(to_timestamp(v))) if column.kind == TS else CONVERTERS[column.kind],
                column.kind == TEXT,
            )
            for column in self.data_columns
        )
        self._parent_spellings = tuple(tuple((k, _snake(k)) for k in path) for path in self._parents)

    def _has_extras(self, push: dict[str, Any]) -> bool:
        if not self._known_top.issuperset(push):
            return True
        for key in self._nested:
            sub = push.get(key)
            if type(sub) is dict and _extras(sub, self._tree[key]):
                return True
        return False

    def _parent_dicts(self, push: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for spellings in self._parent_spellings:
            obj: Any = push
            for camel, snake in spellings:
                value = obj.get(camel)
                if value is None:
                    value = obj.get(snake)
                obj = value if type(value) is dict else _EMPTY
                if obj is _EMPTY:
                    break
            out.append(obj)
        return out

    def build(self, push: dict[str, Any], received_at: Any, source_file: str) -> tuple[Any, ...]:
        parents = self._parent_dicts(push)
        values: list[Any] = []
        append = values.append
        for column, parent, camel, snake, fast, convert, is_text in self._plan:
            obj = parents[parent]
            value = obj.get(camel)
            if value is None and snake != camel:
                value = obj.get(snake)
            if value is None or (value == "" and not is_text):
                append(None)
            elif type(value) in fast:
                append(value)
            else:
                try:
                    append(convert(value))
                except ValueRejected as exc:
                    raise ValueRejected(f"column {column.name} ({column.label}): {exc}") from None
        if values[0] is None:
            key = self.data_columns[0]
            raise ValueRejected(f"column {key.name} ({key.label}): missing")
        append(to_json(_extras(push, self._tree)) if self._has_extras(push) else None)
        try:
            append(self._ts_out(to_timestamp(received_at)))
        except ValueRejected as exc:
            raise ValueRejected(f"column received_at: {exc}") from None
        append(source_file)
        return tuple(values)
