"""The audience state and the diff: entering, leaving, unchanged, duplicates, rejects, guards."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from airflow_provider_crowdtwist.sync.audience.diff import AudienceDiff
from airflow_provider_crowdtwist.sync.audience.read import AudienceReader, escape_line, unescape_line
from airflow_provider_crowdtwist.sync.audience.state import (
    AudienceState,
    AudienceStateError,
    AudienceStateInUseError,
)

IDENTITY = {"id_type": "email", "attribute": "recent_buyer", "values": (True, False)}


def read(state, chunks, *, segment=False, id_type="email") -> tuple[AudienceDiff, list, AudienceReader]:
    reader = AudienceReader(state, id_type=id_type, column="email", segment=segment)
    bad = []
    row = 1
    for chunk in chunks:
        series = pd.Series(chunk, dtype=object) if not isinstance(chunk, pd.Series) else chunk
        numbers = np.arange(row, row + len(series), dtype=np.int64)
        row += len(series)
        bad.extend(reader.add(series, numbers))
    return reader.finish(), bad, reader


def sync_all(path, members) -> None:
    """A run that entered everyone in ``members`` (as the sync does after CrowdTwist accepted them)."""
    with AudienceState(path, identity=IDENTITY) as state:
        diff, _, reader = read(state, [members])
        for change in diff.entering():
            state.record_entered(change.key, change.key2, change.identifier)
        for change in diff.leaving_members():
            state.record_left(change.key, change.key2)
        reader.close()


def test_first_run_everyone_enters_then_a_rerun_changes_nothing(tmp_path):
    path = tmp_path / "aud.sqlite"
    members = [f"m{i}@example.com" for i in range(1000)]
    with AudienceState(path, identity=IDENTITY) as state:
        diff, bad, reader = read(state, [members[:400], members[400:]])
        assert (diff.entering_count, diff.leaving_count, diff.unchanged, bad) == (1000, 0, 0, [])
        entering = list(diff.entering())
        assert [c.identifier for c in entering] == members
        assert [c.number for c in entering] == list(range(1, 1001))  # source row numbers
        for change in entering:
            state.record_entered(change.key, change.key2, change.identifier)
        reader.close()
    with AudienceState(path, identity=IDENTITY) as state:
        assert len(state) == 1000
        # emails compare without case
        diff, _, reader = read(state, [[m.upper() for m in members]])
        assert (diff.entering_count, diff.leaving_count, diff.unchanged) == (0, 0, 1000)
        assert list(diff.entering()) == []
        reader.close()


def test_fifty_leave_thirty_join(tmp_path):
    path = tmp_path / "aud.sqlite"
    members = [f"m{i}@example.com" for i in range(1000)]
    sync_all(path, members)
    now = members[50:] + [f"new{i}@example.com" for i in range(30)]
    with AudienceState(path, identity=IDENTITY) as state:
        diff, _, reader = read(state, [now])
        assert (diff.entering_count, diff.leaving_count, diff.unchanged) == (30, 50, 950)
        assert sorted(c.identifier for c in diff.leaving_members()) == sorted(members[:50])
        assert [c.identifier for c in diff.entering()] == now[950:]
        assert diff.guard_violation(0.1, len(now)) is None
        for change in diff.entering():
            state.record_entered(change.key, change.key2, change.identifier)
        for change in diff.leaving_members():
            state.record_left(change.key, change.key2)
        reader.close()
    with AudienceState(path, identity=IDENTITY) as state:
        assert len(state) == 980
        diff, _, reader = read(state, [now])
        assert (diff.entering_count, diff.leaving_count, diff.unchanged) == (0, 0, 980)
        reader.close()


def test_the_guards_name_the_count_and_preview_who_would_leave(tmp_path):
    path = tmp_path / "aud.sqlite"
    members = [f"m{i:03d}@example.com" for i in range(100)]
    sync_all(path, members)
    with AudienceState(path, identity=IDENTITY, read_only=True) as state:
        diff, _, reader = read(state, [members[20:]])
        why = diff.guard_violation(0.1, 80)
        assert why is not None
        assert why.startswith("20 of the 100 member(s) in the audience as last synced (20.0%) would leave")
        assert "max_exit_ratio=0.1" in why and "nothing was sent" in why
        named = why.split("(who would leave: ")[1].split(" and 10 more)")[0].split(", ")
        assert len(named) == 10 and set(named) <= set(members[:20])
        assert diff.guard_violation(0.25, 80) is None
        reader.close()
        diff, _, reader = read(state, [[]])
        empty = diff.guard_violation(0.1, 0)
        assert empty is not None and empty.startswith("the audience is empty (0 row(s) read")
        assert "All 100 member(s)" in empty
        assert diff.guard_violation(1.0, 0) is None  # the user accepts everybody leaving
        reader.close()
    # an empty audience stops a first run too (a broken query looks the same)
    diff, _, reader = read(None, [[None, ""]])
    assert diff.guard_violation(0.1, 2).startswith("the audience is empty (2 row(s) read")
    reader.close()


def test_duplicates_count_once_and_name_the_first_row(tmp_path):
    path = tmp_path / "aud.sqlite"
    sync_all(path, ["old@example.com"])
    with AudienceState(path, identity=IDENTITY) as state:
        chunks = [["old@example.com", "a@example.com", "OLD@example.com"], ["a@example.com", "b@example.com"]]
        diff, bad, reader = read(state, chunks)
        assert bad == []
        assert (diff.entering_count, diff.unchanged) == (2, 1)
        assert [(d.row_number, d.identifier, d.first_row) for d in diff.duplicates] == [
            (3, "OLD@example.com", 1),
            (4, "a@example.com", 2),
        ]
        assert [c.identifier for c in diff.entering()] == ["a@example.com", "b@example.com"]
        reader.close()


def test_bad_identifiers_are_rejected_with_row_and_column():
    values = pd.Series(["a@example.com", None, "  ", True, "x,y@example.com", 'q"@example.com'], dtype=object)
    diff, bad, reader = read(None, [values], segment=True)
    assert [(row, p.code, p.reason) for row, p in bad] == [
        (2, "missing_identifier", "email: the identifier is missing"),
        (3, "missing_identifier", "email: the identifier is missing"),
        (4, "invalid_identifier", "email: expected text, got a boolean (True)"),
        (
            5,
            "invalid_identifier",
            "email: 'x,y@example.com' holds a comma, a double quote or a line break, which a Client "
            "Defined Segment file cannot carry (its format has no quoting)",
        ),
        (6, "invalid_identifier", bad[4][1].reason),
    ]
    assert list(diff.segment_identifiers()) == ["a@example.com"]
    reader.close()
    # without a segment file, commas and line breaks are sent as given (never stricter than CrowdTwist)
    diff, bad, reader = read(
        None, [pd.Series(["x,y", "line\nbreak", "back\\slash"], dtype=object)], id_type="username"
    )
    assert bad == []
    assert [c.identifier for c in diff.entering()] == ["x,y", "line\nbreak", "back\\slash"]
    reader.close()
    # a CrowdTwist id is a number; integer columns are taken as they are
    diff, bad, reader = read(None, [pd.Series(["100001", "abc", 100002], dtype=object)], id_type="id")
    assert [(row, p.reason) for row, p in bad] == [
        (2, "email: a CrowdTwist id (id_type 'id') is a number, got 'abc'")
    ]
    reader.close()
    diff, bad, reader = read(None, [pd.Series([100001, 100002, 100001])], id_type="id")
    assert (diff.entering_count, len(diff.duplicates), bad) == (2, 1, [])
    reader.close()


def test_segment_rows_are_the_whole_audience_once_in_source_order(tmp_path):
    path = tmp_path / "aud.sqlite"
    sync_all(path, ["b@example.com", "c@example.com"])
    with AudienceState(path, identity=IDENTITY) as state:
        diff, _, reader = read(
            state, [["a@example.com", "b@example.com"], ["a@example.com", "d@example.com"]], segment=True
        )
        assert list(diff.segment_identifiers()) == ["a@example.com", "b@example.com", "d@example.com"]
        assert [c.identifier for c in diff.leaving_members()] == ["c@example.com"]
        reader.close()


def test_a_state_is_for_one_audience_and_one_run_at_a_time(tmp_path):
    path = tmp_path / "aud.sqlite"
    sync_all(path, ["a@example.com"])
    with pytest.raises(AudienceStateError, match=r"attribute='recent_buyer'.*attribute='churn_risk'"):
        AudienceState(path, identity={**IDENTITY, "attribute": "churn_risk"})
    with pytest.raises(AudienceStateError, match=r"values=\[True, False\].*values=\[1, 0\]"):
        AudienceState(path, identity={**IDENTITY, "values": (1, 0)})
    with AudienceState(path, identity=IDENTITY), pytest.raises(AudienceStateInUseError):
        AudienceState(path, identity=IDENTITY)
    # a dry run never creates or changes the file
    missing = tmp_path / "none.sqlite"
    with AudienceState(missing, identity=IDENTITY, read_only=True) as state:
        assert len(state) == 0
    assert not missing.exists()


def test_a_killed_run_keeps_what_was_journaled(tmp_path):
    path = tmp_path / "aud.sqlite"
    state = AudienceState(path, identity=IDENTITY)
    diff, _, reader = read(state, [["a@example.com", "b@example.com"]])
    for change in diff.entering():
        state.record_entered(change.key, change.key2, change.identifier)
    state.flush()
    reader.close()
    state._db.close()  # the process died: no fold, no checkpoint
    state._release()
    with AudienceState(path, identity=IDENTITY) as again:
        assert len(again) == 2


@pytest.mark.parametrize("text", ["plain", "a\\b", "a\nb", "a\rb\\n", "\\"])
def test_spool_lines_round_trip(text):
    line = escape_line(text)
    assert "\n" not in line and "\r" not in line
    assert unescape_line(line) == text


def test_the_changes_list_logs_a_bounded_sample_without_a_file(caplog):
    import logging

    from airflow_provider_crowdtwist.sync.audience.changes import ChangesList

    log = logging.getLogger("test.changes")
    with caplog.at_level(logging.INFO, logger="test.changes"), ChangesList(None, log, dry_run=True) as listed:
        for i in range(1_100):
            listed.add(f"m{i}@example.com", "enter")
        listed.add("gone@example.com", "exit")
    lines = [r.getMessage() for r in caplog.records]
    entering = [line for line in lines if line.startswith("Members would be entering")]
    assert len(entering) == 20 and entering[0].endswith("m49@example.com")
    assert "... and 100 more entering (set rejects_path for the full list)." in lines
    assert "Members would be leaving the audience: gone@example.com" in lines
    assert listed.count == 1_101


def test_the_changes_list_file_sits_beside_the_rejects_file(tmp_path):
    import json
    import logging

    from airflow_provider_crowdtwist.sync.audience.changes import ChangesList

    with ChangesList(str(tmp_path / "r.jsonl"), logging.getLogger("x"), dry_run=False) as listed:
        listed.add("a@example.com", "exit", "exited", None)
    (line,) = (tmp_path / "r.audience.jsonl").read_text().splitlines()
    assert json.loads(line) == {
        "identifier": "a@example.com",
        "change": "exit",
        "outcome": "exited",
        "message": None,
        "dry_run": False,
    }
