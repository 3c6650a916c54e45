"""The sandbox's live push: every changed member's profile and every awarded credit, POSTed out.

CrowdTwist pushes a member's whole profile (camelCase, with ``tierInfo``) each time it changes, and
each activity completion (O:LivePushUserActivity) as a separate feed, to endpoints the client
configured, authenticated by Basic or an ``x-api-key`` header. A push that fails (no answer, or any
status but 2xx) is retried 5 times an hour for up to 8 hours; here the interval and the window are
settings, so a test can compress hours into a fraction of a second.

One worker thread sends the pushes in the order the changes happened. A member changed again while
an earlier push of its profile still waits (for its first try or for a retry) has that waiting push
replaced by the newest profile, so a member's pushes are never delivered out of order. The pusher
counts every push acknowledged with 200, which is what a test compares the landed files with.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import requests

log = logging.getLogger(__name__)

RETRY_INTERVAL_S = 3600 / 5  # 5 tries an hour
RETRY_WINDOW_S = 8 * 3600  # for up to 8 hours
# The sandbox's tiers (Tiers v2): (title, min points, max points or None).
TIERS: tuple[tuple[str, int, int | None], ...] = (
    ("Tier 1", 0, 999),
    ("Tier 2", 1000, 2499),
    ("Tier 3", 2500, None),
)
_SECRET_ATTRIBUTES = ("password",)


@dataclass(frozen=True)
class PushSettings:
    """Where and how the sandbox pushes; both URLs empty means it does not push at all."""

    profile_url: str | None = None
    activity_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    basic_auth: str | None = field(default=None, repr=False)  # "user:password"
    retry_interval_s: float = RETRY_INTERVAL_S
    retry_window_s: float = RETRY_WINDOW_S
    timeout_s: float = 10.0

    @property
    def enabled(self) -> bool:
        return bool(self.profile_url or self.activity_url)

    def validate(self) -> None:
        for name in ("profile_url", "activity_url"):
            url = getattr(self, name)
            if url is not None and not re.match(r"^https?://", url):
                raise ValueError(f"push {name} must be an http(s) URL, got {url!r}")
        if self.api_key and self.basic_auth:
            raise ValueError("push: give an API key or Basic auth, not both")
        if self.basic_auth is not None and ":" not in self.basic_auth:
            raise ValueError("push basic_auth must be user:password")
        if self.retry_interval_s <= 0 or self.retry_window_s < 0 or self.timeout_s <= 0:
            raise ValueError("push retry_interval_s and timeout_s must be > 0, retry_window_s >= 0")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def tier_info(total_points: int, date_assigned: float) -> dict[str, Any]:
    """Tiers v2 data for a member with ``total_points`` (a rolling timeframe: no reset date)."""
    index = max(i for i, (_, low, _) in enumerate(TIERS) if total_points >= low)
    title, low, high = TIERS[index]
    nxt = TIERS[index + 1] if index + 1 < len(TIERS) else None
    return {
        "currentLevel": {"title": title, "minValue": low, "maxValue": high},
        "nextLevel": {"title": nxt[0], "minValue": nxt[1], "maxValue": nxt[2]} if nxt else None,
        "score": total_points,
        "tierScore": total_points - low,
        "timeframeScore": total_points,
        "scoreNeededToReach": nxt[1] - total_points if nxt else None,
        "scoreNeededToMaintain": None,
        "assignedByEvent": "START" if index == 0 else "JUMP",
        "dateAssigned": _iso(date_assigned),
        "dateReached": _iso(date_assigned),
        "resetDate": None,
        "expirationDate": None,
        "daysUntilResetDate": None,
        "daysUntilExpirationDate": None,
    }


def profile_push(member: Mapping[str, Any]) -> dict[str, Any]:
    """A sandbox member as CrowdTwist's profile push: camelCase attributes, tier info, no password."""
    body: dict[str, Any] = {
        _camel(key): value for key, value in member.items() if key not in _SECRET_ATTRIBUTES
    }
    body.pop("dateUpdated", None)
    body.pop("passwordSet", None)
    body["id"] = member["id"]
    body["dateLastUpdated"] = member.get("date_updated")
    body["customData"] = member.get("custom_data") or None
    body["password"] = None
    info = tier_info(int(member.get("total_points") or 0), member.get("date_updated") or time.time())
    body["tierInfo"] = info
    body["fanLevelName"] = info["currentLevel"]["title"]
    return body


def activity_push(credit: Mapping[str, Any]) -> dict[str, Any]:
    """An awarded credit as an activity completion push (O:LivePushUserActivity)."""
    extra = credit.get("extra_data")
    activity_name = credit.get("name")
    return {
        "userActivityId": credit["seq"],
        "activityId": credit["activity_id"],
        "activityName": activity_name or credit["activity_id"],
        "title": activity_name or credit["activity_id"],
        "points": credit["points"],
        "notes": None,
        "referenceId": None,
        "activityExtraData": extra,
        "thirdPartyId": credit.get("third_party_id"),
        "userId": credit["user_id"],
        "emailAddress": credit.get("email_address"),
        "dateCreated": int(credit.get("time") or time.time()),
    }


@dataclass
class _Item:
    feed: str
    key: str
    body: dict[str, Any]
    first_try: float | None = None
    due: float = 0.0
    attempts: int = 0


@dataclass
class PushStats:
    acknowledged: dict[str, int] = field(default_factory=lambda: {"profile": 0, "activity": 0})
    attempts: int = 0
    failed_attempts: int = 0
    gave_up: int = 0
    superseded: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "acknowledged": dict(self.acknowledged),
            "attempts": self.attempts,
            "failed_attempts": self.failed_attempts,
            "gave_up": self.gave_up,
            "superseded": self.superseded,
        }


class LivePusher:
    """Queues pushes and sends them from one thread; ``wait_idle()`` for tests."""

    def __init__(
        self,
        settings: PushSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_third_party_id: Callable[[int, str], None] | None = None,
    ) -> None:
        settings.validate()
        self.settings = settings
        # CrowdTwist stores a third_party_id the profile endpoint answers with, only without auth.
        self.on_third_party_id = None if (settings.api_key or settings.basic_auth) else on_third_party_id
        self.clock = clock
        self.stats = PushStats()
        self.acknowledged_bodies: list[tuple[str, dict[str, Any]]] = []
        self._queue: deque[_Item] = deque()
        self._waiting_profiles: dict[str, _Item] = {}
        self._in_flight: _Item | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._session = requests.Session()
        if settings.api_key:
            self._session.headers["x-api-key"] = settings.api_key
        if settings.basic_auth:
            user, _, password = settings.basic_auth.partition(":")
            self._session.auth = (user, password)

    # ---- events (any thread) -------------------------------------------------------------------

    def on_event(self, kind: str, data: Mapping[str, Any]) -> None:
        """The sandbox state's listener: ``("member_changed", member)``, ``("credit_awarded", credit)``."""
        if kind == "member_changed" and self.settings.profile_url:
            if data.get("deleted"):  # a deleted member has no profile to push
                return
            self._enqueue("profile", str(data["id"]), profile_push(data))
        elif kind == "credit_awarded" and self.settings.activity_url:
            self._enqueue("activity", str(data["seq"]), activity_push(data))

    def _enqueue(self, feed: str, key: str, body: dict[str, Any]) -> None:
        with self._cond:
            waiting = self._waiting_profiles.get(key) if feed == "profile" else None
            if waiting is not None:
                waiting.body = body  # newest profile replaces the one still waiting; keeps its place
                self.stats.superseded += 1
            else:
                item = _Item(feed, key, body, due=self.clock())
                self._queue.append(item)
                if feed == "profile":
                    self._waiting_profiles[key] = item
            self._ensure_thread()
            self._cond.notify()

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._stop:
            self._thread = threading.Thread(target=self._run, name="crowdtwist-sandbox-push", daemon=True)
            self._thread.start()

    # ---- the worker ----------------------------------------------------------------------------

    def _next(self) -> _Item | None:
        with self._cond:
            while not self._stop:
                now = self.clock()
                for item in self._queue:
                    if item.due <= now:
                        self._queue.remove(item)
                        if item.feed == "profile":
                            self._waiting_profiles.pop(item.key, None)
                        self._in_flight = item
                        return item
                wait = min((i.due for i in self._queue), default=now + 1.0) - now
                self._cond.wait(max(0.001, min(wait, 1.0)))
            return None

    def _run(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            ok = self._send(item)
            with self._cond:
                self._in_flight = None
                if not ok:
                    self._reschedule(item)
                self._cond.notify_all()

    def _send(self, item: _Item) -> bool:
        url = self.settings.profile_url if item.feed == "profile" else self.settings.activity_url
        assert url is not None
        now = self.clock()
        if item.first_try is None:
            item.first_try = now
        item.attempts += 1
        self.stats.attempts += 1
        try:
            answer = self._session.post(url, json=item.body, timeout=self.settings.timeout_s)
            ok = 200 <= answer.status_code < 300
            detail = str(answer.status_code)
        except requests.RequestException as exc:
            ok, detail = False, type(exc).__name__
        if ok:
            self.stats.acknowledged[item.feed] += 1
            self.acknowledged_bodies.append((item.feed, item.body))
            if item.feed == "profile" and self.on_third_party_id is not None:
                self._third_party_id(item, answer)
        else:
            self.stats.failed_attempts += 1
            log.info("sandbox push %s %s failed (%s), attempt %d", item.feed, item.key, detail, item.attempts)
        return ok

    def _third_party_id(self, item: _Item, answer: requests.Response) -> None:
        try:
            value = answer.json().get("third_party_id")
        except (ValueError, AttributeError):
            return
        if value not in (None, "") and self.on_third_party_id is not None:
            self.on_third_party_id(int(item.body["id"]), str(value))

    def _reschedule(self, item: _Item) -> None:
        """Called with the lock held: try again after the interval, unless the window is over."""
        assert item.first_try is not None
        due = self.clock() + self.settings.retry_interval_s
        if due - item.first_try > self.settings.retry_window_s:
            self.stats.gave_up += 1
            log.warning("sandbox push %s %s: gave up after %d attempts", item.feed, item.key, item.attempts)
            return
        if item.feed == "profile":
            newer = self._waiting_profiles.get(item.key)
            if newer is not None:  # a newer profile is queued already: this one is superseded
                self.stats.superseded += 1
                return
            self._waiting_profiles[item.key] = item
        item.due = due
        self._queue.append(item)

    # ---- control -------------------------------------------------------------------------------

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + (1 if self._in_flight is not None else 0)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once nothing is queued or in flight (every push acknowledged or given up)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._in_flight is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
            return True

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        self._session.close()
