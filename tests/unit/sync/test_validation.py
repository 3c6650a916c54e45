"""Row checks from the contract: names, US/CA postal codes, create's required fields -- and nothing the
contract does not prove (a location on create is OPEN: never required before sending)."""

from __future__ import annotations

import pytest

from airflow_provider_crowdtwist.sync.validation import (
    check_create,
    check_fields,
    check_name,
    check_postal_code,
    is_us_zip,
)


@pytest.mark.parametrize(
    "name",
    [
        "Anne-Marie",
        "O\u2019Brien",  # the typographic apostrophe Oracle's page shows
        "O'Neil",  # the ASCII apostrophe its escaped regex means (O:UserCreate)
        "D'Arcy-O\u2019Hara",
        "Jean_Luc",
        "Dr. Who, Jr.",
        "José",
        "李",
        "a@b",
    ],
)
def test_allowed_names(name):
    assert check_name(name) is None


@pytest.mark.parametrize(("name", "bad"), [("Bob!", "!"), ("<script>", "<>"), ("a;b", ";"), ('Al "Bo"', '"')])
def test_forbidden_name_characters_are_listed(name, bad):
    reason = check_name(name)
    assert reason is not None
    for char in bad:
        assert char in reason


def test_blank_name_is_refused():
    assert check_name("  ") == "must be non-empty text"


@pytest.mark.parametrize(
    "zip_code",
    ["02134", "02134-1234", "021341234", "02134 1234", "02134-12"],  # only the first 5 are validated
)
def test_us_zip_is_five_digits_then_anything(zip_code):
    assert is_us_zip(zip_code)


@pytest.mark.parametrize("zip_code", ["2134", "ABCDE", "0213", "", None, 2134])
def test_not_a_us_zip(zip_code):
    assert not is_us_zip(zip_code)


NAMES = {"first_name": "F", "last_name": "L", "email_address": "a@b.co"}


@pytest.mark.parametrize(
    "location",
    [
        {},  # OPEN whether a create needs a location: sent, CrowdTwist's answer decides
        {"postal_code": "02134"},
        {"postal_code": "02134-1234", "country_code": "US"},
        {"postal_code": "021341234", "country_code": "us"},
        {"postal_code": "K1A 0B1", "country_code": "CA"},
        {"postal_code": "K1A0B1", "country_code": "CA"},  # the contract shows the form, not a refusal
        {"country_code": "GB", "city_name": "London"},
        {"country_code": "FR", "city_id": "123"},
        {"country_code": "GB"},  # a country without a city: under one reading its city is 'unknown'
        {"city_name": "London"},
    ],
)
def test_locations_a_create_is_sent_with(location):
    assert check_create({**NAMES, **location}) is None


@pytest.mark.parametrize("postal", ["2134", "ABCDE", "0213"])
def test_a_malformed_domestic_postal_code_is_refused_on_create(postal):
    """Present and malformed is refused under every reading: a member without a country is US."""
    field, reason = check_create({**NAMES, "postal_code": postal})
    assert field == "postal_code" and "is not a US ZIP code" in reason and "domestic" in reason


def test_postal_code_checked_against_a_given_country_only():
    assert check_postal_code("12345", "US") is None
    assert check_postal_code("123456789", "US") is None
    assert "US ZIP" in check_postal_code("1234", "US")
    assert "Canadian" in check_postal_code("12345", "CA")
    assert check_postal_code("SW1A 1AA", "GB") is None  # no rule for other countries
    # No country on an update: the member's stored country decides, which only CrowdTwist knows.
    assert check_postal_code("SW1A 1AA", None) is None
    assert check_postal_code("1234", None) is None


def test_check_create_names_the_first_missing_field():
    assert check_create({"last_name": "L", "email_address": "a@b.co", "postal_code": "02134"}) == (
        "first_name",
        "first_name is required to create a member",
    )
    assert check_create({"first_name": "F", "email_address": "a@b.co"}) == (
        "last_name",
        "last_name is required to create a member",
    )
    assert check_create({"first_name": "F", "last_name": "L", "email_address": ""})[0] == "email_address"
    assert (
        check_create({"first_name": "F", "last_name": "L", "email_address": "a@b.co"}) is None
    )  # no location
    assert (
        check_create({"first_name": "F", "last_name": "L", "email_address": "a@b.co", "postal_code": "02134"})
        is None
    )


def test_check_fields_names_the_field():
    assert check_fields({"first_name": "Bob!"})[0] == "first_name"
    assert check_fields({"middle_name": "#"})[0] == "middle_name"
    assert check_fields({"postal_code": "1", "country_code": "US"})[0] == "postal_code"
    assert check_fields({"email_address": "a@b.co", "first_name": "Al", "postal_code": "02134"}) is None


@pytest.mark.parametrize(
    "payload",
    [
        {"email_address": "nope"},  # no documented email rule: CrowdTwist answers, we record
        {"country_code": "USA", "city_name": "X"},  # no documented country-code form
        {"postal_code": "1"},  # no country: a partial update of a member whose country is stored
    ],
)
def test_rules_the_contract_does_not_prove_are_not_applied(payload):
    assert check_fields(payload) is None
