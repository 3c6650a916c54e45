"""``RowBuilder``: a landed push -> one tuple of typed column values, a million times a load.

What a row holds is defined once, column by column, in ``RowBuilder.reference_row`` (a plain loop
over ``columns.py``). ``build`` computes the same values with code generated once per builder from
the columns, because a million profiles is the benchmark and per-column Python work was most of the
load's time. The generated code takes the documented shape of a push as its fast path:

- all the documented keys of an object (the push, ``tierInfo``, a tier level) are fetched by one
  ``operator.itemgetter`` call, in C, instead of a ``dict.get`` per column; an object that lacks a
  key (or spells it in snake_case) is read key by key with the same camelCase-then-snake_case rule;
- the text, integer and number columns are taken whole, kind by kind: one
  ``frozenset.issuperset(map(type, values))`` shows that every value already is of its column's
  type (``str``; ``int``; ``int`` or ``float``; or null). A kind with any other value goes value by
  value through ``_cell``, the conversion ``reference_row`` uses;
- an object whose keys are exactly the documented ones holds no undocumented field, so the search
  for ``extra_fields`` is skipped (a length comparison instead of a walk of the push);
- timestamps that repeat (tier dates, creation dates) are formatted once (a bounded cache), and the
  receiver's float ``received_at`` is converted without the general parser.

So ``build`` returns its values in its own order, ``row_columns`` (the key, the integer, number and
text columns, then timestamps and JSON), which the INSERT names column by column; the table keeps
the order of ``feed_columns``. When a value is rejected, ``reference_row`` runs again to name the
first bad column in table order, so no message depends on the grouping. A property test holds
``build`` equal to ``reference_row`` for arbitrary pushes.

``null`` is what the row carries for "no value": ``None``, or for SQLite ``float("nan")``. SQLite
stores a NaN double as NULL, and CPython's ``sqlite3`` binds a float much faster than ``None``
(Python 3.11 sends ``None`` through its adaptation protocol; a profile has many nulls; figures in
docs/performance.md).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from airflow_provider_crowdtwist.livepush.columns import (
    CONVERTERS,
    INT,
    JSON,
    META_COLUMNS,
    NUM,
    TEXT,
    TS,
    Column,
    ValueRejected,
    extras_of,
    feed_columns,
    has_unknown,
    key_sets,
    known_tree,
    snake,
    to_json,
    to_timestamp,
)
from airflow_provider_crowdtwist.livepush.feeds import SECRET_PROFILE_FIELDS

TS_CACHE_SIZE = 100_000
_NONE = type(None)
# The types a value may already have to be stored as it is (``_cell`` checks the same, value by value).
PASS_TYPES: dict[str, frozenset[type]] = {
    TEXT: frozenset({str, _NONE}),
    INT: frozenset({int, _NONE}),
    NUM: frozenset({int, float, _NONE}),
}
_GROUP_ORDER = (INT, NUM, TEXT)  # kinds taken whole when their values already fit; TS and JSON convert
_EMPTY: dict[str, Any] = {}
_MISSING = object()


def _identity(value: Any) -> Any:
    return value


def _lookup_path(push: dict[str, Any], source: tuple[str, ...]) -> Any:
    """The value at ``source``: each key in camelCase, else in snake_case; None when absent.

    A key sent as null is not looked up again in snake_case, and a parent that is not an object
    holds nothing.
    """
    value: Any = push
    for depth, key in enumerate(source):
        if depth and type(value) is not dict:
            return None
        found = value.get(key, _MISSING)
        value = value.get(snake(key)) if found is _MISSING else found
    return value


def _resolve(obj: dict[str, Any], keys: tuple[str, ...]) -> tuple[Any, ...]:
    """``_lookup_path``'s rule for many keys of one object (the fallback of a fetch by itemgetter)."""
    out = []
    for key in keys:
        found = obj.get(key, _MISSING)
        out.append(obj.get(snake(key)) if found is _MISSING else found)
    return tuple(out)


def _fetcher(keys: Sequence[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """``obj -> tuple of obj[key]`` in C (``KeyError`` when one is absent); a tuple even for one key."""
    if len(keys) == 1:
        key = keys[0]
        return lambda obj: (obj[key],)
    return operator.itemgetter(*keys)


class _Object:
    """One JSON object of a push (the push, ``tierInfo``, a tier level) and what is fetched from it."""

    def __init__(self, number: int, path: tuple[str, ...]) -> None:
        self.number = number
        self.path = path
        self.columns: list[int] = []  # data column indexes whose value is a key of this object
        self.children: list[_Object] = []
        self.keys: list[str] = []  # fetched in this order
        self.slices: dict[str, tuple[int, int, list[int]]] = {}  # kind -> start, end, column indexes

    def plan(self, columns: Sequence[Column], skip: int) -> None:
        """Fetch order: each plain kind contiguous (to be sliced out whole), the rest, the children."""
        for kind in _GROUP_ORDER:
            members = [i for i in self.columns if i != skip and columns[i].kind == kind]
            if members:
                start = len(self.keys)
                self.keys += [columns[i].source[-1] for i in members]
                self.slices[kind] = (start, len(self.keys), members)
        grouped = {i for *_, members in self.slices.values() for i in members}
        self.keys += [columns[i].source[-1] for i in self.columns if i not in grouped]
        self.keys += [child.path[-1] for child in self.children]
        assert len(set(self.keys)) == len(self.keys), self.keys  # the exact-keys test counts on it

    def slot(self, key: str) -> int:
        return self.keys.index(key)


class RowBuilder:
    """Landed push -> a tuple of typed column values (``row_columns`` order); rejects name the column.

    ``timestamp_out`` turns a datetime into what the warehouse takes (SQLite: text); ``null`` is the
    value that stands for "no value" (see the module docstring).
    """

    def __init__(
        self, feed: str, timestamp_out: Callable[[datetime], Any] | None = None, *, null: Any = None
    ) -> None:
        self.feed = feed
        self.columns = feed_columns(feed)
        self.data_columns = self.columns[: -len(META_COLUMNS)]
        self.null = null
        self._tree = known_tree(self.data_columns)
        if feed == "profile":  # never landed in a column, nor in extra_fields (see feeds.py)
            self._tree.update(dict.fromkeys(SECRET_PROFILE_FIELDS))
        self._known_sets = key_sets(self._tree)
        self._ts_out = timestamp_out or _identity
        self._ts_cache: dict[Any, Any] = {}
        self._converters = tuple(
            self._timestamp if c.kind == TS else CONVERTERS[c.kind] for c in self.data_columns
        )
        self._objects = self._plan()
        # the row: the key, then every plain column kind by kind, then the converted ones (TS, JSON)
        self._groups = {
            kind: [(o, *o.slices[kind]) for o in self._objects if kind in o.slices] for kind in _GROUP_ORDER
        }
        grouped = [i for kind in _GROUP_ORDER for *_, members in self._groups[kind] for i in members]
        self._singles = [i for i in range(1, len(self.data_columns)) if i not in grouped]
        self.row_columns: tuple[Column, ...] = (
            *(self.data_columns[i] for i in (0, *grouped, *self._singles)),
            *META_COLUMNS,
        )
        self._build = self._compile()

    # ---- what a row is -------------------------------------------------------------------------

    def reference_row(self, push: dict[str, Any], received_at: Any, source_file: str) -> tuple[Any, ...]:
        """The row of ``push`` in table order (``columns``; None for no value), one column at a time.

        The plain statement of what ``build`` computes; a rejection names the first bad column.
        """
        values = tuple(self._cell(i, _lookup_path(push, c.source)) for i, c in enumerate(self.data_columns))
        if values[0] is None:
            self._missing_key()
        return (*values, self._extras(push), self._received(received_at), source_file)

    def _cell(self, index: int, value: Any) -> Any:
        """One column's value: null, as it is when already of the column's type, else converted."""
        kind = self.data_columns[index].kind
        if value is None or (kind != TEXT and value == ""):
            return None
        if type(value) in PASS_TYPES.get(kind, ()):
            return value
        if kind == TS and (type(value) is int or type(value) is str):
            cached = self._ts_cache.get(value, _MISSING)
            if cached is not _MISSING:
                return cached
        return self._convert(index, value)

    def _convert(self, index: int, value: Any) -> Any:
        """The slow path of one column: a conversion that may reject, naming the column."""
        try:
            return self._converters[index](value)
        except ValueRejected as exc:
            column = self.data_columns[index]
            raise ValueRejected(f"column {column.name} ({column.label}): {exc}") from None

    def _timestamp(self, value: Any) -> Any:
        out = self._ts_out(to_timestamp(value))
        if len(self._ts_cache) >= TS_CACHE_SIZE:
            self._ts_cache.clear()
        if type(value) in (int, str):
            self._ts_cache[value] = out
        return out

    def _received(self, value: Any) -> Any:
        try:
            return self._ts_out(to_timestamp(value))
        except ValueRejected as exc:
            raise ValueRejected(f"column received_at: {exc}") from None

    def _missing_key(self) -> None:
        key = self.data_columns[0]
        raise ValueRejected(f"column {key.name} ({key.label}): missing")

    def _extras(self, push: dict[str, Any]) -> str | None:
        return to_json(extras_of(push, self._tree)) if has_unknown(push, self._known_sets) else None

    def _cells(self, indexes: Sequence[int], values: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(self._cell(i, v) for i, v in zip(indexes, values, strict=True))

    # ---- building it fast ----------------------------------------------------------------------

    def build(self, push: dict[str, Any], received_at: Any, source_file: str) -> tuple[Any, ...]:
        """The row of ``push``, in ``row_columns`` order; ``ValueRejected`` names the column."""
        try:
            return self._build(push, received_at, source_file)
        except ValueRejected as exc:
            rejected = exc
        self.reference_row(push, received_at, source_file)  # raises, naming the first bad column
        raise rejected

    def _plan(self) -> list[_Object]:
        objects: dict[tuple[str, ...], _Object] = {}

        def obj(path: tuple[str, ...]) -> _Object:
            if path not in objects:
                objects[path] = _Object(len(objects), path)
                if path:
                    obj(path[:-1]).children.append(objects[path])
            return objects[path]

        for i, column in enumerate(self.data_columns):
            obj(column.source[:-1]).columns.append(i)
        for o in objects.values():
            o.plan(self.data_columns, skip=0)
        return list(objects.values())

    def _compile(self) -> Callable[[dict[str, Any], Any, str], tuple[Any, ...]]:
        """Generate straight-line code for the row (see the module docstring for what it does).

        The code reads only constant keys (column sources are literals of ``columns.py``, quoted
        with ``repr``) and calls back into this builder for anything not of the expected shape.
        """
        columns = self.data_columns
        ns: dict[str, Any] = {
            "_EMPTY": _EMPTY,
            "_MISSING": _MISSING,
            "_NULL": self.null,
            "_UTC": timezone.utc,
            "_from_epoch": datetime.fromtimestamp,
            "_ts_out": self._ts_out,
            "_resolve": _resolve,
            "_cells": self._cells,
            "_convert": self._convert,
            "_ts_get": self._ts_cache.get,
            "_json": to_json,
            "_extras": self._extras,
            "_received": self._received,
            "_missing_key": self._missing_key,
        }
        lines = ["def _build(push, received_at, source_file):", "    p0 = push"]
        where: dict[int, str] = {}  # data column index -> "o<object>[<slot>]"
        exact = []  # "this object held exactly the fetched keys": then it holds no undocumented field
        for o in self._objects:
            n = o.number
            ns[f"_fetch{n}"], ns[f"_keys{n}"] = _fetcher(o.keys), tuple(o.keys)
            lines += [
                f"    try: o{n} = _fetch{n}(p{n}); f{n} = True",
                f"    except KeyError: o{n} = _resolve(p{n}, _keys{n}); f{n} = False",
            ]
            exact.append(f"f{n} and len(p{n}) == {len(o.keys)}")
            for child in o.children:
                lines.append(f"    v = o{n}[{o.slot(child.path[-1])}]")
                lines.append(f"    p{child.number} = v if type(v) is dict else _EMPTY")
            for i in o.columns:
                where[i] = f"o{n}[{o.slot(columns[i].source[-1])}]"
        lines += self._column_code(0, where[0], null="None")
        plain = []
        for kind, parts in self._groups.items():
            if not parts:
                continue
            g = f"g_{kind}"
            ns[f"_pass_{g}"] = PASS_TYPES[kind]
            ns[f"_idx_{g}"] = tuple(i for *_, members in parts for i in members)
            lines.append(f"    {g} = {' + '.join(f'o{o.number}[{a}:{b}]' for o, a, b, _ in parts)}")
            lines.append(f"    if not _pass_{g}.issuperset(map(type, {g})): {g} = _cells(_idx_{g}, {g})")
            plain.append(g)
        lines.append(f"    plain = {' + '.join(plain)}")
        if self.null is not None:
            lines.append("    plain = tuple([_NULL if v is None else v for v in plain])")
        for i in self._singles:
            lines += self._column_code(i, where[i], null="_NULL")
        lines += [
            "    if c0 is None: _missing_key()",
            f"    if {' and '.join(exact)}: x = _NULL",
            "    else:",
            "        x = _extras(push)",
            "        if x is None: x = _NULL",
            # the arrival time: a float of epoch seconds, as the receiver writes it
            "    if type(received_at) is float:",
            "        try: r = _ts_out(_from_epoch(received_at, _UTC))",
            "        except (ValueError, OverflowError, OSError): r = _received(received_at)",
            "    else: r = _received(received_at)",
            f"    return (c0,) + plain + ({''.join(f'c{i}, ' for i in self._singles)}x, r, source_file)",
        ]
        exec(compile("\n".join(lines), f"<live push {self.feed} row>", "exec"), ns)
        return ns["_build"]  # type: ignore[no-any-return,unused-ignore]

    def _column_code(self, i: int, value: str, null: str) -> list[str]:
        """One column's code, ``_cell`` written out: null, as it is, cached timestamp, or converted."""
        kind = self.data_columns[i].kind
        empty = "v is None" if kind == TEXT else 'v is None or v == ""'
        lines = [f"    v = {value}", f"    if {empty}: c{i} = {null}"]
        if kind == TS:
            lines += [
                "    elif type(v) is int or type(v) is str:",
                f"        c{i} = _ts_get(v, _MISSING)",
                f"        if c{i} is _MISSING: c{i} = _convert({i}, v)",
            ]
        elif kind == JSON:
            lines.append(f"    else: c{i} = _json(v)")
            return lines
        else:
            types = sorted(PASS_TYPES[kind] - {_NONE}, key=str)
            fits = " or ".join(f"type(v) is {t.__name__}" for t in types)
            lines.append(f"    elif {fits}: c{i} = v")
        lines.append(f"    else: c{i} = _convert({i}, v)")
        return lines
