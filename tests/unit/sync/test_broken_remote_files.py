"""Issue #22, item 2, on object storage: a state or ledger object that lost its content is refused too.

A remote state or ledger is downloaded to a private working copy (``paths.WorkingCopy``); the checks
run on that copy, the refusal names the object as the user wrote it, and the recovery keeps the
broken object beside the new one (``NAME.broken-<UTC time>``) where the store can name a sibling.
"""

from __future__ import annotations

import io
import pathlib
from typing import Any

import pytest

from airflow_provider_crowdtwist.sync.credits.ledger import CreditIntent, CreditLedger, LedgerError
from airflow_provider_crowdtwist.sync.members.state import MemberState, StateError


class Remote:
    """An object-storage path stand-in: ``.open()``, ``.exists()``, ``.name``, ``.with_name()``."""

    def __init__(self, target: pathlib.Path) -> None:
        self.target = target
        self.name = target.name

    def open(self, mode: str = "rb") -> Any:
        if "w" in mode:
            return open(self.target, mode)
        if not self.target.exists():
            raise FileNotFoundError(str(self.target))
        return io.BytesIO(self.target.read_bytes())

    def exists(self) -> bool:
        return self.target.exists()

    def with_name(self, name: str) -> Remote:
        return Remote(self.target.with_name(name))

    def __str__(self) -> str:
        return f"store://bucket/{self.target.name}"


def test_a_zero_byte_ledger_object_is_refused_naming_the_object(tmp_path: pathlib.Path) -> None:
    remote = Remote(tmp_path / "ledger.sqlite")
    with CreditLedger.open(remote, run_id="first") as ledger:
        ledger.mark_pending([CreditIntent("order-1", "a@example.com", "purchase", 1)])
        ledger.record("order-1", "credited")
    remote.target.write_bytes(b"")  # an upload that wrote nothing
    with pytest.raises(LedgerError) as info:
        CreditLedger.open(remote, run_id="next")
    assert "the credit ledger store://bucket/ledger.sqlite is empty (0 bytes)" in str(info.value)
    assert "rebuild_ledger=True" in str(info.value)
    assert remote.target.read_bytes() == b""  # nothing uploaded over it


def test_a_rebuild_keeps_the_broken_ledger_object_beside_the_new_one(tmp_path: pathlib.Path) -> None:
    remote = Remote(tmp_path / "ledger.sqlite")
    remote.target.write_bytes(b"<html>403 Forbidden</html>")  # a proxy's answer saved as the ledger
    with CreditLedger.open(remote, run_id="rebuild", rebuild_broken=True) as ledger:
        assert ledger.broken is not None and "not a SQLite database" in ledger.broken
        assert ledger.set_aside is not None and ledger.set_aside.startswith(
            "store://bucket/ledger.sqlite.broken-"
        )
        ledger.mark_pending([CreditIntent("order-1")])
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("ledger.sqlite.broken-")]
    assert [p.read_bytes() for p in kept] == [b"<html>403 Forbidden</html>"]
    with CreditLedger.open(remote, run_id="after") as again:  # the new ledger was uploaded
        assert again.get("order-1") is not None


def test_a_truncated_state_object_is_refused_and_full_refresh_replaces_it(tmp_path: pathlib.Path) -> None:
    remote = Remote(tmp_path / "state.sqlite")
    with MemberState(remote, id_type="email", secret=b"k") as state:
        for i in range(2000):
            state.record_sent(i * 7919 + 1, i, f"m{i}@example.com", 5)
    whole = remote.target.read_bytes()
    remote.target.write_bytes(whole[: len(whole) // 2])  # an interrupted copy
    with pytest.raises(StateError) as info:
        MemberState(remote, id_type="email", secret=b"k")
    assert "the member state store://bucket/state.sqlite is truncated" in str(info.value)
    assert "full_refresh=True" in str(info.value)
    with MemberState(remote, id_type="email", secret=b"k", rebuild_broken=True) as state:
        assert len(state) == 0 and state.broken is not None
        assert state.set_aside is not None and state.set_aside.startswith(
            "store://bucket/state.sqlite.broken-"
        )
    with MemberState(remote, id_type="email", secret=b"k") as state:  # sound again
        assert len(state) == 0
