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


KeySets = tuple[frozenset[str], tuple[tuple[str, Any], ...]]


def _key_sets(tree: Mapping[str, Any]) -> KeySets:
    """The known-key tree as frozensets, for a fast "anything undocumented here?" check."""
    return frozenset(tree), tuple((k, _key_sets(v)) for k, v in tree.items() if isinstance(v, dict))


def _has_unknown(obj: dict[str, Any], known: KeySets) -> bool:
    keys, children = known
    if not keys.issuperset(obj):
        return True
    for key, child in children:
        value = obj.get(key)
        if type(value) is dict and _has_unknown(value, child):
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
_MISSING = object()
TS_CACHE_SIZE = 100_000


class RowBuilder:
    """Landed line -> a tuple of typed column values; ``ValueRejected`` names the column that failed.

    Written for speed (a million profiles is the benchmark): the column code is generated once per
    builder (``_compile``), and values already of the column's type pass without a conversion call.
    ``timestamp_out`` turns a datetime into what the warehouse takes (SQLite: text).
    """

    def __init__(self, feed: str, timestamp_out: Callable[[datetime], Any] | None = None) -> None:
        self.feed = feed
        self.columns = feed_columns(feed)
        self.data_columns = self.columns[: -len(META_COLUMNS)]
        self._tree = _known_tree(self.data_columns)
        if feed == "profile":  # never landed in a column, nor in extra_fields (see feeds.py)
            self._tree.update(dict.fromkeys(SECRET_PROFILE_FIELDS))
        self._known_sets = _key_sets(self._tree)
        out = timestamp_out or (lambda value: value)
        self._ts_out = out
        self._ts_cache: dict[Any, Any] = {}
        self._converters = tuple(
            self._timestamp if c.kind == TS else CONVERTERS[c.kind] for c in self.data_columns
        )
        self._values = self._compile()

    def _timestamp(self, value: Any) -> Any:
        out = self._ts_out(to_timestamp(value))
        if len(self._ts_cache) >= TS_CACHE_SIZE:
            self._ts_cache.clear()
        if type(value) in (int, str):
            self._ts_cache[value] = out
        return out

    def _convert(self, index: int, value: Any) -> Any:
        """The slow path of one column: a conversion that may reject, naming the column."""
        try:
            return self._converters[index](value)
        except ValueRejected as exc:
            column = self.data_columns[index]
            raise ValueRejected(f"column {column.name} ({column.label}): {exc}") from None

    def _compile(self) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
        """Generate straight-line code for the columns: no per-column loop, lookups or tuple unpacking.

        A million profiles of ~70 columns is 70 million values; the generic loop cost twice as long.
        The code only reads constant keys (column sources are literals of this module, quoted with
        ``repr``) and calls ``_convert`` for anything not already of the column's type.
        """
        parents: dict[tuple[str, ...], str] = {(): "p0"}
        lines = ["def _values(push):", "    p0 = push"]
        for column in self.data_columns:
            for depth in range(1, len(column.source)):
                path = column.source[:depth]
                if path in parents:
                    continue
                name = parents[path] = f"p{len(parents)}"
                key = path[-1]
                lines += [
                    f"    v = {parents[path[:-1]]}.get({key!r}, _MISSING)",
                    f"    if v is _MISSING: v = {parents[path[:-1]]}.get({_snake(key)!r})",
                    f"    {name} = v if type(v) is dict else _EMPTY",
                ]
        fast = {
            TEXT: "type(v) is str",
            INT: "type(v) is int",
            NUM: "type(v) is int or type(v) is float",
            TS: None,
            JSON: None,
        }
        results = []
        for i, column in enumerate(self.data_columns):
            obj, key = parents[column.source[:-1]], column.source[-1]
            if _snake(key) != key:  # a key sent as null is not looked up again in snake_case
                lines.append(f"    v = {obj}.get({key!r}, _MISSING)")
                lines.append(f"    if v is _MISSING: v = {obj}.get({_snake(key)!r})")
            else:
                lines.append(f"    v = {obj}.get({key!r})")
            empty = "v is None" if column.kind == TEXT else 'v is None or v == ""'
            lines.append(f"    if {empty}: c{i} = None")
            if column.kind == TS:  # the same instant is formatted once (tier dates repeat a lot)
                lines.append(
                    f"    elif (type(v) is int or type(v) is str) and v in _ts_cache: c{i} = _ts_cache[v]"
                )
            elif fast[column.kind]:
                lines.append(f"    elif {fast[column.kind]}: c{i} = v")
            lines.append(f"    else: c{i} = _convert({i}, v)")
            results.append(f"c{i}")
        lines.append(f"    return ({', '.join(results)},)")
        namespace: dict[str, Any] = {
            "_EMPTY": _EMPTY,
            "_MISSING": _MISSING,
            "_ts_cache": self._ts_cache,
            "_convert": self._convert,
            "_ts_out": self._ts_out,
        }
        exec(compile("\n".join(lines), f"<live push {self.feed} columns>", "exec"), namespace)
        return namespace["_values"]

    def _has_extras(self, push: dict[str, Any]) -> bool:
        return _has_unknown(push, self._known_sets)

    def build(self, push: dict[str, Any], received_at: Any, source_file: str) -> tuple[Any, ...]:
        values = self._values(push)
        if values[0] is None:
            key = self.data_columns[0]
            raise ValueRejected(f"column {key.name} ({key.label}): missing")
        extras = to_json(_extras(push, self._tree)) if self._has_extras(push) else None
        try:
            received = self._ts_out(to_timestamp(received_at))
        except ValueRejected as exc:
            raise ValueRejected(f"column received_at: {exc}") from None
        return (*values, extras, received, source_file)
