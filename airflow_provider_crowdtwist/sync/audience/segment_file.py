"""The Client Defined Segment file: the whole audience as Oracle's CSV, uploaded over SFTP.

Format (O:ClientDefinedSegments, ``crowdtwist-api.md``): file name
``[CUSTOM_SEGMENT_NAME]_YYYYMMDD_[SEGMENT_VERSION].csv`` with a 4-digit version, a later upload the
same day needs a higher version (it replaces the segment); UTF-8, **no field enclosures**, a header
row naming the identifier column (``id``, ``third_party_id``, ``email_address``, ``username``,
``mobile_phone_number``), one member a line. Identifiers that cannot be written unquoted were
rejected when read (:mod:`.identifiers`).

Why a temporary name: CrowdTwist picks files up from the directory on its own schedule; a file it
found half written would replace the segment with half the audience. The file is written as
``.NAME_YYYYMMDD_VVVV.csv.part`` (a name no segment pattern matches) and renamed when complete. The
next version is read from the directory listing; SFTP's rename does not overwrite, so two uploads
racing for one version cannot both win -- the loser takes the next version.

No Airflow here: the writer takes any SFTP client with paramiko's ``listdir``/``open``/``rename``/
``remove`` (the operator gets paramiko's from the SFTP provider's hook).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

MAX_VERSION = 9999
_WRITE_BLOCK = 256 * 1024
_RENAME_ATTEMPTS = 5


class SftpClient(Protocol):
    """What the writer needs of an SFTP client (paramiko's ``SFTPClient`` has it)."""

    def listdir(self, path: str = ".") -> list[str]: ...
    def open(self, filename: str, mode: str = "r", bufsize: int = -1) -> Any: ...
    def rename(self, oldpath: str, newpath: str) -> None: ...
    def remove(self, path: str) -> None: ...


class SegmentFileError(RuntimeError):
    """The segment file could not be published (the directory, the versions of the day, the upload)."""


@dataclass(frozen=True)
class SegmentUpload:
    """A published segment file: where, which version, how many members and bytes."""

    path: str
    name: str
    version: int
    rows: int
    bytes: int


def segment_name_problem(name: Any) -> str | None:
    """Why ``name`` cannot start a segment file name, or ``None`` (only what breaks a file name)."""
    if not isinstance(name, str) or not name.strip():
        return "segment_name must be a non-empty string"
    if name != name.strip() or any(c in name for c in "/\\\x00") or name.startswith("."):
        return f"segment_name {name!r} cannot be part of a file name (no '/', leading dot or outer spaces)"
    return None


def file_name(segment: str, day: dt.date, version: int) -> str:
    """``[NAME]_YYYYMMDD_[VERSION].csv``."""
    return f"{segment}_{day:%Y%m%d}_{version:04d}.csv"


def next_version(listing: Iterable[str], segment: str, day: dt.date) -> int:
    """One more than the highest version of ``segment`` uploaded on ``day`` (1 for the first)."""
    pattern = re.compile(rf"^{re.escape(segment)}_{day:%Y%m%d}_([0-9]{{4}})\.csv$", re.IGNORECASE)
    versions = [int(m.group(1)) for m in map(pattern.match, listing) if m]
    return max(versions, default=0) + 1


def upload_segment(
    sftp: SftpClient,
    directory: str,
    segment: str,
    header: str,
    identifiers: Iterable[str],
    *,
    now: dt.datetime | None = None,
) -> SegmentUpload:
    """Write the audience under a temporary name in ``directory``, then rename it to the next version.

    ``now`` (UTC) decides the day in the name.
    """
    problem = segment_name_problem(segment)
    if problem:
        raise SegmentFileError(problem)
    day = (now or dt.datetime.now(dt.timezone.utc)).date()
    try:
        listing = sftp.listdir(directory or ".")
    except OSError as exc:
        raise SegmentFileError(f"cannot list the segment directory {directory!r}: {exc}") from exc
    version = next_version(listing, segment, day)
    if version > MAX_VERSION:
        raise SegmentFileError(
            f"segment {segment!r} already has version {MAX_VERSION} today; no higher exists"
        )
    temp = posixpath.join(directory, f".{file_name(segment, day, version)}.part")
    try:
        rows, size = _write(sftp, temp, header, identifiers)
    except BaseException as exc:
        _remove_quietly(sftp, temp)
        if isinstance(exc, OSError):
            raise SegmentFileError(f"cannot write the segment file {temp!r}: {exc}") from exc
        raise
    for _ in range(_RENAME_ATTEMPTS):
        final = posixpath.join(directory, file_name(segment, day, version))
        try:
            sftp.rename(temp, final)
        except OSError as exc:
            # the version was taken meanwhile (rename never overwrites): take the next one
            listing = _list_quietly(sftp, directory)
            if file_name(segment, day, version) not in listing or version >= MAX_VERSION:
                _remove_quietly(sftp, temp)
                raise SegmentFileError(f"cannot rename {temp!r} to {final!r}: {exc}") from exc
            version = max(next_version(listing, segment, day), version + 1)
            continue
        return SegmentUpload(final, segment, version, rows, size)
    _remove_quietly(sftp, temp)
    raise SegmentFileError(f"every version of {segment!r} tried today was taken by another upload")


def _write(sftp: SftpClient, path: str, header: str, identifiers: Iterable[str]) -> tuple[int, int]:
    rows = 0
    size = 0
    with sftp.open(path, "wb") as remote:
        if hasattr(remote, "set_pipelined"):
            remote.set_pipelined(True)  # paramiko: do not wait for each block's acknowledgement
        buffer: list[bytes] = [(header + "\n").encode("utf-8")]
        buffered = len(buffer[0])
        for identifier in identifiers:
            line = (identifier + "\n").encode("utf-8")
            buffer.append(line)
            buffered += len(line)
            rows += 1
            if buffered >= _WRITE_BLOCK:
                remote.write(b"".join(buffer))
                size += buffered
                buffer, buffered = [], 0
        if buffer:
            remote.write(b"".join(buffer))
            size += buffered
    return rows, size


def _list_quietly(sftp: SftpClient, directory: str) -> list[str]:
    try:
        return sftp.listdir(directory or ".")
    except OSError:
        return []


def _remove_quietly(sftp: SftpClient, path: str) -> None:
    with contextlib.suppress(OSError):
        sftp.remove(path)
