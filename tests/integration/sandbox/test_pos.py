"""The sandbox's POS host (``/pos``) on the wire: routes, auth, every OPEN reading, faults, its ledger."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from airflow_provider_crowdtwist.sandbox.cli import build_parser, settings_from_args
from tests.integration.sandbox._helpers import API_KEY_HEADER, member, sign

pytestmark = pytest.mark.integration


def receipt(receipt_id: str = "R1", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "receipt_id": receipt_id,
        "total": 25.5,
        "date_purchased": "2026-12-07T10:00:00-05:00",
        "user_attributes": {"email_address": "buyer@example.com"},
        "items": [{"sku": "A", "price": 10.25, "quantity": 2}, {"sku": "B", "price": 5, "quantity": 1}],
    }
    body.update(fields)
    return body


def post(sandbox: Any, path: str, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(f"{sandbox.pos_url}{path}", json=body, headers=headers or API_KEY_HEADER, timeout=10)


def void(sandbox: Any, return_id: str) -> requests.Response:
    return requests.delete(f"{sandbox.pos_url}/return/{return_id}", headers=API_KEY_HEADER, timeout=10)


@pytest.fixture
def buyer(sandbox: Any) -> int:
    answer = requests.post(
        f"{sandbox.base_url}/v2/users", json=member("buyer@example.com"), headers=API_KEY_HEADER, timeout=10
    )
    assert answer.status_code == 200
    return int(answer.json()["id"])


def points(sandbox: Any) -> int:
    return int(sandbox.admin.member("buyer@example.com")["redeemable_points"])


def test_purchase_awards_points_per_line_and_answers_like_fulfillment(sandbox: Any, buyer: int) -> None:
    answer = post(sandbox, "/purchase", receipt())
    assert answer.status_code == 200
    body = answer.json()
    assert body["user_id"] == buyer and body["total_points_awarded"] == 26  # round(20.5) + 5, per line
    assert [i["points_awarded"] for i in body["items"]] == [21, 5]
    assert points(sandbox) == 26
    (stored,) = sandbox.admin.pos()["receipts"]
    assert stored["receipt_id"] == "R1" and stored["points"] == 26 and stored["user_id"] == buyer


@pytest.mark.parametrize(
    ("rounding", "scope", "price_is", "expected"),
    [
        ("natural", "line", "unit", 26),
        ("down", "line", "unit", 25),
        ("up", "line", "unit", 26),
        ("down", "receipt", "unit", 25),
        ("natural", "line", "line", 15),  # price is the line's amount: 10.25 -> 10, 5 -> 5
    ],
)
def test_rounding_readings(
    sandbox: Any, buyer: int, rounding: str, scope: str, price_is: str, expected: int
) -> None:
    sandbox.configure(pos_rounding=rounding, pos_rounding_scope=scope, pos_price_is=price_is)
    assert post(sandbox, "/purchase", receipt()).json()["total_points_awarded"] == expected


def test_points_per_unit_reading(sandbox: Any, buyer: int) -> None:
    sandbox.configure(pos_points_per_unit=2)
    assert post(sandbox, "/purchase", receipt()).json()["total_points_awarded"] == 51


@pytest.mark.parametrize("status", [400, 409, 200])
def test_duplicate_receipt_id_readings(sandbox: Any, buyer: int, status: int) -> None:
    sandbox.configure(pos_duplicate_status=status)
    first = post(sandbox, "/purchase", receipt())
    second = post(sandbox, "/purchase", receipt(total=99))
    assert second.status_code == status
    if status == 200:
        assert second.json() == first.json()  # the first answer, replayed
    else:
        assert second.json()["reason"] == "not_unique" and second.json()["system"] == "pos"
    assert points(sandbox) == 26  # never awarded twice
    assert sandbox.admin.pos()["duplicates"] == {"R1": 1}


def test_answer_readings(sandbox: Any, buyer: int) -> None:
    sandbox.configure(pos_answer="fulfillment")
    assert "items" not in post(sandbox, "/purchase", receipt("F")).json()
    sandbox.configure(pos_answer="empty")
    assert post(sandbox, "/purchase", receipt("E")).json() == {}


@pytest.mark.parametrize(("reading", "status"), [("reject", 400), ("store", 200)])
def test_unknown_user_id_readings(sandbox: Any, reading: str, status: int) -> None:
    sandbox.configure(pos_unknown_user=reading)
    answer = post(sandbox, "/purchase", receipt(user_id=4242, user_attributes=None))
    assert answer.status_code == status
    if status == 400:
        assert answer.json()["reason"] == "user_not_found"
        assert answer.json()["description"] == "User with id [4242] can not be found."


def test_no_member_match_stores_the_receipt_without_a_member(sandbox: Any) -> None:
    answer = post(sandbox, "/purchase", receipt(user_attributes={"email_address": "nobody@example.com"}))
    assert answer.status_code == 200 and answer.json()["user_id"] is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"receipt_id": ""}, "missing_data"),
        ({"total": None}, "missing_data"),
        ({"date_purchased": "2026-12-07T10:00:00"}, "invalid"),  # no offset
        ({"items": []}, "missing_data"),
        ({"currency": "usd"}, "invalid_currency"),
        ({"currency": "EUR"}, "currency_not_configured"),
    ],
)
def test_refusals(sandbox: Any, buyer: int, change: dict[str, Any], reason: str) -> None:
    answer = post(sandbox, "/purchase", receipt(**change))
    assert answer.status_code == 400 and answer.json()["reason"] == reason


def test_items_optional_reading(sandbox: Any, buyer: int) -> None:
    sandbox.configure(pos_items="optional")
    assert post(sandbox, "/purchase", receipt(items=[])).status_code == 200


def test_inactive_member_reading(sandbox: Any, buyer: int) -> None:
    requests.put(
        f"{sandbox.base_url}/v2/users/{buyer}?id_type=id",
        json={"is_active": 0},
        headers=API_KEY_HEADER,
        timeout=10,
    )
    assert post(sandbox, "/purchase", receipt("A")).status_code == 200
    sandbox.configure(pos_inactive_member="refuse")
    assert post(sandbox, "/purchase", receipt("B")).status_code == 403


def test_return_deducts_each_units_share_and_void_credits_it_back(sandbox: Any, buyer: int) -> None:
    post(sandbox, "/purchase", receipt())
    ret = {
        "return_id": "X1",
        "original_receipt_id": "R1",
        "return_type": 1,
        "date_returned": "2026-12-08T12:00:00Z",
        "items": [{"sku": "A", "price": 10.25, "quantity": 1}],
    }
    answer = post(sandbox, "/return", ret)
    assert answer.status_code == 200 and answer.json()["total_points_awarded"] == -11  # half of 21, rounded
    assert points(sandbox) == 15
    assert post(sandbox, "/return", ret).json()["reason"] == "not_unique"
    voided = void(sandbox, "X1")
    assert voided.status_code == 200 and voided.json()["total_points_awarded"] == 11
    assert voided.json()["user_id"] == buyer
    assert points(sandbox) == 26
    assert void(sandbox, "X1").status_code == 404  # a second void: not found (OPEN 6 reading)
    assert post(sandbox, "/return", ret).json()["reason"] == "not_unique"  # a voided id stays taken


def test_return_beyond_the_purchase_is_capped_or_refused(sandbox: Any, buyer: int) -> None:
    post(sandbox, "/purchase", receipt())
    ret = {
        "return_id": "X1",
        "original_receipt_id": "R1",
        "date_returned": "2026-12-08T12:00:00Z",
        "items": [{"sku": "B", "price": 5, "quantity": 3}],
    }
    assert post(sandbox, "/return", ret).json()["total_points_awarded"] == -5  # only 1 was bought
    sandbox.configure(pos_return_excess="refuse")
    answer = post(
        sandbox, "/return", {**ret, "return_id": "X2", "items": [{"sku": "A", "price": 1, "quantity": 3}]}
    )
    assert answer.json()["reason"] == "quantity_too_large"


def test_balance_may_go_negative_or_stop_at_zero(sandbox: Any, buyer: int) -> None:
    no_receipt = {
        "user_attributes": {"email_address": "buyer@example.com"},
        "date_returned": "2026-12-08T12:00:00Z",
        "return_type": 4,
        "items": [{"sku": "A", "price": 7, "quantity": 1}],
    }
    post(sandbox, "/return", {**no_receipt, "return_id": "N1"})
    assert points(sandbox) == -7
    sandbox.configure(pos_negative_balance="floor")
    post(sandbox, "/return", {**no_receipt, "return_id": "N2"})
    assert points(sandbox) == -7


@pytest.mark.parametrize("status", [404, 400])
def test_not_found_readings(sandbox: Any, status: int) -> None:
    sandbox.configure(pos_not_found_status=status)
    assert void(sandbox, "nope").status_code == status
    ret = {
        "return_id": "X",
        "original_receipt_id": "nope",
        "date_returned": "2026-12-08T12:00:00Z",
        "items": [{"sku": "A", "price": 1, "quantity": 1}],
    }
    answer = post(sandbox, "/return", ret)
    assert answer.status_code == status and answer.json()["reason"] == "receipt_not_found"


def test_second_void_replay_and_free_id_readings(sandbox: Any, buyer: int) -> None:
    sandbox.configure(pos_second_void="replay", pos_voided_return_id="free")
    post(sandbox, "/purchase", receipt())
    ret = {
        "return_id": "X1",
        "original_receipt_id": "R1",
        "date_returned": "2026-12-08T12:00:00Z",
        "items": [{"sku": "B", "price": 5, "quantity": 1}],
    }
    post(sandbox, "/return", ret)
    first = void(sandbox, "X1")
    assert void(sandbox, "X1").json() == first.json()
    assert points(sandbox) == 26
    assert post(sandbox, "/return", ret).status_code == 200  # the voided id is free again


def test_non_member_returns_refused_for_types_4_5_9(sandbox: Any) -> None:
    ret = {
        "return_id": "X",
        "user_attributes": {"email_address": "nobody@example.com"},
        "date_returned": "2026-12-08T12:00:00Z",
        "items": [{"sku": "A", "price": 1, "quantity": 1}],
    }
    for return_type in (4, 5, 9):
        answer = post(sandbox, "/return", {**ret, "return_type": return_type})
        assert answer.status_code == 400 and "Non-member" in answer.json()["description"]
    assert post(sandbox, "/return", {**ret, "return_type": 3}).status_code == 200


@pytest.mark.parametrize("status", [401, 403])
def test_hmac_and_query_keys_are_refused(sandbox: Any, buyer: int, status: int) -> None:
    sandbox.configure(pos_refused_auth_status=status)
    import json

    data = json.dumps(receipt()).encode()
    hmac_headers = {**sign("POST", "/pos/purchase", data), "Content-Type": "application/json"}
    answer = requests.post(f"{sandbox.pos_url}/purchase", data=data, headers=hmac_headers, timeout=10)
    assert answer.status_code == status and answer.json()["reason"] == "not_supported"
    query = requests.post(f"{sandbox.pos_url}/purchase?api_key=sandbox-api-key", json=receipt(), timeout=10)
    assert query.status_code == status
    wrong = post(sandbox, "/purchase", receipt(), {"X-CT-Authorization": "CTApiKey wrong-key"})
    assert wrong.status_code == status
    assert sandbox.admin.pos()["receipts"] == []


def test_faults_apply_to_pos_routes(sandbox: Any, buyer: int) -> None:
    sandbox.set_faults(applied_then_503_rate=1.0, fault_routes=["purchase"])
    assert post(sandbox, "/purchase", receipt()).status_code == 503
    assert len(sandbox.admin.pos()["receipts"]) == 1  # applied, then 503
    sandbox.set_faults(applied_then_503_rate=0.0, error_rate=1.0, error_status=503)
    assert post(sandbox, "/purchase", receipt("R2")).status_code == 503
    assert len(sandbox.admin.pos()["receipts"]) == 1  # refused before anything was applied
    sandbox.set_faults(error_rate=0.0, applied_then_drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        post(sandbox, "/purchase", receipt("R3"))
    assert len(sandbox.admin.pos()["receipts"]) == 2


def test_unknown_pos_route_and_reset(sandbox: Any, buyer: int) -> None:
    assert requests.get(f"{sandbox.pos_url}/purchase", headers=API_KEY_HEADER, timeout=10).status_code == 405
    post(sandbox, "/purchase", receipt())
    sandbox.reset()
    assert sandbox.admin.pos() == {
        "receipts": [],
        "returns": [],
        "voided": [],
        "requests": {},
        "duplicates": {},
    }


def test_cli_flags_set_every_pos_reading() -> None:
    args = build_parser().parse_args(
        [
            "--pos-duplicate-status",
            "409",
            "--pos-rounding",
            "down",
            "--pos-points-per-unit",
            "2.5",
            "--pos-unknown-user",
            "store",
            "--pos-not-found-status",
            "400",
            "--pos-items",
            "optional",
            "--pos-refused-auth-status",
            "403",
            "--pos-answer",
            "empty",
            "--pos-currencies",
            "USD,EUR",
        ]
    )
    pos = settings_from_args(args).pos
    assert (pos.duplicate_status, pos.rounding, pos.points_per_unit, pos.unknown_user) == (
        409,
        "down",
        2.5,
        "store",
    )
    assert (pos.not_found_status, pos.items, pos.refused_auth_status, pos.answer) == (
        400,
        "optional",
        403,
        "empty",
    )
    assert pos.currencies == ("USD", "EUR")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--pos-duplicate-status", "418"])


def test_runtime_settings_are_validated_as_a_whole(sandbox: Any) -> None:
    from airflow_provider_crowdtwist.sandbox.admin import SandboxAdminError

    with pytest.raises(SandboxAdminError, match="pos_duplicate_status"):
        sandbox.admin.configure(pos_duplicate_status=418)
    assert sandbox.admin.settings()["pos_duplicate_status"] == 400
