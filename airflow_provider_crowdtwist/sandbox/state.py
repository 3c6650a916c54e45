"""The sandbox's memory: members by CrowdTwist id, one index per id_type, the credit ledger, request counts.

Members are keyed by the integer CrowdTwist id, as in the service, and every other ``id_type`` is an
index onto it, so a lookup by email, username or phone finds the same record an update by ``id`` changed.
All writes happen on the event-loop thread; the lock exists so that tests reading ``server.state``
directly from their own thread see a consistent snapshot.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

ID_TYPES = (
    "email",
    "facebook_user_id",
    "twitter_user_id",
    "id",
    "third_party_id",
    "username",
    "mobile_phone_number",
)
# id_type -> the attribute holding it. Emails are matched case-insensitively, like mail systems do.
INDEXED_ATTRIBUTES = {
    "email": "email_address",
    "facebook_user_id": "facebook_user_id",
    "twitter_user_id": "twitter_user_id",
    "third_party_id": "third_party_id",
    "username": "username",
    "mobile_phone_number": "mobile_phone_number",
}
SECRET_ATTRIBUTES = ("password",)
FORGET_THRESHOLD = 100_000


def _index_key(id_type: str, value: Any) -> str:
    text = str(value)
    return text.lower() if id_type == "email" else text


class SandboxState:
    """Members, credits and counters; ``reset()`` returns it to the freshly-started state."""

    def __init__(self, first_member_id: int = 100001, clock: Any = time.time) -> None:
        self.lock = threading.RLock()
        self.first_member_id = first_member_id
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.members: dict[int, dict[str, Any]] = {}
            self.indexes: dict[str, dict[str, int]] = {id_type: {} for id_type in INDEXED_ATTRIBUTES}
            self.credits: list[dict[str, Any]] = []
            self.recent_credits: dict[tuple[Any, ...], float] = {}
            self._forget_at = FORGET_THRESHOLD
            self.next_id = self.first_member_id
            self.stats = RequestStats()

    # ---- members -------------------------------------------------------------------------------

    def find(self, user_id: str, id_type: str) -> int | None:
        """The CrowdTwist id of the member ``user_id`` names under ``id_type``, or None."""
        with self.lock:
            if id_type == "id":
                if not user_id.isdigit():
                    return None
                member_id = int(user_id)
                return member_id if member_id in self.members else None
            return self.indexes[id_type].get(_index_key(id_type, user_id))

    def owner_of(self, id_type: str, value: Any) -> int | None:
        with self.lock:
            return self.indexes[id_type].get(_index_key(id_type, value))

    def create(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            member_id = self.next_id
            self.next_id += 1
            now = int(self.clock())
            record = {k: copy.deepcopy(v) for k, v in attrs.items()}
            record.setdefault("custom_data", {})
            record.update(
                {
                    "id": member_id,
                    "is_active": 1,
                    "total_points": 0,
                    "redeemable_points": 0,
                    "date_created": now,
                    "date_updated": now,
                }
            )
            self.members[member_id] = record
            self._index(member_id, record)
            return record

    def update(self, member_id: int, changes: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            record = self.members[member_id]
            self._unindex(member_id, record)
            for key, value in changes.items():
                if key == "custom_data":
                    record["custom_data"] = {**record.get("custom_data", {}), **value}
                elif key == "remove_points":
                    record["redeemable_points"] -= value
                else:
                    record[key] = copy.deepcopy(value)
            record["date_updated"] = int(self.clock())
            self._index(member_id, record)
            return record

    def delete(self, member_id: int) -> None:
        with self.lock:
            record = self.members.pop(member_id)
            self._unindex(member_id, record)

    def _index(self, member_id: int, record: Mapping[str, Any]) -> None:
        for id_type, attribute in INDEXED_ATTRIBUTES.items():
            value = record.get(attribute)
            if value not in (None, ""):
                self.indexes[id_type][_index_key(id_type, value)] = member_id

    def _unindex(self, member_id: int, record: Mapping[str, Any]) -> None:
        for id_type, attribute in INDEXED_ATTRIBUTES.items():
            value = record.get(attribute)
            if value not in (None, ""):
                key = _index_key(id_type, value)
                if self.indexes[id_type].get(key) == member_id:
                    del self.indexes[id_type][key]

    def public_view(self, member_id: int) -> dict[str, Any]:
        """The user object the API answers with: stored attributes minus secrets, plus the id."""
        with self.lock:
            record = self.members[member_id]
            return {k: copy.deepcopy(v) for k, v in record.items() if k not in SECRET_ATTRIBUTES}

    def admin_view(self) -> list[dict[str, Any]]:
        """Every member for assertions; a password shows only as ``password_set`` (secrets stay in)."""
        with self.lock:
            out = []
            for member_id in sorted(self.members):
                view = self.public_view(member_id)
                view["password_set"] = bool(self.members[member_id].get("password"))
                out.append(view)
            return out

    # ---- credits -------------------------------------------------------------------------------

    @staticmethod
    def credit_key(member_id: int, credit: Mapping[str, Any]) -> tuple[Any, ...]:
        """What makes two credits "identical" for CrowdTwist's duplicate check."""
        extra = json.dumps(credit.get("extra_data"), sort_keys=True, default=str)
        return (
            member_id,
            credit["activity_id"],
            credit.get("num_points"),
            credit.get("activity_date"),
            extra,
        )

    def is_duplicate(self, key: tuple[Any, ...], window_s: float, now: float) -> bool:
        with self.lock:
            seen = self.recent_credits.get(key)
            return window_s > 0 and seen is not None and now - seen < window_s

    def apply_credit(
        self,
        member_id: int,
        credit: Mapping[str, Any],
        points: int,
        key: tuple[Any, ...],
        now: float,
        window_s: float,
    ) -> dict[str, Any]:
        with self.lock:
            record = self.members[member_id]
            record["total_points"] += points
            record["redeemable_points"] += points
            entry = {
                "seq": len(self.credits) + 1,
                "user_id": member_id,
                "email_address": record.get("email_address"),
                "activity_id": credit["activity_id"],
                "points": points,
                "num_points": credit.get("num_points"),
                "activity_date": credit.get("activity_date"),
                "extra_data": copy.deepcopy(credit.get("extra_data")),
                "time": now,
            }
            self.credits.append(entry)
            self.recent_credits[key] = now
            if len(self.recent_credits) > self._forget_at:
                self._forget_old_credits(now, window_s)
            return entry

    def _forget_old_credits(self, now: float, window_s: float) -> None:
        """Drop duplicate-check entries older than the window, so a long benchmark stays flat.

        The next clean-up waits until the map has doubled, which keeps the cost amortised O(1) even
        when every entry is still inside the window.
        """
        self.recent_credits = {k: t for k, t in self.recent_credits.items() if now - t < window_s}
        self._forget_at = max(FORGET_THRESHOLD, 2 * len(self.recent_credits))

    def credits_view(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self.credits)


class RequestStats:
    """Request counts by route, status and user identifier, so a test can count requests per row."""

    def __init__(self) -> None:
        self.total = 0
        self.by_route: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.by_user: Counter[str] = Counter()
        self.by_user_route: dict[str, Counter[str]] = {}
        self.auth_modes: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0

    def started(self, route: str, user: str | None) -> None:
        self.total += 1
        self.by_route[route] += 1
        if user is not None:
            self.by_user[user] += 1
            self.by_user_route.setdefault(user, Counter())[route] += 1
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight

    def finished(self, status: str) -> None:
        self.in_flight -= 1
        self.by_status[status] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_route": dict(self.by_route),
            "by_status": dict(self.by_status),
            "by_user": dict(self.by_user),
            "by_user_route": {user: dict(c) for user, c in self.by_user_route.items()},
            "auth_modes": dict(self.auth_modes),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        }
