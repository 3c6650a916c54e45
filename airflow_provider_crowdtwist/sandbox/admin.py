"""``SandboxAdmin``: the tests' window onto the sandbox's end state, over plain HTTP.

Uses only ``urllib`` so that it works against a sandbox in this process, in a child process or started
by hand with ``crowdtwist-sandbox``, and so that it shares nothing (no session, no retries) with the
client under test.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any


class SandboxAddresses:
    """``base_url``, ``admin_url`` and ``admin`` of a running sandbox, from its ``port``.

    Shared by ``SandboxServer`` and ``SandboxProcess`` so that tests treat both the same way.
    """

    port: int | None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pos_url(self) -> str:
        """The POS host's base URL (CrowdTwist's ``https://{env}pos{client_id}.crowdtwist.com``)."""
        return f"{self.base_url}/pos"

    @property
    def admin_url(self) -> str:
        return f"{self.base_url}/_admin"

    @property
    def admin(self) -> SandboxAdmin:
        return SandboxAdmin(self.admin_url)


class SandboxAdminError(RuntimeError):
    """An admin call was refused (for instance an unknown fault setting)."""


class SandboxAdmin:
    """Read members, credits and request counts; change faults; reset between tests."""

    def __init__(self, admin_url: str, timeout: float = 10.0) -> None:
        self.admin_url = admin_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, action: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.admin_url}/{action}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise SandboxAdminError(f"{method} /_admin/{action} -> {exc.code}: {detail}") from None

    def members(self) -> list[dict[str, Any]]:
        """Every stored member (API view plus ``password_set``), in CrowdTwist id order."""
        return self._call("GET", "members")

    def member(self, email: str) -> dict[str, Any] | None:
        """The stored member with this email (case-insensitive), or None."""
        wanted = email.lower()
        for member in self.members():
            if str(member.get("email_address", "")).lower() == wanted:
                return member
        return None

    def credits(self) -> list[dict[str, Any]]:
        """Every applied credit: user_id, email_address, activity_id, name, points, num_points,
        activity_date, extra_data, ``time`` (received) and ``applied_at``; queued ones are not here."""
        return self._call("GET", "credits")

    def pending_credits(self) -> list[dict[str, Any]]:
        """Credits answered ``awarded`` but not applied yet (the award lag), with their ``due`` time."""
        return self._call("GET", "pending")

    def deletions(self) -> list[dict[str, Any]]:
        """Every deletion request: user_id, status (Queued/Completed), date_requested, date_completed."""
        return self._call("GET", "deletions")

    def pos(self) -> dict[str, Any]:
        """The POS host's ledger: ``receipts``, ``returns``, ``voided`` (each as stored, with its
        ``points``), ``requests`` (requests naming each receipt/return id) and ``duplicates``."""
        return self._call("GET", "pos")

    def settle(self) -> None:
        """Apply every queued award and deletion now, without waiting for the lags."""
        self._call("POST", "settle", {})

    def wait_settled(self, timeout: float = 10.0, poll: float = 0.05) -> None:
        """Wait until no award is queued (the lag has passed for all); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while self.stats().get("pending_credits"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"credits still queued after {timeout} s")
            time.sleep(poll)

    def settings(self) -> dict[str, Any]:
        """The live readings of the OPEN points and the fault knobs."""
        return self._call("GET", "settings")

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Switch readings at runtime (timestamp_unit, bad_credentials_status, deletion_status_path,
        history_envelope, null_values, dedupe_window_s, award_lag_s, rate_limit_mode, ...)."""
        return self._call("POST", "settings", changes)

    def stats(self) -> dict[str, Any]:
        """Request counts: total, by_route, by_status, by_user, by_user_route, in_flight, max_in_flight."""
        return self._call("GET", "stats")

    def requests_for(self, user: str) -> int:
        """How many API requests named this user identifier (path segment, or email on create)."""
        return int(self.stats()["by_user"].get(user, 0))

    def arrivals(self) -> tuple[float, dict[int, int]]:
        """API requests by arrival time: ``(tick seconds, {tick: count})`` (the sandbox's clock)."""
        answer = self._call("GET", "arrivals")
        return float(answer["tick_s"]), {int(t): int(n) for t, n in answer["counts"].items()}

    def busiest_window(self, window_s: float = 60.0, since_tick: int | None = None) -> int:
        """The most API requests that arrived in any ``window_s`` window (sliding, tick by tick)."""
        tick_s, counts = self.arrivals()
        if since_tick is not None:
            counts = {t: n for t, n in counts.items() if t >= since_tick}
        return busiest_window(counts, round(window_s / tick_s))

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "faults")

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """Change fault knobs at runtime (latency_ms, rate_limit_per_minute, error_rate, ...)."""
        return self._call("POST", "faults", changes)

    def reset(self) -> None:
        """Clear members, credits and counts; faults back to the sandbox's start-up settings."""
        self._call("POST", "reset", {})

    def health(self) -> bool:
        return bool(self._call("GET", "health").get("ok"))


def busiest_window(counts: dict[int, int], width: int) -> int:
    """The largest sum of ``counts`` over ``width`` consecutive ticks."""
    if not counts:
        return 0
    best = running = 0
    ticks = sorted(counts)
    start = 0
    for tick in ticks:
        running += counts[tick]
        while ticks[start] <= tick - width:
            running -= counts[ticks[start]]
            start += 1
        best = max(best, running)
    return best
