"""The member state file: lookups, statuses, keyed fingerprints (no secret), old files, crashes."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from airflow_provider_crowdtwist.sync.members.row_hash import (
    chunk_fingerprints,
    member_keys,
    payload_fingerprint,
)
from airflow_provider_crowdtwist.sync.members.state import DEACTIVATED, MemberState, StateError

SECRET = b"connection-api-key"


def _keys(*names: str) -> tuple[list[int], list[int]]:
    k1, k2 = member_keys(list(names))
    return k1.tolist(), k2.tolist()


def _open(path, **kwargs) -> MemberState:
    return MemberState(
        path, id_type=kwargs.pop("id_type", "email"), secret=kwargs.pop("secret", SECRET), **kwargs
    )


def test_recorded_members_are_found_again_with_their_fingerprint_and_status(tmp_path):
    path = tmp_path / "state.sqlite"
    (a1, b1), (a2, b2) = _keys("a@x.com", "b@x.com")
    with _open(path) as state:
        assert len(state) == 0
        state.record_sent(a1, a2, "A@x.com", 111)
        state.record_sent(b1, b2, "b@x.com", 222)
    with _open(path) as state:
        assert len(state) == 2
        k1, k2 = member_keys(["b@x.com", "a@x.com", "c@x.com"])
        pos = state.lookup(k1, k2)
        assert pos[2] == -1
        assert state.fingerprints[pos[:2]].tolist() == [222, 111]
        state.record_deactivated(a1, a2)
        state.forget(b1, b2)
    with _open(path) as state:
        assert len(state) == 1
        pos = state.lookup(*member_keys(["a@x.com"]))
        assert state.statuses[pos[0]] == DEACTIVATED
        state.mark_seen(np.array([-1], dtype=np.int64))
        assert [m[2] for m in state.members_at(state.unseen(include_deactivated=True))] == ["A@x.com"]
        assert len(state.unseen(include_deactivated=False)) == 0
    assert not os.path.exists(str(path) + "-wal")  # one file at rest


def test_the_file_holds_no_secret_and_its_fingerprints_need_the_key(tmp_path):
    """A password cannot be tested against the state: the fingerprint key is not in the file."""
    path = tmp_path / "state.sqlite"
    chunk = pd.DataFrame({"user_id": ["a@x.com"], "password": ["Hunter2-secret"]})
    with _open(path) as state:
        fingerprint = chunk_fingerprints(chunk, [0, 1], state.fingerprint_key, "d")
        assert fingerprint is not None
        k1, k2 = member_keys(["a@x.com"])
        state.record_sent(int(k1[0]), int(k2[0]), "a@x.com", int(fingerprint[0]))
        key = state.fingerprint_key
    data = path.read_bytes()
    assert b"Hunter2" not in data and SECRET not in data and key not in data
    assert key.hex().encode() not in data
    # the same row under another key (what an attacker without the key computes) does not match
    other = chunk_fingerprints(chunk, [0, 1], b"guess" * 8, "d")
    assert other is not None and other[0] != fingerprint[0]
    # the right key reproduces it, and a changed password changes it
    with _open(path) as state:
        assert state.fingerprint_key == key and not state.key_changed
        again = chunk_fingerprints(chunk, [0, 1], state.fingerprint_key, "d")
        changed = chunk.assign(password=["other"])
        assert again[0] == fingerprint[0]
        assert chunk_fingerprints(changed, [0, 1], key, "d")[0] != fingerprint[0]


def test_a_new_secret_is_noticed_and_a_salt_makes_each_state_different(tmp_path):
    with _open(tmp_path / "one.sqlite") as one, _open(tmp_path / "two.sqlite") as two:
        assert one.fingerprint_key != two.fingerprint_key  # per-state salt
    with _open(tmp_path / "one.sqlite", secret=b"rotated-api-key") as state:
        assert state.key_changed


def test_a_state_of_another_id_type_is_refused(tmp_path):
    with _open(tmp_path / "s.sqlite"):
        pass
    with pytest.raises(StateError, match=r"id_type 'email'.*'third_party_id'"):
        _open(tmp_path / "s.sqlite", id_type="third_party_id")


def test_an_old_state_is_converted_and_its_unsalted_hashes_erased(tmp_path):
    path = tmp_path / "old.sqlite"
    old_hash = hashlib.sha256(json.dumps({"password": "Hunter2"}).encode()).hexdigest()
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE member_state (key TEXT PRIMARY KEY, hash TEXT NOT NULL, updated_at INTEGER)")
    db.executemany(
        "INSERT INTO member_state VALUES (?, ?, 0)",
        [("email:a@x.com", old_hash), ("email:b@x.com", old_hash)],
    )
    db.commit()
    db.close()
    with _open(path) as state:
        assert len(state) == 2
        assert (state.lookup(*member_keys(["a@x.com", "b@x.com"])) >= 0).all()
        assert (state.fingerprints == 0).all()  # no fingerprint yet: each member is sent once more
    assert old_hash.encode() not in path.read_bytes()


def test_a_dry_run_state_touches_nothing(tmp_path):
    path = tmp_path / "none.sqlite"
    with _open(path, read_only=True) as state:
        assert len(state) == 0
        with pytest.raises(RuntimeError, match="read-only"):
            state.record_sent(1, 2, "a@x.com", 3)
    assert not path.exists() and os.listdir(tmp_path) == []
    with _open(path) as state:
        state.record_sent(1, 2, "a@x.com", 3)
    before = path.read_bytes()
    with _open(path, read_only=True) as state:
        assert len(state) == 1
    assert path.read_bytes() == before


def test_payload_fingerprints_are_keyed():
    assert payload_fingerprint('{"a":1}', b"k" * 32) == payload_fingerprint('{"a":1}', b"k" * 32)
    assert payload_fingerprint('{"a":1}', b"k" * 32) != payload_fingerprint('{"a":1}', b"j" * 32)


def test_a_killed_writer_leaves_every_committed_result_and_a_sound_file(tmp_path):
    """SIGKILL-like death (os._exit) after 2,500 results: the reopened state has those flushed."""
    path = tmp_path / "state.sqlite"
    script = textwrap.dedent(
        f"""
        import os, time
        from airflow_provider_crowdtwist.sync.members.row_hash import member_keys
        from airflow_provider_crowdtwist.sync.members.state import MemberState
        state = MemberState({str(path)!r}, id_type="email", secret=b"k")
        k1, k2 = member_keys([f"m{{i}}@x.com" for i in range(2500)])
        for i in range(2500):
            state.record_sent(int(k1[i]), int(k2[i]), f"m{{i}}@x.com", i)
        state.flush()
        k1, k2 = member_keys(["late@x.com"])
        state.record_sent(int(k1[0]), int(k2[0]), "late@x.com", 1)  # queued, not yet committed
        os._exit(9)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=False, env={**os.environ})
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    with _open(path, secret=b"k") as state:
        assert len(state) == 2500
    db = sqlite3.connect(path)  # the close folded the killed run's journal into the snapshot
    assert db.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 0
    assert len(db.execute("SELECT data FROM snapshot").fetchone()[0]) == 2500 * 25
    db.close()
    with _open(path, secret=b"k") as state:
        assert len(state) == 2500 and (state.lookup(*member_keys(["m7@x.com"])) >= 0).all()


@pytest.mark.parametrize("id_type", ["email", "third_party_id"])
def test_column_wise_dedupe_keys_equal_the_mappings_own(id_type):
    from airflow_provider_crowdtwist.sync.convert import MISSING, to_text
    from airflow_provider_crowdtwist.sync.members.mapping import MemberMapping
    from airflow_provider_crowdtwist.sync.members.read import dedupe_keys

    mapping = MemberMapping(id_type=id_type)
    values = [" A@X.com\t", "b@x.com", "", "   ", None, "C@x.COM\x1c", "Ünï@x.com", "x\u2003"]
    for column in (
        pd.Series(values[:6], dtype="str"),  # ASCII text: column-wise
        pd.Series(values, dtype="str"),  # non-ASCII: one by one
        pd.Series(values, dtype=object),
        pd.Series([5, 12345678901], dtype="int64"),
    ):
        texts = [to_text(value) for value in column.tolist()]
        expected = [None if text is MISSING else mapping.dedupe_key(text) for text in texts]
        got = [None if pd.isna(k) else k for k in dedupe_keys(column, mapping).tolist()]
        assert got == expected
