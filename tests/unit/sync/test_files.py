"""The shared file helpers: the lock on the resolved real path, the working copy of a remote file."""

from __future__ import annotations

import io
import os
import pathlib

import pytest

from airflow_provider_crowdtwist.sync.credits.ledger import CreditLedger, LedgerInUseError
from airflow_provider_crowdtwist.sync.members.state import MemberState, StateInUseError
from airflow_provider_crowdtwist.sync.paths import FileInUseError, FileLock, WorkingCopy


def test_a_ledger_opened_through_a_symlink_takes_the_same_lock(tmp_path: pathlib.Path) -> None:
    real = tmp_path / "ledgers" / "credits.sqlite"
    real.parent.mkdir()
    link = tmp_path / "link.sqlite"
    link.symlink_to(real)
    with (
        CreditLedger.open(real, run_id="first"),
        pytest.raises(LedgerInUseError, match="in use by another running sync"),
    ):
        CreditLedger.open(link, run_id="second")
    with CreditLedger.open(link, run_id="after") as again:  # released on close
        assert again.counts() is not None


def test_a_lock_through_a_symlinked_directory_is_the_same_lock(tmp_path: pathlib.Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    first = FileLock(tmp_path / "real" / "f.sqlite", FileInUseError, what="f", shared="f")
    try:
        with pytest.raises(FileInUseError) as info:
            FileLock(tmp_path / "alias" / "f.sqlite", FileInUseError, what="f", shared="f")
        assert os.path.realpath(tmp_path / "real" / "f.sqlite") + ".lock" in str(info.value)
    finally:
        first.release()


def test_a_second_member_sync_on_one_state_path_fails_at_once(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "state.sqlite"
    with (
        MemberState(path, id_type="email", secret=b"k"),
        pytest.raises(StateInUseError, match="state_path one at a time"),
    ):
        MemberState(tmp_path / "." / "state.sqlite", id_type="email", secret=b"k")
    with MemberState(path, id_type="email", secret=b"k") as again:
        assert len(again) == 0


class _Remote:
    """Object storage stand-in: reachable only through ``.open()`` and ``.exists()``."""

    def __init__(self, data: bytes | None) -> None:
        self.data = data

    def exists(self) -> bool:
        return self.data is not None

    def open(self, mode: str = "rb") -> io.BytesIO:
        if "w" in mode:
            remote = self

            class _Sink(io.BytesIO):
                def close(self) -> None:
                    remote.data = self.getvalue()
                    super().close()

            return _Sink()
        if self.data is None:
            raise FileNotFoundError("missing")
        return io.BytesIO(self.data)


def test_working_copy_downloads_uploads_and_cleans_up() -> None:
    remote = _Remote(b"old")
    copy = WorkingCopy(remote, name="x.bin")
    assert copy.is_remote and copy.downloaded
    assert pathlib.Path(copy.path).read_bytes() == b"old"
    pathlib.Path(copy.path).write_bytes(b"new")
    copy.upload()
    copy.close()
    assert remote.data == b"new"
    assert not os.path.exists(copy.path)


def test_working_copy_of_a_missing_object_starts_empty() -> None:
    copy = WorkingCopy(_Remote(None), name="x.bin")
    assert not copy.downloaded and not os.path.exists(copy.path)
    copy.close()


def test_working_copy_of_a_local_path_is_the_path(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "deep" / "dir" / "f.jsonl"
    copy = WorkingCopy(target, name="ignored")
    assert copy.path == str(target) and not copy.is_remote
    assert target.parent.is_dir()
