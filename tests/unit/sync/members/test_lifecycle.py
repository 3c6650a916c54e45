"""sync_members with a fake client: the member state's verdicts and the lifecycle (one class at a time:
the fake stands in for ``CrowdTwistClient``; the sandbox versions are in tests/integration)."""

from __future__ import annotations

import decimal
import json
import logging
from typing import Any

import pytest

from airflow_provider_crowdtwist.client.errors import CrowdTwistNotFoundError, CrowdTwistValidationError
from airflow_provider_crowdtwist.sync.members.mapping import MemberSyncConfigError
from tests.unit.sync.members.test_sync import FakeClient, member, run


class RemovingClient(FakeClient):
    """The fake plus DELETE; ``refuse`` maps an identifier to the error its removal gets."""

    def __init__(self, refuse: dict[str, Exception] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.refuse = refuse or {}

    def update_user(self, user_id: str, fields: dict, id_type: str | None = None) -> dict:
        if fields.get("is_active") == 0 and user_id in self.refuse:
            self._record("PUT", user_id, fields)
            raise self.refuse[user_id]
        return super().update_user(user_id, fields, id_type)

    def delete_user(self, user_id: str, id_type: str | None = None) -> dict:
        self._record("DELETE", user_id, None)
        if user_id in self.refuse:
            raise self.refuse[user_id]
        with self.lock:
            self.members.pop(user_id, None)
        return {"user_id": 1, "status": "Queued"}


def methods(client: FakeClient) -> list[tuple[str, str]]:
    return sorted((m, i) for m, i, _ in client.calls)


def test_with_a_state_a_new_member_is_created_first_and_a_known_one_updated_first(tmp_path):
    client = FakeClient()
    state = tmp_path / "s.sqlite"
    run(client, [member(0), member(1)], state_path=state)
    assert methods(client) == [("POST", "m0@ex.com"), ("POST", "m1@ex.com")]
    client.calls.clear()
    summary = run(client, [member(0, last_name="New"), member(2)], state_path=state)
    assert methods(client) == [("POST", "m2@ex.com"), ("PUT", "m0@ex.com")]
    assert summary.count("updated") == 1 and summary.count("created") == 1


def test_unchanged_rows_are_not_sent_whatever_their_column_types(tmp_path):
    """Text, numbers, flags, dates and dict cells (the payload-hash path) all say "unchanged"."""
    client = FakeClient()
    rows = [
        member(
            i,
            receive_email_updates=bool(i % 2),
            gender_id=i,
            score=1.5 * i,
            custom_data={"tier": "gold", "n": decimal.Decimal("1.5")},
            date_of_birth="1990-01-02",
        )
        for i in range(20)
    ]
    run(client, rows, state_path=tmp_path / "s.sqlite")
    client.calls.clear()
    summary = run(client, rows, state_path=tmp_path / "s.sqlite")
    assert summary.count("unchanged") == 20 and client.calls == []
    rows[3]["custom_data"] = {"tier": "silver", "n": decimal.Decimal("1.5")}
    rows[4]["score"] = 99.0
    summary = run(client, rows, state_path=tmp_path / "s.sqlite")
    assert summary.count("updated") == 2 and summary.count("unchanged") == 18


def test_full_refresh_sends_every_row_and_a_new_api_key_does_too(tmp_path):
    client = FakeClient()
    rows = [member(i) for i in range(10)]
    state = tmp_path / "s.sqlite"
    run(client, rows, state_path=state)
    client.calls.clear()
    assert run(client, rows, state_path=state, full_refresh=True).count("updated") == 10
    assert run(client, rows, state_path=state).count("unchanged") == 10
    client.config.api_key = "rotated-key"
    assert run(client, rows, state_path=state).count("updated") == 10
    assert run(client, rows, state_path=state).count("unchanged") == 10


def test_duplicates_still_resolve_last_wins_with_a_state(tmp_path):
    client = FakeClient()
    state = tmp_path / "s.sqlite"
    run(client, [member(0), member(1)], state_path=state)
    client.calls.clear()
    summary = run(
        client,
        [member(0, last_name="Old"), member(0), member(1), member(1, last_name="New")],
        state_path=state,
    )
    assert summary.count("skipped") == 2 and summary.count("unchanged") == 1 and summary.count("updated") == 1
    assert (
        client.members["m1@ex.com"]["last_name"] == "New" and client.members["m0@ex.com"]["last_name"] == "L"
    )


def test_a_rejected_row_keeps_its_member_in_the_source(tmp_path):
    """A member whose row is bad has not left the source: never removed for a typo."""
    client = RemovingClient()
    state = tmp_path / "s.sqlite"
    run(client, [member(0), member(1)], state_path=state)
    summary = run(
        client,
        [member(0), member(1, first_name="Bad<>")],
        state_path=state,
        on_removed="delete",
        max_removed_ratio=1.0,
    )
    assert summary.count("rejected") == 1 and summary.count("deleted") == 0 and summary.rows_removed == 0


def test_removal_failures_are_reported_and_a_404_drops_the_member_from_the_state(tmp_path, caplog):
    refuse = {
        "m1@ex.com": CrowdTwistValidationError(
            "Member is inactive but has redeemable points", status=400, code="input_error"
        ),
        "m2@ex.com": CrowdTwistNotFoundError("Member not found", status=404, code="page_not_found"),
    }
    client = RemovingClient(refuse=refuse)
    state = tmp_path / "s.sqlite"
    rejects = tmp_path / "rejects.jsonl"
    run(client, [member(i) for i in range(4)], state_path=state)
    with caplog.at_level(logging.INFO):
        summary = run(
            client,
            [member(0)],
            state_path=state,
            on_removed="delete",
            max_removed_ratio=1.0,
            rejects_path=str(rejects),
        )
    assert summary.count("deleted") == 1 and summary.count("rejected") == 2
    assert summary.rows_removed == 3 and summary.rows_read == 1 and summary.is_consistent()
    lines = {x["identifier"]: x for x in map(json.loads, rejects.read_text().splitlines())}
    assert "redeemable points" in lines["m1@ex.com"]["message"]
    assert lines["m1@ex.com"]["message"].startswith("member m1@ex.com (left the source):")
    assert "rows removed from the source" in caplog.text and "deleted" in caplog.text
    client.calls.clear()
    again = run(client, [member(0)], state_path=state, on_removed="delete", max_removed_ratio=1.0)
    assert methods(client) == [("DELETE", "m1@ex.com")]  # m2 is gone: no request; m1 is tried again
    assert again.rows_removed == 1


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"on_removed": "deactivate"}, "on_removed"),
        ({"full_refresh": True}, "full_refresh"),
        ({"on_removed": "delete", "remove_points_on_deactivate": True, "state_path": "x"}, "remove_points"),
        ({"max_removed_ratio": 1.5, "state_path": "x"}, "max_removed_ratio"),
        ({"on_removed": "purge", "state_path": "x"}, "on_removed"),
    ],
)
def test_lifecycle_settings_are_checked_before_the_first_request(settings, field):
    client = FakeClient()
    with pytest.raises(MemberSyncConfigError, match=field):
        run(client, [member(0)], **settings)
    assert client.calls == []


def test_a_state_needs_a_secret_to_key_its_hashes(tmp_path):
    client = FakeClient()
    client.config.api_key = None
    with pytest.raises(MemberSyncConfigError, match="state_path needs a secret"):
        run(client, [member(0)], state_path=tmp_path / "s.sqlite")
    assert run(client, [member(0)], state_path=tmp_path / "s.sqlite", state_key="k").count("created") == 1
