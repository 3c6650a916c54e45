"""Every OPEN point of the contract is a switch: by constructor, by CLI flag and at runtime."""

from __future__ import annotations

import time

import pytest

from airflow_provider_crowdtwist.sandbox.admin import SandboxAdminError
from airflow_provider_crowdtwist.sandbox.process import SandboxProcess
from airflow_provider_crowdtwist.sandbox.server import SandboxServer
from tests.integration.sandbox._helpers import API_KEY_HEADER, member, raw, sign
from tests.readings import AWARD_LAG, READINGS, by_name, readings_for

pytestmark = pytest.mark.integration

BAD_KEY = {"X-CT-Authorization": "CTApiKey wrong-key"}
JSON = {"Content-Type": "application/json"}


def _history(sandbox, user, **params):
    query = "&".join(f"{k}={v}" for k, v in {"id_type": "email", **params}.items())
    body = raw(sandbox, "GET", f"/v2/users/{user}/activity_history?{query}", headers=API_KEY_HEADER).json()
    return body if isinstance(body, list) else body["activities"]


def test_every_open_point_has_its_readings_once():
    names = [r.name for r in READINGS]
    assert len(names) == len(set(names))
    points = {r.open_point for r in READINGS}
    assert {
        "HMAC timestamp unit",
        "bad credentials status",
        "deletion status path",
        "activity history envelope",
        "null in an optional field",
        "location on create",
        "duplicate credit detection",
        "rate limit",
    } <= points
    assert [r.name for r in readings_for("rate limit")] == [
        "baseline",
        "rate_limit_bucket_retry_after",
        "rate_limit_bucket_no_retry_after",
        "rate_limit_window",
    ]
    assert by_name("award_lag_2s") is AWARD_LAG
    with pytest.raises(ValueError, match="no readings"):
        readings_for("tiers")
    for reading in (*READINGS, AWARD_LAG):  # every reading is a valid sandbox configuration
        SandboxServer(**reading.sandbox)


def test_a_member_and_a_credit_round_trip_under_every_reading(sandbox_reading):
    """The fixture switches the session sandbox; the matching client works end to end under each."""
    client = sandbox_reading.client()
    sandbox = sandbox_reading.sandbox
    assert sandbox.admin.settings()["timestamp_unit"] == sandbox_reading.reading.sandbox.get(
        "timestamp_unit", "s"
    )
    client.create_user(member("round@example.com"))
    assert client.credit_activity("round@example.com", "review", extra_data={"k": "r1"}) == {"awarded": True}
    assert [(c["activity_id"], c["extra_data"]) for c in sandbox.admin.credits()] == [("review", {"k": "r1"})]
    assert sandbox.admin.member("round@example.com")["redeemable_points"] == 5
    history = client.request(
        "GET", "/v2/users/round%40example.com/activity_history", params={"id_type": "email"}
    )
    body = history.json()
    items = body["activities"] if sandbox_reading.name == "history_paged" else body
    assert [(i["activity_id"], i["extra_data"]) for i in items] == [("review", {"k": "r1"})]


def test_bad_credentials_401_or_403(sandbox):
    answer = raw(sandbox, "GET", "/v2/activities", headers=BAD_KEY)
    assert answer.status_code == 401
    assert answer.json()["error"] == "auth_error"
    sandbox.admin.configure(bad_credentials_status=403)
    for headers in (BAD_KEY, {}, sign("GET", "/v2/activities", private_key="wrong")):
        answer = raw(sandbox, "GET", "/v2/activities", headers=headers)
        assert (answer.status_code, answer.json()) == (
            403,
            {"error": "forbidden", "message": "Invalid API key"},
        )
    answer = raw(sandbox, "DELETE", "/v2/users/1?api_key=nope")
    assert answer.status_code == 403
    assert "nope" not in answer.text
    assert raw(sandbox, "GET", "/v2/activities", headers=API_KEY_HEADER).ok


@pytest.mark.parametrize(("unit", "other"), [("s", "ms"), ("ms", "s")])
def test_hmac_timestamp_unit_is_strict_each_way(sandbox, unit, other):
    sandbox.configure(timestamp_unit=unit)

    def stamp(u):
        return str(int(time.time() * (1000 if u == "ms" else 1)))

    assert raw(
        sandbox, "GET", "/v2/activities", headers=sign("GET", "/v2/activities", timestamp=stamp(unit))
    ).ok
    refused = raw(
        sandbox, "GET", "/v2/activities", headers=sign("GET", "/v2/activities", timestamp=stamp(other))
    )
    assert refused.status_code == 401
    assert ("milliseconds" if unit == "ms" else "seconds") in refused.json()["message"]


def test_deletion_status_path_switch(sandbox, client_for):
    created = client_for(sandbox).create_user(member("gone@example.com"))
    uid = created["id"]
    assert raw(sandbox, "DELETE", f"/v2/users/{uid}", headers=API_KEY_HEADER).json() == {
        "user_id": uid,
        "status": "Queued",
    }
    assert raw(sandbox, "GET", f"/v2/users/delete/{uid}", headers=API_KEY_HEADER).json()["user_id"] == uid
    assert raw(sandbox, "GET", f"/v2/user_deletion/{uid}", headers=API_KEY_HEADER).status_code == 404
    sandbox.admin.configure(deletion_status_path="user_deletion")
    assert raw(sandbox, "GET", f"/v2/user_deletion/{uid}", headers=API_KEY_HEADER).json()["user_id"] == uid
    assert raw(sandbox, "GET", f"/v2/users/delete/{uid}", headers=API_KEY_HEADER).status_code == 404


def test_history_envelope_switch(sandbox, client_for):
    client = client_for(sandbox)
    client.create_user(member("env@example.com"))
    client.credit_activity("env@example.com", "review")
    uri = "/v2/users/env%40example.com/activity_history?id_type=email"
    assert isinstance(raw(sandbox, "GET", uri, headers=API_KEY_HEADER).json(), list)
    sandbox.admin.configure(history_envelope="paged")
    body = raw(sandbox, "GET", uri, headers=API_KEY_HEADER).json()
    assert set(body) == {"paging", "activities"}
    assert body["paging"] == {"total": 1, "pages": 1, "next_page": None, "prev_page": None}


@pytest.mark.parametrize("reading", ["clear", "ignore"])
def test_null_in_an_optional_field(sandbox, client_for, reading):
    sandbox.configure(null_values=reading)
    client = client_for(sandbox)
    client.create_user(
        member(
            "null@example.com", middle_name="Q", custom_data={"favorite_store": "A", "loyalty_segment": "g"}
        )
    )
    client.update_user("null@example.com", {"middle_name": None, "custom_data": {"favorite_store": None}})
    stored = sandbox.admin.member("null@example.com")
    if reading == "clear":
        assert "middle_name" not in stored
        assert stored["custom_data"] == {"loyalty_segment": "g"}
    else:
        assert stored["middle_name"] == "Q"
        assert stored["custom_data"] == {"favorite_store": "A", "loyalty_segment": "g"}
    body = raw(
        sandbox,
        "PUT",
        "/v2/users/null%40example.com?id_type=email",
        headers={**API_KEY_HEADER, **JSON},
        data=b'{"first_name": null}',
    )
    if reading == "clear":  # a required field cannot be cleared
        assert (body.status_code, body.json()["message"]) == (
            400,
            "first_name is required and cannot be cleared",
        )
    else:
        assert body.ok
    assert sandbox.admin.member("null@example.com")["first_name"] == "Ada"


def test_duplicate_detection_on_and_off(sandbox, client_for):
    client = client_for(sandbox)
    client.create_user(member("dup@example.com"))
    uri = "/v2/users/dup%40example.com/activities?id_type=email"
    body = b'{"activity_id": "purchase"}'
    headers = {**API_KEY_HEADER, **JSON}
    assert raw(sandbox, "POST", uri, headers=headers, data=body).json() == {"awarded": True}
    second = raw(sandbox, "POST", uri, headers=headers, data=body)
    assert (second.status_code, second.json()["message"]) == (400, "Event already processed")
    assert len(sandbox.admin.credits()) == 1
    sandbox.admin.configure(dedupe_window_s=0)
    for _ in range(2):
        assert raw(sandbox, "POST", uri, headers=headers, data=body).json() == {"awarded": True}
    assert len(sandbox.admin.credits()) == 3  # no deduplication at all: the same body twice awards twice
    assert sandbox.admin.member("dup@example.com")["redeemable_points"] == 30


def test_rate_limit_as_a_per_minute_window(sandbox):
    # 180/min in a 1 s window: 3 requests per window, then 429 until the window ends
    sandbox.admin.configure(rate_limit_per_minute=180, rate_limit_mode="window", rate_limit_window_s=1.0)
    answers = [raw(sandbox, "GET", "/v2/activities", headers=API_KEY_HEADER) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert answers[3].headers["Retry-After"] == "1"
    time.sleep(1.05)
    assert raw(sandbox, "GET", "/v2/activities", headers=API_KEY_HEADER).status_code == 200
    sandbox.admin.configure(retry_after=False, rate_limit_per_minute=60)
    assert [raw(sandbox, "GET", "/v2/activities", headers=API_KEY_HEADER).status_code for _ in range(2)] == [
        200,
        429,
    ]
    assert "Retry-After" not in raw(sandbox, "GET", "/v2/activities", headers=API_KEY_HEADER).headers


def test_rate_limit_as_a_leaky_bucket(sandbox):
    sandbox.admin.configure(rate_limit_per_minute=600, rate_limit_burst=2)  # 10/s, bucket of 2
    codes = [raw(sandbox, "GET", "/v2/activities", headers=API_KEY_HEADER).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    time.sleep(0.15)  # one token drips back in 0.1 s (a window would wait a whole minute)
    assert raw(sandbox, "GET", "/v2/activities", headers=API_KEY_HEADER).status_code == 200


@pytest.mark.parametrize(
    ("location", "required", "optional"),
    [
        ({}, False, True),  # no location at all: the one thing the lenient reading changes
        ({"postal_code": "10001"}, True, True),
        ({"postal_code": "1001"}, False, False),  # a malformed location that is given
        ({"country_code": "CA", "postal_code": "10001"}, False, False),
        ({"country_code": "FR"}, False, False),  # a partial one is checked as ever
    ],
)
def test_location_on_create_required_or_optional(sandbox, location, required, optional):
    """OPEN: O:UserCreate requires a location; the 2026-04 release, per a secondary source, does not."""
    for reading, accepted in ((False, required), (True, optional)):
        sandbox.admin.configure(location_optional=reading)
        body = {k: v for k, v in member(f"loc-{reading}@example.com").items() if k != "postal_code"}
        body.update(location)
        answer = raw(sandbox, "POST", "/v2/users", headers={**API_KEY_HEADER, **JSON}, json=body)
        if accepted:
            assert answer.status_code == 200, answer.text
            assert sandbox.admin.member(body["email_address"]) is not None
        else:
            assert (answer.status_code, answer.json()) == (
                400,
                {"error": "input_error", "message": "US zip code or country/city combo is required"},
            )
    with pytest.raises(SandboxAdminError, match="location_optional"):
        sandbox.admin.configure(location_optional="yes")


def test_runtime_settings_are_validated_whole_and_reset_restores_them(sandbox):
    with pytest.raises(SandboxAdminError, match="not a runtime setting: api_key"):
        sandbox.admin.configure(api_key="other")
    with pytest.raises(SandboxAdminError, match="history_envelope"):
        sandbox.admin.configure(null_values="ignore", history_envelope="xml")
    assert sandbox.admin.settings()["null_values"] == "clear"  # nothing changed by the refused call
    sandbox.admin.configure(null_values="ignore", award_lag_s=1.5, rate_limit_mode="window")
    live = sandbox.admin.settings()
    assert (live["null_values"], live["award_lag_s"], live["rate_limit_mode"]) == ("ignore", 1.5, "window")
    sandbox.admin.reset()
    live = sandbox.admin.settings()
    assert (live["null_values"], live["award_lag_s"], live["rate_limit_mode"]) == ("clear", 0.0, "bucket")


def test_every_reading_is_a_command_line_flag():
    options = {}
    for reading in (*READINGS, AWARD_LAG):
        options.update(reading.sandbox)
    options.update(timestamp_unit="ms", rate_limit_per_minute=12_000)
    with SandboxProcess(**options) as process:
        live = process.admin.settings()
        for name, value in options.items():
            assert live[name] == value, name
        process.configure(history_envelope="list")
        assert process.admin.settings()["history_envelope"] == "list"
