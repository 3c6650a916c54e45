"""The admin view: end state and request counts for assertions, without auth, loopback only."""

from __future__ import annotations

import pytest

from airflow_provider_crowdtwist.sandbox.app import _is_loopback
from tests.integration.sandbox._helpers import API_KEY_HEADER, member, raw

pytestmark = pytest.mark.integration


def test_members_and_credits_show_the_end_state(sandbox, client_for):
    client = client_for(sandbox)
    ada = client.create_user(member("ada@example.com", custom_data={"loyalty_segment": "gold"}))
    client.credit_activity("ada@example.com", "purchase", extra_data={"order": 1})
    client.credit_activity(str(ada["id"]), "review", id_type="id", activity_date=1_700_000_000)
    (stored,) = sandbox.admin.members()
    assert stored["id"] == ada["id"]
    assert stored["custom_data"] == {"loyalty_segment": "gold"}
    assert stored["total_points"] == 15
    assert stored["password_set"] is False
    credits = sandbox.admin.credits()
    assert [(c["user_id"], c["email_address"], c["activity_id"], c["points"]) for c in credits] == [
        (ada["id"], "ada@example.com", "purchase", 10),
        (ada["id"], "ada@example.com", "review", 5),
    ]
    assert credits[0]["extra_data"] == {"order": 1}
    assert credits[1]["activity_date"] == 1_700_000_000
    assert all(isinstance(c["time"], float) for c in credits)
    assert sandbox.admin.member("ADA@example.com")["id"] == ada["id"]
    assert sandbox.admin.member("nobody@example.com") is None


def test_stats_count_requests_by_route_status_and_row(sandbox, client_for):
    client = client_for(sandbox)
    client.list_activities()
    client.create_user(member("a@example.com"))
    client.create_user(member("b@example.com"))
    client.credit_activity("a@example.com", "purchase")
    client.credit_activity("a@example.com", "signup")
    raw(sandbox, "GET", "/v2/users/c%40example.com?id_type=email", headers=API_KEY_HEADER)
    raw(sandbox, "GET", "/v2/activities")  # 401
    stats = sandbox.admin.stats()
    assert stats["total"] == 7
    assert stats["by_route"] == {
        "GET /v2/activities": 2,
        "POST /v2/users": 2,
        "POST /v2/users/{user_id}/activities": 2,
        "GET /v2/users/{user_id}": 1,
    }
    assert stats["by_status"] == {"200": 5, "404": 1, "401": 1}
    assert stats["by_user"] == {"a@example.com": 3, "b@example.com": 1, "c@example.com": 1}
    assert stats["by_user_route"]["a@example.com"] == {
        "POST /v2/users": 1,
        "POST /v2/users/{user_id}/activities": 2,
    }
    assert sandbox.admin.requests_for("a@example.com") == 3
    assert stats["in_flight"] == 0


def test_reset_clears_everything_and_restarts_ids(sandbox, client_for):
    client = client_for(sandbox)
    first = client.create_user(member("r@example.com"))
    client.credit_activity("r@example.com", "purchase")
    sandbox.admin.set_faults(latency_ms=5)
    sandbox.admin.reset()
    assert sandbox.admin.members() == []
    assert sandbox.admin.credits() == []
    assert sandbox.admin.stats()["total"] == 0
    assert sandbox.admin.faults()["latency_ms"] == 0.0
    assert client.create_user(member("r@example.com"))["id"] == first["id"]


def test_admin_needs_no_auth_and_unknown_admin_path_is_404(sandbox):
    assert raw(sandbox, "GET", "/_admin/health").json() == {"ok": True}
    missing = raw(sandbox, "GET", "/_admin/nope")
    assert (missing.status_code, missing.json()["error"]) == (404, "page_not_found")
    assert sandbox.admin.stats()["total"] == 0  # admin calls are not counted as API requests


def test_admin_answers_loopback_peers_only():
    assert _is_loopback(("127.0.0.1", 5000))
    assert _is_loopback(("::1", 5000, 0, 0))
    assert not _is_loopback(("10.1.2.3", 5000))
    assert not _is_loopback(None)


def test_arrivals_count_every_api_request_by_time(sandbox, client_for):
    from airflow_provider_crowdtwist.sandbox.admin import busiest_window

    client = client_for(sandbox)
    for i in range(7):
        client.create_user(member(f"arr{i}@example.com"))
    tick_s, counts = sandbox.admin.arrivals()
    assert tick_s == 0.1
    assert sum(counts.values()) == sandbox.admin.stats()["total"] == 7
    assert sandbox.admin.busiest_window(60.0) == 7
    # the sliding window: ticks 5..10 hold 3 + 2, ticks 6..11 hold 2 + 7
    assert busiest_window({0: 5, 5: 3, 10: 2, 11: 7}, 6) == 9
    assert busiest_window({0: 5, 5: 3, 10: 2, 11: 7}, 7) == 12
    assert busiest_window({}, 600) == 0
