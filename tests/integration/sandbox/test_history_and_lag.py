"""Activity history (O:UserActivityHistory) and queued awards: answered at once, applied after a lag."""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from airflow_provider_crowdtwist.sandbox.server import SandboxServer
from tests.integration.sandbox._helpers import API_KEY_HEADER, member, raw

pytestmark = pytest.mark.integration

HISTORY_FIELDS = {"activity_id", "name", "num_points", "date_created", "date_awarded", "extra_data"}


def _get(sandbox, uri):
    answer = raw(sandbox, "GET", uri, headers=API_KEY_HEADER)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_history_items_newest_first_with_extra_data_as_stored(sandbox, client_for):
    client = client_for(sandbox)
    client.create_user(member("hist@example.com"))
    extra = {"order": "o-1", "nested": {"a": [1, 2]}, "unicode": "Zo\u00eb"}
    client.credit_activity("hist@example.com", "purchase", extra_data=extra)
    client.credit_activity("hist@example.com", "review", num_points=7)
    items = _get(sandbox, "/v2/users/hist%40example.com/activity_history?id_type=email")
    assert [set(i) for i in items] == [HISTORY_FIELDS, HISTORY_FIELDS]
    assert [(i["activity_id"], i["name"], i["num_points"]) for i in items] == [
        ("review", "Write a review", 7),
        ("purchase", "Purchase", 10),
    ]
    assert items[1]["extra_data"] == extra
    assert items[0]["extra_data"] is None  # none was sent
    assert all(isinstance(i["date_created"], int) and i["date_awarded"] >= i["date_created"] for i in items)
    uid = sandbox.admin.member("hist@example.com")["id"]
    assert _get(sandbox, f"/v2/users/{uid}/activity_history") == items  # id_type defaults to id
    missing = raw(
        sandbox,
        "GET",
        "/v2/users/nobody%40example.com/activity_history?id_type=email",
        headers=API_KEY_HEADER,
    )
    assert missing.status_code == 404


def test_history_paging_in_both_envelopes(sandbox, client_for):
    client = client_for(sandbox)
    client.create_user(member("page@example.com"))
    for n in range(7):
        client.credit_activity("page@example.com", "review", extra_data={"n": n})
    uri = "/v2/users/page%40example.com/activity_history?id_type=email"
    pages = [_get(sandbox, f"{uri}&page_size=3&page_number={p}") for p in (1, 2, 3, 4)]
    assert [[i["extra_data"]["n"] for i in page] for page in pages] == [[6, 5, 4], [3, 2, 1], [0], []]
    assert len(_get(sandbox, uri)) == 7  # default page size 10
    assert _get(sandbox, f"{uri}&page_size=3&page_number=x") == pages[0]  # a bad page is page 1
    sandbox.admin.configure(history_envelope="paged")
    body = _get(sandbox, f"{uri}&page_size=3&page_number=2")
    assert [i["extra_data"]["n"] for i in body["activities"]] == [3, 2, 1]
    assert (body["paging"]["total"], body["paging"]["pages"]) == (7, 3)
    following = requests.get(body["paging"]["next_page"], headers=API_KEY_HEADER, timeout=5).json()
    assert [i["extra_data"]["n"] for i in following["activities"]] == [0]
    assert parse_qs(urlsplit(body["paging"]["prev_page"]).query) == {
        "id_type": ["email"],
        "page_size": ["3"],
        "page_number": ["1"],
    }


def test_v21_history_filters_on_dates(sandbox, client_for):
    client = client_for(sandbox)
    client.create_user(member("dates@example.com"))
    client.credit_activity("dates@example.com", "review", extra_data={"n": "old"})
    sandbox.state.history[sandbox.admin.member("dates@example.com")["id"]][0]["time"] -= 3 * 86400
    client.credit_activity("dates@example.com", "review", extra_data={"n": "new"})
    now = int(time.time())
    base = "/v2.1/users/dates%40example.com/activity_history?id_type=email"
    assert [i["extra_data"]["n"] for i in _get(sandbox, base)] == ["new", "old"]
    assert [i["extra_data"]["n"] for i in _get(sandbox, f"{base}&date_start={now - 86400}")] == ["new"]
    assert [i["extra_data"]["n"] for i in _get(sandbox, f"{base}&date_end={now - 86400}")] == ["old"]
    day = time.strftime("%Y-%m-%d", time.gmtime(now - 3 * 86400))
    assert [
        i["extra_data"]["n"] for i in _get(sandbox, f"{base}&date_start={day}&date_end={now - 86400}")
    ] == ["old"]
    bad = raw(sandbox, "GET", f"{base}&date_start=yesterday", headers=API_KEY_HEADER)
    assert (bad.status_code, bad.json()["error"]) == (400, "param_error")


def test_awards_are_queued_then_applied_after_the_lag(client_for):
    events = []
    applied = threading.Event()

    def listen(event, payload):
        events.append((event, payload))
        if event == "credit_awarded":
            applied.set()

    with SandboxServer(award_lag_s=0.6) as server:
        server.add_listener(listen)
        client = client_for(server)
        client.create_user(member("lag@example.com"))
        sent = time.time()
        assert client.credit_activity("lag@example.com", "signup", extra_data={"k": "lag-1"}) == {
            "awarded": True
        }
        # answered, but not applied: not in history, balance, or the credits view
        assert server.admin.credits() == []
        assert server.admin.member("lag@example.com")["redeemable_points"] == 0
        assert _get(server, "/v2/users/lag%40example.com/activity_history?id_type=email") == []
        pending = server.admin.pending_credits()
        assert [(p["activity_id"], p["extra_data"]) for p in pending] == [("signup", {"k": "lag-1"})]
        assert server.admin.stats()["pending_credits"] == 1
        # applied by the timer, with no request needed to notice the lag passed
        assert applied.wait(5.0)
        assert time.time() - sent >= 0.55
        credit = server.admin.credits()[0]
        assert credit["applied_at"] - credit["time"] >= 0.55
        assert server.admin.member("lag@example.com")["redeemable_points"] == 50
        history = _get(server, "/v2/users/lag%40example.com/activity_history?id_type=email")
        assert [(i["extra_data"], i["date_awarded"] >= i["date_created"]) for i in history] == [
            ({"k": "lag-1"}, True)
        ]
        awarded = [p for e, p in events if e == "credit_awarded"]
        assert [(a["activity_id"], a["points"], a["extra_data"]) for a in awarded] == [
            ("signup", 50, {"k": "lag-1"})
        ]
        # the duplicate check counts from the answer, not from the application
        client.credit_activity("lag@example.com", "review")
        server.admin.settle()  # apply now, without waiting
        assert [c["activity_id"] for c in server.admin.credits()] == ["signup", "review"]
        server.admin.wait_settled(1.0)


def test_award_for_a_member_deleted_before_it_applies_is_lost(client_for):
    with SandboxServer(award_lag_s=30) as server:
        client = client_for(server)
        client.create_user(member("late@example.com"))
        client.credit_activity("late@example.com", "review")
        client.delete_user("late@example.com")
        server.admin.settle()
        assert server.admin.credits() == []
        assert server.admin.members() == []
