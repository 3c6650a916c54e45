"""Row checks from the contract: email, names, US/CA/other locations."""

from __future__ import annotations

import pytest

from airflow_provider_crowdtwist.sync.validation import (
    check_create,
    check_email,
    check_fields,
    check_location_for_create,
    check_name,
    check_postal_code,
)


@pytest.mark.parametrize("email", ["a@b.co", "first.last+tag@example.com", "x_y@sub.domain.org"])
def test_good_emails(email):
    assert check_email(email) is None


@pytest.mark.parametrize("email", ["plain", "a@b", "a@@b.com", "a b@c.com", "@b.com", "a@b.", 42, None])
def test_bad_emails_name_the_value(email):
    reason = check_email(email)
    assert reason is not None and "not an email address" in reason


@pytest.mark.parametrize(
    "name", ["Anne-Marie", "O\u2019Brien", "Jean_Luc", "Dr. Who, Jr.", "José", "李", "a@b"]
)
def test_allowed_names(name):
    assert check_name(name) is None


@pytest.mark.parametrize(("name", "bad"), [("Bob!", "!"), ("O'Brien", "'"), ("<script>", "<>"), ("a;b", ";")])
def test_forbidden_name_characters_are_listed(name, bad):
    reason = check_name(name)
    assert reason is not None
    for char in bad:
        assert char in reason


def test_blank_name_is_refused():
    assert check_name("  ") == "must be non-empty text"


@pytest.mark.parametrize(
    "payload",
    [
        {"postal_code": "02134"},
        {"postal_code": "02134-1234", "country_code": "US"},
        {"postal_code": "K1A 0B1", "country_code": "CA"},
        {"country_code": "GB", "city_name": "London"},
        {"country_code": "FR", "city_id": "123"},
    ],
)
def test_locations_that_allow_a_create(payload):
    assert check_location_for_create(payload) is None


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"postal_code": "2134"},
        {"postal_code": "ABCDE"},
        {"postal_code": "K1A0B1", "country_code": "CA"},
        {"postal_code": "02134", "country_code": "CA"},
        {"country_code": "GB"},
        {"city_name": "London"},
    ],
)
def test_locations_that_do_not(payload):
    reason = check_location_for_create(payload)
    assert reason is not None and "location is required" in reason


def test_postal_code_checked_against_country_even_on_update():
    assert check_postal_code("12345", None) is None
    assert check_postal_code("K1A 0B1", None) is None  # could be a Canadian member
    assert "US ZIP" in check_postal_code("1234", "US")
    assert "Canadian" in check_postal_code("12345", "CA")
    assert check_postal_code("SW1A 1AA", "GB") is None  # no rule for other countries


def test_check_create_names_the_first_missing_field():
    assert check_create({"last_name": "L", "email_address": "a@b.co", "postal_code": "02134"}) == (
        "first_name",
        "first_name is required to create a member",
    )
    field, reason = check_create({"first_name": "F", "last_name": "L", "email_address": "a@b.co"})
    assert field == "location" and "US postal_code" in reason
    assert (
        check_create({"first_name": "F", "last_name": "L", "email_address": "a@b.co", "postal_code": "02134"})
        is None
    )


def test_check_fields_names_the_field():
    assert check_fields({"email_address": "nope"})[0] == "email_address"
    assert check_fields({"first_name": "Bob!"})[0] == "first_name"
    assert check_fields({"middle_name": "#"})[0] == "middle_name"
    assert check_fields({"country_code": "USA"})[0] == "country_code"
    assert check_fields({"postal_code": "1"})[0] == "postal_code"
    assert check_fields({"email_address": "a@b.co", "first_name": "Al", "postal_code": "02134"}) is None
