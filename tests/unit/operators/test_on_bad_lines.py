"""``on_bad_lines`` on both operators (issue #14): checked at parse time, passed to reader and engine."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from airflow_provider_crowdtwist._compat import AirflowFailException
from tests.unit.operators import test_activity_credit as credit
from tests.unit.operators import test_user_sync as members
from tests.unit.operators.test_user_sync import conn  # noqa: F401 - the fixture

CSV = (
    "user_id,first_name,last_name,postal_code\n"
    "a@example.com,A,L,02134\n"
    "b@example.com,B,L,02134,surplus\n"
    "c@example.com,C,L,02134\n"
)


@pytest.mark.parametrize(
    ("make", "source"),
    [
        (members.operator, {}),
        (credit.operator, {"rows": [{"email": "a@example.com"}], "ledger_path": "l.sqlite"}),
    ],
    ids=["members", "credits"],
)
def test_an_unknown_on_bad_lines_fails_at_parse_time(make: Any, source: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="on_bad_lines 'skip' is not one of fail, reject"):
        make(on_bad_lines="skip", **source)


def test_the_member_operator_fails_naming_the_line_or_rejects_it_and_syncs_the_rest(
    conn: Any,  # noqa: F811 - the fixture
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "members.csv"
    path.write_text(CSV)
    with pytest.raises(AirflowFailException, match="line 3 of the file: 5 fields, the header has 4"):
        members.operator(rows=None, source_path=str(path)).execute(members.context())
    assert conn.admin.members() == []
    rejects = tmp_path / "rejects.jsonl"
    op = members.operator(rows=None, source_path=str(path), on_bad_lines="reject", rejects_path=str(rejects))
    result = op.execute(members.context())
    assert result["counts"]["created"] == 2 and result["counts"]["rejected"] == 1
    [line] = [json.loads(x) for x in rejects.read_text().splitlines()]
    assert line["message"].startswith("row 2: line 3 of the file: 5 fields")
