"""Members who left the source: the guard's verdicts and where the dry-run preview goes."""

from __future__ import annotations

import json
import logging
import pathlib

from airflow_provider_crowdtwist.sync.members.removal import (
    RemovalsList,
    RemovedMember,
    guard_violation,
    preview_target,
    removal_body,
)


def _guard(count: int, size: int, rows: int, **kwargs: object) -> str | None:
    settings = {"on_removed": "deactivate", "max_removed_ratio": 0.1, "allow_empty_source_removal": False}
    settings.update(kwargs)
    return guard_violation(count, size, rows, **settings)  # type: ignore[arg-type]


def test_the_guard_stops_large_removals_and_says_how_many_and_how_to_allow_them():
    assert _guard(0, 100, 0) is None
    assert _guard(10, 100, 90) is None  # exactly the ratio
    message = _guard(11, 100, 89)
    assert message is not None and "11 of the 100" in message and "max_removed_ratio=0.1" in message
    assert _guard(50, 100, 50, max_removed_ratio=0.5) is None


def test_an_empty_source_removes_nothing_unless_explicitly_allowed():
    message = _guard(100, 100, 0, max_removed_ratio=1.0)
    assert message is not None and "0 rows" in message and "allow_empty_source_removal=True" in message
    assert _guard(100, 100, 0, max_removed_ratio=1.0, allow_empty_source_removal=True) is None
    assert _guard(100, 100, 0, allow_empty_source_removal=True) is not None  # the ratio still applies


def test_the_removals_are_listed_beside_the_rejects_file_or_in_the_log(tmp_path, caplog):
    assert preview_target("/a/rejects.jsonl") == "/a/rejects.removals.jsonl"
    assert preview_target(pathlib.Path("/a/rejects.jsonl")) == pathlib.Path("/a/rejects.removals.jsonl")
    members = [RemovedMember(i, f"m{i}@x.com", i, i, False) for i in range(1, 4)]
    with RemovalsList(str(tmp_path / "r.jsonl"), "delete", logging.getLogger("t"), dry_run=True) as listed:
        for m in members:
            listed.add(m, "deleted", "dry run: would be removed")
    assert listed.count == 3 and listed.location == str(tmp_path / "r.removals.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "r.removals.jsonl").read_text().splitlines()]
    assert [(x["identifier"], x["action"], x["outcome"], x["dry_run"]) for x in lines] == [
        (f"m{i}@x.com", "delete", "deleted", True) for i in range(1, 4)
    ]
    with (
        caplog.at_level(logging.INFO),
        RemovalsList(None, "deactivate", logging.getLogger("t"), dry_run=False) as log,
    ):
        for m in members:
            log.add(m, "deactivated")
    assert log.location is None
    assert "left the source, deactivated: m1@x.com, m2@x.com, m3@x.com" in caplog.text


def test_deactivation_sends_remove_points_as_a_flag_only_when_asked():
    assert removal_body(False) == {"is_active": 0}
    assert removal_body(True) == {"is_active": 0, "remove_points": 1}
