"""Issue #14 findings 2, 4 and 7 against the sandbox over real HTTP, for both syncs.

2. Repeated column names (exact, or pandas' ``name.1``) are a configuration error before any request.
4. A CSV / JSON-lines line that cannot be read is named by its line number; with
   ``on_bad_lines="reject"`` it is a rejected row and the rest of the file is synced.
7. A refusal by CrowdTwist ("Unrecognized attribute name") names the source column.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pandas as pd
import pytest

from airflow_provider_crowdtwist.sync.credits.sync import CreditSyncConfig, sync_credits
from airflow_provider_crowdtwist.sync.members.sync import MemberSyncConfig, sync_members
from airflow_provider_crowdtwist.sync.sources import SourceError, iter_chunks

pytestmark = pytest.mark.integration

HEADER = "user_id,first_name,last_name,postal_code"


def requests_seen(sandbox: Any) -> int:
    return sum(sandbox.admin.stats()["by_route"].values())


def rejects(path: pathlib.Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def member(i: int) -> str:
    return f"m{i}@example.com,First{i},Last,02134"


def member_dict(email: str, **extra: str) -> dict[str, str]:
    return {"user_id": email, "first_name": "F", "last_name": "L", "postal_code": "02134", **extra}


DUPLICATE_CSV = "user_id,first_name,first_name,last_name\na@example.com,G,,L\n"


# ------------------------------------------------------------------ 2: repeated column names


@pytest.mark.parametrize(
    ("make_source", "named"),
    [
        (  # a DataFrame with one name twice: the later (empty) value used to win silently
            lambda tmp: pd.DataFrame(
                [["a@example.com", "Good", None, "Last", "02134"]],
                columns=["user_id", "first_name", "first_name", "last_name", "postal_code"],
            ),
            "first_name",
        ),
        (  # a CSV header with one name twice
            lambda tmp: _write(
                tmp / "m.csv", "user_id,first_name,first_name,last_name\na@example.com,G,,L\n"
            ),
            "first_name",
        ),
        (  # what pandas' own CSV reader makes of it: first_name.1 used to go to custom_data
            lambda tmp: pd.read_csv(
                _write(tmp / "p.csv", "user_id,first_name,first_name\na@example.com,G,\n")
            ),
            "first_name / first_name.1",
        ),
    ],
    ids=["dataframe", "csv-header", "pandas-renamed"],
)
def test_repeated_columns_fail_before_the_first_request(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path, make_source: Any, named: str
) -> None:
    source = make_source(tmp_path)
    with pytest.raises(ValueError, match=f"repeated column names: {named}"):
        sync_members(client_for(sandbox), iter_chunks(source), MemberSyncConfig())
    with pytest.raises(ValueError, match=f"repeated column names: {named}"):
        config = CreditSyncConfig(id_column="user_id", activity_id="purchase", validate_activities=False)
        sync_credits(client_for(sandbox), iter_chunks(source), config, _memory_ledger())
    assert requests_seen(sandbox) == 0


def _memory_ledger() -> Any:
    from airflow_provider_crowdtwist.sync.credits.ledger import CreditLedger

    return CreditLedger(":memory:", run_id="t", lock=False)


def _write(path: pathlib.Path, text: str | bytes) -> pathlib.Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


# ------------------------------------------------------------------ 4: bad lines


BAD_FILES = {
    "csv-undecodable-byte": (
        "m.csv",
        (HEADER + "\n" + member(1) + "\n" + "m2@example.com,F\xff,Last,02134\n" + member(3) + "\n").encode(
            "latin-1"
        ),
        "line 3 of the file: byte 0xff",
    ),
    "csv-ragged-row": (
        "m.csv",
        (HEADER + "\n" + member(1) + "\n" + member(2) + ",extra\n" + member(3) + "\n").encode(),
        "line 3 of the file: 5 fields, the header has 4",
    ),
    "jsonl-broken-line": (
        "m.jsonl",
        (
            json.dumps(
                {"user_id": "m1@example.com", "first_name": "F", "last_name": "L", "postal_code": "02134"}
            )
            + '\n{"user_id": "m2@example.com", oops\n'
            + json.dumps(
                {"user_id": "m3@example.com", "first_name": "F", "last_name": "L", "postal_code": "02134"}
            )
            + "\n"
        ).encode(),
        "line 2 of the file: not valid JSON",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_line_fails_naming_it_or_is_rejected_while_the_rest_syncs(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path, case: str
) -> None:
    name, data, why = BAD_FILES[case]
    path = _write(tmp_path / name, data)
    with pytest.raises(SourceError, match=why):
        sync_members(client_for(sandbox), iter_chunks(path), MemberSyncConfig())
    assert requests_seen(sandbox) == 0  # nothing sent, and the user learns which line

    rejects_path = tmp_path / "rejects.jsonl"
    config = MemberSyncConfig(on_bad_lines="reject", rejects_path=str(rejects_path))
    summary = sync_members(client_for(sandbox), iter_chunks(path, on_bad_lines="reject"), config)
    assert summary.rows_read == 3 and summary.count("created") == 2 and summary.count("rejected") == 1
    assert summary.is_consistent()
    assert sorted(m["email_address"] for m in sandbox.admin.members()) == ["m1@example.com", "m3@example.com"]
    [bad] = rejects(rejects_path)
    assert bad["row_number"] == 2 and bad["error_code"] == "bad_line"
    assert bad["message"].startswith(f"row 2: {why}")


def test_a_bad_line_in_a_credit_file_is_rejected_and_the_rest_credited(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path
) -> None:
    client = client_for(sandbox)
    for i in (1, 3):
        client.create_user(
            {
                "first_name": "F",
                "last_name": "L",
                "email_address": f"m{i}@example.com",
                "postal_code": "02134",
            }
        )
    path = _write(
        tmp_path / "c.csv",
        b"email,order\nm1@example.com,o1\nm2@example.com,o2,surplus\nm3@example.com,\xe9\n",
    )
    base = {"id_column": "email", "activity_id": "purchase", "dedupe_key_column": "order"}
    with pytest.raises(SourceError, match="line 3 of the file: 3 fields, the header has 2"):
        sync_credits(client, iter_chunks(path), CreditSyncConfig(**base), _memory_ledger())
    rejects_path = tmp_path / "rejects.jsonl"
    config = CreditSyncConfig(**base, on_bad_lines="reject", rejects_path=str(rejects_path))
    summary = sync_credits(client, iter_chunks(path, on_bad_lines="reject"), config, _memory_ledger())
    assert summary.count("credited") == 1 and summary.count("rejected") == 2 and summary.rows_read == 3
    assert [(c["email_address"], c["activity_id"]) for c in sandbox.admin.credits()] == [
        ("m1@example.com", "purchase")
    ]
    messages = [r["message"] for r in rejects(rejects_path)]
    assert messages == [
        "row 2: line 3 of the file: 3 fields, the header has 2 (email, order)",
        "row 3: line 4 of the file: byte 0xe9 (in column 'order') is not UTF-8 text",
    ]


# ------------------------------------------------------------------ 7: refusals name the column


def test_crowdtwist_refusing_a_custom_attribute_names_the_source_column(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path
) -> None:
    rows = [
        {
            "user_id": "a@example.com",
            "first_name": "A",
            "last_name": "L",
            "postal_code": "02134",
            "shoe": "9",
        },
        {
            "user_id": "b@example.com",
            "first_name": "B",
            "last_name": "L",
            "postal_code": "02134",
            "size": "9",
        },
        {"user_id": "c@example.com", "first_name": "C", "last_name": "L", "postal_code": "02134"},
    ]
    rejects_path = tmp_path / "rejects.jsonl"
    config = MemberSyncConfig(field_mapping={"size": "custom_data.shoe_size"}, rejects_path=str(rejects_path))
    summary = sync_members(client_for(sandbox), iter_chunks(rows), config)
    assert summary.count("rejected") == 2 and summary.count("created") == 1
    messages = {r["row_number"]: r["message"] for r in rejects(rejects_path)}
    assert messages == {
        1: "row 1: Unrecognized attribute name (column 'shoe')",
        2: "row 2: Unrecognized attribute name (column 'size')",
    }
