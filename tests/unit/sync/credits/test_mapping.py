"""Unit tests of the credit mapping: row -> credit request or rejection, and the dedupe key."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_crowdtwist.sync.credits.mapping import CreditMapping, CreditRequest, default_dedupe_key
from airflow_provider_crowdtwist.sync.outcomes import Outcome, RowResult


def _mapping(**kwargs: object) -> CreditMapping:
    base: dict[str, object] = {"id_column": "email", "activity_id": "purchase"}
    base.update(kwargs)
    return CreditMapping(**base)  # type: ignore[arg-type]


def test_full_row_maps_to_request() -> None:
    mapping = _mapping(
        activity_id=None,
        activity_id_column="activity",
        points_column="points",
        activity_date_column="when",
        extra_data_columns={"store": "store_id", "channel": "channel"},
    )
    req = mapping.map_row(
        3,
        {
            "email": "  ann@example.com ",
            "activity": 12.0,  # float column from a warehouse
            "points": np.int64(25),
            "when": "2026-01-02T03:04:05Z",
            "store": Decimal("7"),
            "channel": float("nan"),  # missing -> left out
        },
    )
    assert isinstance(req, CreditRequest)
    assert req.row_number == 3
    assert req.user_id == "ann@example.com"
    assert req.activity_id == "12"
    assert req.num_points == 25
    assert req.activity_date == int(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc).timestamp())
    assert len(req.dedupe_key) == 64
    # the user's extra data, plus the reserved key carrying the credit's own dedupe key
    assert req.extra_data == {"store_id": 7, "ct_dedupe_key": req.dedupe_key}
    assert req.payload() == {
        "activity_id": "12",
        "num_points": 25,
        "activity_date": req.activity_date,
        "extra_data": {"store_id": 7, "ct_dedupe_key": req.dedupe_key},
    }


def test_optional_fields_left_out() -> None:
    mapping = _mapping(points_column="points", activity_date_column="when")
    req = mapping.map_row(1, {"email": "a@b.c", "points": None, "when": pd.NaT})
    assert isinstance(req, CreditRequest)
    assert req.num_points is None
    assert req.activity_date is None
    assert req.payload() == {"activity_id": "purchase", "extra_data": {"ct_dedupe_key": req.dedupe_key}}


def test_reserved_key_carries_the_dedupe_key_column_value() -> None:
    mapping = _mapping(dedupe_key_column="order_id", extra_data_columns={"store": "store"})
    req = mapping.map_row(1, {"email": "a@b.c", "order_id": "O-17", "store": "S1"})
    assert isinstance(req, CreditRequest)
    assert req.dedupe_key == "O-17"
    assert req.extra_data == {"store": "S1", "ct_dedupe_key": "O-17"}


def test_reserved_key_does_not_change_the_default_key() -> None:
    """Ledgers written before the key travelled in extra_data keep their keys."""
    row = {"email": "a@b.c", "store": 3}
    on = _mapping(extra_data_columns=["store"]).map_row(1, row)
    off = _mapping(extra_data_columns=["store"], dedupe_extra_key=None).map_row(1, row)
    assert isinstance(on, CreditRequest) and isinstance(off, CreditRequest)
    assert (
        on.dedupe_key
        == off.dedupe_key
        == default_dedupe_key("email", "a@b.c", "purchase", None, None, {"store": 3})
    )
    assert off.extra_data == {"store": 3}
    assert on.extra_data == {"store": 3, "ct_dedupe_key": on.dedupe_key}


def test_reserved_key_name_is_a_setting() -> None:
    req = _mapping(dedupe_extra_key="our_key").map_row(1, {"email": "a@b.c"})
    assert isinstance(req, CreditRequest)
    assert req.extra_data == {"our_key": req.dedupe_key}


def test_a_user_column_on_the_reserved_key_is_a_config_error() -> None:
    with pytest.raises(ValueError, match=r"column 'ref' would be sent as extra_data\.ct_dedupe_key"):
        _mapping(extra_data_columns={"ref": "ct_dedupe_key"})
    with pytest.raises(ValueError, match=r"column 'ct_dedupe_key' would be sent"):
        _mapping(extra_data_columns=["ct_dedupe_key"])
    # another name for the reserved key resolves the clash
    _mapping(extra_data_columns=["ct_dedupe_key"], dedupe_extra_key="order_key")


@pytest.mark.parametrize("bad", ["", "  ", " k", 5])
def test_bad_reserved_key_names_the_argument(bad: object) -> None:
    with pytest.raises(ValueError, match="dedupe_extra_key"):
        _mapping(dedupe_extra_key=bad)


@pytest.mark.parametrize(
    ("record", "field", "fragment"),
    [
        ({"email": None, "points": 1}, "email", "'email' (member identifier) is empty"),
        ({"email": "  ", "points": 1}, "email", "is empty"),
        ({"email": "a@b.c", "points": 1.5}, "points", "expected a whole number"),
        ({"email": "a@b.c", "points": "ten"}, "points", "expected a whole number"),
        ({"email": "a@b.c", "points": True}, "points", "expected a whole number"),
        ({"email": "a@b.c", "points": 2, "when": "01/02/2026"}, "when", "cannot read '01/02/2026' as a date"),
        ({"email": "a@b.c", "points": 2, "when": "2026-13-45"}, "when", "as a date"),
    ],
)
def test_bad_rows_are_rejected_with_row_and_field(record: dict, field: str, fragment: str) -> None:
    mapping = _mapping(points_column="points", activity_date_column="when")
    record.setdefault("when", None)
    result = mapping.map_row(41, record)
    assert isinstance(result, RowResult)
    assert result.outcome is Outcome.REJECTED
    assert result.row_number == 41
    assert result.message.startswith("row 41: ")
    assert fragment in result.message
    assert f"'{field}'" in result.message
    assert result.extra == {"field": field}


def test_negative_points_are_sent_as_given() -> None:
    """No documented rule refuses a negative num_points: CrowdTwist answers, the row records it."""
    req = _mapping(points_column="points").map_row(1, {"email": "a@b.c", "points": -3})
    assert isinstance(req, CreditRequest)
    assert req.payload() == {
        "activity_id": "purchase",
        "num_points": -3,
        "extra_data": {"ct_dedupe_key": req.dedupe_key},
    }


def test_inst_username_is_a_credit_id_type() -> None:
    """O:UserActivityCredit takes inst_username besides the member id types."""
    req = _mapping(id_type="inst_username").map_row(1, {"email": "ann_ig"})
    assert isinstance(req, CreditRequest) and req.id_type == "inst_username"
    with pytest.raises(ValueError, match="id_type"):
        _mapping(id_type="instagram")


def test_missing_activity_in_column_is_rejected() -> None:
    mapping = _mapping(activity_id=None, activity_id_column="act")
    result = mapping.map_row(2, {"email": "a@b.c", "act": float("nan")})
    assert isinstance(result, RowResult)
    assert "'act' (activity_id) is empty" in result.message
    assert result.identifier == "a@b.c"


def test_unknown_activity_rejected_when_catalogue_known() -> None:
    mapping = _mapping(activity_id=None, activity_id_column="act", known_activities=["purchase", "review"])
    ok = mapping.map_row(1, {"email": "a@b.c", "act": "review"})
    bad = mapping.map_row(2, {"email": "a@b.c", "act": "purchse"})
    assert isinstance(ok, CreditRequest)
    assert isinstance(bad, RowResult)
    assert "'purchse' is not an active activity" in bad.message
    assert "purchase, review" in bad.message


def test_fixed_unknown_activity_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="activity_id 'purchse' is not an active activity"):
        _mapping(activity_id="purchse", known_activities=["purchase"])


def test_dedupe_key_column() -> None:
    mapping = _mapping(dedupe_key_column="order_id")
    req = mapping.map_row(1, {"email": "a@b.c", "order_id": 1001})
    assert isinstance(req, CreditRequest)
    assert req.dedupe_key == "1001"
    rej = mapping.map_row(2, {"email": "a@b.c", "order_id": None})
    assert isinstance(rej, RowResult)
    assert "'order_id' (dedupe key) is empty" in rej.message


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"activity_id": None}, "exactly one of activity_id"),
        ({"activity_id_column": "act"}, "exactly one of activity_id"),
        ({"activity_id": "  "}, "activity_id must not be empty"),
        ({"id_type": "mail"}, "id_type must be one of"),
        ({"points_column": ""}, "points_column must be a non-empty column name"),
        ({"extra_data_columns": {"a": ""}}, "extra_data_columns"),
        ({"extra_data_columns": 5}, "extra_data_columns"),
    ],
)
def test_bad_configuration_names_the_argument(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        _mapping(**kwargs)


def test_check_columns_names_every_missing_column() -> None:
    mapping = _mapping(points_column="pts", extra_data_columns=["store"], dedupe_key_column="oid")
    mapping.check_columns(["email", "pts", "store", "oid", "other"])
    with pytest.raises(ValueError, match=r"no column\(s\) 'pts', 'oid'"):
        mapping.check_columns(["email", "store"])


def test_default_key_depends_on_every_credit_field() -> None:
    base = ("email", "a@b.c", "purchase", 10, 1_700_000_000, {"store": 1})
    key = default_dedupe_key(*base)
    variants = [
        ("id", *base[1:]),
        (base[0], "b@b.c", *base[2:]),
        (*base[:2], "review", *base[3:]),
        (*base[:3], 11, *base[4:]),
        (*base[:3], None, *base[4:]),
        (*base[:4], 1_700_000_001, base[5]),
        (*base[:5], {"store": 2}),
        (*base[:5], None),
    ]
    keys = {default_dedupe_key(*v) for v in variants}  # type: ignore[arg-type]
    assert key not in keys
    assert len(keys) == len(variants)


@given(
    extra=st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.one_of(st.integers(), st.text(max_size=10), st.booleans()),
        max_size=6,
    )
)
def test_default_key_ignores_extra_data_key_order(extra: dict) -> None:
    reordered = dict(reversed(list(extra.items())))
    assert default_dedupe_key("email", "u", "a", 1, None, extra) == default_dedupe_key(
        "email", "u", "a", 1, None, reordered
    )


def test_default_key_is_stable_across_processes() -> None:
    """No Python ``hash()`` (randomised per process): another interpreter computes the same key."""
    args = ("email", "ünïcode@example.com", "purchase", 5, 86_400, {"b": 1, "a": "x"})
    here = default_dedupe_key(*args)
    code = (
        "from airflow_provider_crowdtwist.sync.credits.mapping import default_dedupe_key as k;"
        f"print(k(*{args!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert out.stdout.strip() == here


def test_same_credit_from_different_source_types_has_same_key() -> None:
    """A rerun from a CSV (all text) and from SQL (typed) must agree, or a rerun would credit twice."""
    mapping = _mapping(points_column="points", activity_date_column="when", extra_data_columns=["store"])
    typed = mapping.map_row(
        1, {"email": "a@b.c", "points": np.int64(5), "when": pd.Timestamp("2026-03-01"), "store": 7}
    )
    text = mapping.map_row(1, {"email": "a@b.c", "points": "5", "when": "2026-03-01", "store": 7.0})
    assert isinstance(typed, CreditRequest)
    assert isinstance(text, CreditRequest)
    assert typed.dedupe_key == text.dedupe_key
