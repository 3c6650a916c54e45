"""Activities: the list, the paged list, and credits with points, dates, extra data and duplicates."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from airflow_provider_crowdtwist.client.errors import (
    CrowdTwistAlreadyProcessedError,
    CrowdTwistForbiddenError,
    CrowdTwistNotFoundError,
    CrowdTwistValidationError,
)
from airflow_provider_crowdtwist.sandbox.server import SandboxServer
from airflow_provider_crowdtwist.sandbox.settings import ActivityDef
from tests.integration.sandbox._helpers import API_KEY_HEADER, member, raw

pytestmark = pytest.mark.integration


def test_list_activities_answers_only_active_ones(sandbox, client_for):
    activities = client_for(sandbox).list_activities()
    assert [(a.id, a.points) for a in activities] == [
        ("purchase", 10),
        ("signup", 50),
        ("review", 5),
        ("birthday", 100),
    ]
    body = raw(sandbox, "GET", "/v2/activities", headers=API_KEY_HEADER).json()
    # Oracle's field names (O:Activities), nothing else: no "points", no "is_active" (all listed are active)
    assert set(body["activities"][0]) == {
        "id",
        "name",
        "title",
        "description",
        "num_points",
        "type_id",
        "category_id",
        "freq_cap",
        "freq_period_id",
        "date_start",
        "date_end",
    }
    purchase = body["activities"][0]
    assert (purchase["id"], purchase["name"], purchase["title"], purchase["num_points"]) == (
        "purchase",
        "Purchase",
        "Purchase",
        10,
    )
    assert "legacy_survey" not in {a["id"] for a in body["activities"]}


def test_extended_list_is_paged_up_to_25_with_urls(client_for):
    many = tuple(ActivityDef(f"act_{i:02d}", f"Activity {i}", i) for i in range(30))
    with SandboxServer(activities=many) as server:
        client = client_for(server)
        first = client.request("GET", "/v2.1/activities/extended", params={"page": 1, "page_size": 25}).json()
        assert len(first["activities"]) == 25
        assert (first["paging"]["total"], first["paging"]["pages"]) == (30, 2)
        assert first["paging"]["prev_page"] is None
        next_url = first["paging"]["next_page"]
        assert next_url.startswith(server.base_url + "/v2.1/activities/extended?")
        assert parse_qs(urlsplit(next_url).query) == {"page": ["2"], "page_size": ["25"]}
        # following the URL as given (auth added by the caller) gives page 2
        second = requests.get(next_url, headers=API_KEY_HEADER, timeout=5).json()
        assert [a["id"] for a in second["activities"]] == [f"act_{i:02d}" for i in range(25, 30)]
        assert second["paging"]["next_page"] is None
        assert parse_qs(urlsplit(second["paging"]["prev_page"]).query)["page"] == ["1"]


def test_extended_default_page_size_and_bad_pages_are_not_errors(client_for):
    many = tuple(ActivityDef(f"act_{i:02d}", f"Activity {i}", i) for i in range(30))
    with SandboxServer(activities=many) as server:
        default = raw(server, "GET", "/v2.1/activities/extended", headers=API_KEY_HEADER).json()
        assert len(default["activities"]) == 10  # default page_size
        assert default["paging"]["pages"] == 3
        for bad in ("abc", "0", "-1"):  # a page that is not a page is page 1
            got = raw(server, "GET", f"/v2.1/activities/extended?page={bad}", headers=API_KEY_HEADER)
            assert got.status_code == 200
            assert [a["id"] for a in got.json()["activities"]] == [a["id"] for a in default["activities"]]
        past = raw(server, "GET", "/v2.1/activities/extended?page=99", headers=API_KEY_HEADER)
        assert (past.status_code, past.json()["activities"]) == (200, [])
        too_big = raw(server, "GET", "/v2.1/activities/extended?page_size=26", headers=API_KEY_HEADER)
        assert len(too_big.json()["activities"]) == 25  # capped at the documented maximum
        leaked = raw(server, "GET", "/v2.1/activities/extended?api_key=sandbox-api-key")
        assert "sandbox-api-key" not in leaked.text  # the paging URLs never echo the key


def test_credit_default_points_override_date_and_extra_data(sandbox, client_for):
    client = client_for(sandbox)
    created = client.create_user(member("cr@example.com"))
    assert client.credit_activity("cr@example.com", "purchase") == {"awarded": True}
    assert client.credit_activity(
        "cr@example.com",
        "purchase",
        num_points=7,
        activity_date=1_700_000_000,
        extra_data={"order_id": "A-1"},
    ) == {"awarded": True}
    first, second = sandbox.admin.credits()
    assert (first["user_id"], first["activity_id"], first["points"], first["activity_date"]) == (
        created["id"],
        "purchase",
        10,
        None,
    )
    assert (second["points"], second["activity_date"], second["extra_data"]) == (
        7,
        1_700_000_000,
        {"order_id": "A-1"},
    )
    profile = client.get_user("cr@example.com")
    assert (profile["total_points"], profile["redeemable_points"]) == (17, 17)


def test_identical_credit_inside_the_window_is_event_already_processed(sandbox, client_for):
    client = client_for(sandbox)
    client.create_user(member("dup@example.com"))
    body = {"activity_id": "review", "extra_data": {"review_id": 9}}
    path = "/v2/users/dup%40example.com/activities?id_type=email"
    assert raw(sandbox, "POST", path, json=body, headers=API_KEY_HEADER).status_code == 200
    again = raw(sandbox, "POST", path, json=body, headers=API_KEY_HEADER)
    assert (again.status_code, again.json()) == (
        400,
        {"error": "input_error", "message": "Event already processed"},
    )
    # any difference makes it a different event
    assert raw(
        sandbox, "POST", path, json={**body, "extra_data": {"review_id": 10}}, headers=API_KEY_HEADER
    ).ok
    assert raw(sandbox, "POST", path, json={**body, "num_points": 5}, headers=API_KEY_HEADER).ok
    # the package's client reports that answer as its own, ambiguous error: not proof of anything
    with pytest.raises(CrowdTwistAlreadyProcessedError) as caught:
        client.credit_activity("dup@example.com", "review", extra_data={"review_id": 9})
    assert caught.value.ambiguous is True
    assert len(sandbox.admin.credits()) == 3


def test_identical_credit_after_the_window_is_applied_again(client_for):
    with SandboxServer(dedupe_window_s=0.2) as server:
        client = client_for(server)
        client.create_user(member("later@example.com"))
        client.credit_activity("later@example.com", "purchase")
        time.sleep(0.25)
        assert client.credit_activity("later@example.com", "purchase") == {"awarded": True}
        assert [c["points"] for c in server.admin.credits()] == [10, 10]


def test_credit_refusals(sandbox, client_for):
    client = client_for(sandbox)
    client.create_user(member("ref@example.com"))
    with pytest.raises(CrowdTwistNotFoundError):
        client.credit_activity("nobody@example.com", "purchase")
    with pytest.raises(CrowdTwistValidationError) as caught:
        client.credit_activity("ref@example.com", "no_such_activity")
    assert caught.value.message == "Unknown activity_id 'no_such_activity'"
    with pytest.raises(CrowdTwistValidationError) as caught:
        client.credit_activity("ref@example.com", "legacy_survey")
    assert caught.value.message == "Activity 'legacy_survey' is not active"
    client.update_user("ref@example.com", {"is_active": 0})
    with pytest.raises(CrowdTwistForbiddenError) as forbidden:
        client.credit_activity("ref@example.com", "purchase")
    assert (forbidden.value.status, forbidden.value.code, forbidden.value.message) == (
        403,
        "forbidden",
        "User is inactive.",
    )
    assert sandbox.admin.credits() == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "activity_id is required"),
        ({"activity_id": 12}, "activity_id must be a string"),
        ({"activity_id": "purchase", "num_points": "5"}, "num_points must be an integer"),
        ({"activity_id": "purchase", "num_points": -1}, "num_points must be an integer"),
        (
            {"activity_id": "purchase", "activity_date": "2024-01-01"},
            "activity_date must be an integer epoch",
        ),
        ({"activity_id": "purchase", "activity_date": 1.7e9}, "activity_date must be an integer epoch"),
        ({"activity_id": "purchase", "extra_data": "x"}, "extra_data must be a JSON object"),
        ({"activity_id": "purchase", "points": 5}, "Unknown attribute 'points'"),
    ],
)
def test_credit_body_rules(sandbox, body, fragment):
    raw(sandbox, "POST", "/v2/users", json=member("body@example.com"), headers=API_KEY_HEADER)
    answer = raw(
        sandbox,
        "POST",
        "/v2/users/body%40example.com/activities?id_type=email",
        json=body,
        headers=API_KEY_HEADER,
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "input_error"
    assert fragment in answer.json()["message"]


def test_activity_date_can_be_disabled_for_the_program(client_for):
    with SandboxServer(activity_date_enabled=False) as server:
        client = client_for(server)
        client.create_user(member("nodate@example.com"))
        with pytest.raises(CrowdTwistValidationError) as caught:
            client.credit_activity("nodate@example.com", "purchase", activity_date=1_700_000_000)
        assert "activity_date is not enabled" in caught.value.message
        assert client.credit_activity("nodate@example.com", "purchase") == {"awarded": True}
