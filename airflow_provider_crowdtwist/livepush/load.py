"""The loading engine: landed JSON-lines files -> upserted warehouse rows, then the files set aside.

Memory stays flat: files are streamed line by line and rows are written in batches. Each file is one
transaction; only after it committed is the file moved to ``<source>/loaded/``. A crash between the
commit and the move loads the file again next time, which changes nothing (see ``dialects.py``), so
a file is never lost and never counted twice in the table. A line that is not a push, or a value that
cannot be its column's type, is rejected with the file, the line number and the column; every line
read ends as ``loaded`` or ``rejected``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_crowdtwist.livepush.columns import ValueRejected, feed_columns
from airflow_provider_crowdtwist.livepush.dialects import Dialect, check_table_name
from airflow_provider_crowdtwist.livepush.feeds import FEEDS
from airflow_provider_crowdtwist.livepush.rows import RowBuilder
from airflow_provider_crowdtwist.sync.outcomes import Outcome, RowResult
from airflow_provider_crowdtwist.sync.paths import describe, is_local
from airflow_provider_crowdtwist.sync.rejects import NullRejectsWriter, RejectsWriter

LOADED_DIR = "loaded"
LANDED_SUFFIX = ".jsonl"


@dataclass
class LoadSummary:
    feed: str
    table: str
    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    loaded: int = 0
    rejected: int = 0
    rejects_path: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The XCom summary, in the shape the sync summaries have (``counts`` by outcome, rows read)."""
        out = asdict(self)
        out["counts"] = {"loaded": self.loaded, "rejected": self.rejected}
        out["files_loaded"] = len(self.files)
        out["duration_seconds"] = self.seconds
        out["rejects_written"] = self.rejected if self.rejects_path else 0
        out["rows_per_second"] = round(self.rows_read / self.seconds, 1) if self.seconds else None
        return out


def landed_files(source: Any) -> list[Any]:
    """The finished files directly under ``source`` (not ``loaded/``, not the spool), oldest first."""
    if is_local(source):
        source = Path(source)
    if not source.exists():
        return []
    return sorted(
        (p for p in source.iterdir() if p.name.endswith(LANDED_SUFFIX) and p.is_file()),
        key=lambda p: p.name,
    )


def _lines(path: Any, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The file's lines, read in 1 MiB chunks through ``.read()`` alone.

    Only ``read`` is relied on: Airflow 2's object-storage file wrapper is not iterable.
    """
    with path.open("rb") as fh:
        rest = b""
        while chunk := fh.read(chunk_size):
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            yield from lines
        if rest:
            yield rest


# the C scanner that json.loads runs under its Python layers (set in JSONDecoder.__init__)
_scan_json = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def parse_json(raw: bytes) -> Any:
    """``json.loads(raw)``, cheaper a line (docs/performance.md): a million lines is the benchmark.

    A UTF-8 line that starts with ``{`` (every landed line) is scanned directly; whatever else, and
    whatever does not scan, goes through ``json.loads`` itself, so every value and every error
    message is json.loads's. (json.loads would detect UTF-16/32 only from a NUL in the first two
    bytes, which no object starting with ``{`` survives scanning, and strict UTF-8 decodes a line
    exactly as its ``surrogatepass`` does whenever it decodes at all.)
    """
    if raw[:1] == b"{":
        try:
            text = raw.decode()
            value, end = _scan_json(text, 0)
        except (ValueError, StopIteration):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            pass
        else:
            if end == len(text) or not text[end:].strip(" \t\n\r"):  # json's whitespace after a value
                return value
    return json.loads(raw)


def move_to_loaded(path: Any) -> Any:
    """``<dir>/<name>`` -> ``<dir>/loaded/<name>``, after the load of that file committed."""
    target_dir = path.parent / LOADED_DIR
    target = target_dir / path.name
    target_dir.mkdir(parents=True, exist_ok=True)
    if is_local(path):
        os.replace(path, target)
    else:
        path.rename(target)
    return target


class LiveFeedLoader:
    """Loads landed files of one feed into one table through a DB-API connection."""

    def __init__(
        self,
        connection: Any,
        dialect: Dialect,
        *,
        feed: str,
        table: str,
        batch_size: int = 5_000,
        log: logging.Logger | None = None,
    ) -> None:
        if feed not in FEEDS:
            raise ValueError(f"feed: must be one of {FEEDS}, got {feed!r}")
        check_table_name(table)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError("batch_size must be a positive integer")
        self.connection = connection
        self.dialect = dialect
        self.feed = feed
        self.table = table
        self.batch_size = batch_size
        self.log = log or logging.getLogger(__name__)
        self.columns = feed_columns(feed)
        self.builder = RowBuilder(feed, timestamp_out=dialect.timestamp_out, null=dialect.null)
        self._upsert = dialect.upsert(table, self.builder.row_columns, feed)

    def ensure_table(self) -> None:
        cur = self.connection.cursor()
        try:
            cur.execute(self.dialect.create_table(self.table, self.columns))
        finally:
            cur.close()
        self.connection.commit()

    def load(self, source: Any, *, rejects_path: Any = None) -> LoadSummary:
        started = time.monotonic()
        summary = LoadSummary(feed=self.feed, table=self.table)
        self.ensure_table()
        rejects: RejectsWriter | NullRejectsWriter = (
            RejectsWriter(rejects_path) if rejects_path is not None else NullRejectsWriter()
        )
        with rejects:
            for path in landed_files(source):
                read, loaded = self._load_file(path, rejects)
                summary.rows_read += read
                summary.loaded += loaded
                summary.rejected += read - loaded
                move_to_loaded(path)
                summary.files.append(path.name)
                self.log.info("loaded %s: %d of %d line(s) into %s", path.name, loaded, read, self.table)
        if rejects_path is not None:
            summary.rejects_path = describe(rejects_path)
        summary.seconds = round(time.monotonic() - started, 3)
        return summary

    def _load_file(self, path: Any, rejects: RejectsWriter | NullRejectsWriter) -> tuple[int, int]:
        read = loaded = 0
        name = path.name  # a property that splits the path: once per file, not once per line
        batch: list[tuple[Any, ...]] = []
        cur = self.connection.cursor()
        try:
            for number, raw in enumerate(_lines(path), start=1):
                if not raw.strip():
                    continue
                read += 1
                try:
                    row = self._row(raw, name)
                except ValueRejected as exc:
                    rejects.write(
                        RowResult(
                            row_number=number,
                            identifier=None,
                            outcome=Outcome.REJECTED,
                            code="bad_push",
                            message=f"{name} line {number}: {exc}",
                            extra={"file": name},
                        )
                    )
                    if rejects.written <= 20:
                        self.log.warning("%s line %d rejected: %s", name, number, exc)
                    continue
                batch.append(row)
                loaded += 1
                if len(batch) >= self.batch_size:
                    cur.executemany(self._upsert, batch)
                    batch.clear()
            if batch:
                cur.executemany(self._upsert, batch)
            self.connection.commit()
        except BaseException:
            self.connection.rollback()
            raise
        finally:
            cur.close()
        return read, loaded

    def _row(self, raw: bytes, source_file: str) -> tuple[Any, ...]:
        try:
            line = parse_json(raw)
        except ValueError as exc:
            raise ValueRejected(f"not JSON: {exc}") from None
        if not isinstance(line, dict) or not isinstance(line.get("push"), dict):
            raise ValueRejected("not a landed push (expected {'received_at': ..., 'push': {...}})")
        return self.builder.build(line["push"], line.get("received_at"), source_file)
