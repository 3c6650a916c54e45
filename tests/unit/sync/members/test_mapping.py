"""MemberMapping: configuration errors before any request; rows -> payloads or named rejections."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_crowdtwist.sync.members.mapping import (
    CREATE_REQUIREMENTS,
    INVALID_VALUE,
    MISSING_IDENTIFIER,
    MappedRow,
    MemberMapping,
    MemberSyncConfigError,
)
from airflow_provider_crowdtwist.sync.outcomes import Outcome, RowResult
from airflow_provider_crowdtwist.sync.sources import chunk_records

COLUMNS = ["user_id", "first_name", "last_name", "postal_code", "date_of_birth", "vip", "store"]


def mapped(mapping: MemberMapping, record: dict, row_number: int = 1):
    plan = mapping.plan(list(record))
    return mapping.map_record(row_number, record, plan)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mode": "merge"}, "mode"),
        ({"id_type": "customer_number"}, "id_type"),
        ({"unmapped_columns": "drop"}, "unmapped_columns"),
        ({"id_column": ""}, "id_column"),
        ({"field_mapping": {"dob": "birthday"}}, "birthday"),
        ({"field_mapping": {"a": "first_name", "b": "first_name"}}, "both map"),
        ({"field_mapping": {"x": "custom_data."}}, "custom_data"),
        ({"field_mapping": ["first_name"]}, "field_mapping"),
        ({"mode": "insert", "id_type": "id"}, "id_type 'id'"),
    ],
)
def test_configuration_errors_name_the_setting(kwargs, field):
    with pytest.raises(MemberSyncConfigError, match=field):
        MemberMapping(**kwargs).validate()


def test_missing_id_column_fails_on_the_first_chunk_naming_the_columns():
    mapping = MemberMapping(id_column="email")
    with pytest.raises(MemberSyncConfigError, match=r"id_column 'email' is not a column.*'user_id'"):
        mapping.plan(COLUMNS)


def test_field_mapping_column_absent_from_source_fails():
    mapping = MemberMapping(field_mapping={"dob": "date_of_birth"})
    with pytest.raises(MemberSyncConfigError, match="'dob'"):
        mapping.plan(COLUMNS)


def test_unmapped_error_policy_lists_the_columns():
    mapping = MemberMapping(unmapped_columns="error")
    with pytest.raises(MemberSyncConfigError, match="'vip', 'store'"):
        mapping.plan(COLUMNS)


def test_columns_named_like_attributes_map_themselves_others_go_to_custom_data():
    mapping = MemberMapping()
    mapping.validate()
    row = mapped(
        mapping,
        {
            "user_id": "Ann@Example.com",
            "first_name": "Ann",
            "last_name": "Lee",
            "postal_code": "02134",
            "date_of_birth": "1990-05-17",
            "vip": np.bool_(True),
            "store": "Boston",
        },
    )
    assert isinstance(row, MappedRow)
    assert row.identifier == "Ann@Example.com"
    assert row.dedupe_key == "ann@example.com"
    assert row.payload == {
        "first_name": "Ann",
        "last_name": "Lee",
        "postal_code": "02134",
        "date_of_birth": 642902400,
        "email_address": "Ann@Example.com",
        "custom_data": {"vip": True, "store": "Boston"},
    }


def test_ignore_policy_and_explicit_mapping():
    mapping = MemberMapping(
        field_mapping={
            "dob": "date_of_birth",
            "seg": "custom_data.loyalty_segment",
            "ok": "receive_email_updates",
        },
        unmapped_columns="ignore",
        id_type="third_party_id",
        id_column="cust_id",
    )
    mapping.validate()
    row = mapped(
        mapping,
        {
            "cust_id": 12345.0,
            "dob": dt.date(1969, 12, 31),
            "seg": "gold",
            "ok": "yes",
            "junk": "x",
            "country_code": "gb",
        },
    )
    assert isinstance(row, MappedRow)
    assert row.identifier == "12345"
    assert row.payload == {
        "date_of_birth": -86400,
        "custom_data": {"loyalty_segment": "gold"},
        "receive_email_updates": 1,
        "country_code": "GB",
        "third_party_id": "12345",
    }


def test_explicit_custom_key_wins_over_a_whole_custom_data_object():
    mapping = MemberMapping(field_mapping={"seg": "custom_data.segment"})
    row = mapped(mapping, {"user_id": "a@b.co", "custom_data": '{"segment": "old", "x": 1}', "seg": "new"})
    assert row.payload["custom_data"] == {"segment": "new", "x": 1}


def test_missing_values_are_left_out_never_null():
    mapping = MemberMapping()
    row = mapped(
        mapping,
        {
            "user_id": "a@b.co",
            "first_name": None,
            "last_name": np.nan,
            "postal_code": pd.NA,
            "date_of_birth": pd.NaT,
            "vip": float("nan"),
        },
    )
    assert row.payload == {"email_address": "a@b.co"}


@pytest.mark.parametrize("identifier", [None, np.nan, "", "   ", pd.NA])
def test_missing_identifier_is_rejected_naming_row_and_column(identifier):
    result = mapped(MemberMapping(), {"user_id": identifier, "first_name": "A"}, row_number=7)
    assert isinstance(result, RowResult)
    assert result.outcome is Outcome.REJECTED
    assert result.code == MISSING_IDENTIFIER
    assert result.message.startswith("row 7: user_id")


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"user_id": "a@b.co", "first_name": "Bob!"}, "first_name"),
        ({"user_id": "a@b.co", "date_of_birth": "17/05/1990"}, "date_of_birth"),
        ({"user_id": "a@b.co", "postal_code": "1234", "country_code": "US"}, "postal_code"),
        ({"user_id": "a@b.co", "receive_email_updates": "perhaps"}, "receive_email_updates"),
    ],
)
def test_bad_values_are_rejected_naming_row_and_field(record, field):
    result = mapped(MemberMapping(), record, row_number=12)
    assert isinstance(result, RowResult)
    assert result.outcome is Outcome.REJECTED
    assert result.code == INVALID_VALUE
    assert result.message.startswith(f"row 12: {field}")


def test_renamed_column_is_named_in_the_reason():
    mapping = MemberMapping(field_mapping={"dob": "date_of_birth"})
    result = mapped(mapping, {"user_id": "a@b.co", "dob": "someday"})
    assert "date_of_birth (column 'dob')" in result.message


def test_insert_mode_checks_create_requirements_up_front():
    mapping = MemberMapping(mode="insert")
    result = mapped(mapping, {"user_id": "a@b.co", "first_name": "A"})
    assert result.code == CREATE_REQUIREMENTS and "last_name is required" in result.message
    padded = mapped(mapping, {"user_id": "a@b.co", "first_name": "A", "last_name": "B", "postal_code": 1234})
    assert isinstance(padded, MappedRow) and padded.payload["postal_code"] == "01234"  # a numeric ZIP column
    bad = mapped(mapping, {"user_id": "a@b.co", "first_name": "A", "last_name": "B", "postal_code": "ABCDE"})
    assert bad.code == CREATE_REQUIREMENTS and "is not a US ZIP code" in bad.message
    ok = mapped(mapping, {"user_id": "a@b.co", "first_name": "A", "last_name": "B", "postal_code": "02134"})
    assert isinstance(ok, MappedRow)
    # a location on create is OPEN: a row without one is sent, and CrowdTwist's answer decides
    assert isinstance(mapped(mapping, {"user_id": "a@b.co", "first_name": "A", "last_name": "B"}), MappedRow)


def test_upsert_and_update_do_not_require_create_fields():
    for mode in ("upsert", "update"):
        assert isinstance(
            mapped(MemberMapping(mode=mode), {"user_id": "a@b.co", "first_name": "A"}), MappedRow
        )


def test_update_only_columns_are_mapped_in_every_mode():
    """is_active / remove_points reach the payload on insert too: the sync PUTs them after the POST."""
    insert = mapped(
        MemberMapping(mode="insert", field_mapping={"active": "is_active"}),
        {"user_id": "a@b.co", "first_name": "A", "last_name": "B", "postal_code": "02134", "active": 0},
    )
    assert insert.payload["is_active"] == 0
    update = mapped(
        MemberMapping(mode="update"), {"user_id": "a@b.co", "is_active": "false", "remove_points": "true"}
    )
    assert update.payload["is_active"] == 0 and update.payload["remove_points"] == 1


def test_remove_points_is_a_flag_not_a_count():
    result = mapped(MemberMapping(mode="update"), {"user_id": "a@b.co", "is_active": 0, "remove_points": 5})
    assert isinstance(result, RowResult) and "remove_points" in result.message
    assert "expected a boolean" in result.message


@pytest.mark.parametrize(
    "record",
    [
        {"user_id": "not-an-email"},  # no documented email rule: CrowdTwist answers, the row records it
        {"user_id": "a@b.co", "email_address": "bad"},
        {"user_id": "a@b.co", "country_code": "USA", "city_name": "X"},
        {"user_id": "a@b.co", "first_name": "O'Neil", "last_name": "D\u2019Arcy"},
        {"user_id": "a@b.co", "postal_code": "021341234", "country_code": "US"},
        {"user_id": "a@b.co", "postal_code": "02134-1234"},
    ],
)
def test_rows_the_contract_does_not_prove_wrong_are_not_rejected(record):
    assert isinstance(mapped(MemberMapping(), record), MappedRow)


@pytest.mark.parametrize(
    ("value", "country", "sent"),
    [
        (2134, None, "02134"),
        (2134.0, None, "02134"),  # an integer column with NULLs arrives as floats
        (np.int64(501), "US", "00501"),
        (21341234, None, "021341234"),  # ZIP+4 that lost its leading zero
        (90210, None, "90210"),
        (123456789, "US", "123456789"),
        ("2134", "GB", "2134"),  # text is sent as given
        (1010, "AT", "1010"),  # other countries: no padding (Austrian codes have 4 digits)
    ],
)
def test_numeric_us_postal_codes_get_their_zeros_back(value, country, sent):
    record = {"user_id": "a@b.co", "postal_code": value}
    if country:
        record["country_code"] = country
        record["city_name"] = "Town"
    mapping = MemberMapping()
    row = mapped(mapping, record)
    assert isinstance(row, MappedRow) and row.payload["postal_code"] == sent
    padded = sent != str(value).split(".")[0]
    assert bool(mapping.conversions.get("postal_code_zero_padded")) is padded
    if padded:
        assert "leading zeros" in " ".join(mapping.conversion_notes())


def test_a_us_member_is_sent_with_postal_code_only_and_counted_once_per_row():
    mapping = MemberMapping(mode="insert")
    rows = [
        mapped(
            mapping,
            {
                "user_id": f"u{i}@b.co",
                "first_name": "A",
                "last_name": "B",
                "postal_code": "02134",
                "country_code": country,
                "city_name": "Boston",
            },
        )
        for i, country in enumerate(["US", "us", "US"])
    ]
    for row in rows:
        assert isinstance(row, MappedRow)
        assert row.payload["postal_code"] == "02134"
        assert not {"country_code", "city_name", "city_id"} & row.payload.keys()
    assert mapping.conversions == {"us_postal_code_only": 3}
    [note] = mapping.conversion_notes()
    assert note.startswith("3 row(s) with country_code US")
    # Other countries keep what they need to be located.
    gb = mapped(
        mapping,
        {
            "user_id": "g@b.co",
            "first_name": "A",
            "last_name": "B",
            "country_code": "GB",
            "city_name": "London",
        },
    )
    assert gb.payload["country_code"] == "GB" and gb.payload["city_name"] == "London"


def test_a_bad_zip_with_country_us_is_still_named():
    result = mapped(MemberMapping(), {"user_id": "a@b.co", "postal_code": "2134", "country_code": "US"})
    assert isinstance(result, RowResult) and "postal_code" in result.message


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.dates(),
    st.datetimes(),
    st.just("a@b.co"),
    st.just("02134"),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {c: _values for c in COLUMNS} | {"email_address": _values, "receive_email_updates": _values}
        ),
        min_size=1,
        max_size=15,
    ),
    mode=st.sampled_from(["upsert", "insert", "update"]),
)
def test_arbitrary_rows_each_get_a_payload_or_a_rejection(rows, mode):
    """Property: no crash, exactly one result per row, payloads are plain JSON without nulls."""
    import json

    mapping = MemberMapping(mode=mode)
    frame = pd.DataFrame(rows, columns=[*COLUMNS, "email_address", "receive_email_updates"]).astype(object)
    plan = mapping.plan([str(c) for c in frame.columns])
    results = [mapping.map_record(n, record, plan) for n, record in enumerate(chunk_records(frame), 1)]
    assert len(results) == len(rows)
    for n, result in enumerate(results, start=1):
        assert result.row_number == n
        if isinstance(result, RowResult):
            assert result.outcome is Outcome.REJECTED
            assert result.message.startswith(f"row {n}: ")
        else:
            json.dumps(result.payload, allow_nan=False)
            assert all(v is not None for v in result.payload.values())
            assert result.payload["email_address"]  # id_type email: the identifier is always carried
