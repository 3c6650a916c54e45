"""Sources -> DataFrame chunks: DataFrames, records, files (CSV/TSV/JSONL/Parquet, gz), path-likes."""

from __future__ import annotations

import gzip
import io
import json

import pandas as pd
import pytest

from airflow_provider_crowdtwist.sync.sources import (
    SourceError,
    chunk_records,
    detect_format,
    file_chunks,
    iter_chunks,
)


def sizes(chunks):
    return [len(c) for c in chunks]


def test_dataframe_is_sliced_into_chunks():
    frame = pd.DataFrame({"a": range(25)})
    assert sizes(iter_chunks(frame, 10)) == [10, 10, 5]
    assert sizes(iter_chunks(frame.iloc[0:0], 10)) == []


def test_records_and_dict_of_columns():
    records = [{"a": i, "b": str(i)} for i in range(7)]
    chunks = list(iter_chunks(records, 3))
    assert sizes(chunks) == [3, 3, 1]
    assert chunks[2].iloc[0].to_dict() == {"a": 6, "b": "6"}
    assert sizes(iter_chunks({"a": [1, 2, 3]}, 2)) == [2, 1]
    assert sizes(iter_chunks([], 2)) == []


def test_records_keep_exact_values():
    chunk = next(iter_chunks([{"zip": "02134", "n": 1}, {"zip": None, "n": 2}], 10))
    assert chunk["zip"].tolist()[0] == "02134"


def test_iterable_of_frames_is_passed_through_and_resliced():
    gen = (pd.DataFrame({"a": range(n)}) for n in (5, 0, 12))
    assert sizes(iter_chunks(gen, 10)) == [5, 10, 2]


def test_generator_of_records_streams():
    def records():
        for i in range(5):
            yield {"a": i}

    assert sizes(iter_chunks(records(), 2)) == [2, 2, 1]


def test_bad_records_and_sources_fail_clearly():
    with pytest.raises(SourceError, match="item 2 is a int"):
        list(iter_chunks([{"a": 1}, 5], 10))
    with pytest.raises(SourceError, match="unsupported source"):
        list(iter_chunks(42, 10))
    with pytest.raises(SourceError, match="chunksize"):
        list(iter_chunks([], 0))


def test_csv_is_read_in_chunks_as_text(tmp_path):
    path = tmp_path / "m.csv"
    lines = ["user_id,postal_code,phone,vip"] + [f"u{i}@x.co,0213{i % 10},0044{i},true" for i in range(25)]
    lines.append("u25@x.co,,,")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    chunks = list(file_chunks(str(path), 10))
    assert sizes(chunks) == [10, 10, 6]
    first = chunks[0].iloc[0].to_dict()
    assert first == {"user_id": "u0@x.co", "postal_code": "02130", "phone": "00440", "vip": "true"}
    last = chunks[-1].iloc[-1].to_dict()
    assert pd.isna(last["postal_code"]) and pd.isna(last["vip"])


def test_csv_gz_and_tsv(tmp_path):
    gz = tmp_path / "m.csv.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write("user_id,zip\na@b.co,02134\n")
    assert next(file_chunks(gz, 5)).iloc[0].to_dict() == {"user_id": "a@b.co", "zip": "02134"}
    tsv = tmp_path / "m.tsv"
    tsv.write_text("user_id\tzip\na@b.co\t02134\n")
    assert next(file_chunks(tsv, 5)).iloc[0].to_dict() == {"user_id": "a@b.co", "zip": "02134"}


def test_jsonl_keeps_values_as_written(tmp_path):
    path = tmp_path / "m.jsonl"
    rows = [{"user_id": f"u{i}@x.co", "zip": "02134", "dob": "1990-05-17", "n": i} for i in range(5)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    chunks = list(file_chunks(path, 2))
    assert sizes(chunks) == [2, 2, 1]
    assert chunks[0].iloc[1].to_dict() == rows[1]


def test_jsonl_bad_line_names_the_line(tmp_path):
    path = tmp_path / "m.ndjson"
    path.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(SourceError, match="line 2"):
        list(file_chunks(path, 10))


def test_parquet_is_read_in_batches(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "m.parquet"
    pd.DataFrame({"user_id": [f"u{i}" for i in range(23)], "n": range(23)}).to_parquet(path)
    chunks = list(file_chunks(path, 10))
    assert sizes(chunks) == [10, 10, 3]
    assert chunks[2]["user_id"].tolist() == ["u20", "u21", "u22"]


class FakeRemotePath:
    """Stands in for an ObjectStoragePath: has .name and .open(mode)."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.data = data
        self.opened: list[str] = []

    def open(self, mode: str = "rb"):
        self.opened.append(mode)
        return io.BytesIO(self.data)

    def __str__(self) -> str:
        return f"s3://bucket/{self.name}"


def test_path_like_objects_are_opened_in_binary():
    remote = FakeRemotePath("members.csv", b"user_id,zip\na@b.co,02134\n")
    chunks = list(iter_chunks(remote, 10))
    assert remote.opened == ["rb"]
    assert chunks[0].iloc[0].to_dict() == {"user_id": "a@b.co", "zip": "02134"}


def test_format_detection():
    assert detect_format("x/members.CSV") == ("csv", None)
    assert detect_format("a.jsonl.gz") == ("jsonl", "gzip")
    assert detect_format("a.data", "parquet") == ("parquet", None)
    with pytest.raises(SourceError, match="cannot tell the format"):
        detect_format("a.xlsx")
    with pytest.raises(SourceError, match="file_format"):
        detect_format("a.csv", "xml")


def test_missing_local_file(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        list(file_chunks(tmp_path / "nope.csv", 10))


def test_chunk_records_give_one_dict_a_row_with_string_column_names():
    # Row numbers across chunks are the run's (SyncRun.read_row, tests/unit/sync/test_run.py).
    chunk = pd.DataFrame({"a": [3, 4], 5: ["x", "y"]})
    assert list(chunk_records(chunk)) == [{"a": 3, "5": "x"}, {"a": 4, "5": "y"}]
