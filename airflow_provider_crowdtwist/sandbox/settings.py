"""What a sandbox is configured with: credentials, the program's activities and custom attributes.

The defaults are the ones the demo, the docs and every test use, so a connection written once
(``sandbox-api-key``, ``sandbox-public`` / ``sandbox-private``) works against any sandbox started
without options.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from typing import Any

from airflow_provider_crowdtwist.sandbox.faults import FaultSettings
from airflow_provider_crowdtwist.sandbox.pos_settings import POS_RUNTIME_SETTINGS, PosSettings
from airflow_provider_crowdtwist.sandbox.push import PushSettings

DEFAULT_API_KEY = "sandbox-api-key"
DEFAULT_HMAC_PUBLIC_KEY = "sandbox-public"
DEFAULT_HMAC_PRIVATE_KEY = "sandbox-private"
AUTH_MODES = ("api_key", "hmac")
TIMESTAMP_UNITS = ("s", "ms")
# The contract's OPEN points, each a setting whose values are the readings public sources allow.
BAD_CREDENTIALS_STATUSES = (401, 403)
DELETION_STATUS_PATHS = ("users/delete", "user_deletion")
HISTORY_ENVELOPES = ("list", "paged")
NULL_VALUES = ("clear", "ignore")
# Custom attributes are typed per program (a custom attribute is declared ``name:type``; a bare name
# takes any scalar). OPEN: which JSON a boolean takes, and whether a wrong type is refused at all.
CUSTOM_ATTRIBUTE_TYPES = ("boolean", "number", "string")
CUSTOM_TYPE_CHECKS = ("enforced", "not_enforced")
CUSTOM_BOOLEAN_VALUES = ("json", "number", "string")


@dataclass(frozen=True)
class ActivityDef:
    """One activity of the loyalty program; ``as_dict`` is an item of ``GET /v2/activities``."""

    id: str
    name: str
    points: int
    is_active: bool = True
    description: str = ""
    type_id: int = 1
    category_id: int = 1
    freq_cap: int = 0
    freq_period_id: int = 0
    date_start: int = 1_500_000_000
    date_end: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """Oracle's field names (O:Activities); ``num_points`` is the default award."""
        return {
            "id": self.id,
            "name": self.name,
            "title": self.name,
            "description": self.description,
            "num_points": self.points,
            "type_id": self.type_id,
            "category_id": self.category_id,
            "freq_cap": self.freq_cap,
            "freq_period_id": self.freq_period_id,
            "date_start": self.date_start,
            "date_end": self.date_end,
        }


DEFAULT_ACTIVITIES: tuple[ActivityDef, ...] = (
    ActivityDef("purchase", "Purchase", 10),
    ActivityDef("signup", "Sign up", 50),
    ActivityDef("review", "Write a review", 5),
    ActivityDef("birthday", "Birthday", 100),
    ActivityDef("legacy_survey", "Legacy survey", 20, is_active=False),
)

DEFAULT_CUSTOM_ATTRIBUTES: tuple[str, ...] = (
    "favorite_store",
    "loyalty_segment",
    "preferred_channel",
    "lifetime_value",
    # boolean traits, as an audience sync sets them (issue 25)
    "recent_buyer:boolean",
    "churn_risk:boolean",
)

# Settings ``POST /_admin/settings`` may change on a running sandbox (besides every fault knob). Keys,
# activities and custom attributes are the program's identity and stay as started.
RUNTIME_SETTINGS = (
    "timestamp_unit",
    "timestamp_window_s",
    "dedupe_window_s",
    "activity_date_enabled",
    "bad_credentials_status",
    "deletion_status_path",
    "history_envelope",
    "null_values",
    "location_optional",
    "award_lag_s",
    "deletion_lag_s",
    *POS_RUNTIME_SETTINGS,
    "custom_attribute_types",
    "custom_boolean_values",
)

_ACTIVITY_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class SandboxSettings:
    """Everything that makes one sandbox differ from another; immutable so a reset can restore it."""

    api_key: str = DEFAULT_API_KEY
    hmac_public_key: str = DEFAULT_HMAC_PUBLIC_KEY
    hmac_private_key: str = DEFAULT_HMAC_PRIVATE_KEY
    auth_modes: tuple[str, ...] = AUTH_MODES
    # The contract's OPEN point: Oracle's example signs 13-digit (ms) timestamps, the public signer sends
    # seconds. The sandbox accepts exactly one unit, so a client set to the wrong one fails loudly (401).
    timestamp_unit: str = "s"
    timestamp_window_s: float = 15 * 60
    activities: tuple[ActivityDef, ...] = DEFAULT_ACTIVITIES
    custom_attributes: tuple[str, ...] = DEFAULT_CUSTOM_ATTRIBUTES
    # OPEN: whether CrowdTwist deduplicates at all. An identical credit inside this window is refused with
    # "Event already processed"; 0 switches detection off (the same body twice awards twice).
    dedupe_window_s: float = 10.0
    # OPEN: bad credentials answered 401, or 403 {"error": "forbidden", "message": "Invalid API key"}.
    bad_credentials_status: int = 401
    # OPEN: O:UserDeletionStatus names /v2/users/delete/{id}, its own sample /v2/user_deletion/{id}.
    deletion_status_path: str = "users/delete"
    # OPEN: the activity history is a bare list, or {"paging": ..., "activities": [...]}.
    history_envelope: str = "list"
    # OPEN: a null in an optional field clears it, or is ignored.
    null_values: str = "clear"
    # OPEN: a custom_data value of the wrong type is refused ("enforced") or stored as sent.
    custom_attribute_types: str = "enforced"
    # OPEN: what a boolean custom attribute takes: JSON true/false, 1/0, or the strings "true"/"false".
    custom_boolean_values: str = "json"
    # OPEN: O:UserCreate requires a location; a secondary source reads Oracle's 2026-04 release as
    # "User Create no longer requires country or city". True: a create (or an update) with no location
    # field at all is accepted; a location that is given is checked as ever.
    location_optional: bool = False
    # Awards are queued (O:UserActivityCredit): answered at once, applied this many seconds later.
    award_lag_s: float = 0.0
    # Deletions are queued too (O:UserDelete): the member is gone this many seconds after the DELETE.
    deletion_lag_s: float = 0.0
    activity_date_enabled: bool = True
    first_member_id: int = 100001
    faults: FaultSettings = field(default_factory=FaultSettings)
    # CrowdTwist's live push: where to push changed profiles and awarded credits (off by default).
    push: PushSettings = field(default_factory=PushSettings)
    # The POS host's readings of its OPEN points (``sandbox/pos.py``), overridden as ``pos_<name>``.
    pos: PosSettings = field(default_factory=PosSettings)

    def validate(self) -> None:
        """Fail at start-up, naming the setting, rather than serve a sandbox that cannot work."""
        for name in ("api_key", "hmac_public_key", "hmac_private_key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or any(c.isspace() for c in value):
                raise ValueError(f"{name} must be a non-empty string without spaces")
        if not self.auth_modes or any(m not in AUTH_MODES for m in self.auth_modes):
            raise ValueError(
                f"auth_modes must be a non-empty subset of {AUTH_MODES}, got {self.auth_modes!r}"
            )
        if self.timestamp_unit not in TIMESTAMP_UNITS:
            raise ValueError(f"timestamp_unit must be one of {TIMESTAMP_UNITS}, got {self.timestamp_unit!r}")
        if self.timestamp_window_s <= 0:
            raise ValueError("timestamp_window_s must be > 0")
        if self.dedupe_window_s < 0:
            raise ValueError("dedupe_window_s must be >= 0 (0 disables the duplicate check)")
        for name, allowed in (
            ("bad_credentials_status", BAD_CREDENTIALS_STATUSES),
            ("deletion_status_path", DELETION_STATUS_PATHS),
            ("history_envelope", HISTORY_ENVELOPES),
            ("null_values", NULL_VALUES),
            ("custom_attribute_types", CUSTOM_TYPE_CHECKS),
            ("custom_boolean_values", CUSTOM_BOOLEAN_VALUES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not isinstance(self.location_optional, bool):
            raise ValueError(f"location_optional must be true or false, got {self.location_optional!r}")
        for name in ("award_lag_s", "deletion_lag_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 3600:
                raise ValueError(f"{name} must be a number of seconds between 0 and 3600, got {value!r}")
        seen: set[str] = set()
        for activity in self.activities:
            if not _ACTIVITY_ID.match(activity.id):
                raise ValueError(f"activities: invalid activity id {activity.id!r}")
            if activity.id in seen:
                raise ValueError(f"activities: duplicate activity id {activity.id!r}")
            if (
                isinstance(activity.points, bool)
                or not isinstance(activity.points, int)
                or activity.points < 0
            ):
                raise ValueError(f"activities: points of {activity.id!r} must be an integer >= 0")
            seen.add(activity.id)
        for entry in self.custom_attributes:
            if not isinstance(entry, str) or not entry.partition(":")[0].strip():
                raise ValueError(f"custom_attributes: invalid attribute name {entry!r}")
            kind = entry.partition(":")[2]
            if kind and kind not in CUSTOM_ATTRIBUTE_TYPES:
                raise ValueError(
                    f"custom_attributes: type of {entry!r} must be one of {CUSTOM_ATTRIBUTE_TYPES}"
                )
        self.faults.validate()
        self.push.validate()
        self.pos.validate()

    def with_overrides(self, **overrides: Any) -> SandboxSettings:
        """A copy with settings *or fault knobs* replaced, so callers can write ``latency_ms=200`` flat.

        Live push settings go by ``push_`` + their name: ``push_profile_url=...``, ``push_api_key=...``;
        POS settings by ``pos_`` + theirs: ``pos_duplicate_status=409``.
        """
        own = {f.name for f in fields(self)} - {"push", "pos"}
        fault_names = {f.name for f in fields(FaultSettings)}
        push_names = {f"push_{f.name}" for f in fields(PushSettings)}
        pos_names = set(POS_RUNTIME_SETTINGS)
        unknown = sorted(set(overrides) - own - fault_names - push_names - pos_names)
        if unknown:
            raise ValueError(f"unknown sandbox setting(s): {', '.join(unknown)}")
        mine = {k: v for k, v in overrides.items() if k in own}
        faults = {k: v for k, v in overrides.items() if k in fault_names}
        for key in ("auth_modes", "custom_attributes", "activities"):
            if key in mine:
                mine[key] = tuple(mine[key])
        if isinstance(faults.get("fault_routes"), (list, str)):
            routes = faults["fault_routes"]
            faults["fault_routes"] = tuple(routes.split(",") if isinstance(routes, str) else routes)
        new = replace(self, **mine)
        push = {k[len("push_") :]: v for k, v in overrides.items() if k in push_names}
        if push:
            new = replace(new, push=replace(new.push, **push))
        pos = {k[len("pos_") :]: v for k, v in overrides.items() if k in pos_names}
        if isinstance(pos.get("currencies"), (list, str)):
            codes = pos["currencies"]
            pos["currencies"] = tuple(codes.split(",") if isinstance(codes, str) else codes)
        if pos:
            new = replace(new, pos=replace(new.pos, **pos))
        if faults:
            new = replace(new, faults=replace(new.faults, **faults))
        new.validate()
        return new

    def readings(self) -> dict[str, Any]:
        """The settings a test may change at runtime (``POST /_admin/settings``): all but keys and lists."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name in RUNTIME_SETTINGS}
        return {**out, **self.pos.readings(), **self.faults.as_dict()}

    def custom_attribute_kinds(self) -> dict[str, str | None]:
        """The program's custom attributes: name -> type (None: untyped, any scalar)."""
        kinds: dict[str, str | None] = {}
        for entry in self.custom_attributes:
            name, _, kind = entry.partition(":")
            kinds[name] = kind or None
        return kinds

    def activity(self, activity_id: str) -> ActivityDef | None:
        for activity in self.activities:
            if activity.id == activity_id:
                return activity
        return None
