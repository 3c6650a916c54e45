"""The few lines of a run's files the UI shows: the top reject reasons and the sampled API calls.

Both files can hold a line per row of a million-row run, so nothing here reads a file whole: the
reasons come from the first :data:`REJECTS_SCANNED` lines of the rejects file (the page says so when
the file is longer), the calls from the first :data:`CALLS_SHOWN` lines of the calls file, each line
cut at :data:`LINE_LIMIT` characters. The texts are shown as the files hold them: the sync already
masked secrets and, in the calls file, member PII.

Only local paths (or ``file://`` URLs) are opened: the API server is not the worker, and reaching a
bucket from a page view would put the worker's storage credentials on the API server. A location the
API server cannot read is named on the page instead. No Airflow import: plain Python, fast to test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

#: Lines of the rejects file read for the reason table.
REJECTS_SCANNED = 5_000
#: Calls shown from the calls file.
CALLS_SHOWN = 200
#: A line longer than this is cut (a response body is already cut at 4 KB by the sync).
LINE_LIMIT = 16_384
#: Reasons listed.
TOP_REASONS = 10

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"\d+")


@dataclass
class FileRead:
    """What a bounded read of one file gave: the records, and why there are none or not all."""

    location: str | None
    records: list[dict[str, Any]] = field(default_factory=list)
    #: More lines followed the ones read.
    truncated: bool = False
    #: Why the file could not be read (not local, missing, unreadable); ``None`` when it was read.
    problem: str | None = None


@dataclass(frozen=True)
class RejectReason:
    """One reason rows were rejected or failed: how many rows of the scanned lines, and one example."""

    outcome: str
    code: str
    message: str
    count: int
    example_row: int | None


def local_path(location: str | None) -> Path | None:
    """The local file behind ``location`` (a path or a ``file://`` URL); ``None`` for anything else."""
    if not location:
        return None
    if "://" not in location:
        return Path(location)
    parts = urlsplit(location)
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        return Path(unquote(parts.path))
    return None


def _lines(path: Path, limit: int) -> Iterator[str]:
    """Up to ``limit`` + 1 lines (the extra one tells that more follow), each cut at LINE_LIMIT."""
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for n, line in enumerate(handle):
            if n > limit:
                return
            yield line[:LINE_LIMIT]


def read_jsonl(location: str | None, limit: int) -> FileRead:
    """The first ``limit`` JSON objects of a JSON-lines file; lines that are not objects are skipped."""
    read = FileRead(location=location)
    if not location:
        read.problem = "none recorded"
        return read
    path = local_path(location)
    if path is None:
        read.problem = "not on this server's disk (the page opens local files only)"
        return read
    try:
        for n, line in enumerate(_lines(path, limit)):
            if n == limit:
                read.truncated = True
                break
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                read.records.append(record)
    except FileNotFoundError:
        read.problem = "not found on this server (written on the worker's disk?)"
    except OSError as exc:
        read.problem = f"cannot be read: {exc.strerror or type(exc).__name__}"
    return read


def _reason_key(record: dict[str, Any]) -> tuple[str, str, str]:
    """Rows with the same reason share a key: quoted values and numbers in the message are ignored."""
    message = str(record.get("message") or "")
    shape = _NUMBER.sub("#", _QUOTED.sub("'…'", message))
    code = str(record.get("error_code") or record.get("status") or "")
    return str(record.get("outcome") or ""), code, shape


def top_reasons(records: list[dict[str, Any]], limit: int = TOP_REASONS) -> list[RejectReason]:
    """The most frequent reasons among ``records`` (rejects-file lines), most rows first.

    Each keeps the first message of its kind as it was written and the row number of its first row.
    """
    counts: dict[tuple[str, str, str], int] = {}
    first: dict[tuple[str, str, str], dict[str, Any]] = {}
    for record in records:
        key = _reason_key(record)
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, record)
    ranked = sorted(counts, key=lambda k: (-counts[k], k))[:limit]
    reasons = []
    for key in ranked:
        example = first[key]
        row = example.get("row_number")
        reasons.append(
            RejectReason(
                outcome=key[0],
                code=key[1],
                message=str(example.get("message") or ""),
                count=counts[key],
                example_row=row if isinstance(row, int) and not isinstance(row, bool) else None,
            )
        )
    return reasons
