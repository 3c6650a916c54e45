"""Sources: everything a sync reads becomes an iterator of pandas DataFrame chunks.

One shape for every source keeps the engines simple and memory flat: a SQL query read with
``get_df_by_chunks``, a DataFrame, a list of dicts from an XCom, or a CSV / JSON-lines / Parquet file
(local, or any path-like object with ``.open()`` such as Airflow's ``ObjectStoragePath``) all come
out as DataFrames of at most ``chunksize`` rows. Files are read chunk by chunk, never whole.

Text files are read with every column as text: a postal code ``02134`` or a phone number must not be
turned into an integer by type inference. The converters in ``convert.py`` turn text into numbers,
booleans and dates where the CrowdTwist attribute needs one.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import PurePath
from typing import Any

import pandas as pd

from airflow_provider_crowdtwist.sync.paths import is_local

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


class SourceError(ValueError):
    """The source cannot be read (bad argument, unknown format, unreadable file)."""


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
    """Group an iterable of dicts (e.g. an XCom) into DataFrame chunks.

    Values are kept as given (``dtype=object``) so that ids and postal codes keep their exact form.
    """
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
) -> Iterator[pd.DataFrame]:
    """Read a CSV, TSV, JSON-lines or Parquet file in chunks.

    ``path`` is a local path or any object with ``.open(mode)`` (``ObjectStoragePath``, ``UPath``);
    the file is streamed, so a file larger than memory is fine. Text columns stay text.
    """
    _check_chunksize(chunksize)
    fmt, compression = detect_format(path, file_format)
    with ExitStack() as stack:
        handle = _open_binary(path, stack)
        if fmt in ("csv", "tsv"):
            reader = pd.read_csv(
                handle,
                sep="\t" if fmt == "tsv" else ",",
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                chunksize=chunksize,
                compression=compression,  # type: ignore[arg-type]  # checked by detect_format
                encoding="utf-8-sig",
            )
            stack.enter_context(reader)
            for chunk in reader:
                yield chunk.astype(object)
        elif fmt == "jsonl":
            yield from _jsonl_chunks(handle, chunksize, compression)
        else:
            yield from _parquet_chunks(handle, chunksize, path)


def _jsonl_chunks(handle: Any, chunksize: int, compression: str | None) -> Iterator[pd.DataFrame]:
    # Parsed with the json module line by line: pandas' JSON reader infers types (ids become ints,
    # ISO strings become dates) and we want each value exactly as written.
    if compression:
        import bz2
        import gzip
        import lzma

        openers: dict[str, Callable[..., Any]] = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}
        if compression not in openers:
            raise SourceError(f"compression {compression!r} is not supported for JSON lines")
        handle = openers[compression](handle, "rb")
    yield from records_chunks(_jsonl_records(io.TextIOWrapper(handle, encoding="utf-8-sig")), chunksize)


def _jsonl_records(text: Iterable[str]) -> Iterator[dict[str, Any]]:
    """One dict per non-blank line; a bad line names its line number (the row of a file)."""
    for line_number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceError(f"JSON lines: line {line_number} is not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise SourceError(f"JSON lines: line {line_number} is not a JSON object")
        yield record


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
    source: Any, chunksize: int = DEFAULT_CHUNKSIZE, *, file_format: str | None = None
) -> Iterator[pd.DataFrame]:
    """Turn any supported source into DataFrame chunks of at most ``chunksize`` rows.

    Accepts a DataFrame, a list/tuple of dicts, a dict of columns (``DataFrame.to_dict("list")``),
    an iterable of DataFrames (SQL chunks, passed through and re-sliced if too big), or a file path /
    path-like object. Empty chunks are dropped.
    """
    _check_chunksize(chunksize)
    if isinstance(source, pd.DataFrame):
        yield from frame_chunks(source, chunksize)
        return
    if isinstance(source, (str, PurePath)) or (hasattr(source, "open") and hasattr(source, "name")):
        yield from file_chunks(source, chunksize, file_format=file_format)
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
