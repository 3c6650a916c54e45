"""Sources: everything a sync reads becomes an iterator of pandas DataFrame chunks.

Why it is built this way: ``docs/sync-design.md``, section ``sync/sources.py``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from airflow_provider_crowdtwist.sync.lazy import LazyModule
from airflow_provider_crowdtwist.sync.paths import is_local

if TYPE_CHECKING:
    import pandas as pd
else:  # imported on first use: parsing a DAG must not pay for pandas (see sync/lazy.py)
    pd = LazyModule("pandas", globals(), "pd")

DEFAULT_CHUNKSIZE = 10_000

#: File formats by suffix.
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".xz": "xz"}


#: What a sync does with a line of a CSV / JSON-lines file that cannot be read.
OnBadLines = Literal["fail", "reject"]


class SourceError(ValueError):
    """The source cannot be read (bad argument, unknown format, unreadable file)."""


@dataclass(frozen=True)
class BadLine:
    """A line of a text file that could not be read as a row (yielded between chunks, in file order)."""

    line_number: int
    reason: str

    def describe(self) -> str:
        """``line N of the file: why`` (the sync adds the row number)."""
        return f"line {self.line_number} of the file: {self.reason}"


#: A source item: a chunk of rows, or a line that could not be read.
SourceItem: TypeAlias = "pd.DataFrame | BadLine"  # a string: importing this module loads no pandas

_RENAMED_DUPLICATE = re.compile(r"^(?P<base>.+)\.(?P<n>[1-9]\d*)$")


def duplicate_columns(columns: Sequence[Any]) -> list[str]:
    """Column names that occur twice, exactly or as pandas' renaming (``first_name``, ``first_name.1``)."""
    names = [str(c) for c in columns]
    present = set(names)
    seen: set[str] = set()
    found: list[str] = []
    for name in names:
        renamed = _RENAMED_DUPLICATE.match(name)
        if name in seen and name not in found:
            found.append(name)
        elif renamed and renamed["base"] in present and name not in found:
            found.append(f"{renamed['base']} / {name}")
        seen.add(name)
    return found


def _check_on_bad_lines(on_bad_lines: str) -> None:
    if on_bad_lines not in ("fail", "reject"):
        raise SourceError(f"on_bad_lines {on_bad_lines!r} is not one of fail, reject")


def _check_chunksize(chunksize: int) -> int:
    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise SourceError(f"chunksize must be a positive integer, got {chunksize!r}")
    return chunksize


def frame_chunks(frame: pd.DataFrame, chunksize: int = DEFAULT_CHUNKSIZE) -> Iterator[pd.DataFrame]:
    """Slice a DataFrame into chunks of at most ``chunksize`` rows (views, no copies)."""
    _check_chunksize(chunksize)
    for start in range(0, len(frame), chunksize):
        yield frame.iloc[start : start + chunksize]


def records_chunks(
    records: Iterable[Mapping[str, Any]], chunksize: int = DEFAULT_CHUNKSIZE
) -> Iterator[pd.DataFrame]:
    """Group an iterable of dicts (e.g. an XCom) into DataFrame chunks."""
    _check_chunksize(chunksize)
    batch: list[Mapping[str, Any]] = []
    for i, record in enumerate(records, start=1):
        if not isinstance(record, Mapping):
            raise SourceError(f"rows: item {i} is a {type(record).__name__}, expected a mapping (dict)")
        batch.append(record)
        if len(batch) >= chunksize:
            yield pd.DataFrame.from_records(batch).astype(object)
            batch = []
    if batch:
        yield pd.DataFrame.from_records(batch).astype(object)


def detect_format(
    path: str | os.PathLike[str] | Any, file_format: str | None = None
) -> tuple[str, str | None]:
    """Return ``(format, compression)`` from an explicit format or the path's suffixes."""
    name = str(getattr(path, "name", None) or PurePath(str(path)).name).lower()
    compression = None
    for suffix, comp in _COMPRESSIONS.items():
        if name.endswith(suffix):
            compression = comp
            name = name[: -len(suffix)]
            break
    if file_format:
        fmt = file_format.lower().lstrip(".")
        fmt = {"ndjson": "jsonl", "json": "jsonl", "pq": "parquet"}.get(fmt, fmt)
        if fmt not in set(FORMATS.values()):
            raise SourceError(f"file_format {file_format!r} is not one of csv, tsv, jsonl, parquet")
        return fmt, compression
    for suffix, fmt in FORMATS.items():
        if name.endswith(suffix):
            return fmt, compression
    raise SourceError(
        f"source_path {str(path)!r}: cannot tell the format from the name; "
        "use a .csv, .tsv, .jsonl/.ndjson/.json or .parquet file (optionally .gz)"
    )


def _open_binary(path: Any, stack: ExitStack) -> Any:
    if not is_local(path):
        return stack.enter_context(path.open("rb"))
    local = os.fspath(path)
    if not os.path.exists(local):
        raise SourceError(f"source_path {local!r} does not exist")
    return stack.enter_context(open(local, "rb"))


def file_chunks(
    path: str | os.PathLike[str] | Any,
    chunksize: int = DEFAULT_CHUNKSIZE,
    *,
    file_format: str | None = None,
    on_bad_lines: OnBadLines = "fail",
) -> Iterator[SourceItem]:
    """Read a CSV, TSV, JSON-lines or Parquet file in chunks."""
    _check_chunksize(chunksize)
    _check_on_bad_lines(on_bad_lines)
    fmt, compression = detect_format(path, file_format)
    with ExitStack() as stack:
        handle = _open_binary(path, stack)
        if fmt == "parquet":
            yield from _parquet_chunks(handle, chunksize, path)
            return
        text = _text(_decompressed(handle, compression, stack))
        if fmt == "jsonl":
            yield from _chunked(_jsonl_items(text), chunksize, on_bad_lines, "JSON lines", None)
            return
        records = _CsvRecords(text, "\t" if fmt == "tsv" else ",")
        yield from _chunked(iter(records), chunksize, on_bad_lines, fmt.upper(), records)


def _decompressed(handle: Any, compression: str | None, stack: ExitStack) -> Any:
    if not compression:
        return handle
    import bz2
    import gzip
    import lzma

    openers: dict[str, Callable[..., Any]] = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}
    if compression not in openers:
        raise SourceError(f"compression {compression!r} is not supported for text files (use gz, bz2, xz)")
    return stack.enter_context(openers[compression](handle, "rb"))


def _text(handle: Any) -> io.TextIOWrapper:
    """The file as text. A byte that is not UTF-8 does not stop the read: ``surrogateescape`` keeps it
    as a lone surrogate (U+DC80..U+DCFF), which :func:`_undecodable` finds in the line it belongs to.
    Decoding stays in C, and ``newline=""`` leaves line ends to the ``csv`` module (quoted newlines)."""
    return io.TextIOWrapper(handle, encoding="utf-8-sig", errors="surrogateescape", newline="")


_SURROGATE = re.compile("[\udc80-\udcff]")


def _undecodable(values: Iterable[str], names: Sequence[str] | None = None) -> str | None:
    """Why a line is not UTF-8 (the first escaped byte and where), or None. ASCII text is skipped at
    C speed, so a clean file pays one ``isascii()`` a value."""
    for i, value in enumerate(values):
        if value.isascii():
            continue
        found = _SURROGATE.search(value)
        if found:
            where = f"in column {names[i]!r}" if names is not None and i < len(names) else f"in field {i + 1}"
            return f"byte 0x{ord(found.group()) - 0xDC00:02x} ({where}) is not UTF-8 text"
    return None


class _CsvRecords:
    """CSV records as lists of values (empty cells ``None``), or :class:`BadLine`; the header is line 1."""

    def __init__(self, text: io.TextIOWrapper, delimiter: str) -> None:
        self.text = text
        self.delimiter = delimiter
        self.header: list[str] | None = None

    def __iter__(self) -> Iterator[list[Any] | BadLine]:
        reader = csv.reader(self.text, delimiter=self.delimiter, strict=True)
        last = 0  # the last line of the previous record
        width = 0
        while True:
            try:
                fields, error = next(reader), None
            except StopIteration:
                return
            except csv.Error as exc:
                fields, error = [], f"malformed CSV ({exc})"
            first, last = last + 1, reader.line_num
            bad = error or (None if all(map(str.isascii, fields)) else _undecodable(fields, self.header))
            if self.header is None:
                if bad:
                    raise SourceError(f"CSV: the header (line {first}) cannot be read: {bad}")
                if fields:
                    self.header, width = fields, len(fields)
                continue
            if bad:
                yield BadLine(first, bad)
            elif len(fields) > width:
                columns = _names(self.header)
                yield BadLine(first, f"{len(fields)} fields, the header has {width} ({columns})")
            elif len(fields) == width:
                yield [f or None for f in fields]
            elif fields:  # a blank line is no record
                yield [f or None for f in fields] + [None] * (width - len(fields))


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:10])
    return shown + (", ..." if len(names) > 10 else "")


def _jsonl_items(text: io.TextIOWrapper) -> Iterator[dict[str, Any] | BadLine]:
    """One dict per non-blank line, or a :class:`BadLine`. Parsed with the json module: pandas' JSON
    reader infers types (ids become ints, ISO strings become dates) and we want values as written."""
    for number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        bad = _undecodable((line,))
        if bad:
            yield BadLine(number, bad.replace(" (in field 1)", ""))
            continue
        try:
            record = json.loads(line, object_pairs_hook=_object_without_repeats)
        except _RepeatedKey as exc:
            yield BadLine(number, f"key {exc.key!r} appears twice in one object")
            continue
        except json.JSONDecodeError as exc:
            yield BadLine(number, f"not valid JSON ({exc.msg})")
            continue
        if not isinstance(record, dict):
            yield BadLine(number, f"not a JSON object (a {type(record).__name__})")
            continue
        yield record


class _RepeatedKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _RepeatedKey(key)
        out[key] = value
    return out


def _chunked(
    items: Iterator[Any], chunksize: int, on_bad_lines: str, label: str, csv_records: _CsvRecords | None
) -> Iterator[SourceItem]:
    """Rows (dicts, or CSV value lists) into DataFrame chunks of object columns (text kept as text);
    bad lines raise, or come out between the chunks."""
    batch: list[Any] = []

    def frame() -> pd.DataFrame:
        if csv_records is not None:  # the header as written: a repeated name stays visible to the sync
            return pd.DataFrame(batch, columns=csv_records.header, dtype=object)
        return pd.DataFrame.from_records(batch).astype(object)

    for item in items:
        if isinstance(item, BadLine):
            if on_bad_lines == "fail":
                raise SourceError(f"{label}: {item.describe()} (on_bad_lines='reject' would skip the line)")
            if batch:
                yield frame()
                batch = []
            yield item
            continue
        batch.append(item)
        if len(batch) >= chunksize:
            yield frame()
            batch = []
    if batch:
        yield frame()


def _parquet_chunks(handle: Any, chunksize: int, path: Any) -> Iterator[pd.DataFrame]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SourceError(
            f"source_path {str(path)!r}: reading Parquet needs pyarrow "
            "(pip install 'airflow-provider-crowdtwist[parquet]')"
        ) from exc
    parquet = pq.ParquetFile(handle)
    for batch in parquet.iter_batches(batch_size=chunksize):
        yield batch.to_pandas()


def iter_chunks(
    source: Any,
    chunksize: int = DEFAULT_CHUNKSIZE,
    *,
    file_format: str | None = None,
    on_bad_lines: OnBadLines = "fail",
) -> Iterator[SourceItem]:
    """Turn any supported source into DataFrame chunks of at most ``chunksize`` rows."""
    _check_chunksize(chunksize)
    if isinstance(source, pd.DataFrame):
        yield from frame_chunks(source, chunksize)
        return
    if isinstance(source, (str, PurePath)) or (hasattr(source, "open") and hasattr(source, "name")):
        yield from file_chunks(source, chunksize, file_format=file_format, on_bad_lines=on_bad_lines)
        return
    if isinstance(source, Mapping):
        try:
            frame = pd.DataFrame(dict(source)).astype(object)
        except ValueError as exc:
            raise SourceError(f"rows: a dict must map column names to equal-length lists ({exc})") from None
        yield from frame_chunks(frame, chunksize)
        return
    if isinstance(source, Sequence) and not isinstance(source, (bytes, bytearray)):
        if not source:
            return
        if isinstance(source[0], pd.DataFrame):
            for frame in source:
                yield from iter_chunks(frame, chunksize)
            return
        yield from records_chunks(source, chunksize)
        return
    if isinstance(source, Iterable):
        iterator = iter(source)
        for item in iterator:
            if isinstance(item, pd.DataFrame):
                if len(item):
                    yield from frame_chunks(item, chunksize)
                for rest in iterator:
                    if not isinstance(rest, pd.DataFrame):
                        raise SourceError(f"source: expected DataFrame chunks, got {type(rest).__name__}")
                    if len(rest):
                        yield from frame_chunks(rest, chunksize)
            else:

                def _chain(first: Any = item) -> Iterator[Any]:
                    yield first
                    yield from iterator

                yield from records_chunks(_chain(), chunksize)
            return
        return
    raise SourceError(f"unsupported source of type {type(source).__name__}")


def chunk_records(chunk: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """One dict per row of ``chunk`` (string column names), via ``itertuples``: the per-row cost the
    syncs pay, so no per-row DataFrame access."""
    columns = [str(c) for c in chunk.columns]
    for values in chunk.itertuples(index=False, name=None):
        yield dict(zip(columns, values, strict=True))
