"""Queued deletion (O:UserDelete, O:UserDeletionStatus), pii=false reads, inst_username, observers."""

from __future__ import annotations

import pytest

from airflow_provider_crowdtwist.sandbox.server import SandboxServer
from tests.integration.sandbox._helpers import API_KEY_HEADER, member, raw

pytestmark = pytest.mark.integration

JSON = {**API_KEY_HEADER, "Content-Type": "application/json"}


def _delete(sandbox, uri):
    return raw(sandbox, "DELETE", uri, headers=API_KEY_HEADER)


def test_delete_is_queued_then_completed(client_for):
    with SandboxServer(deletion_lag_s=30) as server:
        client = client_for(server)
        uid = client.create_user(member("del@example.com"))["id"]
        answer = _delete(server, "/v2/users/del%40example.com?id_type=email")
        assert (answer.status_code, answer.json()) == (200, {"user_id": uid, "status": "Queued"})
        assert server.admin.member("del@example.com")["deletion_status"] == "Queued"
        status = raw(server, "GET", f"/v2/users/delete/{uid}", headers=API_KEY_HEADER).json()
        assert status == {"user_id": uid, "status": "Queued"}
        again = _delete(server, f"/v2/users/{uid}")
        assert (again.status_code, again.json()) == (
            400,
            {"error": "input_error", "message": "Unable to initiate deletion"},
        )
        server.admin.settle()
        assert server.admin.members() == []
        assert raw(server, "GET", f"/v2/users/delete/{uid}", headers=API_KEY_HEADER).json() == {
            "user_id": uid,
            "status": "Completed",
        }
        by_email = raw(
            server, "GET", "/v2/users/delete/del%40example.com?id_type=email", headers=API_KEY_HEADER
        )
        assert by_email.json()["status"] == "Completed"
        assert [d["status"] for d in server.admin.deletions()] == ["Completed"]
        gone = raw(server, "GET", "/v2/users/del%40example.com?id_type=email", headers=API_KEY_HEADER)
        assert gone.status_code == 404


def test_delete_documented_refusals(sandbox, client_for):
    client = client_for(sandbox)
    client.create_user(member("pts@example.com"))
    client.credit_activity("pts@example.com", "review")
    client.update_user("pts@example.com", {"is_active": 0})
    refused = _delete(sandbox, "/v2/users/pts%40example.com?id_type=email")
    assert (refused.status_code, refused.json()) == (
        400,
        {"error": "input_error", "message": "Member is inactive but has redeemable points"},
    )
    client.update_user("pts@example.com", {"is_active": 0, "remove_points": 1})  # wipe, then it may go
    assert _delete(sandbox, "/v2/users/pts%40example.com?id_type=email").json()["status"] == "Queued"
    for uri, message in (
        ("/v2/users/999999", "Member not found"),
        ("/v2/users/nobody%40example.com?id_type=email", "Member not found"),
        ("/v2/users/abc", "Member ID is invalid"),
        ("/v2/users/abc?id_type=id", "Member ID is invalid"),
    ):
        answer = _delete(sandbox, uri)
        assert (answer.status_code, answer.json()) == (
            404,
            {"error": "page_not_found", "message": message},
        ), uri
    for uri in ("/v2/users/delete/999999", "/v2/users/delete/abc"):
        assert raw(sandbox, "GET", uri, headers=API_KEY_HEADER).status_code == 404


def test_profile_without_pii(sandbox, client_for):
    client = client_for(sandbox)
    created = client.create_user(member("pii@example.com", third_party_id="T-9", date_of_birth=631152000))
    for uri in (f"/v2/users/{created['id']}?pii=false", "/v2/users/T-9?id_type=third_party_id&pii=false"):
        body = raw(sandbox, "GET", uri, headers=API_KEY_HEADER).json()
        assert body["id"] == created["id"]
        assert body["third_party_id"] == "T-9"
        assert not {"email_address", "first_name", "last_name", "postal_code", "date_of_birth"} & set(body)
    refused = raw(
        sandbox, "GET", "/v2/users/pii%40example.com?id_type=email&pii=false", headers=API_KEY_HEADER
    )
    assert (refused.status_code, refused.json()["error"]) == (400, "param_error")
    full = raw(sandbox, "GET", "/v2/users/pii%40example.com?id_type=email", headers=API_KEY_HEADER).json()
    assert full["email_address"] == "pii@example.com"


def test_inst_username_identifies_a_member_for_credits_only(sandbox, client_for):
    client = client_for(sandbox)
    client.create_user(member("ig@example.com", inst_username="ada.ig"))
    answer = raw(
        sandbox,
        "POST",
        "/v2/users/ada.ig/activities?id_type=inst_username",
        headers=JSON,
        data=b'{"activity_id": "review"}',
    )
    assert answer.json() == {"awarded": True}
    assert sandbox.admin.member("ig@example.com")["redeemable_points"] == 5
    read = raw(sandbox, "GET", "/v2/users/ada.ig?id_type=inst_username", headers=API_KEY_HEADER)
    assert (read.status_code, read.json()["error"]) == (400, "param_error")


def test_listeners_hear_every_member_change_and_applied_award(client_for):
    events = []
    with SandboxServer() as server:
        server.add_listener(lambda event, payload: events.append((event, payload)))
        server.add_listener(lambda event, payload: 1 / 0)  # a broken listener breaks nothing
        client = client_for(server)
        uid = client.create_user(member("obs@example.com"))["id"]
        client.update_user("obs@example.com", {"first_name": "Augusta"})
        client.credit_activity("obs@example.com", "review", extra_data={"k": 1})
        client.update_user("obs@example.com", {"is_active": 0, "remove_points": 1})
        client.delete_user("obs@example.com")
    kinds = [e for e, _ in events]
    assert kinds == ["member_changed"] * 2 + ["credit_awarded", "member_changed"] + ["member_changed"] * 2
    members = [p for e, p in events if e == "member_changed"]
    assert [m["first_name"] for m in members[:2]] == ["Ada", "Augusta"]
    assert members[2]["redeemable_points"] == 5
    assert (members[3]["is_active"], members[3]["redeemable_points"]) == (0, 0)
    assert (members[4]["id"], members[4]["deleted"]) == (uid, True)
    credit = events[2][1]
    assert (credit["user_id"], credit["activity_id"], credit["points"], credit["extra_data"]) == (
        uid,
        "review",
        5,
        {"k": 1},
    )
    assert all("password" not in p for _, p in events)
