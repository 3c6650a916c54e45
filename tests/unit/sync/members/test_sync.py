"""sync_members with a fake client: modes, outcomes, abort on 401, duplicates, dry run, state, secrets.

The fake stands in for the one class ``CrowdTwistClient``; real HTTP is in tests/integration.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_crowdtwist.client.errors import (
    CrowdTwistAuthError,
    CrowdTwistConnectionError,
    CrowdTwistForbiddenError,
    CrowdTwistNotFoundError,
    CrowdTwistServerError,
    CrowdTwistValidationError,
)
from airflow_provider_crowdtwist.client.redact import Redactor
from airflow_provider_crowdtwist.sync.members.mapping import MemberSyncConfigError
from airflow_provider_crowdtwist.sync.members.sync import MemberSyncConfig, sync_members
from airflow_provider_crowdtwist.sync.outcomes import OUTCOME_ORDER
from airflow_provider_crowdtwist.sync.summary import SyncAbortedError, ThresholdExceededError

API_KEY = "live-key-9f8e7d6c5b4a"
PASSWORD = "Hunter2-very-secret"


@dataclass
class FakeConfig:
    id_type: str = "email"
    api_key: str | None = API_KEY
    hmac_private_key: str | None = None


class FakeClient:
    """Members by identifier; ``behaviour(method, identifier)`` may raise to simulate answers."""

    def __init__(
        self, behaviour: Callable[[str, str], None] | None = None, existing: tuple[str, ...] = ()
    ) -> None:
        self.config = FakeConfig()
        self.members: dict[str, dict[str, Any]] = {m: {"email_address": m} for m in existing}
        self.calls: list[tuple[str, str, dict[str, Any] | None]] = []
        self.behaviour = behaviour
        self.lock = threading.Lock()
        self.rate_limiter = None
        self.redact = Redactor([API_KEY]).redact  # a stand-in for the client's own redaction

    @property
    def requests_sent(self) -> int:
        return len(self.calls)

    def _record(self, method: str, identifier: str, body: Any) -> None:
        with self.lock:
            self.calls.append((method, identifier, dict(body) if body is not None else None))
        if self.behaviour:
            self.behaviour(method, identifier)

    def update_user(self, user_id: str, fields: dict, id_type: str | None = None) -> dict:
        assert id_type == "email"
        self._record("PUT", user_id, fields)
        with self.lock:
            if user_id not in self.members:
                raise CrowdTwistNotFoundError("User does not exist.", status=404, code="page_not_found")
            self.members[user_id].update(fields)
        return {}

    def create_user(self, fields: dict) -> dict:
        email = fields["email_address"]
        self._record("POST", email, fields)
        with self.lock:
            if email in self.members:
                raise CrowdTwistValidationError("email_address already taken", status=400, code="input_error")
            self.members[email] = dict(fields)
        return {}

    def get_user(self, user_id: str, id_type: str | None = None, *, pii: bool = True) -> dict:
        self._record("GET", user_id, None)
        if user_id not in self.members:
            raise CrowdTwistNotFoundError("User does not exist.", status=404, code="page_not_found")
        return dict(self.members[user_id])


def member(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "user_id": f"m{i}@ex.com",
        "first_name": f"F{i}",
        "last_name": "L",
        "postal_code": "02134",
        **extra,
    }


def run(client, rows, **config) -> Any:
    config.setdefault("max_workers", 4)
    return sync_members(
        client, [pd.DataFrame(rows)], MemberSyncConfig(**config), logging.getLogger("test.sync")
    )


def counts(summary) -> dict[str, int]:
    return {o.value: summary.count(o) for o in OUTCOME_ORDER if summary.count(o)}


def test_upsert_creates_new_and_updates_existing_members():
    client = FakeClient(existing=("m0@ex.com",))
    summary = run(client, [member(0), member(1)])
    assert counts(summary) == {"created": 1, "updated": 1}
    assert summary.rows_read == 2 and summary.is_consistent()
    methods = sorted((m, i) for m, i, _ in client.calls)
    assert methods == [("POST", "m1@ex.com"), ("PUT", "m0@ex.com"), ("PUT", "m1@ex.com")]
    assert summary.requests_sent == 3
    assert client.members["m1@ex.com"] == {
        "email_address": "m1@ex.com",
        "first_name": "F1",
        "last_name": "L",
        "postal_code": "02134",
    }


@pytest.mark.parametrize("mode", ["upsert", "insert"])
def test_new_member_gets_the_update_only_fields_with_a_put_after_the_post(mode, tmp_path):
    """is_active=0 on a new member is not dropped: the create does not take it, so a PUT follows."""
    client = FakeClient()
    state = tmp_path / "state.db"
    summary = run(client, [member(1, is_active=0, remove_points=1)], mode=mode, state_path=str(state))
    assert counts(summary) == {"created": 1}
    posts = [body for m, _, body in client.calls if m == "POST"]
    assert posts and not {"is_active", "remove_points"} & posts[0].keys()
    assert client.calls[-1] == ("PUT", "m1@ex.com", {"is_active": 0, "remove_points": 1})
    assert client.members["m1@ex.com"]["is_active"] == 0
    # With state_path the row is recorded only because the PUT landed: a rerun sends nothing.
    client.calls.clear()
    assert counts(
        run(client, [member(1, is_active=0, remove_points=1)], mode=mode, state_path=str(state))
    ) == {"unchanged": 1}


def test_a_failed_put_after_the_post_is_not_reported_created(tmp_path):
    def behaviour(method: str, identifier: str) -> None:
        if method == "PUT" and identifier == "m1@ex.com" and any(m == "POST" for m, _, _ in client.calls):
            raise CrowdTwistServerError("Internal error", status=500, code="internal_error")

    client = FakeClient(behaviour)
    rejects = tmp_path / "r.jsonl"
    with pytest.raises(ThresholdExceededError):
        run(client, [member(1, is_active=0)], rejects_path=str(rejects))
    [record] = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert record["outcome"] == "failed"
    assert "member created, but the update that sets is_active failed" in record["message"]


def test_documented_conversions_are_logged_once_per_run(caplog):
    client = FakeClient()
    rows = [
        {
            "user_id": f"z{i}@ex.com",
            "first_name": "O'Neil",
            "last_name": "L",
            "postal_code": 2134,
            "country_code": "US",
            "city_name": "Boston",
        }
        for i in range(5)
    ]
    with caplog.at_level(logging.INFO, logger="test.sync"):
        summary = run(client, rows)
    assert counts(summary) == {"created": 5}
    notes = [r.getMessage() for r in caplog.records if "Documented conversion" in r.getMessage()]
    assert len(notes) == 2  # one line per conversion, not one per row
    assert any(
        n.startswith("Documented conversion (docs/contract.md): 5 row(s) had a numeric") for n in notes
    )
    assert client.members["z0@ex.com"]["postal_code"] == "02134"
    assert (
        "country_code" not in client.members["z0@ex.com"] and "city_name" not in client.members["z0@ex.com"]
    )


def test_second_run_is_one_put_per_row():
    client = FakeClient()
    rows = [member(i) for i in range(30)]
    run(client, rows)
    client.calls.clear()
    summary = run(client, rows)
    assert counts(summary) == {"updated": 30}
    assert [m for m, _, _ in client.calls] == ["PUT"] * 30


def test_insert_email_taken_is_rejected_not_a_crash(tmp_path):
    client = FakeClient(existing=("m0@ex.com",))
    summary = run(client, [member(0), member(1)], mode="insert", rejects_path=str(tmp_path / "r.jsonl"))
    assert counts(summary) == {"created": 1, "rejected": 1}
    assert all(m == "POST" for m, _, _ in client.calls)
    record = json.loads((tmp_path / "r.jsonl").read_text())
    assert record["row_number"] == 1 and record["identifier"] == "m0@ex.com"
    assert record["error_code"] == "input_error" and "already taken" in record["message"]


def test_update_mode_404_is_rejected_member_not_found():
    client = FakeClient(existing=("m0@ex.com",))
    summary = run(client, [member(0), member(1)], mode="update")
    assert counts(summary) == {"updated": 1, "rejected": 1}
    assert not any(m == "POST" for m, _, _ in client.calls)


def test_upsert_404_without_create_fields_is_rejected_without_a_post(tmp_path):
    client = FakeClient()
    summary = run(
        client,
        [{"user_id": "new@ex.com", "first_name": "A"}],
        rejects_path=str(tmp_path / "r.jsonl"),
        fail_when_nothing_landed=False,  # this one row is all there is
    )
    assert counts(summary) == {"rejected": 1}
    assert [m for m, _, _ in client.calls] == ["PUT"]
    record = json.loads((tmp_path / "r.jsonl").read_text())
    assert record["error_code"] == "create_requirements"
    assert "last_name is required" in record["message"]


def test_upsert_404_without_a_location_is_sent_and_crowdtwists_answer_is_the_outcome(tmp_path):
    """OPEN: whether a create needs a location. The POST is sent; CrowdTwist's refusal is the reason."""

    def strict(method: str, identifier: str) -> None:
        if method == "POST":
            raise CrowdTwistValidationError(
                "US zip code or country/city combo is required", status=400, code="input_error"
            )

    row = {"user_id": "new@ex.com", "first_name": "A", "last_name": "B"}
    rejects = tmp_path / "r.jsonl"
    # one row, refused under the strict reading: its outcome is the point, not the run's status
    summary = run(FakeClient(strict), [row], rejects_path=str(rejects), fail_when_nothing_landed=False)
    assert counts(summary) == {"rejected": 1} and summary.requests_sent == 2
    record = json.loads(rejects.read_text())
    assert record["message"] == "row 1: US zip code or country/city combo is required"
    assert (record["error_code"], record["status"]) == ("input_error", 400)
    lenient = FakeClient()  # the 2026-04 release's reading: the member is created
    assert counts(run(lenient, [row])) == {"created": 1}
    assert [m for m, _, _ in lenient.calls] == ["PUT", "POST"]


def test_post_already_taken_after_404_falls_back_to_one_put():
    # Our own earlier POST landed without an answer: the member exists although the PUT said 404.
    client = FakeClient()
    state = {"first_put": True}

    def behaviour(method: str, identifier: str) -> None:
        if method == "PUT" and state["first_put"]:
            state["first_put"] = False
            client.members[identifier] = {"email_address": identifier}
            raise CrowdTwistNotFoundError("User does not exist.", status=404, code="page_not_found")

    client.behaviour = behaviour
    summary = run(client, [member(5)], max_workers=1)
    assert counts(summary) == {"updated": 1}
    assert [m for m, _, _ in client.calls] == ["PUT", "POST", "PUT"]
    assert client.members["m5@ex.com"]["first_name"] == "F5"


@pytest.mark.parametrize(
    ("error", "outcome", "code"),
    [
        (
            CrowdTwistForbiddenError("User is inactive.", status=403, code="forbidden"),
            "rejected",
            "forbidden",
        ),
        (
            CrowdTwistValidationError("Unrecognized attribute name", status=400, code="input_error"),
            "rejected",
            "input_error",
        ),
        (CrowdTwistServerError("Service Unavailable", status=503, code=None, ambiguous=True), "failed", None),
        (CrowdTwistConnectionError("connection dropped", ambiguous=True), "failed", None),
        (RuntimeError("library bug"), "failed", "internal"),
    ],
)
def test_errors_map_to_outcomes(tmp_path, error, outcome, code):
    def behaviour(method: str, identifier: str) -> None:
        if identifier == "m1@ex.com":
            raise error

    client = FakeClient(behaviour, existing=("m0@ex.com", "m1@ex.com"))
    config = {"rejects_path": str(tmp_path / "r.jsonl"), "max_failed_rows": 5}
    summary = run(client, [member(0), member(1)], **config)
    assert counts(summary) == {"updated": 1, outcome: 1}
    record = json.loads((tmp_path / "r.jsonl").read_text())
    assert record["outcome"] == outcome and record["row_number"] == 2
    assert record["error_code"] == code
    assert record["message"].startswith("row 2: ")


def test_default_threshold_fails_after_writing_the_report(tmp_path):
    def behaviour(method: str, identifier: str) -> None:
        if identifier == "m3@ex.com":
            raise CrowdTwistServerError("Service Unavailable", status=503)

    client = FakeClient(behaviour, existing=tuple(f"m{i}@ex.com" for i in range(5)))
    with pytest.raises(ThresholdExceededError, match="1 row\\(s\\) failed") as info:
        run(client, [member(i) for i in range(5)], rejects_path=str(tmp_path / "r.jsonl"))
    assert counts(info.value.summary) == {"updated": 4, "failed": 1}
    assert info.value.summary.rejects_written == 1
    assert (tmp_path / "r.jsonl").read_text().count("\n") == 1


def test_rejected_rows_are_tolerated_by_default():
    summary = run(FakeClient(), [member(0), {"user_id": "bad-email"}])
    assert counts(summary) == {"created": 1, "rejected": 1}


def test_401_aborts_early_and_accounts_for_every_row(tmp_path, caplog):
    def behaviour(method: str, identifier: str) -> None:
        raise CrowdTwistAuthError("Unauthorized", status=401, code="unauthorized")

    client = FakeClient(behaviour)
    rows = [member(i) for i in range(500)]
    with caplog.at_level(logging.INFO), pytest.raises(SyncAbortedError, match="401") as info:
        run(client, rows, max_workers=4, rejects_path=str(tmp_path / "r.jsonl"))
    summary = info.value.summary
    assert summary.rows_read == 500 and summary.is_consistent()
    assert summary.count("failed") == 500
    assert len(client.calls) <= 2 * 4 + 1  # stopped instead of burning 500 requests
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert len(lines) == 500
    assert sum("not sent" in json.loads(x)["message"] for x in lines) >= 490
    assert summary.aborted and "401" in summary.aborted


def test_duplicates_last_row_wins_and_others_are_skipped():
    client = FakeClient()
    rows = [
        member(1, first_name="Old"),
        member(2),
        member(1, first_name="Mid"),
        {**member(1), "user_id": "M1@EX.COM", "first_name": "New"},
    ]
    summary = run(client, rows)
    assert counts(summary) == {"created": 2, "skipped": 2}
    posts = [body for m, _, body in client.calls if m == "POST"]
    assert len(posts) == 2
    assert {
        "email_address": "M1@EX.COM",
        "first_name": "New",
        "last_name": "L",
        "postal_code": "02134",
    } in posts


def test_dry_run_sends_no_writes_and_reports_what_would_happen(caplog):
    client = FakeClient(existing=("m0@ex.com",))
    with caplog.at_level(logging.INFO, logger="test.sync"):
        summary = run(
            client,
            [member(0), member(1), {"user_id": "x@ex.com"}, member(3, password=PASSWORD)],
            dry_run=True,
        )
    assert {m for m, _, _ in client.calls} == {"GET"}
    assert counts(summary) == {"created": 2, "updated": 1, "rejected": 1}
    assert summary.dry_run and summary.to_dict()["dry_run"] is True
    assert "would send" in caplog.text
    assert PASSWORD not in caplog.text


def test_secrets_never_reach_logs_or_rejects(tmp_path, caplog):
    def behaviour(method: str, identifier: str) -> None:
        raise CrowdTwistValidationError(
            f"bad password {PASSWORD} for key {API_KEY}", status=400, code="input_error"
        )

    client = FakeClient(behaviour, existing=("m0@ex.com",))
    with (
        caplog.at_level(logging.DEBUG),
        pytest.raises(ThresholdExceededError, match="nothing landed") as info,
    ):
        run(client, [member(0, password=PASSWORD)], rejects_path=str(tmp_path / "r.jsonl"))
    summary = info.value.summary
    assert PASSWORD not in str(info.value) and API_KEY not in str(info.value)
    text = (tmp_path / "r.jsonl").read_text()
    for secret in (PASSWORD, API_KEY):
        assert secret not in text
        assert secret not in caplog.text
        assert secret not in json.dumps(summary.to_dict())
    assert json.loads(text)["payload"]["password"] == "***"


def test_configuration_errors_fail_before_the_first_request():
    client = FakeClient()
    with pytest.raises(MemberSyncConfigError, match="favourite_colour"):
        run(client, [member(0)], field_mapping={"first_name": "favourite_colour"})
    with pytest.raises(MemberSyncConfigError, match="id_column 'email'"):
        run(client, [member(0)], id_column="email")
    with pytest.raises(MemberSyncConfigError, match="max_workers"):
        run(client, [member(0)], max_workers=0)
    with pytest.raises(MemberSyncConfigError, match="unmapped_columns='error'"):
        run(client, [member(0, shoe_size=9)], unmapped_columns="error")
    assert client.calls == []


def test_id_type_id_upsert_never_creates():
    client = FakeClient()
    client.config.id_type = "id"

    def update_user(user_id, fields, id_type=None):
        client._record("PUT", user_id, fields)
        raise CrowdTwistNotFoundError("User does not exist.", status=404, code="page_not_found")

    client.update_user = update_user
    summary = run(client, [{"user_id": 100001, "first_name": "A"}], fail_when_nothing_landed=False)
    assert counts(summary) == {"rejected": 1}
    assert [m for m, _, _ in client.calls] == ["PUT"]


def test_state_path_skips_unchanged_rows(tmp_path):
    client = FakeClient()
    state = str(tmp_path / "state.sqlite")
    rows = [member(i) for i in range(10)]
    assert counts(run(client, rows, state_path=state)) == {"created": 10}
    client.calls.clear()
    rows[3]["first_name"] = "Changed"
    summary = run(client, rows, state_path=state)
    assert counts(summary) == {"updated": 1, "unchanged": 9}
    assert [(m, i) for m, i, _ in client.calls] == [("PUT", "m3@ex.com")]


def test_many_chunks_and_progress(caplog):
    client = FakeClient()
    chunks = [pd.DataFrame([member(i) for i in range(start, start + 50)]) for start in range(0, 200, 50)]
    config = MemberSyncConfig(max_workers=8, progress_interval=0.0001)
    with caplog.at_level(logging.INFO, logger="test.sync"):
        summary = sync_members(client, iter(chunks), config, logging.getLogger("test.sync"))
    assert counts(summary) == {"created": 200}
    assert "Progress: " in caplog.text and "/200 rows" in caplog.text and "ETA" in caplog.text
    assert "CrowdTwist member sync" in caplog.text  # the final table


_cell = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.sampled_from(["a@b.co", "c@d.co", "02134", "1990-01-01", "K1A 0B1"]),
)
_fate = st.sampled_from(["ok", "404", "403", "400", "503", "conn", "bug"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {
                "user_id": _cell,
                "first_name": _cell,
                "last_name": _cell,
                "postal_code": _cell,
                "date_of_birth": _cell,
                "extra": _cell,
            }
        ),
        max_size=25,
    ),
    fates=st.dictionaries(st.sampled_from(["a@b.co", "c@d.co"]), _fate),
    mode=st.sampled_from(["upsert", "insert", "update"]),
)
def test_property_every_row_gets_exactly_one_outcome(rows, fates, mode):
    errors = {
        "404": CrowdTwistNotFoundError("User does not exist.", status=404),
        "403": CrowdTwistForbiddenError("User is inactive.", status=403),
        "400": CrowdTwistValidationError("Unrecognized attribute name", status=400),
        "503": CrowdTwistServerError("Service Unavailable", status=503),
        "conn": CrowdTwistConnectionError("dropped"),
        "bug": KeyError("x"),
    }

    def behaviour(method: str, identifier: str) -> None:
        fate = fates.get(identifier.lower(), "ok")
        if fate != "ok":
            raise errors[fate]

    client = FakeClient(behaviour)
    frame = pd.DataFrame(
        rows, columns=["user_id", "first_name", "last_name", "postal_code", "date_of_birth", "extra"]
    )
    config = MemberSyncConfig(mode=mode, max_workers=3, max_failed_ratio=1.0, fail_when_nothing_landed=False)
    summary = sync_members(client, [frame.astype(object)], config, logging.getLogger("test.prop"))
    assert summary.rows_read == len(rows)
    assert summary.is_consistent()


def test_stop_event_ends_the_sync_and_reports_unsent_rows(tmp_path):
    stop = threading.Event()

    def behaviour(method: str, identifier: str) -> None:
        if identifier == "m20@ex.com":
            stop.set()  # the operator's on_kill, from another thread

    client = FakeClient(behaviour)
    config = MemberSyncConfig(max_workers=2, stop_event=stop, rejects_path=str(tmp_path / "r.jsonl"))
    with pytest.raises(SyncAbortedError, match="stopped") as info:
        sync_members(client, [pd.DataFrame([member(i) for i in range(300)])], config, logging.getLogger("t"))
    summary = info.value.summary
    assert summary.is_consistent() and summary.rows_read == 300
    assert summary.count("created") >= 20 and summary.count("failed") > 200
    assert len(client.calls) < 2 * 40


def test_first_load_learns_to_post_first_about_one_request_per_row():
    """A new program: after a short warm-up the upsert POSTs first instead of PUT 404 + POST."""
    client = FakeClient()
    summary = run(client, [member(i) for i in range(200)], max_workers=1)
    assert counts(summary) == {"created": 200}
    puts = [m for m, _, _ in client.calls].count("PUT")
    assert 0 < puts <= 20  # only the warm-up rows tried PUT first
    assert summary.requests_sent == 200 + puts
    assert all(client.members[f"m{i}@ex.com"]["first_name"] == f"F{i}" for i in range(200))


def test_upsert_order_turns_back_to_put_first_when_members_exist():
    client = FakeClient(existing=tuple(f"m{i}@ex.com" for i in range(100, 200)))
    rows = [member(i) for i in range(200)]  # 100 new, then 100 existing
    summary = run(client, rows, max_workers=1)
    assert counts(summary) == {"created": 100, "updated": 100}
    methods = [m for m, _, _ in client.calls]
    assert methods[-80:] == ["PUT"] * 80  # back to one PUT a row
    assert len(methods) < 240  # instead of 300 with PUT first throughout
    assert all(client.members[f"m{i}@ex.com"]["first_name"] == f"F{i}" for i in range(200))


def test_upsert_order_only_learns_for_email_identifiers():
    from airflow_provider_crowdtwist.sync.members.send import UpsertOrder

    email = UpsertOrder(enabled=True)
    other = UpsertOrder(enabled=False)
    for _ in range(50):
        email.observe(was_new=True)
        other.observe(was_new=True)
    assert email.create_first and not other.create_first
    for _ in range(50):
        email.observe(was_new=False)
    assert not email.create_first


@pytest.mark.parametrize(
    ("error", "aborts"),
    [
        (CrowdTwistForbiddenError("Invalid API key", status=403, code="forbidden"), True),
        (CrowdTwistForbiddenError("User is inactive.", status=403, code="forbidden"), False),
    ],
)
def test_a_403_naming_the_key_aborts_and_an_inactive_member_is_a_row_problem(tmp_path, error, aborts):
    def behaviour(method: str, identifier: str) -> None:
        raise error

    client = FakeClient(behaviour, existing=tuple(f"m{i}@ex.com" for i in range(50)))
    rows = [member(i) for i in range(50)]
    if aborts:
        with pytest.raises(SyncAbortedError, match="403") as info:
            run(client, rows, max_workers=2)
        assert info.value.summary.count("failed") == 50 and info.value.summary.is_consistent()
        assert len(client.calls) <= 2 * 2 + 1
    else:
        # every row rejected: the run fails (nothing landed), but it is not an abort
        with pytest.raises(ThresholdExceededError, match="nothing landed") as rejected:
            run(client, rows, max_workers=2)
        summary = rejected.value.summary
        assert summary.count("rejected") == 50 and summary.aborted is None and summary.status == "failed"
