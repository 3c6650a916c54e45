"""The member lifecycle against the sandbox over real HTTP: members who leave the source are
deactivated or deleted, come back reactivated; the guard; the dry-run preview; clearing fields;
the state under a second sync and under a kill.

2,000 members; a run that changes 1%, adds 1% and removes 2% must make exactly that many write
requests (counted by the sandbox per route), and leave CrowdTwist equal to the source.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pandas as pd
import pytest

from airflow_provider_crowdtwist.sync.members.state import StateInUseError
from airflow_provider_crowdtwist.sync.members.sync import MemberSyncConfig, sync_members
from airflow_provider_crowdtwist.sync.summary import SyncAbortedError, ThresholdExceededError
from tests.conftest import client_for

pytestmark = pytest.mark.integration

N = 2_000
LOG = logging.getLogger("test.member_lifecycle")
WRITES = ("POST /v2/users", "PUT /v2/users/{user_id}", "DELETE /v2/users/{user_id}")


def email(i: int) -> str:
    return f"life{i}@example.com"


def frame(ids: Any, changed: frozenset[int] = frozenset(), **extra: Any) -> pd.DataFrame:
    ids = list(ids)
    return pd.DataFrame(
        {
            "user_id": [email(i) for i in ids],
            "first_name": [f"First{i}" for i in ids],
            "last_name": ["Changed" if i in changed else "Last" for i in ids],
            "postal_code": ["10001"] * len(ids),
            **extra,
        }
    )


def sync(sandbox: Any, rows: pd.DataFrame, state: Any, **settings: Any) -> Any:
    config = MemberSyncConfig(state_path=state, max_workers=8, **settings)
    with client_for(sandbox) as client:
        return sync_members(client, [rows], config, LOG)


def writes(sandbox: Any) -> dict[str, int]:
    routes = sandbox.admin.stats()["by_route"]
    return {route: int(routes.get(route, 0)) for route in WRITES}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {route: after[route] - before[route] for route in WRITES}


def members_by_email(sandbox: Any) -> dict[str, dict[str, Any]]:
    return {m["email_address"].lower(): m for m in sandbox.admin.members()}


CHANGED = frozenset(range(0, N, 100))  # 1%: 20 members get a new last name
ADDED = range(N, N + N // 100)  # 1%: 20 new members
REMOVED = frozenset(range(25, N, 50))  # 2%: 40 members leave the source (none of them changed)


def second_source() -> pd.DataFrame:
    return frame([i for i in range(N) if i not in REMOVED] + list(ADDED), changed=CHANGED)


def _points(sandbox: Any, ids: Any) -> None:
    with client_for(sandbox) as client:
        for i in ids:
            client.credit_activity(email(i), "purchase", num_points=25)
    sandbox.admin.settle()


def test_removed_members_are_deactivated_with_their_points_wiped_and_restored_ones_reactivated(
    sandbox: Any, tmp_path: Any
) -> None:
    state = tmp_path / "members.sqlite"
    first = sync(sandbox, frame(range(N)), state)
    assert first.count("created") == N
    assert sandbox.admin.stats()["total"] == N  # a member the state never saw is created first: 1 request
    _points(sandbox, [*sorted(REMOVED)[:5], 1])

    before = writes(sandbox)
    total_before = sandbox.admin.stats()["total"]
    summary = sync(sandbox, second_source(), state, on_removed="deactivate", remove_points_on_deactivate=True)
    sent = delta(before, writes(sandbox))
    assert sent == {
        "POST /v2/users": len(ADDED),
        "PUT /v2/users/{user_id}": 20 + 40,
        "DELETE /v2/users/{user_id}": 0,
    }
    assert sandbox.admin.stats()["total"] - total_before == 20 + 20 + 40  # nothing but the writes
    assert summary.count("updated") == 20 and summary.count("created") == 20
    assert summary.count("deactivated") == 40 and summary.rows_removed == 40
    assert summary.count("unchanged") == N - 40 - 20
    assert summary.rows_read == N - 40 + 20 and summary.is_consistent()

    stored = members_by_email(sandbox)
    for i in REMOVED:
        assert stored[email(i)]["is_active"] == 0 and stored[email(i)]["redeemable_points"] == 0
    assert stored[email(1)]["redeemable_points"] == 25  # a member still in the source keeps its points
    for row in second_source().itertuples():
        member = stored[row.user_id]
        assert (member["first_name"], member["last_name"], member["is_active"]) == (
            row.first_name,
            row.last_name,
            1,
        )

    # the same source again: nothing to send, nobody removed twice
    total_before = sandbox.admin.stats()["total"]
    again = sync(sandbox, second_source(), state, on_removed="deactivate")
    assert sandbox.admin.stats()["total"] == total_before and again.count("deactivated") == 0

    # ten of them come back: reactivated with their current fields, one PUT each
    back = sorted(REMOVED)[:10]
    restored = pd.concat([second_source(), frame(back, changed=frozenset(back))], ignore_index=True)
    total_before = sandbox.admin.stats()["total"]
    summary = sync(sandbox, restored, state, on_removed="deactivate")
    assert summary.count("reactivated") == 10 and sandbox.admin.stats()["total"] - total_before == 10
    stored = members_by_email(sandbox)
    assert all(
        stored[email(i)]["is_active"] == 1 and stored[email(i)]["last_name"] == "Changed" for i in back
    )


def test_removed_members_are_deleted_and_a_deleted_one_that_returns_is_created(
    sandbox: Any, tmp_path: Any
) -> None:
    state = tmp_path / "members.sqlite"
    sync(sandbox, frame(range(N)), state)
    before = writes(sandbox)
    summary = sync(sandbox, second_source(), state, on_removed="delete")
    assert delta(before, writes(sandbox)) == {
        "POST /v2/users": 20,
        "PUT /v2/users/{user_id}": 20,
        "DELETE /v2/users/{user_id}": 40,
    }
    assert summary.count("deleted") == 40 and summary.rows_removed == 40 and summary.is_consistent()
    sandbox.admin.settle()  # CrowdTwist deletes queued deletions later
    stored = members_by_email(sandbox)
    assert not any(email(i) in stored for i in REMOVED)
    assert len(stored) == N - 40 + 20
    assert {d["status"] for d in sandbox.admin.deletions()} <= {"Queued", "Completed"}

    returning = sorted(REMOVED)[0]
    restored = pd.concat([second_source(), frame([returning])], ignore_index=True)
    before = writes(sandbox)
    summary = sync(sandbox, restored, state, on_removed="delete")
    assert summary.count("created") == 1 and delta(before, writes(sandbox))["POST /v2/users"] == 1


@pytest.mark.parametrize("source", ["empty", "half"])
def test_the_guard_fails_the_run_with_nothing_removed(sandbox: Any, tmp_path: Any, source: str) -> None:
    state = tmp_path / "members.sqlite"
    sync(sandbox, frame(range(200)), state)
    rows = frame([]) if source == "empty" else frame(range(100))
    before = sandbox.admin.stats()["total"]
    ratio = 1.0 if source == "empty" else 0.1  # an empty source is refused even when the ratio allows it
    with pytest.raises(SyncAbortedError, match="removal guard") as info:
        sync(sandbox, rows, state, on_removed="deactivate", max_removed_ratio=ratio)
    assert sandbox.admin.stats()["total"] == before  # not one request
    assert all(m["is_active"] == 1 for m in sandbox.admin.members())
    message = str(info.value)
    assert ("0 rows" in message) if source == "empty" else ("100 of the 200" in message)
    assert info.value.summary.is_consistent()
    # the user who means it raises the ratio (and allows the empty source) for that run
    allowed = {"allow_empty_source_removal": True} if source == "empty" else {}
    summary = sync(sandbox, rows, state, on_removed="deactivate", max_removed_ratio=1.0, **allowed)
    assert summary.count("deactivated") == (200 if source == "empty" else 100)


def test_the_dry_run_preview_lists_exactly_what_the_real_run_removes_and_touches_nothing(
    sandbox: Any, tmp_path: Any
) -> None:
    state = tmp_path / "members.sqlite"
    sync(sandbox, frame(range(N)), state)
    state_bytes = state.read_bytes()
    before = writes(sandbox)
    rejects = tmp_path / "rejects.jsonl"
    preview = sync(
        sandbox, second_source(), state, on_removed="deactivate", dry_run=True, rejects_path=str(rejects)
    )
    assert delta(before, writes(sandbox)) == dict.fromkeys(WRITES, 0)
    assert state.read_bytes() == state_bytes
    listed = [json.loads(line) for line in (tmp_path / "rejects.removals.jsonl").read_text().splitlines()]
    assert preview.count("deactivated") == len(listed) == 40

    real = sync(sandbox, second_source(), state, on_removed="deactivate", rejects_path=str(rejects))
    inactive = {m["email_address"] for m in sandbox.admin.members() if m["is_active"] == 0}
    assert {x["identifier"] for x in listed} == inactive == {email(i) for i in REMOVED}
    assert real.count("deactivated") == 40
    done = [json.loads(line) for line in (tmp_path / "rejects.removals.jsonl").read_text().splitlines()]
    assert sorted((x["identifier"], x["outcome"], x["dry_run"]) for x in done) == sorted(
        (x["identifier"], "deactivated", False) for x in listed
    )


@pytest.mark.parametrize("reading", ["clear", "ignore"])
def test_null_values_clear_or_skip_a_field(sandbox: Any, tmp_path: Any, reading: str) -> None:
    """``clear`` sends null (the sandbox clears it, or under the other reading of the OPEN point keeps
    it and accepts the row); ``skip`` leaves CrowdTwist's value alone."""
    sandbox.admin.configure(null_values=reading)
    state = tmp_path / "members.sqlite"
    sync(sandbox, frame(range(4), middle_name=["Q"] * 4), state)
    cleared = frame(range(4), middle_name=[None] * 4)
    skipped = sync(sandbox, cleared.iloc[:2], tmp_path / "other.sqlite", null_values="skip")
    assert skipped.count("updated") == 2
    summary = sync(sandbox, cleared.iloc[2:], tmp_path / "third.sqlite", null_values="clear")
    assert summary.count("updated") == 2 and summary.count("rejected") == 0
    stored = members_by_email(sandbox)
    assert [stored[email(i)].get("middle_name") for i in range(2)] == ["Q", "Q"]
    expected = None if reading == "clear" else "Q"
    assert [stored[email(i)].get("middle_name") for i in (2, 3)] == [expected, expected]
    # a null where CrowdTwist requires a value is a rejection naming the field, nothing sent
    before = sandbox.admin.stats()["total"]
    # (the run's only row: nothing landed, so the run fails -- with the row's outcome in its summary)
    with pytest.raises(ThresholdExceededError, match="nothing landed") as failed:
        sync(sandbox, frame([0]).assign(first_name=[None]), tmp_path / "fourth.sqlite", null_values="clear")
    rejected = failed.value.summary
    assert rejected is not None and rejected.count("rejected") == 1
    assert sandbox.admin.stats()["total"] == before


def test_a_second_sync_on_the_same_state_fails_at_once(sandbox: Any, tmp_path: Any) -> None:
    state = tmp_path / "members.sqlite"
    sandbox.admin.set_faults(latency_ms=20)
    first: dict[str, Any] = {}

    def run_first() -> None:
        first["summary"] = sync(sandbox, frame(range(300)), state)

    thread = threading.Thread(target=run_first)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while sandbox.admin.stats()["total"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        requests_before = sandbox.admin.stats()["total"]
        started = time.monotonic()
        with pytest.raises(StateInUseError, match="in use by another running sync"):
            sync(sandbox, frame(range(300, 310)), tmp_path / "." / "members.sqlite")
        assert time.monotonic() - started < 2.0
        assert sandbox.admin.stats()["by_user"].get(email(305), 0) == 0
        assert sandbox.admin.stats()["total"] >= requests_before
    finally:
        thread.join(60)
    assert first["summary"].count("created") == 300


def test_a_killed_sync_resends_at_most_the_rows_in_flight(sandbox: Any, tmp_path: Any) -> None:
    """A child process dies (os._exit, like SIGKILL) on its 200th request; the rerun sends only the
    rows whose answers were not yet committed: those in flight plus the last 0.1 s of answers."""
    state = tmp_path / "members.sqlite"
    sandbox.admin.set_faults(latency_ms=10)
    script = textwrap.dedent(
        f"""
        import logging, os, threading
        import pandas as pd
        from airflow_provider_crowdtwist.client.client import CrowdTwistClient
        from airflow_provider_crowdtwist.client.config import ClientConfig
        from airflow_provider_crowdtwist.sync.members.sync import MemberSyncConfig, sync_members

        class Dying(CrowdTwistClient):
            lock = threading.Lock()
            calls = 0
            def create_user(self, fields):
                with self.lock:
                    Dying.calls += 1
                    if Dying.calls == 200:
                        os._exit(9)
                return super().create_user(fields)

        ids = range(400)
        rows = pd.DataFrame({{"user_id": [f"life{{i}}@example.com" for i in ids],
                              "first_name": [f"First{{i}}" for i in ids], "last_name": ["Last"] * 400,
                              "postal_code": ["10001"] * 400}})
        client = Dying(ClientConfig(base_url={sandbox.base_url!r}, api_key={sandbox.api_key!r},
                                    requests_per_minute=0))
        sync_members(client, [rows], MemberSyncConfig(state_path={str(state)!r}, max_workers=4),
                     logging.getLogger("child"))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ}, timeout=120, check=False)
    assert done.returncode == 9
    landed = len(sandbox.admin.members())
    assert 190 <= landed < 200  # the 200th request was never sent
    before = sandbox.admin.stats()["total"]
    summary = sync(sandbox, frame(range(400)), state)
    resent = summary.count("updated")  # members that landed but whose answer was not committed
    assert summary.count("created") == 400 - landed
    assert summary.count("unchanged") == landed - resent
    assert resent <= 8 + 0.1 / 0.010 * 4 + 4  # in flight (2 x workers) + 0.1 s of answers at 10 ms
    assert sandbox.admin.stats()["total"] - before == 400 - landed + 2 * resent  # POST-first, then PUT
