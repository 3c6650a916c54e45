"""Lines to documents: grouping, disagreements, row-and-column rejections, dates read in the zone."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from airflow_provider_crowdtwist.sync.purchases.config import PurchaseSyncConfig, ReturnSyncConfig
from airflow_provider_crowdtwist.sync.purchases.mapping import (
    PHASE_DOCUMENT,
    PHASE_VOID,
    Document,
    DocumentMapping,
)
from airflow_provider_crowdtwist.sync.summary import SyncConfigError

LINE = {
    "receipt_id": "R1",
    "date_purchased": "2026-07-01 10:00:00",
    "total": "12.50",
    "sku": "A",
    "price": "2.50",
    "quantity": 5,
    "email": "a@example.com",
}


def mapping(**config: Any) -> DocumentMapping:
    return DocumentMapping(PurchaseSyncConfig(user_attributes={"email_address": "email"}, **config))


def test_a_line_maps_header_and_item_as_sent() -> None:
    line = mapping(timezone="America/New_York").map_line(3, LINE)
    assert line.key == "R1" and line.phase == PHASE_DOCUMENT and line.problem is None
    assert line.header == {
        "date_purchased": "2026-07-01T10:00:00-04:00",  # summer time in New York
        "total": 12.5,
        "user_attributes": {"email_address": "a@example.com"},
    }
    assert line.item == {"sku": "A", "price": 2.5, "quantity": 5}


def test_an_offset_is_kept_as_given_and_timestamps_read_in_the_zone() -> None:
    m = mapping(timezone="Europe/Paris")
    assert m.map_line(1, {**LINE, "date_purchased": "2026-01-05T08:00:00+09:00"}).header[
        "date_purchased"
    ] == ("2026-01-05T08:00:00+09:00")
    assert m.map_line(1, {**LINE, "date_purchased": dt.datetime(2026, 1, 5, 8)}).header["date_purchased"] == (
        "2026-01-05T08:00:00+01:00"
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"price": "abc"}, "row 7: price: 'abc' is not a number (column 'price')"),
        ({"quantity": "2x"}, "row 7: quantity: '2x' is not a number (column 'quantity')"),
        ({"receipt_id": " "}, "row 7: empty receipt_id (column 'receipt_id')"),
        ({"receipt_id": None}, "row 7: empty receipt_id (column 'receipt_id')"),
        (
            {"date_purchased": "yesterday"},
            "row 7: date_purchased: 'yesterday' is not an ISO-8601 date-time (column 'date_purchased')",
        ),
        ({"total": True}, "row 7: total: True is not a number (column 'total')"),
        ({"sku": None}, "row 7: empty sku (column 'sku')"),
    ],
)
def test_line_problems_name_row_and_column(change: dict[str, Any], problem: str) -> None:
    assert mapping().map_line(7, {**LINE, **change}).problem == problem


def test_lines_that_disagree_on_receipt_fields_reject_the_receipt_naming_the_columns() -> None:
    m = mapping()
    lines = [m.map_line(1, LINE), m.map_line(9, {**LINE, "total": 13, "date_purchased": "2026-07-01 11:00"})]
    document, reason = m.assemble("R1", PHASE_DOCUMENT, lines)
    assert reason.startswith("its lines disagree on columns 'date_purchased', 'total'")
    assert document.ref.label == "receipt 'R1' (rows 1, 9)"


def test_lines_become_one_body_with_all_items() -> None:
    m = mapping(order_id_column="order", currency_column="currency")
    lines = [m.map_line(n, {**LINE, "sku": f"S{n}", "order": 77, "currency": "USD"}) for n in (2, 5)]
    document = m.assemble("R1", PHASE_DOCUMENT, lines)
    assert isinstance(document, Document)
    assert document.body == {
        "receipt_id": "R1",
        "date_purchased": "2026-07-01T10:00:00+00:00",
        "total": 12.5,
        "order_id": "77",
        "currency": "USD",
        "user_attributes": {"email_address": "a@example.com"},
        "items": [{"sku": "S2", "price": 2.5, "quantity": 5}, {"sku": "S5", "price": 2.5, "quantity": 5}],
    }


def test_required_fields_of_a_purchase() -> None:
    m = mapping()
    _, reason = m.assemble("R1", PHASE_DOCUMENT, [m.map_line(1, {**LINE, "total": None})])
    assert reason == "empty total (column 'total'): O:Purchase requires it"


def test_a_line_problem_rejects_its_receipt_with_the_row() -> None:
    m = mapping()
    lines = [
        m.map_line(1, LINE),
        m.map_line(4, {**LINE, "price": "x"}),
        m.map_line(6, {**LINE, "quantity": "y"}),
    ]
    _, reason = m.assemble("R1", PHASE_DOCUMENT, lines)
    assert reason == "row 4: price: 'x' is not a number (column 'price'); and 1 more problem(s) in its lines"


def test_missing_columns_fail_before_any_request_naming_the_argument() -> None:
    with pytest.raises(SyncConfigError, match="total_column: the source has no column 'amount'") as info:
        mapping(total_column="amount").check_columns(LINE.keys())
    assert info.value.field == "total_column"
    with pytest.raises(SyncConfigError, match="item_mapping"):
        mapping(item_mapping={"sku": "product"}).check_columns(LINE.keys())


def test_returns_voids_and_their_rules() -> None:
    m = DocumentMapping(
        ReturnSyncConfig(
            original_receipt_id_column="receipt",
            return_type_column="type",
            void_column="void",
            user_id_column="member",
        )
    )
    base = {
        "return_id": "X1",
        "receipt": None,
        "type": 4,
        "void": "no",
        "member": None,
        "sku": "A",
        "price": 1,
        "quantity": 1,
        "date_returned": "2026-01-01T00:00:00Z",
    }
    void = m.map_line(1, {**base, "void": "yes", "price": "not checked for a void"})
    assert void.phase == PHASE_VOID and void.problem is None
    document = m.assemble("X1", PHASE_VOID, [void])
    assert isinstance(document, Document) and document.kind == "void" and document.body == {"return_id": "X1"}
    _, reason = m.assemble("X1", PHASE_DOCUMENT, [m.map_line(1, base)])
    assert reason.startswith("return type 4 does not accept non-member returns")
    ok = m.assemble("X1", PHASE_DOCUMENT, [m.map_line(1, {**base, "member": 100001.0})])
    assert isinstance(ok, Document) and ok.body["user_id"] == 100001
    assert m.map_line(1, {**base, "type": 10}).problem == (
        "row 1: return_type: 10 is not a return type (1 to 9, O:Return) (column 'type')"
    )
    assert m.map_line(1, {**base, "void": "maybe"}).problem == (
        "row 1: 'maybe' is not yes or no (true/false, 1/0, yes/no) (column 'void')"
    )


def test_config_rules() -> None:
    with pytest.raises(SyncConfigError, match="timezone 'Mars/Base'"):
        PurchaseSyncConfig(timezone="Mars/Base").validate()
    with pytest.raises(SyncConfigError, match="'email' is not a member attribute"):
        PurchaseSyncConfig(user_attributes={"email": "e"}).validate()
    with pytest.raises(SyncConfigError, match="must name the column of 'sku'"):
        PurchaseSyncConfig(item_mapping={"price": "p"}).validate()
    assert PurchaseSyncConfig(
        user_attributes=["email_address", "third_party_id"]
    ).user_attribute_columns() == {
        "email_address": "email_address",
        "third_party_id": "third_party_id",
    }
    assert PurchaseSyncConfig(item_mapping={}).item_columns() == {}
