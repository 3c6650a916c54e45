"""Misbehaviour on demand: latency, 429 + Retry-After, 5xx, dropped connections, applied-then-503."""

from __future__ import annotations

import time

import pytest
import requests

from airflow_provider_crowdtwist.client.errors import (
    CrowdTwistConnectionError,
    CrowdTwistRateLimitError,
    CrowdTwistServerError,
)
from airflow_provider_crowdtwist.sandbox.admin import SandboxAdminError
from airflow_provider_crowdtwist.sandbox.server import SandboxServer
from tests.integration.sandbox._helpers import API_KEY_HEADER, member, raw

pytestmark = pytest.mark.integration


def test_latency_holds_every_api_request_but_not_admin(sandbox, client_for):
    client = client_for(sandbox)
    client.list_activities()  # warm the connection
    sandbox.admin.set_faults(latency_ms=150)
    start = time.perf_counter()
    client.list_activities()
    held = time.perf_counter() - start
    start = time.perf_counter()
    sandbox.admin.stats()
    admin = time.perf_counter() - start
    assert held >= 0.15
    assert admin < held


def test_rate_limit_answers_429_with_retry_after(sandbox):
    sandbox.admin.set_faults(rate_limit_per_minute=60)  # one a second, burst of one
    assert raw(sandbox, "GET", "/v2/activities", headers=API_KEY_HEADER).status_code == 200
    limited = raw(sandbox, "GET", "/v2/activities", headers=API_KEY_HEADER)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert limited.json()["error"] == "rate_limited"
    sandbox.admin.set_faults(rate_limit_per_minute=6)  # one per 10 s
    raw(sandbox, "GET", "/v2/activities", headers=API_KEY_HEADER)
    assert raw(sandbox, "GET", "/v2/activities", headers=API_KEY_HEADER).headers["Retry-After"] == "10"
    sandbox.admin.set_faults(retry_after=False)
    without = raw(sandbox, "GET", "/v2/activities", headers=API_KEY_HEADER)
    assert without.status_code == 429
    assert "Retry-After" not in without.headers


def test_rate_limit_burst_then_steady_rate(sandbox):
    sandbox.admin.set_faults(rate_limit_per_minute=600, rate_limit_burst=5)
    statuses = [raw(sandbox, "GET", "/v2/activities", headers=API_KEY_HEADER).status_code for _ in range(8)]
    assert statuses[:5] == [200] * 5
    assert 429 in statuses[5:]


def test_client_honours_retry_after_and_gets_through(sandbox, client_for):
    client = client_for(sandbox, max_retries=3)
    sandbox.admin.set_faults(rate_limit_per_minute=120)  # 2/s, Retry-After: 1
    client.create_user(member("rl@example.com"))
    start = time.perf_counter()
    client.credit_activity("rl@example.com", "purchase")
    client.credit_activity("rl@example.com", "signup")
    waited = time.perf_counter() - start
    stats = sandbox.admin.stats()
    assert stats["by_status"].get("429", 0) >= 1
    assert waited >= 0.5  # it waited for the bucket rather than hammering
    assert len(sandbox.admin.credits()) == 2


def test_client_gives_up_on_persistent_429(sandbox, client_for):
    client = client_for(sandbox, max_retries=1, max_retry_wait=0.5)
    sandbox.admin.set_faults(rate_limit_per_minute=1)
    client.list_activities()
    with pytest.raises(CrowdTwistRateLimitError):
        client.list_activities()


@pytest.mark.parametrize(("status", "code"), [(500, "internal_error"), (503, "service_unavailable")])
def test_errors_are_answered_before_anything_is_applied(sandbox, status, code):
    sandbox.admin.set_faults(error_rate=1.0, error_status=status)
    answer = raw(sandbox, "POST", "/v2/users", json=member("err@example.com"), headers=API_KEY_HEADER)
    assert answer.status_code == status
    assert answer.json()["error"] == code
    assert sandbox.admin.members() == []


def test_client_retries_5xx_and_reports_server_error(sandbox, client_for):
    client = client_for(sandbox, max_retries=2)
    sandbox.admin.set_faults(error_rate=1.0, error_status=503)
    with pytest.raises(CrowdTwistServerError) as caught:
        client.get_user("x@example.com")
    assert caught.value.status == 503
    assert sandbox.admin.requests_for("x@example.com") == 3


def test_error_fraction_is_seeded_and_reproducible(sandbox):
    def run() -> list[int]:
        sandbox.admin.set_faults(error_rate=0.3, seed=1234)
        return [raw(sandbox, "GET", "/v2/activities", headers=API_KEY_HEADER).status_code for _ in range(60)]

    first = run()
    assert run() == first
    failures = first.count(500)
    assert 5 <= failures <= 35
    assert set(first) == {200, 500}


def test_with_partial_errors_every_row_lands_exactly_once(sandbox, client_for):
    client = client_for(sandbox, max_retries=8)
    sandbox.admin.set_faults(error_rate=0.3, seed=7)
    emails = [f"row{i}@example.com" for i in range(20)]
    for email in emails:
        client.create_user(member(email))
    assert sorted(m["email_address"] for m in sandbox.admin.members()) == sorted(emails)
    stats = sandbox.admin.stats()
    assert stats["by_status"]["500"] >= 1
    assert sum(sandbox.admin.requests_for(e) for e in emails) == stats["by_route"]["POST /v2/users"]


def test_dropped_connection_applies_nothing(sandbox):
    sandbox.admin.set_faults(drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        raw(sandbox, "POST", "/v2/users", json=member("drop@example.com"), headers=API_KEY_HEADER)
    sandbox.admin.set_faults(drop_rate=0.0)
    assert sandbox.admin.members() == []
    assert sandbox.admin.stats()["by_status"] == {"dropped": 1}


def test_client_sees_drops_as_ambiguous_connection_errors(sandbox, client_for):
    client = client_for(sandbox, max_retries=1)
    client.create_user(member("amb@example.com"))
    sandbox.admin.set_faults(drop_rate=1.0)
    with pytest.raises(CrowdTwistConnectionError) as caught:
        client.credit_activity("amb@example.com", "purchase")
    assert caught.value.ambiguous is True
    assert sandbox.admin.credits() == []


def test_applied_then_503_stores_the_change_yet_answers_503(sandbox):
    sandbox.admin.set_faults(applied_then_503_rate=1.0)
    answer = raw(sandbox, "POST", "/v2/users", json=member("ghost@example.com"), headers=API_KEY_HEADER)
    assert answer.status_code == 503
    assert answer.json()["error"] == "service_unavailable"
    assert [m["email_address"] for m in sandbox.admin.members()] == ["ghost@example.com"]


def test_applied_then_503_credit_is_not_resent_by_the_client(sandbox, client_for):
    """The dangerous case: the credit landed, the answer said 503. The client does not resend (that
    would award twice wherever CrowdTwist does not deduplicate); the error is ambiguous, and the credit
    sync settles it by looking in the member's activity history."""
    client = client_for(sandbox)
    client.create_user(member("twice@example.com"))
    sandbox.admin.set_faults(applied_then_503_rate=1.0)
    with pytest.raises(CrowdTwistServerError) as caught:
        client.credit_activity("twice@example.com", "birthday")
    assert caught.value.ambiguous is True and caught.value.status == 503
    credits = sandbox.admin.credits()
    assert [(c["activity_id"], c["points"]) for c in credits] == [("birthday", 100)]
    assert sandbox.admin.requests_for("twice@example.com") == 2  # create, credit (503); no resend


def test_applied_then_503_with_a_naive_resend_after_the_window_doubles_points(client_for):
    """Why the ledger exists: outside the duplicate window, CrowdTwist has no way to tell."""
    with SandboxServer(dedupe_window_s=0.1, applied_then_503_rate=1.0) as server:
        raw(server, "POST", "/v2/users", json=member("naive@example.com"), headers=API_KEY_HEADER)
        path = "/v2/users/naive%40example.com/activities?id_type=email"
        for _ in range(2):
            assert (
                raw(
                    server, "POST", path, json={"activity_id": "purchase"}, headers=API_KEY_HEADER
                ).status_code
                == 503
            )
            time.sleep(0.15)
        assert [c["points"] for c in server.admin.credits()] == [10, 10]


def test_faults_never_apply_to_admin_and_reset_turns_them_off(sandbox):
    sandbox.admin.set_faults(drop_rate=1.0, error_rate=1.0, latency_ms=300, rate_limit_per_minute=1)
    for _ in range(5):  # any of drop/error/rate limit would make these fail
        assert sandbox.admin.stats()["total"] == 0
    sandbox.admin.reset()
    assert sandbox.admin.faults()["drop_rate"] == 0.0
    assert raw(sandbox, "GET", "/v2/activities", headers=API_KEY_HEADER).status_code == 200


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"error_rate": 1.5}, "error_rate must be a fraction"),
        ({"drop_rat": 0.1}, "unknown fault setting(s): drop_rat"),
        ({"error_status": 404}, "error_status must be one of"),
        ({"latency_ms": -1}, "latency_ms must be a number >= 0"),
        ({"rate_limit_per_minute": "many"}, "rate_limit_per_minute must be an integer"),
    ],
)
def test_bad_fault_settings_are_refused_naming_the_field(sandbox, changes, fragment):
    with pytest.raises(SandboxAdminError) as caught:
        sandbox.admin.set_faults(**changes)
    assert fragment in str(caught.value)
    assert sandbox.admin.faults()["error_rate"] == 0.0


def test_applied_then_drop_is_applied_and_unanswered(sandbox, client_for):
    client = client_for(sandbox)
    client.create_user(member("reset@example.com"))
    sandbox.admin.set_faults(applied_then_drop_rate=1.0)
    with pytest.raises(CrowdTwistConnectionError) as caught:
        client.credit_activity("reset@example.com", "signup")
    assert caught.value.ambiguous is True  # applied, but nobody can tell from the answer
    assert [c["points"] for c in sandbox.admin.credits()] == [50]
    assert sandbox.admin.stats()["by_status"]["dropped"] == 1


def test_fault_routes_limit_faults_to_some_endpoints(sandbox, client_for):
    sandbox.admin.set_faults(error_rate=1.0, fault_routes=["credit"])
    client = client_for(sandbox, max_retries=1)
    client.create_user(member("route@example.com"))  # healthy
    assert client.get_user("route@example.com")
    with pytest.raises(CrowdTwistServerError):
        client.credit_activity("route@example.com", "purchase")
    assert sandbox.admin.faults()["fault_routes"] == ["credit"]
    with pytest.raises(SandboxAdminError, match="fault_routes must be names from"):
        sandbox.admin.set_faults(fault_routes=["credits"])


def test_fault_flags_reach_a_child_process(client_for):
    from airflow_provider_crowdtwist.sandbox.process import SandboxProcess

    with SandboxProcess(applied_then_503_rate=1.0, fault_routes=("create",), seed=5) as child:
        answer = raw(child, "POST", "/v2/users", json=member("child@example.com"), headers=API_KEY_HEADER)
        assert answer.status_code == 503
        assert raw(child, "GET", "/v2/users/child%40example.com?id_type=email", headers=API_KEY_HEADER).ok
        assert child.admin.faults()["seed"] == 5
