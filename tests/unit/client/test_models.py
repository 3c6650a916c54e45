"""Tolerant parsing: activities in several shapes, error bodies JSON or not."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_crowdtwist.client.models import (
    Activity,
    page_number,
    parse_activities,
    parse_activity_page,
    parse_deletion,
    parse_error_body,
)


def test_oracle_activity_fields() -> None:
    """O:Activities names: id, name, title, description, num_points, type_id, category_id, freq_cap..."""
    item = {
        "id": 101,
        "name": "purchase",
        "title": "Make a purchase",
        "description": "Points per order",
        "num_points": 10,
        "type_id": 3,
        "category_id": 7,
        "freq_cap": 5,
        "freq_period_id": 2,
        "date_start": 1700000000,
        "date_end": None,
        "brand_new_field": {"x": 1},  # unknown fields are ignored (O:CrowdTwistAPIBestPractices)
    }
    [activity] = parse_activities([item])
    assert activity == Activity(
        id="101",
        name="purchase",
        num_points=10,
        active=True,
        title="Make a purchase",
        description="Points per order",
        type_id=3,
        category_id=7,
        freq_cap=5,
        freq_period_id=2,
        date_start=1700000000,
    )
    assert activity.points == 10  # the older name stays an alias
    assert activity.raw == item


def test_older_shape_with_points_and_flag() -> None:
    payload = {"activities": [{"id": "purchase", "name": "Purchase", "points": 10, "is_active": 1}]}
    [activity] = parse_activities(payload)
    assert (activity.id, activity.name, activity.num_points, activity.active) == (
        "purchase",
        "Purchase",
        10,
        True,
    )


def test_extended_page_links_are_urls() -> None:
    page = parse_activity_page(
        {
            "activities": [{"id": "a", "num_points": 1}],
            "paging": {
                "total": 30,
                "pages": 3,
                "next_page": "https://sbapi1.crowdtwist.com/v2.1/activities/extended?page=3&page_size=10",
                "prev_page": "https://sbapi1.crowdtwist.com/v2.1/activities/extended?page_size=10&page=1",
            },
        }
    )
    assert (page.total, page.pages, page.next_page, page.prev_page) == (30, 3, 3, 1)
    assert [a.id for a in page.activities] == ["a"]
    assert page_number(None) is None and page_number(4) == 4 and page_number("2") == 2
    assert page_number("https://x/y?page_size=10") is None


def test_deletion_answer() -> None:
    answer = parse_deletion({"user_id": 42, "status": "Queued"})
    assert answer.user_id == "42" and answer.status == "Queued" and answer.queued
    assert not parse_deletion({}).queued and parse_deletion("junk").user_id is None


@pytest.mark.parametrize("key", ["activities", "data", "items"])
def test_wrapped_lists(key: str) -> None:
    assert [a.id for a in parse_activities({key: [{"id": 1}, {"id": "b"}]})] == ["1", "b"]


def test_bare_list_and_alternative_field_names() -> None:
    payload = [
        {"activity_id": 77, "title": "Review", "default_points": "25", "status": "inactive", "new": {"x": 1}},
        {"id": "x", "active": False, "points": 3.0},
        {"id": "y", "status": "ACTIVE", "points": "n/a"},
    ]
    first, second, third = parse_activities(payload)
    assert (first.id, first.name, first.points, first.active) == ("77", "Review", 25, False)
    assert (second.points, second.active) == (3, False)
    assert (third.active, third.points, third.name) == (True, None, None)


def test_entries_without_id_and_non_objects_are_skipped() -> None:
    assert [a.id for a in parse_activities([{"name": "no id"}, "junk", None, {"id": ""}, {"id": "ok"}])] == [
        "ok"
    ]


@pytest.mark.parametrize("payload", [None, {}, {"activities": None}, "text", 5, {"other": []}])
def test_unusable_payloads_give_empty_list(payload: Any) -> None:
    assert parse_activities(payload) == []


def test_nested_object() -> None:
    assert [a.id for a in parse_activities({"data": {"activities": [{"id": "z"}]}})] == ["z"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '{"error": "input_error", "message": "Event already processed"}',
            ("input_error", "Event already processed"),
        ),
        (
            '{"error": {"code": "forbidden", "message": "User is inactive."}}',
            ("forbidden", "User is inactive."),
        ),
        ('{"errors": [{"message": "a"}, "b"]}', (None, "a; b")),
        ('{"error": "internal_error"}', ("internal_error", "")),
        ("<html>\n  <body>Bad   gateway</body></html>", (None, "<html> <body>Bad gateway</body></html>")),
        ("", (None, "")),
        (b'{"message": "bytes ok"}', (None, "bytes ok")),
        ('"just a string"', (None, "just a string")),
    ],
)
def test_error_bodies(body: Any, expected: tuple[Any, str]) -> None:
    assert parse_error_body(body) == expected


def test_long_error_body_is_cut() -> None:
    code, message = parse_error_body("x" * 5000, limit=100)
    assert code is None and len(message) == 100 and message.endswith("...")
