"""``parse_json`` is ``json.loads`` for every line: the same value, or the same error and message."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_crowdtwist.livepush.load import parse_json


def outcome(parse: object, raw: bytes) -> object:
    try:
        return ("value", parse(raw))  # type: ignore[operator]
    except Exception as exc:  # the comparison is the point: type and message
        return ("error", type(exc), str(exc))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"received_at": 1.5, "push": {"id": 1}}',
        b'{"a": 1}  \t\r',  # json's trailing whitespace
        b'{"a": 1} x',  # extra data
        b'{"a": 1}\x0c',  # not json whitespace
        b'{"a": NaN, "b": -Infinity, "c": 123456789012345678901234567890}',
        b'\xef\xbb\xbf{"a": 1}',  # a UTF-8 BOM: json.loads(bytes) accepts it
        '{"a": 1}'.encode("utf-16-le"),
        '{"a": 1}'.encode("utf-16"),
        b'{"a": "\xff"}',  # not UTF-8
        b'{"a": "\xed\xa0\x80"}',  # an encoded surrogate: json.loads's surrogatepass takes it
        b'{"a": "\\ud800"}',
        b'{"a": "caf\xc3\xa9"}',
        b'{"a": 1',
        b"{",
        b"{}",
        b'  {"a": 1}',
        b"[1, 2]",
        b"null",
        b"",
    ],
)
def test_same_as_json_loads(raw: bytes) -> None:
    assert outcome(parse_json, raw) == outcome(json.loads, raw)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=8,
)


@given(_json_values)
def test_same_as_json_loads_for_any_value(value: object) -> None:
    raw = json.dumps({"v": value}, ensure_ascii=False).encode()
    assert repr(outcome(parse_json, raw)) == repr(outcome(json.loads, raw))
