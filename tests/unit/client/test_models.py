"""Tolerant parsing: activities in several shapes, error bodies JSON or not."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_crowdtwist.client.models import Activity, parse_activities, parse_error_body


def test_sandbox_shape() -> None:
    payload = {"activities": [{"id": "purchase", "name": "Purchase", "points": 10, "is_active": 1}]}
    [activity] = parse_activities(payload)
    assert activity == Activity(id="purchase", name="Purchase", points=10, active=True)
    assert activity.raw == payload["activities"][0]


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
