"""The corrected contract end to end, under every reading of every OPEN point (issue 11).

Each test that takes ``sandbox_reading`` runs once per reading in ``tests/readings.py`` (the sandbox is
switched at runtime; the client is configured as a user would for that reading, e.g. the HMAC unit).
The truth is read from the sandbox's own admin views, field for field, never from what the engine says.
"""

from __future__ import annotations

import json
import logging
import pathlib
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from airflow_provider_crowdtwist.client.errors import (
    CrowdTwistDeletionNotFoundError,
    CrowdTwistDeletionRefusedError,
)
from airflow_provider_crowdtwist.sync.credits.ledger import CreditLedger
from airflow_provider_crowdtwist.sync.credits.sync import CreditSyncConfig, sync_credits
from airflow_provider_crowdtwist.sync.members.sync import MemberSyncConfig, sync_members
from airflow_provider_crowdtwist.sync.sources import iter_chunks
from airflow_provider_crowdtwist.sync.summary import SyncAbortedError
from tests.readings import readings_for

pytestmark = pytest.mark.integration
LOG = logging.getLogger("test.contract")

# ---------------------------------------------------------------------------------------- members


def warehouse_chunks() -> list[pd.DataFrame]:
    """A realistic member table, in two chunks as a SQL read would give them.

    The first chunk comes from a table whose ZIP column is an INTEGER (02134 stored as 2134, ZIP+4
    021341234 as 21341234), with country_code US and a city; the second has text ZIPs (ZIP+4 with and
    without the hyphen), a Canadian and a British member, and a new member created inactive.
    """
    integer_zips = pd.DataFrame(
        {
            "user_id": ["oneil@example.com", "darcy@example.com", "ohara@example.com", "plus4@example.com"],
            "first_name": ["Siobhan", "Mary-Kate", "Se\u00e1n", "Zip"],
            "last_name": ["O'Neil", "D'Arcy", "O\u2019Hara", "Plus-Four"],
            "postal_code": [2134, 501, 90210, 21341234],
            "country_code": ["US", "us", "US", "US"],
            "city_name": ["Boston", "Holtsville", "Beverly Hills", "Boston"],
        }
    )
    assert integer_zips["postal_code"].dtype.kind == "i"  # the column really is numeric
    text_zips = pd.DataFrame(
        {
            "user_id": ["hyphen@example.com", "nohyphen@example.com", "canada@example.com", "uk@example.com"],
            "first_name": ["Anne-Marie", "D'Angelo", "Ren\u00e9e", "Nigel"],
            "last_name": ["O'Brien", "Smith Jr.", "L'\u00c9cuyer", "Ffoulkes-Smythe"],
            "postal_code": ["02134-1234", "021341234", "K1A 0B1", None],
            "country_code": ["US", None, "CA", "GB"],
            "city_name": [None, None, None, "London"],
            "is_active": [1, 1, 1, 0],
        }
    )
    return [integer_zips, text_zips]


#: What CrowdTwist must hold for each member afterwards (absent keys must be absent).
EXPECTED: dict[str, dict[str, Any]] = {
    "oneil@example.com": {"first_name": "Siobhan", "last_name": "O'Neil", "postal_code": "02134"},
    "darcy@example.com": {"first_name": "Mary-Kate", "last_name": "D'Arcy", "postal_code": "00501"},
    "ohara@example.com": {"first_name": "Se\u00e1n", "last_name": "O\u2019Hara", "postal_code": "90210"},
    "plus4@example.com": {"first_name": "Zip", "last_name": "Plus-Four", "postal_code": "021341234"},
    "hyphen@example.com": {"first_name": "Anne-Marie", "last_name": "O'Brien", "postal_code": "02134-1234"},
    "nohyphen@example.com": {"first_name": "D'Angelo", "last_name": "Smith Jr.", "postal_code": "021341234"},
    "canada@example.com": {
        "first_name": "Ren\u00e9e",
        "last_name": "L'\u00c9cuyer",
        "postal_code": "K1A 0B1",
        "country_code": "CA",
    },
    "uk@example.com": {
        "first_name": "Nigel",
        "last_name": "Ffoulkes-Smythe",
        "country_code": "GB",
        "city_name": "London",
        "is_active": 0,
    },
}
US_MEMBERS = [e for e, v in EXPECTED.items() if "country_code" not in v]


def assert_sandbox_holds_the_table(admin: Any) -> None:
    members = {m["email_address"]: m for m in admin.members()}
    assert set(members) == set(EXPECTED)
    for email, fields in EXPECTED.items():
        stored = members[email]
        for name, value in fields.items():
            assert stored.get(name) == value, (email, name, stored.get(name), value)
        if "is_active" not in fields:
            assert stored.get("is_active", 1) == 1, email
    for email in US_MEMBERS:  # sent with postal_code only
        assert members[email].get("country_code") is None and members[email].get("city_name") is None


def test_member_table_syncs_with_no_pre_send_rejection(sandbox_reading: Any, tmp_path: pathlib.Path) -> None:
    """The done-when table: apostrophes, ZIP+4 without hyphen, integer ZIPs, country_code US."""
    client = sandbox_reading.client()
    rejects = tmp_path / "rejects.jsonl"
    state = tmp_path / "state.db"
    config = MemberSyncConfig(max_workers=4, rejects_path=str(rejects), state_path=str(state))
    summary = sync_members(client, warehouse_chunks(), config, LOG)
    assert summary.counts == {"created": 8} or {k: v for k, v in summary.counts.items() if v} == {
        "created": 8
    }
    assert summary.rejects_written == 0 and (not rejects.exists() or rejects.read_text() == "")
    assert_sandbox_holds_the_table(sandbox_reading.sandbox.admin)

    # Rerun with state: nothing changed, nothing sent. Without state: one PUT a row, same end state.
    again = sync_members(client, warehouse_chunks(), config, LOG)
    assert again.count("unchanged") == 8 and again.requests_sent == 0
    plain = sync_members(client, warehouse_chunks(), MemberSyncConfig(max_workers=4), LOG)
    assert plain.count("updated") == 8 and plain.count("rejected") == 0
    assert_sandbox_holds_the_table(sandbox_reading.sandbox.admin)


@pytest.fixture(params=readings_for("location on create"), ids=lambda r: r.name)
def location_reading(request: pytest.FixtureRequest, sandbox: Any) -> Iterator[Any]:
    """A location required on create (O:UserCreate, the baseline) and optional (the 2026-04 release)."""
    yield from switched(request, sandbox)


@pytest.mark.parametrize("mode", ["upsert", "insert"])
def test_a_create_without_a_location_is_sent_and_answered_by_crowdtwist(
    location_reading: Any, sandbox: Any, client_for: Any, tmp_path: pathlib.Path, mode: str
) -> None:
    """OPEN: a location on create. Never refused before sending; CrowdTwist's answer is the outcome.

    Strict: the sandbox answers 400 with CrowdTwist's message and the row is ``rejected`` with it.
    Lenient: the member is created. Under both, a malformed location that is given is still refused
    (before sending where a documented rule proves it: a domestic postal code that is no US ZIP), and
    a missing last name still is.
    """
    lenient = location_reading.name == "location_optional"
    rows = pd.DataFrame(
        [
            {"user_id": "nowhere@example.com", "first_name": "No", "last_name": "Where"},
            {
                "user_id": "badzip@example.com",
                "first_name": "Bad",
                "last_name": "Zip",
                "postal_code": "ABCDE",
            },
            {"user_id": "nocity@example.com", "first_name": "No", "last_name": "City", "country_code": "GB"},
            {"user_id": "noname@example.com", "first_name": "No", "last_name": None, "postal_code": "02134"},
        ]
    )
    rejects = tmp_path / "rejects.jsonl"
    with client_for(sandbox) as client:
        summary = sync_members(
            client,
            [rows],
            # every row is refused under the strict reading: the rows' outcomes are the point here
            MemberSyncConfig(
                max_workers=2, mode=mode, rejects_path=str(rejects), fail_when_nothing_landed=False
            ),
            LOG,
        )
    lines = {r["row_number"]: r for r in map(json.loads, rejects.read_text().splitlines())}
    # sent: the row without a location, and the country without a city (a location given, but not
    # malformed by any documented rule: under the lenient reading its city may default to 'unknown')
    if lenient:
        assert sandbox.admin.member("nowhere@example.com")["first_name"] == "No"
        assert 1 not in lines
    else:
        assert sandbox.admin.member("nowhere@example.com") is None
        assert lines[1]["message"] == "row 1: US zip code or country/city combo is required"
        assert (lines[1]["outcome"], lines[1]["status"], lines[1]["error_code"]) == (
            "rejected",
            400,
            "input_error",
        )
    assert (
        lines[3]["status"] == 400 and "US zip code or country/city combo is required" in lines[3]["message"]
    )
    assert sandbox.admin.member("nocity@example.com") is None
    # refused before sending, under both readings
    assert lines[2]["error_code"] == "create_requirements" and lines[2]["status"] is None
    assert "'ABCDE' is not a US ZIP code" in lines[2]["message"]
    assert lines[4]["error_code"] in ("create_requirements", "invalid_value") and lines[4]["status"] is None
    assert summary.count("created") == (1 if lenient else 0)
    assert summary.count("rejected") == (3 if lenient else 4)
    # upsert: a PUT (404) for every row, then a POST for the two that may be created; insert: the POSTs
    assert summary.requests_sent == (6 if mode == "upsert" else 2)


def test_deactivation_with_remove_points_is_a_flag(sandbox_reading: Any) -> None:
    """remove_points travels as 1 with is_active 0 and wipes the points (O:UserUpdate)."""
    client = sandbox_reading.client()
    client.create_user(
        {"first_name": "P", "last_name": "Q", "email_address": "points@example.com", "postal_code": "02134"}
    )
    client.credit_activity("points@example.com", "signup")
    sandbox_reading.sandbox.admin.wait_settled()
    rows = pd.DataFrame([{"user_id": "points@example.com", "is_active": False, "remove_points": True}])
    summary = sync_members(client, [rows], MemberSyncConfig(mode="update", max_workers=1), LOG)
    assert summary.count("updated") == 1
    stored = sandbox_reading.sandbox.admin.member("points@example.com")
    assert stored["is_active"] == 0 and stored["redeemable_points"] == 0


# ---------------------------------------------------------------------------------------- credits


def test_credit_sync_is_exactly_once_under_every_reading(
    sandbox_reading: Any, tmp_path: pathlib.Path
) -> None:
    client = sandbox_reading.client()
    emails = [f"c{i}@example.com" for i in range(6)]
    for email in emails:
        client.create_user(
            {"first_name": "C", "last_name": "D", "email_address": email, "postal_code": "02134"}
        )
    rows = [
        {"email": emails[i % 6], "order_id": f"o-{i}", "activity": ("purchase", "review")[i % 2], "points": i}
        for i in range(24)
    ]
    config = CreditSyncConfig(
        id_column="email",
        activity_id_column="activity",
        points_column="points",
        extra_data_columns=["order_id"],
        dedupe_key_column="order_id",
        max_workers=4,
        run_id="contract",
    )
    ledger_path = tmp_path / "ledger.sqlite"
    for _ in range(2):  # the rerun sends nothing
        with CreditLedger.open(ledger_path, run_id="contract") as ledger:
            summary = sync_credits(client, iter_chunks(pd.DataFrame(rows)), config, ledger)
    assert summary.counts["skipped"] == 24
    admin = sandbox_reading.sandbox.admin
    admin.wait_settled()
    applied = sorted(str(c["extra_data"]["order_id"]) for c in admin.credits())
    assert applied == sorted(f"o-{i}" for i in range(24))


def test_credits_by_inst_username(sandbox_reading: Any, tmp_path: pathlib.Path) -> None:
    """inst_username is an id_type of the credit call (O:UserActivityCredit)."""
    client = sandbox_reading.client()
    client.create_user(
        {
            "first_name": "I",
            "last_name": "G",
            "email_address": "ig@example.com",
            "postal_code": "02134",
            "inst_username": "ann_ig",
        }
    )
    config = CreditSyncConfig(
        id_column="handle",
        id_type="inst_username",
        activity_id="review",
        dedupe_key_column="event",
        run_id="ig",
    )
    rows = pd.DataFrame([{"handle": "ann_ig", "event": "e-1"}])
    with CreditLedger.open(tmp_path / "l.sqlite", run_id="ig") as ledger:
        summary = sync_credits(client, iter_chunks(rows), config, ledger)
    assert summary.counts["credited"] == 1
    sandbox_reading.sandbox.admin.wait_settled()
    [credit] = sandbox_reading.sandbox.admin.credits()
    assert credit["activity_id"] == "review"


# ------------------------------------------------------------------------------- wrong credentials

WRONG_KEY = "wrong-key-3c9d1e7f"


def switched(request: pytest.FixtureRequest, sandbox: Any) -> Iterator[Any]:
    """The session sandbox switched to the reading ``request.param``, reset afterwards."""
    sandbox.configure(**request.param.sandbox)
    try:
        yield request.param
    finally:
        sandbox.reset()


@pytest.fixture(params=readings_for("bad credentials status"), ids=lambda r: r.name)
def bad_credentials_reading(request: pytest.FixtureRequest, sandbox: Any) -> Iterator[Any]:
    """401 (the baseline) and 403 "Invalid API key" for refused credentials."""
    yield from switched(request, sandbox)


def test_wrong_key_stops_the_member_sync(
    bad_credentials_reading: Any, sandbox: Any, client_for: Any, tmp_path
):
    client = client_for(sandbox, api_key=WRONG_KEY, max_retries=0)
    rows = pd.DataFrame(
        [
            {"user_id": f"w{i}@example.com", "first_name": "W", "last_name": "K", "postal_code": "02134"}
            for i in range(200)
        ]
    )
    rejects = tmp_path / "rejects.jsonl"
    workers = 4
    with pytest.raises(SyncAbortedError) as info:
        sync_members(client, [rows], MemberSyncConfig(max_workers=workers, rejects_path=str(rejects)), LOG)
    summary = info.value.summary
    assert summary.is_consistent() and summary.rows_read == 200
    assert summary.requests_sent <= workers
    text = str(info.value)
    assert "API key" in text or "credentials" in text
    assert WRONG_KEY not in text and WRONG_KEY not in rejects.read_text()
    assert rejects.read_text().count("\n") == 200  # the report is written: every row, its outcome


def test_wrong_key_stops_the_credit_sync(
    bad_credentials_reading: Any, sandbox: Any, client_for: Any, tmp_path
):
    client_for(sandbox).create_user(
        {"first_name": "W", "last_name": "K", "email_address": "w@example.com", "postal_code": "02134"}
    )
    client = client_for(sandbox, api_key=WRONG_KEY, max_retries=0)
    rows = pd.DataFrame([{"email": "w@example.com", "order": f"x{i}"} for i in range(100)])
    config = CreditSyncConfig(
        id_column="email",
        activity_id="purchase",
        dedupe_key_column="order",
        max_workers=4,
        validate_activities=False,
        run_id="wrong",
        rejects_path=str(tmp_path / "r.jsonl"),
    )
    with (
        CreditLedger.open(tmp_path / "l.sqlite", run_id="wrong") as ledger,
        pytest.raises(SyncAbortedError) as info,
    ):
        sync_credits(client, iter_chunks(rows), config, ledger)
    assert info.value.summary.is_consistent() and info.value.summary.requests_sent <= 4
    assert WRONG_KEY not in str(info.value)


# ------------------------------------------------------------------------------------- deletion


@pytest.fixture(params=readings_for("deletion status path"), ids=lambda r: r.name)
def deletion_reading(request: pytest.FixtureRequest, sandbox: Any) -> Iterator[Any]:
    """Deletion status at /v2/users/delete/{id} (the baseline) or at /v2/user_deletion/{id}."""
    yield from switched(request, sandbox)


def test_delete_is_queued_and_its_refusals_are_typed(
    deletion_reading: Any, sandbox: Any, client_for: Any
) -> None:
    client = client_for(sandbox)
    created = client.create_user(
        {"first_name": "D", "last_name": "L", "email_address": "del@example.com", "postal_code": "02134"}
    )
    answer = client.delete_user("del@example.com")
    assert answer.queued and answer.user_id == str(created["id"])
    status = client.deletion_status(str(created["id"]), id_type="id")  # whichever path the program serves
    assert status.user_id == str(created["id"]) and status.status
    with pytest.raises(CrowdTwistDeletionNotFoundError) as missing:
        client.delete_user("nobody@example.com")
    assert missing.value.reason == "member_not_found"
    with pytest.raises(CrowdTwistDeletionNotFoundError) as invalid:
        client.delete_user("not-a-number", id_type="id")
    assert invalid.value.reason == "member_id_invalid"
    # A deactivated member who still has points: "Member is inactive but has redeemable points".
    client.create_user(
        {"first_name": "R", "last_name": "P", "email_address": "rp@example.com", "postal_code": "02134"}
    )
    client.credit_activity("rp@example.com", "signup")
    sandbox.admin.wait_settled()
    client.update_user("rp@example.com", {"is_active": 0})
    with pytest.raises(CrowdTwistDeletionRefusedError) as refused:
        client.delete_user("rp@example.com")
    assert refused.value.reason == "inactive_with_redeemable_points" and refused.value.status == 400


# ---------------------------------------------------------------------------- reads and activities


def test_activities_with_oracle_names_and_the_v21_pages(sandbox_reading: Any) -> None:
    client = sandbox_reading.client()
    listed = client.list_activities()
    assert {a.id for a in listed} == {"purchase", "signup", "review", "birthday"}
    purchase = next(a for a in listed if a.id == "purchase")
    assert purchase.num_points == 10 and purchase.title
    for page_size in (1, 3, 25):
        paged = client.list_activities_extended(page_size=page_size)
        assert [a.id for a in paged] == [a.id for a in listed]
    assert client.activities_page(page=99, page_size=2).activities == []  # a bad page is not an error


def test_profile_read_without_pii(sandbox_reading: Any) -> None:
    client = sandbox_reading.client()
    client.create_user(
        {
            "first_name": "Pii",
            "last_name": "Free",
            "email_address": "pii@example.com",
            "postal_code": "02134",
            "third_party_id": "T-77",
        }
    )
    profile = client.get_user("T-77", id_type="third_party_id", pii=False)
    assert profile.get("third_party_id") == "T-77" and profile.get("id")
    assert not {"email_address", "first_name", "last_name", "postal_code"} & profile.keys()
    assert json.dumps(profile)


DOCUMENTED_ROUTES = {
    "POST /v2/users",
    "GET /v2/users/{user_id}",
    "PUT /v2/users/{user_id}",
    "DELETE /v2/users/{user_id}",
    "POST /v2/users/{user_id}/activities",
    "GET /v2/users/{user_id}/activity_history",
    "GET /v2.1/users/{user_id}/activity_history",
    "GET /v2/activities",
    "GET /v2.1/activities/extended",
    "GET deletion status",
}


def test_syncs_call_only_the_documented_endpoints(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path
) -> None:
    """No call outside the contract's endpoint table (and never an undocumented route)."""
    client = client_for(sandbox)
    sync_members(client, warehouse_chunks(), MemberSyncConfig(max_workers=2), LOG)
    rows = pd.DataFrame([{"email": e, "order": f"k{i}"} for i, e in enumerate(EXPECTED)])
    config = CreditSyncConfig(
        id_column="email", activity_id="purchase", dedupe_key_column="order", run_id="r"
    )
    with CreditLedger.open(tmp_path / "l.sqlite", run_id="r") as ledger:
        sync_credits(client, iter_chunks(rows), config, ledger)
    routes = {route for route, count in sandbox.admin.stats()["by_route"].items() if count}
    assert routes and routes <= DOCUMENTED_ROUTES, routes - DOCUMENTED_ROUTES
    assert "POST /v2/users/{user_id}/activities" in routes and "POST /v2/users" in routes


# ------------------------------------------------------------------------------- connection test


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, sandbox: Any, **extra: Any) -> None:
    """An ``AIRFLOW_CONN_*`` JSON connection to ``sandbox``, as a user writes it for that auth type."""
    hmac = extra.get("auth_type") == "hmac"
    payload = {
        "conn_type": "crowdtwist",
        "host": sandbox.base_url,
        "login": sandbox.hmac_public_key if hmac else None,
        "password": extra.pop("password", sandbox.hmac_private_key if hmac else sandbox.api_key),
        "extra": extra,
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(payload))


def test_connection_test_under_every_reading(sandbox_reading: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_crowdtwist.hooks.crowdtwist import CrowdTwistHook

    wanted = {
        k: v for k, v in sandbox_reading.reading.client.items() if k in ("auth_type", "hmac_timestamp_unit")
    }
    set_connection(monkeypatch, "ct_reading", sandbox_reading.sandbox, **wanted)
    ok, message = CrowdTwistHook("ct_reading").test_connection()
    assert ok, message
    assert message == "Connected: 4 active activities"


@pytest.mark.parametrize(("program_unit", "configured"), [("s", "ms"), ("ms", "s")])
def test_connection_test_finds_the_hmac_unit(
    program_unit: str, configured: str, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OPEN point: seconds or milliseconds. A refused unit is retried in the other; the user is told."""
    from airflow_provider_crowdtwist.hooks.crowdtwist import CrowdTwistHook

    sandbox.configure(timestamp_unit=program_unit)
    set_connection(monkeypatch, "ct_unit", sandbox, auth_type="hmac", hmac_timestamp_unit=configured)
    ok, message = CrowdTwistHook("ct_unit").test_connection()
    assert not ok  # the connection as configured does not work...
    assert f"set the connection extra 'hmac_timestamp_unit' to '{program_unit}'" in message  # ...this would
    assert sandbox.hmac_private_key not in message
    # With wrong keys neither unit works: the message says the keys, not the unit, are the problem.
    set_connection(
        monkeypatch, "ct_keys", sandbox, auth_type="hmac", hmac_timestamp_unit=configured, password="nope"
    )
    ok, message = CrowdTwistHook("ct_keys").test_connection()
    assert not ok and "Authentication failed" in message
    assert "in both seconds and milliseconds" in message and "hmac_timestamp_unit' to" not in message


def test_connection_test_with_a_wrong_key_under_both_credential_readings(
    bad_credentials_reading: Any, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_crowdtwist.hooks.crowdtwist import CrowdTwistHook

    set_connection(monkeypatch, "ct_wrong", sandbox, password=WRONG_KEY)
    ok, message = CrowdTwistHook("ct_wrong").test_connection()
    status = bad_credentials_reading.sandbox.get("bad_credentials_status", 401)
    assert not ok and f"Authentication failed (HTTP {status})" in message and "API key" in message
    assert WRONG_KEY not in message


class _TaskInstance:
    """Records the XCom pushes of an operator run outside a scheduler."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = json.loads(json.dumps(value))


@pytest.mark.parametrize("which", ["members", "credits"])
def test_wrong_key_fails_the_task_naming_the_credentials_with_the_summary_pushed(
    which: str, bad_credentials_reading: Any, sandbox: Any, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """Under 401 and 403 "Invalid API key": the task fails (no retry), names the credentials, pushes
    its summary, and sent at most ``max_workers`` requests."""
    from airflow_provider_crowdtwist._compat import AirflowFailException
    from airflow_provider_crowdtwist.operators.activity_credit import CrowdTwistActivityCreditOperator
    from airflow_provider_crowdtwist.operators.user_sync import CrowdTwistUserSyncOperator

    set_connection(monkeypatch, "ct_task", sandbox, password=WRONG_KEY, requests_per_minute=0)
    workers = 3
    if which == "members":
        rows = [{"user_id": f"t{i}@example.com", "first_name": "T", "last_name": "K"} for i in range(60)]
        op: Any = CrowdTwistUserSyncOperator(
            task_id="members", crowdtwist_conn_id="ct_task", rows=rows, max_workers=workers
        )
    else:
        rows = [{"email": "t@example.com", "order": f"o{i}"} for i in range(60)]
        op = CrowdTwistActivityCreditOperator(
            task_id="credits",
            crowdtwist_conn_id="ct_task",
            rows=rows,
            id_column="email",
            activity_id="purchase",
            dedupe_key_column="order",
            validate_activities=False,
            ledger_path=str(tmp_path / "ledger.sqlite"),
            max_workers=workers,
        )
    ti = _TaskInstance()
    with pytest.raises(AirflowFailException) as info:
        op.execute({"ti": ti, "run_id": "manual__contract", "dag_run": None})
    text = str(info.value)
    assert "API key" in text and WRONG_KEY not in text
    status = bad_credentials_reading.sandbox.get("bad_credentials_status", 401)
    assert str(status) in text
    summary = ti.xcom["summary"]
    assert summary["rows_read"] == 60 and summary["aborted"]
    assert sandbox.admin.stats()["total"] <= workers
