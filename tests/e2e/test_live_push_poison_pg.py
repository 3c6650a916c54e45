"""The live push loader on a real PostgreSQL: numbers beyond 64 bits load exactly into NUMERIC, and
what PostgreSQL cannot hold (BIGINT overflow, NUL characters, lone surrogates) is rejected by line and
column while the file's good lines load (issue 22, item 4)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from airflow_provider_crowdtwist.livepush.dialects import POSTGRES
from airflow_provider_crowdtwist.livepush.load import LiveFeedLoader
from airflow_provider_crowdtwist.livepush.samples import sample_profile
from tests.e2e.conftest import PostgresServer


def landed(push: dict | str) -> str:
    text = push if isinstance(push, str) else json.dumps(push)
    return f'{{"received_at": 1700000000.5, "push": {text}}}'


def test_poison_lines_on_postgres(postgres_server: PostgresServer, tmp_path: Path) -> None:
    big = 2**64 + 5
    profile = json.dumps(sample_profile(7))
    lines = {
        1: (landed(sample_profile(1)), None),
        2: (landed({**sample_profile(2), "redeemablePoints": big, "customData": {"n": big}}), None),
        3: (
            landed({**sample_profile(3), "fanRank": big}),
            "column fan_rank (fanRank): integer beyond 64 bits",
        ),
        4: (
            landed({**sample_profile(4), "firstName": "a\x00b"}),
            "column first_name (firstName): holds a NUL",
        ),
        5: (
            landed({**sample_profile(5), "customData": {"k": "\x00"}}),
            "column custom_data (customData): holds a NUL",
        ),
        6: (landed(profile[:-1] + ', "lastName": "\\ud800"}'), "column last_name (lastName): holds a lone"),
        7: (landed(sample_profile(8)), None),
    }
    src = tmp_path / "profile"
    src.mkdir()
    (src / "profile-1.jsonl").write_text("\n".join(line for line, _ in lines.values()) + "\n")
    db = postgres_server.connect()
    try:
        loader = LiveFeedLoader(db, POSTGRES, feed="profile", table="poison_members", batch_size=2)
        summary = loader.load(src, rejects_path=tmp_path / "rejects.jsonl")
        cur = db.cursor()
        cur.execute("SELECT member_id, redeemable_points, custom_data FROM poison_members ORDER BY 1")
        rows = cur.fetchall()
        cur.execute("DROP TABLE poison_members")
        db.commit()
    finally:
        db.close()
    assert summary.loaded == 3 and summary.rejected == 4
    assert [r[0] for r in rows] == [1, 2, 8]
    assert rows[1][1] == Decimal(big) and rows[1][2] == {"n": big}  # exact, never rounded
    rejects = {
        json.loads(r)["row_number"]: json.loads(r)["message"]
        for r in (tmp_path / "rejects.jsonl").read_text().splitlines()
    }
    for number, (_, says) in lines.items():
        if says is None:
            assert number not in rejects
        else:
            assert rejects[number].startswith(f"profile-1.jsonl line {number}: {says}"), rejects[number]
    assert not (src / "profile-1.jsonl").exists()
