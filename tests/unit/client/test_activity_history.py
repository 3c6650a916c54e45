"""The activity-history read the credit verification stands on: envelopes, paging, date filter."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_crowdtwist.client import CrowdTwistError, CrowdTwistNotFoundError
from airflow_provider_crowdtwist.client.models import parse_activity_history

from .conftest import RecordingLimiter

V2 = "https://api.test/v2/users/a%2Bb%40c.com/activity_history"
V21 = "https://api.test/v2.1/users/a%2Bb%40c.com/activity_history"
NO_ROUTE = {"status_code": 404, "json": {"error": "page_not_found", "message": "No such endpoint"}}


def item(key: str | None, created: int, **more: Any) -> dict[str, Any]:
    extra = {"ct_dedupe_key": key} if key is not None else {}
    return {
        "activity_id": "purchase",
        "name": "Purchase",
        "num_points": 10,
        "date_created": created,
        "date_awarded": created + 1,
        "extra_data": extra,
        **more,
    }


def test_bare_list_and_paged_envelope_parse_the_same() -> None:
    entries = [item("k1", 200, brand_new_field={"x": 1}), item("k2", 100)]
    bare = parse_activity_history(entries)
    wrapped = parse_activity_history(
        {"paging": {"total": 2, "pages": 1, "next_page": None}, "activities": entries}
    )
    assert bare.items == wrapped.items
    assert [i.extra_data["ct_dedupe_key"] for i in bare.items] == ["k1", "k2"]
    assert bare.items[0].date_created == 200.0 and bare.items[0].num_points == 10
    assert wrapped.is_last(1) and not bare.is_last(1)  # a bare list ends only with an empty page


def test_item_fields_are_read_tolerantly() -> None:
    page = parse_activity_history(
        [
            {
                "activity_id": 7,
                "extra_data": '{"ct_dedupe_key": "k"}',
                "date_created": "2026-12-01T10:00:00Z",
            },
            {"id": "x", "extra_data": "not json", "date_created": 1_796_119_200_000},  # milliseconds
            {"activity_id": "y", "extra_data": None, "date_created": None},
            "garbage",
        ]
    )
    first, second, third = page.items
    assert first.activity_id == "7" and first.extra_data == {"ct_dedupe_key": "k"}
    assert first.date_created == 1_796_119_200.0
    assert second.extra_data == {} and second.date_created == 1_796_119_200.0
    assert third.extra_data == {} and third.date_created is None


def test_reaches_before_needs_newest_first_order() -> None:
    newest_first = parse_activity_history([item("a", 300), item("b", 90)])
    oldest_first = parse_activity_history([item("a", 90), item("b", 300)])
    undated = parse_activity_history([item("a", 300), {"activity_id": "z"}])
    assert newest_first.reaches_before(100)
    assert not newest_first.reaches_before(50)
    assert not oldest_first.reaches_before(100)  # later pages may hold newer items
    assert not undated.reaches_before(100)


def test_v21_date_filter_is_used_and_remembered(wire: Any, make_client: Any) -> None:
    wire.get(V21, [{"json": [item("k1", 500)]}, {"json": []}, {"json": [item("k2", 600)]}, {"json": []}])
    client = make_client()
    found = list(client.activity_history("a+b@c.com", since=450))
    assert [i.extra_data["ct_dedupe_key"] for i in found] == ["k1"]
    first, second = wire.request_history
    assert first.qs == {
        "id_type": ["email"],
        "page_size": ["100"],
        "page_number": ["1"],
        "date_start": ["450"],
    }
    assert second.qs["page_number"] == ["2"]
    assert client.history_requests_sent == 2 and client.requests_sent == 2
    list(client.activity_history("a+b@c.com", since=450))
    assert all("/v2.1/" in r.url for r in wire.request_history)


def test_falls_back_to_v2_paging_when_the_program_has_no_v21(wire: Any, make_client: Any) -> None:
    wire.get(V21, **NO_ROUTE)
    wire.get(V2, [{"json": [item("k3", 900), item("k2", 800)]}, {"json": [item("k1", 700), item("k0", 100)]}])
    client = make_client()
    found = [i.extra_data["ct_dedupe_key"] for i in client.activity_history("a+b@c.com", since=750)]
    # page 2 ends before `since` in newest-first order: no page 3 is read
    assert found == ["k3", "k2", "k1", "k0"]
    urls = [r.url.split("?")[0] for r in wire.request_history]
    assert urls == [V21, V2, V2]
    assert "date_start" not in wire.request_history[1].qs
    assert client.history_requests_sent == 3
    wire.reset_mock()
    list(client.activity_history("a+b@c.com", since=750))
    assert all(r.url.startswith(V2) for r in wire.request_history)  # v2.1 not asked again


def test_a_short_page_is_not_taken_as_the_end(wire: Any, make_client: Any) -> None:
    """A server may cap page_size below what was asked: only an empty page ends a bare list."""
    wire.get(V2, [{"json": [item("a", 900)]}, {"json": [item("b", 899)]}, {"json": []}])
    client = make_client()
    assert len(list(client.activity_history("a+b@c.com"))) == 2
    assert wire.call_count == 3


def test_paging_block_ends_the_history(wire: Any, make_client: Any) -> None:
    wire.get(
        V2,
        [
            {
                "json": {
                    "paging": {"pages": 2, "next_page": "https://x/?page_number=2"},
                    "activities": [item("a", 9)],
                }
            },
            {"json": {"paging": {"pages": 2, "next_page": None}, "activities": [item("b", 8)]}},
        ],
    )
    client = make_client()
    assert len(list(client.activity_history("a+b@c.com"))) == 2 and wire.call_count == 2


def test_member_not_found_on_both_paths(wire: Any, make_client: Any) -> None:
    gone = {"status_code": 404, "json": {"error": "page_not_found", "message": "User does not exist."}}
    wire.get(V21, **gone)
    wire.get(V2, **gone)
    client = make_client()
    with pytest.raises(CrowdTwistNotFoundError):
        list(client.activity_history("a+b@c.com", since=1))
    wire.reset_mock()
    with pytest.raises(CrowdTwistNotFoundError):
        list(client.activity_history("a+b@c.com", since=1))
    assert wire.request_history[0].url.startswith(V21)  # not learnt from a missing member


def test_too_many_pages_cannot_conclude(wire: Any, make_client: Any) -> None:
    wire.get(V2, json=[item("a", 1)])
    with pytest.raises(CrowdTwistError, match="more than 3 pages"):
        list(make_client().activity_history("a+b@c.com", max_pages=3))


def test_history_reads_are_paced_by_the_rate_limiter(wire: Any, make_client: Any) -> None:
    wire.get(V2, [{"json": [item("a", 1)]}, {"json": []}])
    limiter = RecordingLimiter()
    client = make_client(limiter=limiter)
    list(client.activity_history("a+b@c.com"))
    assert limiter.acquired == 2 == client.history_requests_sent
