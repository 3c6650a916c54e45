"""One rule for local vs object-storage locations, shared by sources, rejects, state and the ledger."""

from __future__ import annotations

import pathlib

import pytest

from airflow_provider_crowdtwist.sync.paths import describe, is_local


class FakeRemote:
    """A path-like object with ``.open()``, like ``ObjectStoragePath``."""

    def open(self, mode: str = "rb"):  # pragma: no cover - never opened here
        raise AssertionError("not opened")

    def __str__(self) -> str:
        return "s3://bucket/key.csv"


class RemoteSubclassOfPath(pathlib.PosixPath):
    """universal-pathlib 0.2 makes object-storage paths subclasses of ``pathlib.Path``."""


@pytest.mark.parametrize(
    ("location", "local"),
    [
        ("/data/members.csv", True),
        ("members.csv", True),
        (pathlib.Path("/data/members.csv"), True),
        ("s3://bucket/members.csv", False),
        ("file:///data/members.csv", False),
        (FakeRemote(), False),
        (RemoteSubclassOfPath("/bucket/key"), False),
    ],
)
def test_is_local(location, local):
    assert is_local(location) is local


def test_object_storage_path_is_remote_on_this_airflow(tmp_path):
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    assert not is_local(ObjectStoragePath(f"file://{tmp_path}/x.csv"))
    assert is_local(tmp_path / "x.csv")


def test_describe_keeps_what_the_user_wrote():
    assert describe(pathlib.Path("/data/m.csv")) == "/data/m.csv"
    assert describe(FakeRemote()) == "s3://bucket/key.csv"
