"""Issue #22, item 7: the lock is on the file, not on its name.

A hard link is another name of the same file: two syncs reaching one ledger or state through two
hard links took two different lock files and both ran (300 keys credited twice, and SQLite, which
names the write-ahead log after the path, corrupted the file). Every way of naming one file -- a hard
link in another directory, a symlink, a relative path -- must meet the same lock, in this process
and in another one.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_crowdtwist.sync.credits.ledger import CreditIntent, CreditLedger, LedgerInUseError
from airflow_provider_crowdtwist.sync.members.state import MemberState, StateInUseError

SECRET = b"connection-api-key"


def _state(path: Any) -> MemberState:
    return MemberState(path, id_type="email", secret=SECRET)


def _alias(kind: str, real: pathlib.Path, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Another name of ``real``: a hard link in another directory, a symlink, or a relative path."""
    other_dir = tmp_path / "elsewhere"
    other_dir.mkdir(exist_ok=True)
    if kind == "hard-link":
        alias = other_dir / "copy-of-ledger.sqlite"
        os.link(real, alias)
        return alias
    if kind == "symlink":
        alias = other_dir / "link.sqlite"
        alias.symlink_to(real)
        return alias
    monkeypatch.chdir(real.parent)
    return real.name  # relative


KINDS = ["hard-link", "symlink", "relative-path"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_ledger_reached_by_another_name_is_refused_while_a_sync_holds_it(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    real = tmp_path / "ledgers" / "credits.sqlite"
    real.parent.mkdir()
    CreditLedger.open(real, run_id="create").close()
    alias = _alias(kind, real, tmp_path, monkeypatch)
    with CreditLedger.open(real, run_id="first") as first:
        first.mark_pending([CreditIntent("order-1", "a@example.com", "purchase", 10)])
        with pytest.raises(LedgerInUseError, match="in use by another running sync"):
            CreditLedger.open(alias, run_id="second")
        assert first.get("order-1").state == "pending"  # not turned 'unknown' by a second run's recovery
    with CreditLedger.open(alias, run_id="after") as after:  # released on close
        assert after.get("order-1") is not None


@pytest.mark.parametrize("kind", KINDS)
def test_a_member_state_reached_by_another_name_is_refused_while_a_sync_holds_it(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    real = tmp_path / "states" / "members.sqlite"
    real.parent.mkdir()
    _state(real).close()
    alias = _alias(kind, real, tmp_path, monkeypatch)
    with _state(real), pytest.raises(StateInUseError, match="in use by another running sync"):
        _state(alias)
    _state(alias).close()  # released on close


def _holder(kind: str, path: pathlib.Path) -> str:
    """A child process that opens ``path`` as a ledger or state, says so, and waits for stdin."""
    opener = (
        f"CreditLedger.open({str(path)!r}, run_id='child')"
        if kind == "ledger"
        else f"MemberState({str(path)!r}, id_type='email', secret=b'k')"
    )
    return textwrap.dedent(
        f"""
        import sys
        from airflow_provider_crowdtwist.sync.credits.ledger import CreditLedger
        from airflow_provider_crowdtwist.sync.members.state import MemberState
        held = {opener}
        print("held", flush=True)
        sys.stdin.read()
        held.close()
        """
    )


@pytest.mark.parametrize(
    ("kind", "opener", "busy"),
    [
        ("ledger", lambda p: CreditLedger.open(p, run_id="parent"), LedgerInUseError),
        ("state", _state, StateInUseError),
    ],
    ids=["ledger", "state"],
)
def test_another_process_holding_the_file_by_a_hard_link_refuses_this_one(
    tmp_path: pathlib.Path, kind: str, opener: Callable[[Any], Any], busy: type[Exception]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = tmp_path / "a" / "file.sqlite"
    opener(first).close()
    second = tmp_path / "b" / "same-file.sqlite"
    os.link(first, second)
    child = subprocess.Popen(
        [sys.executable, "-c", _holder(kind, first)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(busy) as info:
            opener(second)
        assert "hard link" in str(info.value)  # says why another name can hold it
    finally:
        child.communicate("", timeout=30)
    assert child.returncode == 0
    opener(second).close()  # free once the other process let go
