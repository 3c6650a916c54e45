"""Fuzz both syncs against the sandbox (issue #14): generated rows, good and bad, over real HTTP.

For every generated table: no exception escapes, every row ends in exactly one outcome, the counts
add up to the rows read, and every rejected row is in the rejects file once, its message starting
with ``row N:`` and naming a column of the source. Bounded (a few dozen small tables per sync) so the
suite stays fast; the sandbox is reset before each table.
"""

from __future__ import annotations

import collections
import json
import pathlib
import re
import tempfile
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_crowdtwist.sync.credits.ledger import CreditLedger
from airflow_provider_crowdtwist.sync.credits.sync import CreditSyncConfig, sync_credits
from airflow_provider_crowdtwist.sync.members.sync import MemberSyncConfig, sync_members
from airflow_provider_crowdtwist.sync.sources import iter_chunks

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

EMAILS = [f"fuzz{i}@example.com" for i in range(4)]
texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
missing = st.sampled_from([None, "", "   ", float("nan")])


def mostly(good: st.SearchStrategy[Any], *bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` 19 times in 20, else one of ``bad``: most rows are sendable, many hold one bad value."""
    return st.integers(0, 19).flatmap(lambda n: good if n else st.one_of(*bad))


MEMBER_COLUMNS = {  # source column -> strategy; mapped with field_mapping where the name differs
    "user_id": mostly(
        st.sampled_from(EMAILS), st.sampled_from(["not-an-email", " fuzz1@example.com "]), missing
    ),
    "first": mostly(st.sampled_from(["Ann", "Anne-Marie", "O'Brien", "Zoë"]), texts, missing),
    "last_name": mostly(st.sampled_from(["Lee", "da Silva"]), texts, missing),
    "zip": mostly(
        st.sampled_from(["02134", "02134-1234"]), st.sampled_from(["K1A 0B1", "1234"]), texts, missing
    ),
    "country_code": mostly(st.none(), st.sampled_from(["US", "ca", "GB", "USA", "1"])),
    "city_name": mostly(st.none(), st.sampled_from(["London", "Paris"])),
    "dob": mostly(
        st.sampled_from(["1990-05-17", "19900517", "643593600000", None]),
        st.sampled_from(["0001-01-01", "9999-12-31", "-1", "17/05/1990", "19901345"]),
        st.integers(min_value=-(10**19), max_value=10**19),
        st.dates().map(str),
        texts,
    ),
    "pw": mostly(st.sampled_from(["  pass word  ", "hunter2", None]), texts, missing),
    "receive_email_updates": mostly(
        st.sampled_from([0, 1, "yes", None]), st.sampled_from(["maybe", 2, True])
    ),
    "favorite_store": mostly(st.sampled_from(["Boston", None]), texts),  # a custom attribute the sandbox has
    "shoe": mostly(st.none(), st.sampled_from(["9", "10"])),  # one it does not have: CrowdTwist refuses it
}
MEMBER_MAPPING = {"first": "first_name", "zip": "postal_code", "dob": "date_of_birth", "pw": "password"}

CREDIT_COLUMNS = {
    "email": mostly(
        st.sampled_from(EMAILS), st.sampled_from(["not-an-email"]), missing
    ),  # EMAILS[3]: no member
    "activity": mostly(
        st.sampled_from(["purchase", "review"]), st.sampled_from(["nope", "PURCHASE"]), missing
    ),
    "points": mostly(st.integers(0, 500) | st.none(), st.integers(-5, -1), st.sampled_from(["x", 2.5, True])),
    "when": mostly(
        st.sampled_from(["2026-11-20T10:00:00Z", "20261120", "1795000000000", None]),
        st.sampled_from(["1990-01-01", "2099-01-01", "0"]),
        texts,
    ),
    "order_id": mostly(st.sampled_from([f"o{i}" for i in range(12)]), texts, missing),
    "store": mostly(st.sampled_from(["s1", 7, None]), texts, st.integers()),
}


def tables(columns: dict[str, Any]) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(st.fixed_dictionaries(columns), min_size=1, max_size=8)


def check_report(summary: Any, rows: list[dict[str, Any]], rejects_path: pathlib.Path) -> None:
    """One outcome a row, counts that add up, every problem row in the rejects file naming a column."""
    assert summary.rows_read == len(rows)
    assert summary.total_outcomes == len(rows) and summary.is_consistent()
    lines = [json.loads(line) for line in rejects_path.read_text().split("\n")[:-1]]
    problems = sum(summary.count(o) for o in ("rejected", "failed", "unknown"))
    assert len(lines) == problems
    numbers = collections.Counter(line["row_number"] for line in lines)
    assert all(n == 1 for n in numbers.values()) and set(numbers) <= set(range(1, len(rows) + 1))
    assert summary.count("failed") == 0 and summary.count("unknown") == 0  # no faults injected: no bug
    column_names = list(rows[0])
    for line in lines:
        message = line["message"]
        assert message.startswith(f"row {line['row_number']}: "), message
        assert any(re.search(rf"(?<![\w.]){re.escape(c)}(?![\w])", message) for c in column_names), message


@FUZZ
@given(rows=tables(MEMBER_COLUMNS))
def test_fuzz_member_sync(sandbox_server: Any, client_for: Any, rows: list[dict[str, Any]]) -> None:
    sandbox_server.reset()
    with tempfile.TemporaryDirectory() as tmp:
        rejects_path = pathlib.Path(tmp) / "rejects.jsonl"
        # the report is what is checked here; a table whose every row is rejected is a valid case
        config = MemberSyncConfig(
            field_mapping=MEMBER_MAPPING,
            max_workers=4,
            rejects_path=str(rejects_path),
            fail_when_nothing_landed=False,
        )
        summary = sync_members(client_for(sandbox_server), iter_chunks(pd.DataFrame(rows), 3), config)
        check_report(summary, rows, rejects_path)
        for member in sandbox_server.admin.members():  # what was sent was sent as given
            if "password" in member:
                assert member["password"] in [r["pw"] for r in rows]


@FUZZ
@given(rows=tables(CREDIT_COLUMNS))
def test_fuzz_credit_sync(sandbox_server: Any, client_for: Any, rows: list[dict[str, Any]]) -> None:
    sandbox_server.reset()
    client = client_for(sandbox_server)
    for email in EMAILS[:3]:  # the fourth member does not exist: CrowdTwist answers 404
        client.create_user(
            {"first_name": "F", "last_name": "L", "email_address": email, "postal_code": "02134"}
        )
    with tempfile.TemporaryDirectory() as tmp:
        rejects_path = pathlib.Path(tmp) / "rejects.jsonl"
        config = CreditSyncConfig(
            id_column="email",
            activity_id_column="activity",
            points_column="points",
            activity_date_column="when",
            extra_data_columns=["store"],  # the dedupe key travels in extra_data by itself (#12)
            dedupe_key_column="order_id",
            max_workers=4,
            rejects_path=str(rejects_path),
            fail_when_nothing_landed=False,  # a table of only bad rows is a valid case here
        )
        with CreditLedger.open(pathlib.Path(tmp) / "ledger.sqlite", run_id="fuzz") as ledger:
            summary = sync_credits(client, iter_chunks(pd.DataFrame(rows), 3), config, ledger)
        check_report(summary, rows, rejects_path)
        assert len(sandbox_server.admin.credits()) == summary.count("credited")
