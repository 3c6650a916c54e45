"""API calls: URL encoding, bodies, upsert, credits sent once, and the activity history."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest

from airflow_provider_crowdtwist import __version__
from airflow_provider_crowdtwist.client import (
    CrowdTwistAlreadyProcessedError,
    CrowdTwistAuthError,
    CrowdTwistConfigError,
    CrowdTwistConnectionError,
    CrowdTwistForbiddenError,
    CrowdTwistNotFoundError,
    CrowdTwistServerError,
    CrowdTwistValidationError,
    quote_path_value,
)
from airflow_provider_crowdtwist.client.errors import (
    CrowdTwistDeletionNotFoundError,
    CrowdTwistDeletionRefusedError,
)

from .conftest import read_timeout, refused

USER = "https://api.test/v2/users/a%2Bb%40c.com?id_type=email"
CREATE = "https://api.test/v2/users"
CREDIT = "https://api.test/v2/users/a%2Bb%40c.com/activities?id_type=email"
NOT_FOUND = {"status_code": 404, "json": {"error": "page_not_found", "message": "User does not exist."}}
PROCESSED = {"status_code": 400, "json": {"error": "input_error", "message": "Event already processed"}}


@pytest.mark.parametrize(
    ("value", "encoded"),
    [("a+b@c.com", "a%2Bb%40c.com"), ("x/y z", "x%2Fy%20z"), (12345, "12345"), ("é?#&", "%C3%A9%3F%23%26")],
)
def test_path_values_are_encoded_whole(value: Any, encoded: str) -> None:
    assert quote_path_value(value) == encoded


def test_get_user_sends_encoded_path_headers_timeouts_and_verify(wire: Any, make_client: Any) -> None:
    wire.get(USER, json={"id": 9, "email_address": "a+b@c.com", "new_field": 1})
    client = make_client(connect_timeout=2.5, read_timeout=11.0)
    assert client.get_user("a+b@c.com") == {"id": 9, "email_address": "a+b@c.com", "new_field": 1}
    sent = wire.last_request
    assert sent.url == USER
    assert (sent.transport.connect_timeout, sent.transport.read_timeout) == (2.5, 11.0)
    assert sent.transport.verify not in (False, None)  # True, or the CA bundle from the environment
    assert sent.headers["User-Agent"].startswith(f"airflow-provider-crowdtwist/{__version__}")
    assert sent.headers["Accept"] == "application/json"


def test_verify_false_is_passed_through(wire: Any, make_client: Any) -> None:
    wire.get(USER, json={})
    make_client(verify=False).get_user("a+b@c.com")
    assert wire.last_request.transport.verify is False


def test_id_type_per_call_overrides_the_default(wire: Any, make_client: Any) -> None:
    wire.get("https://api.test/v2/users/T-1?id_type=third_party_id", json={"id": 1})
    client = make_client(id_type="third_party_id")
    client.get_user("T-1")
    wire.get("https://api.test/v2/users/77?id_type=id", json={"id": 77})
    assert client.get_user("77", id_type="id") == {"id": 77}
    with pytest.raises(CrowdTwistConfigError, match="id_type must be one of"):
        client.get_user("77", id_type="phone")
    with pytest.raises(CrowdTwistValidationError, match="user_id is empty"):
        client.get_user("  ")
    assert wire.call_count == 2


def test_bodies_are_compact_json_with_content_type(wire: Any, make_client: Any) -> None:
    wire.post(CREATE, json={"id": 1})
    make_client().create_user(
        {"first_name": "Zoë", "custom_data": {"tier": "gold"}, "receive_email_updates": 1}
    )
    sent = wire.last_request
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.body == b'{"first_name":"Zo\\u00eb","custom_data":{"tier":"gold"},"receive_email_updates":1}'


def test_unserialisable_body_is_a_validation_error_before_sending(wire: Any, make_client: Any) -> None:
    client = make_client()
    with pytest.raises(CrowdTwistValidationError, match="NaN or infinite"):
        client.create_user({"first_name": float("nan")})
    with pytest.raises(CrowdTwistValidationError, match="not JSON serializable"):
        client.create_user({"first_name": object()})
    assert wire.call_count == 0 and client.requests_sent == 0


def test_non_json_success_body_is_an_error(wire: Any, make_client: Any) -> None:
    wire.get(USER, text="<html>maintenance</html>")
    with pytest.raises(Exception, match="not JSON"):
        make_client().get_user("a+b@c.com")


def test_delete_user_returns_the_queued_answer(wire: Any, make_client: Any) -> None:
    wire.delete(USER, json={"user_id": 42, "status": "Queued"})
    answer = make_client().delete_user("a+b@c.com")
    assert (answer.user_id, answer.status, answer.queued) == ("42", "Queued", True)
    assert wire.last_request.method == "DELETE"


@pytest.mark.parametrize(
    ("status", "message", "cls", "reason"),
    [
        (400, "Unable to initiate deletion", CrowdTwistDeletionRefusedError, "deletion_not_initiated"),
        (
            400,
            "Member is inactive but has redeemable points",
            CrowdTwistDeletionRefusedError,
            "inactive_with_redeemable_points",
        ),
        (404, "Member not found", CrowdTwistDeletionNotFoundError, "member_not_found"),
        (404, "Member ID is invalid", CrowdTwistDeletionNotFoundError, "member_id_invalid"),
        (400, "Something new", CrowdTwistDeletionRefusedError, None),
    ],
)
def test_delete_user_refusals_are_typed_with_the_reason(
    wire: Any, make_client: Any, status: int, message: str, cls: type, reason: str | None
) -> None:
    code = "page_not_found" if status == 404 else "input_error"
    wire.delete(USER, status_code=status, json={"error": code, "message": message})
    with pytest.raises(cls) as caught:
        make_client().delete_user("a+b@c.com")
    err = caught.value
    assert err.reason == reason and err.status == status and err.message == message
    # Still the general classes, so callers written against them keep working.
    assert isinstance(err, CrowdTwistNotFoundError if status == 404 else CrowdTwistValidationError)
    assert pickle.loads(pickle.dumps(err)).reason == reason


def test_deletion_status_finds_the_path_that_answers(wire: Any, make_client: Any) -> None:
    """OPEN point: /v2/users/delete/{id} or /v2/user_deletion/{id}; the one that answers is kept."""
    first = wire.get(
        "https://api.test/v2/users/delete/42",
        status_code=404,
        json={"error": "page_not_found", "message": "No such endpoint"},
    )
    second = wire.get("https://api.test/v2/user_deletion/42", json={"user_id": 42, "status": "Queued"})
    client = make_client()
    assert client.deletion_status("42", id_type="id").status == "Queued"
    assert client.deletion_status("42", id_type="id").queued
    assert (first.call_count, second.call_count) == (1, 2)  # the second call goes straight there


def test_deletion_status_member_404_is_not_a_missing_path(wire: Any, make_client: Any) -> None:
    wire.get(
        "https://api.test/v2/users/delete/42",
        status_code=404,
        json={"error": "page_not_found", "message": "Member not found"},
    )
    other = wire.get("https://api.test/v2/user_deletion/42", json={})
    with pytest.raises(CrowdTwistDeletionNotFoundError) as caught:
        make_client().deletion_status("42", id_type="id")
    assert caught.value.reason == "member_not_found" and other.call_count == 0


def test_get_user_without_pii(wire: Any, make_client: Any) -> None:
    wire.get("https://api.test/v2/users/T-1?id_type=third_party_id&pii=false", json={"id": 5})
    client = make_client()
    assert client.get_user("T-1", id_type="third_party_id", pii=False) == {"id": 5}
    assert wire.last_request.qs == {"id_type": ["third_party_id"], "pii": ["false"]}
    with pytest.raises(CrowdTwistConfigError, match="pii=false works only with id_type id or third_party_id"):
        client.get_user("a+b@c.com", id_type="email", pii=False)
    assert wire.call_count == 1


def test_inst_username_is_an_id_type_for_credits_only(wire: Any, make_client: Any) -> None:
    wire.post("https://api.test/v2/users/ann_ig/activities?id_type=inst_username", json={"awarded": True})
    client = make_client()
    assert client.credit_activity("ann_ig", "purchase", id_type="inst_username") == {"awarded": True}
    with pytest.raises(CrowdTwistConfigError, match="id_type"):
        client.get_user("ann_ig", id_type="inst_username")


def _extended_page(number: int, ids: list[str], pages: int) -> dict:
    link = "https://elsewhere.example/v2.1/activities/extended?page={}&page_size=2"
    return {
        "activities": [{"id": i, "name": i, "num_points": 1} for i in ids],
        "paging": {
            "total": 5,
            "pages": pages,
            "next_page": link.format(number + 1) if number < pages else None,
            "prev_page": link.format(number - 1) if number > 1 else None,
        },
    }


def test_extended_activities_walk_the_pages_by_their_links(wire: Any, make_client: Any) -> None:
    pages = {1: ["a", "b"], 2: ["c", "d"], 3: ["e"]}

    def answer(request: Any, context: Any) -> dict:
        number = int(request.qs["page"][0])
        return _extended_page(number, pages[number], 3)

    wire.get("https://api.test/v2.1/activities/extended", json=answer)
    client = make_client()
    assert [a.id for a in client.list_activities_extended(page_size=2)] == ["a", "b", "c", "d", "e"]
    # The links name another host: only their page numbers are used; every request went to the API.
    assert all(r.netloc == "api.test" for r in wire.request_history)
    assert [r.qs["page"] for r in wire.request_history] == [["1"], ["2"], ["3"]]
    with pytest.raises(CrowdTwistConfigError, match="page_size"):
        client.activities_page(page_size=26)


def test_extended_activities_stop_when_a_bad_page_answers_page_one(wire: Any, make_client: Any) -> None:
    """O:Activities-Extended21: a bad page gives page 1 or an empty list; the walk cannot loop."""
    wire.get(
        "https://api.test/v2.1/activities/extended",
        json={"activities": [{"id": "a"}], "paging": {"total": 9, "pages": 9, "next_page": "?page=2"}},
    )
    assert [a.id for a in make_client().list_activities_extended()] == ["a"]
    assert wire.call_count == 2


# -- upsert ------------------------------------------------------------------------------------------


def test_upsert_updates_with_one_put(wire: Any, make_client: Any) -> None:
    wire.put(USER, json={"id": 5, "first_name": "B"})
    client = make_client()
    assert client.upsert_user("a+b@c.com", {"first_name": "B"}) == ("updated", {"id": 5, "first_name": "B"})
    assert client.requests_sent == 1 and wire.last_request.json() == {"first_name": "B"}


@pytest.mark.parametrize(
    ("id_type", "user_id", "attribute"),
    [
        ("email", "a+b@c.com", "email_address"),
        ("third_party_id", "T-1", "third_party_id"),
        ("username", "bob", "username"),
        ("mobile_phone_number", "5551234", "mobile_phone_number"),
        ("facebook_user_id", "fb1", "facebook_user_id"),
        ("twitter_user_id", "tw1", "twitter_user_id"),
    ],
)
def test_upsert_creates_on_404_carrying_the_identifier(
    wire: Any, make_client: Any, id_type: str, user_id: str, attribute: str
) -> None:
    wire.put(f"https://api.test/v2/users/{quote_path_value(user_id)}?id_type={id_type}", **NOT_FOUND)
    wire.post(CREATE, json={"id": 8})
    fields = {"first_name": "A", "last_name": "B", "email_address": "given@x.com"}
    status, user = make_client().upsert_user(user_id, fields, id_type=id_type)
    assert (status, user) == ("created", {"id": 8})
    posted = wire.last_request.json()
    assert posted[attribute] == (user_id if attribute != "email_address" else "given@x.com")
    assert {k: posted[k] for k in fields} == fields


def test_upsert_fills_missing_email_and_skips_id(wire: Any, make_client: Any) -> None:
    wire.put(USER, **NOT_FOUND)
    wire.post(CREATE, json={"id": 8})
    client = make_client()
    client.upsert_user("a+b@c.com", {"first_name": "A"})
    assert wire.last_request.json() == {"first_name": "A", "email_address": "a+b@c.com"}
    wire.put("https://api.test/v2/users/42?id_type=id", **NOT_FOUND)
    client.upsert_user("42", {"first_name": "A"}, id_type="id")
    assert wire.last_request.json() == {"first_name": "A"}


def test_upsert_creating_a_member_puts_the_update_only_fields(wire: Any, make_client: Any) -> None:
    """is_active / remove_points are not taken by the create (O:UserUpdate): POST, then the PUT."""
    put = wire.put(USER, [NOT_FOUND, {"json": {"id": 8, "is_active": False}}])
    post = wire.post(CREATE, json={"id": 8, "is_active": True})
    fields = {"first_name": "A", "last_name": "B", "postal_code": "02134", "is_active": 0, "remove_points": 1}
    status, user = make_client().upsert_user("a+b@c.com", fields)
    assert (status, user) == ("created", {"id": 8, "is_active": False})
    assert post.last_request.json() == {
        "first_name": "A",
        "last_name": "B",
        "postal_code": "02134",
        "email_address": "a+b@c.com",
    }
    assert put.call_count == 2 and put.last_request.json() == {"is_active": 0, "remove_points": 1}


def test_upsert_put_refused_does_not_post(wire: Any, make_client: Any) -> None:
    wire.put(USER, status_code=400, json={"error": "input_error", "message": "Unrecognized attribute name"})
    post = wire.post(CREATE, json={})
    with pytest.raises(CrowdTwistValidationError, match="Unrecognized attribute name"):
        make_client().upsert_user("a+b@c.com", {"bogus": 1})
    assert post.call_count == 0


def test_upsert_race_created_elsewhere_updates_again(wire: Any, make_client: Any) -> None:
    wire.put(USER, [NOT_FOUND, {"json": {"id": 3}}])
    taken = {"status_code": 400, "json": {"error": "input_error", "message": "email_address already taken"}}
    wire.post(CREATE, **taken)
    assert make_client().upsert_user("a+b@c.com", {"first_name": "A"}) == ("updated", {"id": 3})


def test_upsert_own_ambiguous_create_reads_back(wire: Any, make_client: Any) -> None:
    wire.put(USER, **NOT_FOUND)
    taken = {"status_code": 400, "json": {"error": "input_error", "message": "email_address already taken"}}
    wire.post(CREATE, [{"exc": read_timeout()}, taken])
    wire.get(USER, json={"id": 4})
    assert make_client().upsert_user("a+b@c.com", {"first_name": "A"}) == ("created", {"id": 4})


def test_upsert_own_ambiguous_create_still_gets_its_update_only_fields(wire: Any, make_client: Any) -> None:
    put = wire.put(USER, [NOT_FOUND, {"json": {"id": 4, "is_active": False}}])
    taken = {"status_code": 400, "json": {"error": "input_error", "message": "email_address already taken"}}
    wire.post(CREATE, [{"exc": read_timeout()}, taken])
    status = make_client().upsert_user("a+b@c.com", {"first_name": "A", "is_active": 0})
    assert status == ("created", {"id": 4, "is_active": False})
    assert put.last_request.json() == {"is_active": 0}


def test_upsert_taken_by_someone_else_raises_the_refusal(wire: Any, make_client: Any) -> None:
    wire.put("https://api.test/v2/users/T-9?id_type=third_party_id", **NOT_FOUND)
    taken = {"status_code": 400, "json": {"error": "input_error", "message": "email_address already taken"}}
    wire.post(CREATE, **taken)
    with pytest.raises(CrowdTwistValidationError, match="already taken") as info:
        make_client().upsert_user("T-9", {"email_address": "x@y.com"}, id_type="third_party_id")
    # Refused by someone else's member: PUT 404, POST taken, one more PUT (still 404), then the refusal.
    assert [r.method for r in wire.request_history] == ["PUT", "POST", "PUT"]
    assert info.value.__context__ is None  # no chained 404 (nor anything else) in the traceback


# -- credit --------------------------------------------------------------------------------------------


def test_credit_body_and_plain_success(wire: Any, make_client: Any) -> None:
    wire.post(CREDIT, json={"awarded": True})
    client = make_client()
    result = client.credit_activity(
        "a+b@c.com", "purchase", num_points=5, activity_date=1_700_000_000, extra_data={"order": "O-1"}
    )
    assert result == {"awarded": True}
    assert wire.last_request.json() == {
        "activity_id": "purchase",
        "num_points": 5,
        "activity_date": 1_700_000_000,
        "extra_data": {"order": "O-1"},
    }
    assert client.requests_sent == 1


def test_credit_is_not_resent_after_a_read_timeout(wire: Any, make_client: Any, clock: Any) -> None:
    """No blind resend: the timed-out credit may have been applied, and a resend could award twice."""
    wire.post(CREDIT, [{"exc": read_timeout()}, {"json": {"awarded": True}}])
    client = make_client()
    with pytest.raises(CrowdTwistConnectionError) as info:
        client.credit_activity("a+b@c.com", "purchase")
    assert info.value.ambiguous is True
    assert wire.call_count == 1 and client.requests_sent == 1 and clock.sleeps == []


@pytest.mark.parametrize("status", [500, 502, 503])
def test_credit_is_not_resent_after_a_5xx(wire: Any, make_client: Any, status: int) -> None:
    wire.post(CREDIT, [{"status_code": status, "text": "oops"}, {"json": {"awarded": True}}])
    client = make_client()
    with pytest.raises(CrowdTwistServerError) as info:
        client.credit_activity("a+b@c.com", "purchase")
    assert info.value.ambiguous is True and info.value.status == status
    assert wire.call_count == 1


def test_already_processed_is_its_own_ambiguous_answer(wire: Any, make_client: Any) -> None:
    """'Event already processed' names an *identical* earlier credit, not necessarily this one."""
    wire.post(CREDIT, **PROCESSED)
    client = make_client()
    with pytest.raises(CrowdTwistAlreadyProcessedError) as info:
        client.credit_activity("a+b@c.com", "purchase")
    assert info.value.ambiguous is True and info.value.status == 400
    assert "already processed" in info.value.message.lower()
    assert isinstance(info.value, CrowdTwistValidationError)  # still a 400 to code that catches those
    assert client.requests_sent == 1


def test_credit_429_before_any_ambiguity_is_retried(wire: Any, make_client: Any) -> None:
    """A 429 was certainly not applied: retried as for any call, and the credit is not ambiguous."""
    wire.post(CREDIT, [{"status_code": 429, "headers": {"Retry-After": "1"}}, {"json": {"awarded": True}}])
    client = make_client(max_retry_wait=10.0)
    assert client.credit_activity("a+b@c.com", "purchase") == {"awarded": True}
    assert wire.call_count == 2


def test_credit_ambiguous_after_a_429_stops_at_once(wire: Any, make_client: Any) -> None:
    wire.post(
        CREDIT,
        [
            {"status_code": 429, "headers": {"Retry-After": "0"}},
            {"status_code": 503},
            {"json": {"awarded": True}},
        ],
    )
    client = make_client()
    with pytest.raises(CrowdTwistServerError) as info:
        client.credit_activity("a+b@c.com", "purchase")
    assert info.value.ambiguous is True and wire.call_count == 2


def test_credit_connect_failure_uses_normal_backoff(wire: Any, make_client: Any, clock: Any) -> None:

    wire.post(CREDIT, [{"exc": refused()}, {"json": {"awarded": True}}])
    client = make_client(backoff_base=3.0, backoff_max=3.0)
    assert client.credit_activity("a+b@c.com", "purchase") == {"awarded": True}
    assert clock.sleeps == [3.0]


def test_credit_other_refusal_is_not_retried_or_ambiguous(wire: Any, make_client: Any) -> None:
    wire.post(CREDIT, status_code=400, json={"error": "input_error", "message": "Invalid activity"})
    client = make_client()
    with pytest.raises(CrowdTwistValidationError) as info:
        client.credit_activity("a+b@c.com", "nope")
    assert info.value.ambiguous is False and client.requests_sent == 1
    with pytest.raises(CrowdTwistValidationError, match="activity_id is empty"):
        client.credit_activity("a+b@c.com", "")


def test_refusal_after_ambiguous_attempt_keeps_ambiguous(wire: Any, make_client: Any) -> None:
    """Calls other than credits are retried after an ambiguous attempt; the error stays ambiguous."""
    wire.put(
        USER,
        [
            {"exc": read_timeout()},
            {"status_code": 403, "json": {"error": "forbidden", "message": "User is inactive."}},
        ],
    )
    with pytest.raises(Exception, match="User is inactive") as info:
        make_client().update_user("a+b@c.com", {"first_name": "A"})
    assert info.value.ambiguous is True


def test_list_activities_tolerates_shapes(wire: Any, make_client: Any) -> None:
    wire.get("https://api.test/v2/activities", json=[{"activity_id": "a", "title": "A", "status": "active"}])
    [activity] = make_client().list_activities()
    assert (activity.id, activity.name, activity.active) == ("a", "A", True)
    assert json.loads(json.dumps(activity.raw)) == {"activity_id": "a", "title": "A", "status": "active"}


def test_shared_between_threads_counts_every_request(wire: Any, make_client: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    wire.get("https://api.test/v2/activities", [{"status_code": 503}] + [{"json": []}] * 400)
    client = make_client()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: client.list_activities(), range(200)))
    assert results == [[]] * 200
    assert client.requests_sent == 201 == wire.call_count


def test_own_pool_is_sized_and_closed() -> None:
    from airflow_provider_crowdtwist.client import CrowdTwistClient

    from .conftest import make_config

    client = CrowdTwistClient(make_config(pool_size=17))
    assert client._transport._pool.pool.maxsize == 17  # type: ignore[attr-defined]
    closed: list[bool] = []
    client._transport.close = lambda: closed.append(True)  # type: ignore[method-assign]
    with client:
        pass
    assert closed == [True]


def test_a_given_transport_is_used(wire: Any) -> None:
    """The seam: a transport of the caller's (a fake, or the benchmark's old pool) gets every request."""
    from airflow_provider_crowdtwist.client import CrowdTwistClient

    from .conftest import FakeWire, make_config

    fake = FakeWire()
    fake.origin = "https://api.test"  # type: ignore[attr-defined]
    fake.close = lambda: None  # type: ignore[attr-defined]
    fake.get("https://api.test/v2/activities", json=[])
    with CrowdTwistClient(make_config(), transport=fake) as client:  # type: ignore[arg-type]
        client.list_activities()
    assert fake.call_count == 1 and wire.call_count == 0


def test_every_client_builds_its_limiter_from_the_config():
    from airflow_provider_crowdtwist.client.client import CrowdTwistClient
    from airflow_provider_crowdtwist.client.config import ClientConfig
    from airflow_provider_crowdtwist.client.ratelimit import RateLimiter

    config = ClientConfig(
        base_url="http://127.0.0.1:1", api_key="limiter-test-key-5d1e", requests_per_minute=600
    )
    with CrowdTwistClient(config) as client:
        assert client.rate_limiter is not None
        assert client.rate_limiter.requests_per_minute == 600
    shared = RateLimiter(60)
    with CrowdTwistClient(config, rate_limiter=shared) as client:
        assert client.rate_limiter is shared


@pytest.mark.parametrize(
    ("error", "credential"),
    [
        (CrowdTwistAuthError("Unauthorized", status=401), True),
        (CrowdTwistForbiddenError("Invalid API key", status=403), True),
        (CrowdTwistForbiddenError("invalid api_key", status=403), True),
        (CrowdTwistForbiddenError("User is inactive.", status=403), False),
        (CrowdTwistNotFoundError("Member not found", status=404), False),
    ],
)
def test_credential_failure_is_401_or_a_403_naming_the_key(error, credential):
    assert error.credential_failure is credential


def test_environment_proxy_is_resolved_once_and_used(monkeypatch: Any, wire: Any) -> None:
    """The hot path no longer asks the environment per request (it read all of os.environ twice per
    request): the proxy settings are resolved when the client is built, as Session.request would."""
    from airflow_provider_crowdtwist.client import CrowdTwistClient

    from .conftest import make_config

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    wire.get("https://api.test/v2/activities", json=[])
    with CrowdTwistClient(make_config()) as client:
        monkeypatch.delenv("HTTPS_PROXY")  # changed later: the client keeps what it resolved
        client.list_activities()
        client.list_activities()
    assert wire.call_count == 2
    assert all(r.transport.proxy == "http://proxy.test:3128" for r in wire.request_history)


def test_api_key_in_query_is_sent_but_never_shown(wire: Any, make_client: Any, caplog: Any) -> None:
    from .conftest import API_KEY

    wire.get("https://api.test/v2/users/a%40b.com", [{"status_code": 500}, {"json": {"id": 1}}])
    caplog.set_level("DEBUG")
    client = make_client(api_key_in="query")
    assert client.get_user("a@b.com") == {"id": 1}
    sent = wire.last_request
    assert sent.qs == {"id_type": ["email"], "api_key": [API_KEY]}
    assert "X-CT-Authorization" not in sent.headers
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("airflow_provider"))
    assert API_KEY not in ours and "v2/users/a%40b.com?id_type=email -> 500" in ours
