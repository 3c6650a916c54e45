"""The sandbox's memory: members by CrowdTwist id, one index per id_type, the credit ledger, request counts.

Members are keyed by the integer CrowdTwist id, as in the service, and every other ``id_type`` is an
index onto it, so a lookup by email, username or phone finds the same record an update by ``id`` changed.
All writes happen on the event-loop thread; the lock exists so that tests reading ``server.state``
directly from their own thread see a consistent snapshot.

Awards and deletions are *queued*, as Oracle says they are: a credit is answered at once but applied
(points, history, the admin view) only when ``settle()`` runs after its due time; a DELETE is answered
"Queued" and the member disappears when its deletion settles. Observers registered with
``add_listener`` hear every change as it is applied: ``("member_changed", member)`` and
``("credit_awarded", credit)`` -- what CrowdTwist's live push would send.
"""

from __future__ import annotations

import copy
import heapq
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

Listener = Callable[[str, dict[str, Any]], None]
MEMBER_CHANGED = "member_changed"
CREDIT_AWARDED = "credit_awarded"
DELETION_QUEUED = "Queued"
DELETION_COMPLETED = "Completed"

ID_TYPES = (
    "email",
    "facebook_user_id",
    "twitter_user_id",
    "id",
    "third_party_id",
    "username",
    "mobile_phone_number",
)
# Activity credit also takes the member's Instagram user name (O:UserActivityCredit).
CREDIT_ID_TYPES = (*ID_TYPES, "inst_username")
# id_type -> the attribute holding it. Emails are matched case-insensitively, like mail systems do.
INDEXED_ATTRIBUTES = {
    "email": "email_address",
    "facebook_user_id": "facebook_user_id",
    "twitter_user_id": "twitter_user_id",
    "third_party_id": "third_party_id",
    "username": "username",
    "mobile_phone_number": "mobile_phone_number",
    "inst_username": "inst_username",
}
SECRET_ATTRIBUTES = ("password",)
# What ``GET /v2/users/{id}?pii=false`` returns: identifiers that are not personal, status and points.
NON_PII_ATTRIBUTES = (
    "id",
    "third_party_id",
    "is_active",
    "total_points",
    "redeemable_points",
    "date_created",
    "date_updated",
)
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
        self.listeners: list[Listener] = []
        self.reset()

    # ---- observers ------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event, payload)`` after every applied change (kept across ``reset()``).

        Events: ``"member_changed"`` with the member's API view after a create, an update (including a
        deactivation), an applied award (its points changed) and a completed deletion (the last view,
        with ``"deleted": True``); ``"credit_awarded"`` with the credit as the admin view shows it, when
        the award is applied (after the award lag). Called on the sandbox's thread, outside the lock; a
        listener that raises is logged and does not break the request.
        """
        self.listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self.listeners.remove(listener)

    def _emit(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        for event, payload in events:
            for listener in list(self.listeners):
                try:
                    listener(event, copy.deepcopy(payload))
                except Exception:
                    log.exception("sandbox listener %r failed on %s", listener, event)

    def reset(self) -> None:
        with self.lock:
            self.members: dict[int, dict[str, Any]] = {}
            self.indexes: dict[str, dict[str, int]] = {id_type: {} for id_type in INDEXED_ATTRIBUTES}
            self.credits: list[dict[str, Any]] = []
            self.history: dict[int, list[dict[str, Any]]] = {}
            self.pending: list[tuple[float, int, dict[str, Any]]] = []  # heap of (due, order, credit)
            self.deletions: dict[int, dict[str, Any]] = {}
            self.pending_deletions: list[tuple[float, int]] = []  # heap of (due, member id)
            self._received = 0
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
            record["custom_data"] = {k: v for k, v in record.get("custom_data", {}).items() if v is not None}
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
            events = [(MEMBER_CHANGED, self.public_view(member_id))] if self.listeners else []
        self._emit(events)
        return record

    def update(self, member_id: int, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply validated changes: a None value clears the attribute (or custom_data key).

        ``remove_points: 1`` with ``is_active: 0`` wipes the redeemable points (O:UserUpdate); it is not
        stored, and without a deactivation in the same body it changes nothing.
        """
        with self.lock:
            record = self.members[member_id]
            self._unindex(member_id, record)
            for key, value in changes.items():
                if key == "custom_data":
                    merged = {**record.get("custom_data", {}), **(value or {})}
                    record["custom_data"] = {k: v for k, v in merged.items() if v is not None}
                elif key == "remove_points":
                    continue
                elif value is None:
                    record.pop(key, None)
                else:
                    record[key] = copy.deepcopy(value)
            if changes.get("is_active") == 0 and changes.get("remove_points") == 1:
                record["redeemable_points"] = 0
            record["date_updated"] = int(self.clock())
            self._index(member_id, record)
            events = [(MEMBER_CHANGED, self.public_view(member_id))] if self.listeners else []
        self._emit(events)
        return record

    # ---- deletions (queued, O:UserDelete) ------------------------------------------------------

    def queue_deletion(self, member_id: int, now: float, lag_s: float) -> dict[str, Any]:
        """Record a deletion request; the member goes when ``settle`` reaches ``now + lag_s``."""
        with self.lock:
            record = self.members[member_id]
            entry = {
                "user_id": member_id,
                "status": DELETION_QUEUED,
                "date_requested": int(now),
                "date_completed": None,
                "identifiers": {
                    id_type: _index_key(id_type, record[attr])
                    for id_type, attr in INDEXED_ATTRIBUTES.items()
                    if record.get(attr) not in (None, "")
                },
            }
            self.deletions[member_id] = entry
            heapq.heappush(self.pending_deletions, (now + lag_s, member_id))
            return entry

    def deletion_of(self, user_id: str, id_type: str) -> dict[str, Any] | None:
        """The deletion record of the member ``user_id`` names, live or already deleted."""
        with self.lock:
            if id_type == "id":
                return self.deletions.get(int(user_id)) if user_id.isdigit() else None
            key = _index_key(id_type, user_id)
            for entry in self.deletions.values():
                if entry["identifiers"].get(id_type) == key:
                    return entry
            return None

    def delete(self, member_id: int) -> None:
        """Remove a member at once (the end of a queued deletion)."""
        with self.lock:
            record = self.members.pop(member_id)
            self._unindex(member_id, record)
            view = {k: copy.deepcopy(v) for k, v in record.items() if k not in SECRET_ATTRIBUTES}
        self._emit([(MEMBER_CHANGED, {**view, "deleted": True})])

    # ---- settling queued work ------------------------------------------------------------------

    def settle(self, now: float | None = None, *, everything: bool = False) -> None:
        """Apply every queued award and deletion due by ``now`` (all of them with ``everything``)."""
        if not self.pending and not self.pending_deletions:
            return
        now = self.clock() if now is None else now
        events: list[tuple[str, dict[str, Any]]] = []
        with self.lock:
            while self.pending and (everything or self.pending[0][0] <= now):
                _, _, credit = heapq.heappop(self.pending)
                events.extend(self._apply(credit, now))
            while self.pending_deletions and (everything or self.pending_deletions[0][0] <= now):
                _, member_id = heapq.heappop(self.pending_deletions)
                entry = self.deletions[member_id]
                entry["status"] = DELETION_COMPLETED
                entry["date_completed"] = int(now)
                record = self.members.pop(member_id, None)
                if record is not None:
                    self._unindex(member_id, record)
                    if self.listeners:
                        view = {k: copy.deepcopy(v) for k, v in record.items() if k not in SECRET_ATTRIBUTES}
                        events.append((MEMBER_CHANGED, {**view, "deleted": True}))
        self._emit(events)

    def next_due(self) -> float | None:
        """When the next queued award or deletion falls due (None: nothing queued)."""
        with self.lock:
            times = [heap[0][0] for heap in (self.pending, self.pending_deletions) if heap]
            return min(times) if times else None

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

    def non_pii_view(self, member_id: int) -> dict[str, Any]:
        """``GET ...?pii=false``: the member without personal data (O:UserProfile)."""
        with self.lock:
            record = self.members[member_id]
            return {k: copy.deepcopy(record[k]) for k in NON_PII_ATTRIBUTES if k in record}

    def admin_view(self) -> list[dict[str, Any]]:
        """Every member for assertions; a password shows only as ``password_set`` (secrets stay in).

        ``deletion_status`` is None, or "Queued" while a requested deletion has not been applied.
        """
        with self.lock:
            out = []
            for member_id in sorted(self.members):
                view = self.public_view(member_id)
                view["password_set"] = bool(self.members[member_id].get("password"))
                deletion = self.deletions.get(member_id)
                view["deletion_status"] = deletion["status"] if deletion else None
                out.append(view)
            return out

    def deletions_view(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {k: v for k, v in entry.items() if k != "identifiers"}
                for _, entry in sorted(self.deletions.items())
            ]

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

    def queue_credit(
        self,
        member_id: int,
        credit: Mapping[str, Any],
        activity: Any,
        points: int,
        key: tuple[Any, ...],
        now: float,
        window_s: float,
        lag_s: float,
    ) -> None:
        """Accept an award: it counts for the duplicate check now and is applied ``lag_s`` later."""
        with self.lock:
            self._received += 1
            entry = {
                "seq": None,
                "user_id": member_id,
                "email_address": self.members[member_id].get("email_address"),
                "activity_id": credit["activity_id"],
                "name": activity.name,
                "points": points,
                "num_points": credit.get("num_points"),
                "activity_date": credit.get("activity_date"),
                "extra_data": copy.deepcopy(credit.get("extra_data")),
                "time": now,
                "applied_at": None,
            }
            heapq.heappush(self.pending, (now + lag_s, self._received, entry))
            self.recent_credits[key] = now
            if len(self.recent_credits) > self._forget_at:
                self._forget_old_credits(now, window_s)
        if lag_s <= 0:
            self.settle(now)

    def _apply(self, entry: dict[str, Any], now: float) -> list[tuple[str, dict[str, Any]]]:
        """Apply one due award (lock held); an award for a member deleted meanwhile is lost."""
        record = self.members.get(entry["user_id"])
        if record is None:
            log.info("award %s for deleted member %s dropped", entry["activity_id"], entry["user_id"])
            return []
        record["total_points"] += entry["points"]
        record["redeemable_points"] += entry["points"]
        entry["seq"] = len(self.credits) + 1
        entry["applied_at"] = max(now, entry["time"])
        self.credits.append(entry)
        self.history.setdefault(entry["user_id"], []).append(entry)
        if not self.listeners:
            return []
        return [
            (CREDIT_AWARDED, dict(entry)),
            (MEMBER_CHANGED, self.public_view(entry["user_id"])),
        ]

    def history_of(self, member_id: int) -> list[dict[str, Any]]:
        """The member's applied awards, newest first, as O:UserActivityHistory items."""
        with self.lock:
            entries = self.history.get(member_id, [])
            return [
                {
                    "activity_id": e["activity_id"],
                    "name": e["name"],
                    "num_points": e["points"],
                    "date_created": int(e["time"]),
                    "date_awarded": int(e["applied_at"]),
                    "extra_data": copy.deepcopy(e["extra_data"]),
                }
                for e in reversed(entries)
            ]

    def pending_view(self) -> list[dict[str, Any]]:
        """Awards accepted but not applied yet, in due order."""
        with self.lock:
            queued = sorted(self.pending, key=lambda t: t[:2])
            return [{**copy.deepcopy(e), "due": due} for due, _, e in queued]

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


#: Arrival counts are kept per tick of this many seconds, for the last ``ARRIVAL_TICKS_KEPT`` ticks.
ARRIVAL_TICK_S = 0.1
ARRIVAL_TICKS_KEPT = 36_000


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
        # API requests by arrival time, in ARRIVAL_TICK_S ticks of the monotonic clock: what the
        # program's limit counts, so a benchmark can check the requests of every 60 s window.
        self.arrivals: Counter[int] = Counter()

    def started(self, route: str, user: str | None) -> None:
        self.total += 1
        self.arrivals[int(time.monotonic() / ARRIVAL_TICK_S)] += 1
        if len(self.arrivals) > ARRIVAL_TICKS_KEPT:  # an hour of ticks: forget the oldest half
            for tick in sorted(self.arrivals)[: ARRIVAL_TICKS_KEPT // 2]:
                del self.arrivals[tick]
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
