"""The sandbox's pusher against a real receiver: CrowdTwist's shapes, order per member, its retries."""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import time
from pathlib import Path
from typing import Any

import requests

from airflow_provider_crowdtwist.livepush.process import ReceiverProcess
from airflow_provider_crowdtwist.sandbox.process import SandboxProcess
from airflow_provider_crowdtwist.sandbox.push import LivePusher, PushSettings, _Item
from airflow_provider_crowdtwist.sandbox.server import SandboxServer
from tests.integration.livepush._helpers import landed

KEY = "push-test-key"


def member(member_id: int, points: int, updated: int) -> dict:
    """A member as the sandbox state's listener hands it over (its API view, snake_case)."""
    return {
        "id": member_id,
        "email_address": f"m{member_id}@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "postal_code": "10001",
        "custom_data": {"favorite_store": "soho"},
        "is_active": 1,
        "total_points": points,
        "redeemable_points": points,
        "date_created": 1_700_000_000,
        "date_updated": updated,
        "password": "never-pushed-secret",
    }


def credit(seq: int, member_id: int, points: int) -> dict:
    return {
        "seq": seq,
        "user_id": member_id,
        "email_address": f"m{member_id}@example.com",
        "activity_id": "purchase",
        "name": "Purchase",
        "points": points,
        "extra_data": {"ct_dedupe_key": f"k{seq}"},
        "time": 1_700_000_100.5,
    }


def settings(url: str, **overrides: object) -> PushSettings:
    return PushSettings(
        profile_url=f"{url}/push/profile",
        activity_url=f"{url}/push/activity",
        api_key=KEY,
        **overrides,  # type: ignore[arg-type]
    )


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_pushes_land_in_crowdtwist_shape_and_in_order(tmp_path: Path) -> None:
    with ReceiverProcess(tmp_path / "out", api_key=KEY) as rx:
        pusher = LivePusher(settings(rx.url))
        try:
            for version in range(30):
                pusher.on_event("member_changed", member(1, version * 100, 1_700_000_000 + version))
            pusher.on_event("member_changed", member(2, 0, 1_700_000_000) | {"deleted": True})
            pusher.on_event("credit_awarded", credit(1, 1, 10))
            assert pusher.wait_idle(20)
        finally:
            pusher.stop()
        acked = pusher.stats.acknowledged
    profiles = [x["push"] for x in landed(tmp_path / "out", "profile")]
    versions = [p["dateLastUpdated"] for p in profiles]
    assert versions == sorted(versions) and versions[-1] == 1_700_000_029  # newest last, never reordered
    assert acked["profile"] == len(profiles) and acked["activity"] == 1
    newest = profiles[-1]
    assert newest["emailAddress"] == "m1@example.com" and newest["totalPoints"] == 2900
    assert newest["customData"] == {"favorite_store": "soho"} and "password" not in newest
    assert newest["tierInfo"]["currentLevel"] == {"title": "Tier 3", "minValue": 2500, "maxValue": None}
    assert newest["fanLevelName"] == "Tier 3" and newest["tierInfo"]["scoreNeededToReach"] is None
    assert all(p["id"] != 2 for p in profiles)  # deleted members are not pushed
    [activity] = [x["push"] for x in landed(tmp_path / "out", "activity")]
    assert activity == {
        "userActivityId": 1, "activityId": "purchase", "activityName": "Purchase", "title": "Purchase",
        "points": 10, "notes": None, "referenceId": None, "activityExtraData": {"ct_dedupe_key": "k1"},
        "thirdPartyId": None, "userId": 1, "emailAddress": "m1@example.com", "dateCreated": 1_700_000_100,
    }  # fmt: skip
    for path in (tmp_path / "out").rglob("*.jsonl"):
        assert "never-pushed-secret" not in path.read_text()


def test_failed_pushes_are_retried_until_the_receiver_answers(tmp_path: Path) -> None:
    port = free_port()
    pusher = LivePusher(settings(f"http://127.0.0.1:{port}", retry_interval_s=0.2, retry_window_s=60))
    try:
        pusher.on_event("member_changed", member(5, 10, 1_700_000_005))
        pusher.on_event("credit_awarded", credit(9, 5, 10))
        time.sleep(0.7)  # several attempts against a closed port
        assert pusher.stats.failed_attempts >= 4
        with ReceiverProcess(tmp_path / "out", api_key=KEY, port=port):
            assert pusher.wait_idle(20)
        assert pusher.stats.acknowledged == {"profile": 1, "activity": 1}
        assert pusher.stats.gave_up == 0
    finally:
        pusher.stop()
    assert [x["push"]["userActivityId"] for x in landed(tmp_path / "out", "activity")] == [9]


def test_pushes_refused_for_the_whole_window_are_given_up(tmp_path: Path) -> None:
    with ReceiverProcess(tmp_path / "out", api_key=KEY) as rx:
        wrong = PushSettings(
            activity_url=f"{rx.url}/push/activity", api_key="wrong", retry_interval_s=0.05, retry_window_s=0.3
        )
        pusher = LivePusher(wrong)
        try:
            pusher.on_event("credit_awarded", credit(1, 1, 10))
            pusher.on_event("member_changed", member(1, 10, 1))  # no profile URL: not pushed
            assert pusher.wait_idle(10)
        finally:
            pusher.stop()
    assert pusher.stats.gave_up == 1
    # one try, then one every 0.05 s (after each answer) until 0.3 s after the first
    assert 2 <= pusher.stats.attempts <= 8
    assert pusher.stats.acknowledged == {"profile": 0, "activity": 0}


def test_crowdtwist_retry_schedule_is_five_an_hour_for_eight_hours() -> None:
    """The default schedule, driven by a fake clock (no worker thread, nothing sent)."""
    clock = [0.0]
    pusher = LivePusher(PushSettings(activity_url="http://127.0.0.1:9/push/activity"), clock=lambda: clock[0])
    item = _Item("activity", "1", {}, first_try=0.0)
    tries = [0.0]
    while True:
        before = len(pusher._queue)
        pusher._reschedule(item)
        if len(pusher._queue) == before:
            break
        pusher._queue.clear()
        clock[0] = item.due
        tries.append(clock[0])
    assert {round(b - a) for a, b in itertools.pairwise(tries)} == {720}
    assert len(tries) == 41 and tries[-1] == 8 * 3600  # the first try and 40 retries over 8 hours
    assert pusher.stats.gave_up == 1


def test_the_sandbox_pushes_what_the_api_changes(tmp_path: Path, client_for: Any) -> None:
    """SandboxServer configured with push endpoints: a create, an update and a credit over real HTTP."""
    with ReceiverProcess(tmp_path / "out", api_key=KEY) as rx:
        server = SandboxServer(
            push_profile_url=f"{rx.url}/push/profile",
            push_activity_url=f"{rx.url}/push/activity",
            push_api_key=KEY,
            push_retry_interval_s=0.1,
        ).start()
        try:
            client = client_for(server)
            client.create_user(
                {"first_name": "Ada", "last_name": "Lovelace", "email_address": "ada@example.com",
                 "postal_code": "10001"}
            )  # fmt: skip
            client.update_user("ada@example.com", {"last_name": "King"})
            client.credit_activity("ada@example.com", "purchase", num_points=1200, extra_data={"k": "o-1"})
            server.state.settle(everything=True)
            assert server.pusher.wait_idle(20), server.pusher.stats.as_dict()
            [member] = server.admin.members()
            [awarded] = server.admin.credits()
        finally:
            server.stop()
    profiles = [x["push"] for x in landed(tmp_path / "out", "profile")]
    assert [p["lastName"] for p in profiles][-1] == "King"
    newest = profiles[-1]
    assert newest["id"] == member["id"] and newest["emailAddress"] == "ada@example.com"
    assert newest["totalPoints"] == 1200 and newest["fanLevelName"] == "Tier 2"
    assert newest["tierInfo"]["nextLevel"]["title"] == "Tier 3"
    [activity] = [x["push"] for x in landed(tmp_path / "out", "activity")]
    assert activity["userActivityId"] == awarded["seq"] and activity["points"] == 1200
    assert activity["activityExtraData"] == {"k": "o-1"} and activity["userId"] == member["id"]


def test_the_sandbox_command_takes_push_endpoints_and_the_secret_from_the_environment(
    tmp_path: Path, client_for: Any
) -> None:
    with ReceiverProcess(tmp_path / "out", basic_auth="ct:push-pass-secret") as rx:
        env = {**os.environ, "SANDBOX_PUSH_AUTH": "ct:push-pass-secret"}
        with SandboxProcess(
            env=env,
            push_activity_url=f"{rx.url}/push/activity",
            push_basic_auth_env="SANDBOX_PUSH_AUTH",
            push_retry_interval_s=0.1,
        ) as sandbox:
            client = client_for(sandbox)
            client.create_user(
                {
                    "first_name": "Bo",
                    "last_name": "Li",
                    "email_address": "bo@example.com",
                    "postal_code": "10001",
                }
            )
            client.credit_activity("bo@example.com", "signup")
            deadline = time.monotonic() + 20
            while accepted(rx, "activity") < 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert "push-pass-secret" not in " ".join(sandbox.command)  # the secret is not on argv
    [activity] = [x["push"] for x in landed(tmp_path / "out", "activity")]
    assert activity["activityId"] == "signup" and activity["points"] == 50
    assert landed(tmp_path / "out", "profile") == []  # no profile endpoint configured: none pushed


def test_a_third_party_id_answered_by_an_endpoint_without_auth_is_stored(
    tmp_path: Path, client_for: Any
) -> None:
    args = ["--third-party-id-field", "emailAddress"]
    with ReceiverProcess(tmp_path / "out", extra_args=args) as rx:
        server = SandboxServer(push_profile_url=f"{rx.url}/push/profile", push_retry_interval_s=0.1).start()
        try:
            client_for(server).create_user(
                {
                    "first_name": "Cy",
                    "last_name": "Ng",
                    "email_address": "cy@example.com",
                    "postal_code": "10001",
                }
            )
            deadline = time.monotonic() + 20
            while not server.admin.members()[0].get("third_party_id") and time.monotonic() < deadline:
                time.sleep(0.1)
            assert server.pusher.wait_idle(20)
            [member] = server.admin.members()
            pushes = server.pusher.stats.acknowledged["profile"]
        finally:
            server.stop()
    assert member["third_party_id"] == "cy@example.com"
    assert pushes == 2  # the create, then the change of third_party_id; the same answer changes nothing


def accepted(rx: ReceiverProcess, feed: str) -> int:
    """Pushes of ``feed`` the receiver acknowledged so far (its /metrics)."""
    prefix = f'crowdtwist_live_push_pushes_total{{feed="{feed}",outcome="accepted"}} '
    for line in requests.get(f"{rx.url}/metrics", timeout=5).text.splitlines():
        if line.startswith(prefix):
            return int(line[len(prefix) :])
    return 0
