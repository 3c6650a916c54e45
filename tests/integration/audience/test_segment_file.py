"""The Client Defined Segment file, uploaded to a real OpenSSH SFTP server: name, version, bytes."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from airflow_provider_crowdtwist.sync.audience.segment_file import (
    SegmentFileError,
    next_version,
    upload_segment,
)

pytestmark = pytest.mark.integration

DAY = dt.datetime(2026, 12, 8, 23, 59, tzinfo=dt.timezone.utc)


@pytest.fixture
def remote(sftp):
    """A fresh directory on the server and a connected client."""
    directory = sftp.root / uuid.uuid4().hex
    directory.mkdir()
    client = sftp.connect()
    yield client, str(directory)
    client.close()


def _read(client, path: str) -> bytes:
    with client.open(path, "rb") as handle:
        return handle.read()


def test_name_header_rows_byte_for_byte_and_the_version_increments(remote):
    client, directory = remote
    first = upload_segment(
        client, directory, "vip", "email_address", ["a@example.com", "zoë@example.com"], now=DAY
    )
    assert first.path == f"{directory}/vip_20261208_0001.csv"
    assert (first.version, first.rows) == (1, 2)
    expected = "email_address\na@example.com\nzoë@example.com\n".encode()
    assert _read(client, first.path) == expected
    assert first.bytes == len(expected)
    second = upload_segment(client, directory, "vip", "email_address", ["b@example.com"], now=DAY)
    assert second.path.endswith("/vip_20261208_0002.csv")
    assert _read(client, second.path) == b"email_address\nb@example.com\n"
    next_day = upload_segment(client, directory, "vip", "id", ["100001"], now=DAY + dt.timedelta(minutes=1))
    assert next_day.path.endswith("/vip_20261209_0001.csv")
    assert _read(client, next_day.path) == b"id\n100001\n"
    # nothing else is left in the directory: no temporary file
    assert sorted(client.listdir(directory)) == [
        "vip_20261208_0001.csv",
        "vip_20261208_0002.csv",
        "vip_20261209_0001.csv",
    ]


def test_the_next_version_is_read_from_the_listing(remote):
    client, directory = remote
    for name in ("vip_20261208_0007.csv", "vip_20261207_0042.csv", "vipers_20261208_0099.csv", "other.csv"):
        with client.open(f"{directory}/{name}", "wb") as handle:
            handle.write(b"id\n1\n")
    upload = upload_segment(client, directory, "vip", "id", ["5"], now=DAY)
    assert upload.path.endswith("/vip_20261208_0008.csv")
    assert next_version(["VIP_20261208_0009.csv"], "vip", DAY.date()) == 10  # headers and names: any case


def test_a_version_taken_during_the_upload_is_not_overwritten(remote):
    """Two uploads racing: the listing said 0001 was free; SFTP's rename refuses to overwrite it."""
    client, directory = remote

    class StaleListing:
        """The real client, but its first listing misses the file another upload is about to publish."""

        def __init__(self) -> None:
            self.listings = 0

        def listdir(self, path: str = "."):
            self.listings += 1
            if self.listings == 1:
                names = client.listdir(path)
                with client.open(f"{directory}/vip_20261208_0001.csv", "wb") as other:
                    other.write(b"id\n999\n")
                return names
            return client.listdir(path)

        def __getattr__(self, name):
            return getattr(client, name)

    upload = upload_segment(StaleListing(), directory, "vip", "id", ["1", "2"], now=DAY)
    assert upload.path.endswith("/vip_20261208_0002.csv")
    assert _read(client, f"{directory}/vip_20261208_0001.csv") == b"id\n999\n"  # the other upload's, intact
    assert _read(client, upload.path) == b"id\n1\n2\n"
    assert sorted(client.listdir(directory)) == ["vip_20261208_0001.csv", "vip_20261208_0002.csv"]


def test_a_failed_write_leaves_no_file_behind(remote):
    client, directory = remote

    def identifiers():
        yield "a@example.com"
        raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError, match="the source broke"):
        upload_segment(client, directory, "vip", "email_address", identifiers(), now=DAY)
    assert client.listdir(directory) == []


def test_a_large_audience_streams_through_in_blocks(remote):
    client, directory = remote
    ids = [f"member{i:06d}@example.com" for i in range(50_000)]
    upload = upload_segment(client, directory, "big", "email_address", iter(ids), now=DAY)
    body = _read(client, upload.path)
    assert body == ("email_address\n" + "".join(f"{i}\n" for i in ids)).encode()
    assert upload.rows == 50_000


def test_bad_names_and_directories_are_refused(remote):
    client, directory = remote
    with pytest.raises(SegmentFileError, match="cannot list the segment directory"):
        upload_segment(client, f"{directory}/missing", "vip", "id", ["1"], now=DAY)
    for name in ("", "a/b", ".hidden", " vip"):
        with pytest.raises(SegmentFileError, match="segment_name"):
            upload_segment(client, directory, name, "id", ["1"], now=DAY)
