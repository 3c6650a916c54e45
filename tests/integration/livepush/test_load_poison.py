"""No line can block a feed: whatever is wrong with it, it is rejected with file, line and column,
the file's good lines load, and ``max_rejected`` decides (issue 22, item 4). SQLite files here; the
PostgreSQL half (exact NUMERIC beyond 64 bits) is in tests/e2e/test_live_push_poison_pg.py.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from airflow_provider_crowdtwist.livepush.dialects import SQLITE
from airflow_provider_crowdtwist.livepush.load import LiveFeedLoader
from airflow_provider_crowdtwist.livepush.samples import sample_activity, sample_profile


def landed_line(push: dict, at: float = 1_700_000_000.0) -> str:
    return json.dumps({"received_at": at, "push": push})


def with_raw(push: dict, key: str, raw_json: str) -> dict | str:
    """The push as a JSON text with ``key`` set to ``raw_json`` (for values json.dumps cannot write)."""
    text = json.dumps(push)
    return text[:-1] + f', "{key}": {raw_json}}}'


def raw_landed(push_text: str, at: float = 1_700_000_000.0) -> str:
    return f'{{"received_at": {at}, "push": {push_text}}}'


POISON = {
    # line number in the file -> (the line, what its reject must say)
    "big_points": (
        landed_line({**sample_profile(2), "redeemablePoints": 2**64 + 5}),
        "column redeemable_points",
    ),
    "big_id": (landed_line({**sample_profile(3), "id": 2**63}), "column member_id"),
    "deep_custom": (
        raw_landed(with_raw(sample_profile(4), "customData", "[" * 980 + "]" * 980)),
        "nested deeper than 101 objects/arrays at line 1 column",
    ),
    "deeper": (raw_landed(with_raw(sample_profile(5), "x", "[" * 5000 + "]" * 5000)), "line 1 column"),
    "surrogate_text": (
        raw_landed(with_raw(sample_profile(6), "firstName", '"a\\ud800"')),
        "column first_name",
    ),
    "surrogate_json": (
        raw_landed(with_raw(sample_profile(7), "customData", '{"k": "\\udfff"}')),
        "column custom_data",
    ),
    "surrogate_extra": (
        raw_landed(with_raw(sample_profile(8), "nickname", '"\\ud800"')),
        "column extra_fields",
    ),
    "torn": (
        '{"received_at": 1.0, "push": {"id": 9, "emailAdd',
        "not JSON: Unterminated string starting at: line 1 column",
    ),
}


@pytest.mark.parametrize("batch_size", [1, 3, 5_000])
def test_every_poison_line_is_rejected_by_line_and_column_and_the_good_lines_load(
    tmp_path: Path, batch_size: int
) -> None:
    src = tmp_path / "profile"
    src.mkdir()
    good_ids = [100, 101, 102, 103, 104, 105, 106, 107, 108, 109]
    lines, expected = [], {}
    good = iter(good_ids)
    for name, (line, says) in POISON.items():
        lines.append(landed_line(sample_profile(next(good))))
        lines.append(line)
        expected[len(lines)] = (name, says)
    lines += [landed_line(sample_profile(n)) for n in good]
    path = src / "profile-20260101T000000.000000Z-00000001.jsonl"
    path.write_text("\n".join(lines) + "\n")

    db = sqlite3.connect(tmp_path / "w.db")
    loader = LiveFeedLoader(db, SQLITE, feed="profile", table="members", batch_size=batch_size)
    summary = loader.load(src, rejects_path=tmp_path / "rejects.jsonl")

    assert summary.rows_read == len(lines) and summary.rejected == len(POISON)
    assert summary.loaded == len(good_ids)
    assert sorted(r[0] for r in db.execute("SELECT member_id FROM members")) == good_ids
    rejects = [json.loads(r) for r in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert sorted(r["row_number"] for r in rejects) == sorted(expected)  # each once, whatever the batching
    for reject in rejects:
        name, says = expected[reject["row_number"]]
        assert reject["message"].startswith(f"{path.name} line {reject['row_number']}: "), reject
        assert says in reject["message"], (name, reject["message"])
    assert (src / "loaded" / path.name).exists() and not path.exists()  # the feed moves on


def test_an_integer_beyond_64_bits_in_a_json_column_loads_exactly(tmp_path: Path) -> None:
    src = tmp_path / "activity"
    src.mkdir()
    big = 2**70 + 1
    push = {**sample_activity(1), "activityExtraData": {"order_total": big}, "bonus": -big}
    (src / "activity-1.jsonl").write_text(landed_line(push) + "\n")
    db = sqlite3.connect(tmp_path / "w.db")
    summary = LiveFeedLoader(db, SQLITE, feed="activity", table="acts").load(src)
    assert summary.loaded == 1 and summary.rejected == 0
    extra, fields = db.execute("SELECT activity_extra_data, extra_fields FROM acts").fetchone()
    assert json.loads(extra) == {"order_total": big} and json.loads(fields) == {"bonus": -big}
