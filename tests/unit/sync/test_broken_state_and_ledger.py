"""Issue #22, items 2 and 8: a state or ledger that lost its content is refused, never taken as new.

Each test damages a REAL file the way a full disk, a bad copy or a tired operator does (cut to zero
bytes, cut short, a page overwritten, the snapshot blob cut, the file deleted but its log kept) and
expects a refusal that names the file, says what is wrong and names the recovery -- and leaves the
file as it was. A first run (no file at all) stays the normal case; the recovery options
(``rebuild_broken``: the sync's ``full_refresh`` and the operator's ``rebuild_ledger``) set the broken
file aside and start anew.
"""

from __future__ import annotations

import os
import pathlib
import re
import sqlite3

import pytest

from airflow_provider_crowdtwist.sync.credits.ledger import CreditIntent, CreditLedger, LedgerError
from airflow_provider_crowdtwist.sync.members.row_hash import member_keys
from airflow_provider_crowdtwist.sync.members.state import MemberState, StateError

SECRET = b"connection-api-key"
PAGE = 4096


def _state(path: pathlib.Path, **kwargs: object) -> MemberState:
    return MemberState(path, id_type="email", secret=SECRET, **kwargs)  # type: ignore[arg-type]


def make_state(path: pathlib.Path, members: int = 3000) -> None:
    """A real state of ``members`` members, folded into its snapshot (several pages)."""
    names = [f"m{i}@example.com" for i in range(members)]
    k1, k2 = member_keys(names)
    with _state(path) as state:
        for a, b, name in zip(k1.tolist(), k2.tolist(), names, strict=True):
            state.record_sent(a, b, name, 7)


def make_ledger(path: pathlib.Path, keys: int = 2000) -> None:
    """A real ledger with ``keys`` credited keys (several pages)."""
    with CreditLedger.open(path, run_id="earlier") as ledger:
        intents = [CreditIntent(f"order-{i}", f"m{i}@example.com", "purchase", 5) for i in range(keys)]
        ledger.mark_pending(intents)
        ledger.record_many((i.dedupe_key, "credited", None) for i in intents)


def cut_to(path: pathlib.Path, size: int) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(size)


def overwrite_page(path: pathlib.Path, page: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(page * PAGE)
        handle.write(b"\xa5" * PAGE)


DAMAGE = {
    "empty": (lambda p: cut_to(p, 0), r"is empty \(0 bytes\)"),
    "cut-short": (lambda p: cut_to(p, 3 * PAGE), r"is truncated"),
    "cut-mid-page": (lambda p: cut_to(p, 3 * PAGE + 1000), r"is truncated"),
    "page-overwritten": (lambda p: overwrite_page(p, 4), r"is corrupt"),
    "not-sqlite": (lambda p: p.write_bytes(b"id,points\n1,2\n" * 500), r"is not a SQLite database"),
}


def _refused(error: BaseException, path: pathlib.Path, reason: str, recovery: str) -> None:
    text = str(error)
    assert str(path) in text, text  # names the file
    assert re.search(reason, text), text  # says what is wrong
    assert recovery in text, text  # and the way out
    assert "nothing was sent" in text


# ---------------------------------------------------------------------- the ledger


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_ledger_is_refused_naming_the_file_and_the_way_out(
    tmp_path: pathlib.Path, damage: str
) -> None:
    path = tmp_path / "credits.sqlite"
    make_ledger(path)
    assert path.stat().st_size > 6 * PAGE
    spoil, reason = DAMAGE[damage]
    spoil(path)
    before = path.read_bytes()
    with pytest.raises(LedgerError) as info:
        CreditLedger.open(path, run_id="next")
    _refused(info.value, path, reason, "rebuild_ledger=True")
    assert path.read_bytes() == before  # refused without writing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["credits.sqlite", "credits.sqlite.lock"]


def test_a_zero_byte_ledger_is_not_a_new_ledger_with_every_key_sendable_again(tmp_path: pathlib.Path) -> None:
    """The issue's measurement: 100 credited keys, the file cut to 0 bytes, every key sendable again."""
    path = tmp_path / "credits.sqlite"
    make_ledger(path, keys=100)
    cut_to(path, 0)
    accepted: set[str] = set()
    with (
        pytest.raises(LedgerError, match="is empty"),
        CreditLedger.open(path, run_id="next") as ledger,  # today: opens as a new, empty ledger
    ):
        accepted = ledger.mark_pending(CreditIntent(f"order-{i}") for i in range(100))
    assert accepted == set()


def test_a_ledger_deleted_without_its_write_ahead_log_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "credits.sqlite"
    make_ledger(path, keys=10)
    ledger = CreditLedger.open(path, run_id="killed")
    ledger.mark_pending([CreditIntent("in-flight")])  # in the WAL
    wal = pathlib.Path(f"{path}-wal")
    assert wal.stat().st_size > 0
    kept = wal.read_bytes()
    ledger._conn.close()  # a killed worker: the WAL stays behind
    ledger._release_file_lock()
    wal.write_bytes(kept)  # (closing the last connection would have checkpointed it away)
    path.unlink()  # "cleaning up" the ledger, not its log
    with pytest.raises(LedgerError) as info:
        CreditLedger.open(path, run_id="next")
    _refused(info.value, path, r"does not exist, but its write-ahead log .*-wal", "rebuild_ledger=True")
    assert not path.exists()


def test_a_ledger_behind_a_dangling_symlink_is_refused(tmp_path: pathlib.Path) -> None:
    link = tmp_path / "credits.sqlite"
    link.symlink_to(tmp_path / "unmounted" / "credits.sqlite")
    with pytest.raises(
        LedgerError, match=r"is a symbolic link to .*unmounted/credits\.sqlite, which does not exist"
    ):
        CreditLedger.open(link, run_id="next")
    assert not (tmp_path / "unmounted").exists()


def test_a_ledger_holding_no_tables_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "credits.sqlite"
    sqlite3.connect(path).execute("PRAGMA user_version=2").connection.close()  # a header, no tables
    assert path.stat().st_size > 0
    with pytest.raises(LedgerError, match=r"holds no tables.*rebuild_ledger=True"):
        CreditLedger.open(path, run_id="next")


def test_a_first_run_still_creates_the_ledger_and_a_rebuild_sets_the_broken_one_aside(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "credits.sqlite"
    with CreditLedger.open(path, run_id="first") as ledger:  # no file at all: the normal case
        assert ledger.counts()["credited"] == 0
        assert ledger.broken is None
    make_ledger(path, keys=50)
    overwrite_page(path, 3)
    broken = path.read_bytes()
    with CreditLedger.open(path, run_id="rebuild", rebuild_broken=True) as ledger:
        assert ledger.broken is not None and "is corrupt" in ledger.broken
        assert ledger.set_aside is not None
        assert ledger.counts() == {"pending": 0, "credited": 0, "unknown": 0, "failed": 0}
        assert ledger.mark_pending([CreditIntent("order-1")]) == {"order-1"}
    aside = pathlib.Path(ledger.set_aside)
    assert aside.name.startswith("credits.sqlite.broken-") and aside.read_bytes() == broken
    with CreditLedger.open(path, run_id="after") as again:  # the new ledger is sound and kept
        assert again.get("order-1") is not None


def test_a_foreign_sqlite_file_is_not_set_aside_by_a_rebuild(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "credits.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE credits (id INTEGER PRIMARY KEY, amount REAL)")
    db.commit()
    db.close()
    with pytest.raises(LedgerError, match="not a credit ledger"):
        CreditLedger.open(path, rebuild_broken=True)
    assert [p.name for p in tmp_path.iterdir() if "broken" in p.name] == []


# ---------------------------------------------------------------------- the member state


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_member_state_is_refused_naming_the_file_and_the_way_out(
    tmp_path: pathlib.Path, damage: str
) -> None:
    path = tmp_path / "state.sqlite"
    make_state(path)
    assert path.stat().st_size > 6 * PAGE
    spoil, reason = DAMAGE[damage]
    spoil(path)
    before = path.read_bytes()
    with pytest.raises(StateError) as info:
        _state(path)
    _refused(info.value, path, reason, "full_refresh=True")
    assert path.read_bytes() == before
    with pytest.raises(StateError) as info:  # a dry run says the same (and touches nothing)
        _state(path, read_only=True)
    _refused(info.value, path, reason, "full_refresh=True")


def test_a_zero_byte_state_is_not_a_new_state(tmp_path: pathlib.Path) -> None:
    """The issue's measurement: every member would be sent again and removal tracking lost."""
    path = tmp_path / "state.sqlite"
    make_state(path, members=100)
    cut_to(path, 0)
    with (
        pytest.raises(StateError, match=r"is empty \(0 bytes\).*forget who left the source"),
        _state(path) as state,  # today: a new, empty state
    ):
        assert len(state) == 100


def test_a_cut_snapshot_blob_is_refused_naming_the_file(tmp_path: pathlib.Path) -> None:
    """Today: ``buffer size must be a multiple of element size``, naming no file."""
    path = tmp_path / "state.sqlite"
    make_state(path, members=100)
    db = sqlite3.connect(path)
    db.execute("UPDATE snapshot SET data = substr(data, 1, length(data) - 3)")
    db.commit()
    db.close()
    with pytest.raises(StateError) as info:
        _state(path)
    _refused(
        info.value, path, r"snapshot holds 2497 bytes, not a whole number of 25-byte members", "full_refresh"
    )


def test_a_shuffled_snapshot_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "state.sqlite"
    make_state(path, members=100)
    db = sqlite3.connect(path)
    blob = db.execute("SELECT data FROM snapshot").fetchone()[0]
    db.execute("UPDATE snapshot SET data = ?", (blob[25:50] + blob[:25] + blob[50:],))
    db.commit()
    db.close()
    with pytest.raises(StateError, match="not in key order"):
        _state(path)


def test_a_state_deleted_without_its_write_ahead_log_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "state.sqlite"
    make_state(path, members=10)
    pathlib.Path(f"{path}-wal").write_bytes(b"\x37\x7f\x06\x82" + b"\0" * 28)  # a killed run's log
    path.unlink()
    with pytest.raises(StateError, match="does not exist, but its write-ahead log"):
        _state(path)


def test_full_refresh_over_a_broken_state_sets_it_aside_and_starts_anew(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "state.sqlite"
    make_state(path, members=100)
    cut_to(path, 0)
    with _state(path, rebuild_broken=True) as state:
        assert state.broken == "is empty (0 bytes)"
        assert state.set_aside is not None
        assert len(state) == 0
        k1, k2 = member_keys(["back@example.com"])
        state.record_sent(int(k1[0]), int(k2[0]), "back@example.com", 1)
    aside = pathlib.Path(state.set_aside)
    assert aside.parent == tmp_path and aside.stat().st_size == 0  # kept, as it was
    with _state(path) as again:  # sound now
        assert len(again) == 1


def test_a_dry_run_with_full_refresh_over_a_broken_state_touches_nothing(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "state.sqlite"
    make_state(path, members=10)
    overwrite_page(path, 2)
    before = sorted(os.listdir(tmp_path))
    with _state(path, read_only=True, rebuild_broken=True) as state:
        assert state.broken is not None and len(state) == 0
        assert state.set_aside is None
    assert sorted(os.listdir(tmp_path)) == before


def test_a_foreign_file_is_not_taken_for_a_member_state(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "state.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    db.commit()
    db.close()
    with pytest.raises(StateError, match=r"is not a member state \(it holds the tables orders\)"):
        _state(path, rebuild_broken=True)
    assert sorted(p.name for p in tmp_path.iterdir() if "broken" in p.name) == []


def test_a_first_run_creates_the_state_and_a_killed_creation_leaves_no_file(tmp_path: pathlib.Path) -> None:
    from airflow_provider_crowdtwist.sync.file_guard import create_whole

    path = tmp_path / "state.sqlite"

    def dies(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE meta (name TEXT)")
        raise KeyboardInterrupt  # killed half-way through creating the file

    with pytest.raises(KeyboardInterrupt):
        create_whole(str(path), dies)
    assert os.listdir(tmp_path) == []  # no empty file that a next run would have to refuse
    with _state(path) as state:  # no file at all: the normal first run
        assert len(state) == 0 and state.broken is None
    assert path.stat().st_size > 0


# ---------------------------------------------------------------------- the files the syncs rewrite


@pytest.mark.parametrize("alias", ["same-path", "symlink", "hard-link"])
def test_a_rejects_file_never_overwrites_a_ledger_or_state(tmp_path: pathlib.Path, alias: str) -> None:
    """The rejects file is rewritten on every run: named like the ledger, it would empty it."""
    from airflow_provider_crowdtwist.sync.rejects import RejectsWriter

    ledger = tmp_path / "credits.sqlite"
    make_ledger(ledger, keys=20)
    target = ledger if alias == "same-path" else tmp_path / "rejects.jsonl"
    if alias == "symlink":
        target.symlink_to(ledger)
    elif alias == "hard-link":
        os.link(ledger, target)
    before = ledger.read_bytes()
    with pytest.raises(ValueError, match=r"rejects_path .* is a SQLite database .*give rejects_path a file"):
        RejectsWriter(target)
    assert ledger.read_bytes() == before
    with CreditLedger.open(ledger) as again:
        assert again.counts()["credited"] == 20
