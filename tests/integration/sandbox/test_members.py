"""Members: stored by CrowdTwist id, found by every id_type, and checked with the contract's rules."""

from __future__ import annotations

import pytest

from airflow_provider_crowdtwist.client.errors import CrowdTwistNotFoundError, CrowdTwistValidationError
from airflow_provider_crowdtwist.sandbox.server import SandboxServer
from tests.integration.sandbox._helpers import API_KEY_HEADER, member, raw

pytestmark = pytest.mark.integration

EVERY_ID = {
    "username": "ada_l",
    "third_party_id": "crm-0001",
    "mobile_phone_number": "15551234567",
    "facebook_user_id": "fb-42",
    "twitter_user_id": "tw-42",
}


def test_create_returns_the_stored_member_with_an_integer_id(sandbox, client_for):
    client = client_for(sandbox)
    created = client.create_user(member("ada@example.com", custom_data={"favorite_store": "Soho"}))
    assert isinstance(created["id"], int)
    assert created["email_address"] == "ada@example.com"
    assert created["custom_data"] == {"favorite_store": "Soho"}
    second = client.create_user(member("bob@example.com"))
    assert second["id"] == created["id"] + 1
    assert [m["id"] for m in sandbox.admin.members()] == [created["id"], second["id"]]


@pytest.mark.parametrize("id_type", ["email", "id", *EVERY_ID])
def test_lookup_by_every_id_type_finds_the_same_member(sandbox, client_for, id_type):
    client = client_for(sandbox)
    created = client.create_user(member("ada+loyal@example.com", **EVERY_ID))
    value = {"email": "ada+loyal@example.com", "id": str(created["id"])}.get(id_type) or EVERY_ID[id_type]
    found = client.get_user(value, id_type=id_type)
    assert found["id"] == created["id"]
    updated = client.update_user(value, {"middle_name": "King"}, id_type=id_type)
    assert updated["middle_name"] == "King"


def test_email_lookup_ignores_case_and_unknown_member_is_404(sandbox, client_for):
    client = client_for(sandbox)
    created = client.create_user(member("Mixed.Case@Example.com"))
    assert client.get_user("mixed.case@example.com")["id"] == created["id"]
    with pytest.raises(CrowdTwistNotFoundError) as caught:
        client.get_user("nobody@example.com")
    assert caught.value.status == 404
    assert caught.value.code == "page_not_found"
    assert caught.value.message == "User does not exist."
    with pytest.raises(CrowdTwistNotFoundError):
        client.update_user("nobody@example.com", {"last_name": "X"})
    with pytest.raises(CrowdTwistNotFoundError):
        client.get_user("999999999", id_type="id")


def test_changing_an_identifier_moves_the_index(sandbox, client_for):
    client = client_for(sandbox)
    created = client.create_user(member("old@example.com", username="old_name"))
    client.update_user("old@example.com", {"email_address": "new@example.com", "username": "new_name"})
    assert client.get_user("new@example.com")["id"] == created["id"]
    assert client.get_user("new_name", id_type="username")["id"] == created["id"]
    with pytest.raises(CrowdTwistNotFoundError):
        client.get_user("old@example.com")
    with pytest.raises(CrowdTwistNotFoundError):
        client.get_user("old_name", id_type="username")


def test_upsert_updates_then_creates(sandbox, client_for):
    client = client_for(sandbox)
    outcome, created = client.upsert_user("up@example.com", member("up@example.com"))
    assert outcome == "created"
    outcome, updated = client.upsert_user("up@example.com", {"last_name": "Again"})
    assert outcome == "updated"
    assert updated["id"] == created["id"]
    assert updated["last_name"] == "Again"
    assert sandbox.admin.requests_for("up@example.com") == 3  # PUT 404, POST, PUT


def test_delete_removes_the_member_and_its_indexes(sandbox, client_for):
    client = client_for(sandbox)
    client.create_user(member("gone@example.com", username="gone"))
    client.delete_user("gone@example.com")
    with pytest.raises(CrowdTwistNotFoundError):
        client.get_user("gone@example.com")
    with pytest.raises(CrowdTwistNotFoundError):
        client.delete_user("gone@example.com")
    assert sandbox.admin.members() == []
    client.create_user(member("gone@example.com", username="gone"))  # identifiers are free again


def test_custom_data_merges_on_update(sandbox, client_for):
    client = client_for(sandbox)
    client.create_user(member("cd@example.com", custom_data={"favorite_store": "A", "lifetime_value": 10}))
    updated = client.update_user(
        "cd@example.com", {"custom_data": {"loyalty_segment": "gold", "lifetime_value": 12}}
    )
    assert updated["custom_data"] == {"favorite_store": "A", "lifetime_value": 12, "loyalty_segment": "gold"}


def test_password_is_stored_but_never_answered(sandbox, client_for):
    password = "S3cret-Passw0rd!"
    client = client_for(sandbox)
    created = client.create_user(member("pw@example.com", password=password))
    assert "password" not in created
    assert "password" not in client.get_user("pw@example.com")
    (stored,) = sandbox.admin.members()
    assert stored["password_set"] is True
    assert password not in str(sandbox.admin.members())
    assert password not in raw(sandbox, "GET", "/_admin/members").text


# ---- the contract's validation ----------------------------------------------------------------------


def _refused(client, body, message, *, exact=True):
    with pytest.raises(CrowdTwistValidationError) as caught:
        client.create_user(body)
    assert caught.value.status == 400
    assert caught.value.code == "input_error"
    if exact:
        assert caught.value.message == message
    else:
        assert message in caught.value.message
    return caught.value


@pytest.mark.parametrize("field", ["first_name", "last_name", "email_address"])
def test_create_requires_names_and_email(sandbox, client_for, field):
    body = member("req@example.com")
    del body[field]
    _refused(client_for(sandbox), body, f"{field} is required")
    assert sandbox.admin.members() == []


@pytest.mark.parametrize(
    ("location", "ok"),
    [
        ({"postal_code": "10001"}, True),
        ({"postal_code": "10001-1234"}, True),
        ({"postal_code": "100011234"}, True),  # ZIP+4 without the hyphen (O:UserCreate)
        ({"postal_code": "1001"}, False),
        ({"postal_code": "10001-12"}, False),
        ({"postal_code": "10001 1234"}, False),
        ({}, False),
        ({"country_code": "CA", "postal_code": "K1A 0B1"}, True),
        ({"country_code": "ca", "postal_code": "k1a 0b1"}, True),
        ({"country_code": "CA", "postal_code": "K1A0B1"}, False),
        ({"country_code": "CA", "postal_code": "10001"}, False),
        ({"country_code": "CA", "city_name": "Ottawa"}, False),
        ({"country_code": "FR", "city_name": "Paris"}, True),
        ({"country_code": "GB", "city_id": 2643743}, True),
        ({"country_code": "FR"}, False),
        ({"country_code": "FR", "postal_code": "75001"}, False),
    ],
)
def test_location_rules_us_canada_elsewhere(sandbox, client_for, location, ok):
    body = {k: v for k, v in member("loc@example.com").items() if k != "postal_code"}
    body.update(location)
    client = client_for(sandbox)
    if ok:
        assert client.create_user(body)["email_address"] == "loc@example.com"
    else:
        _refused(client, body, "US zip code or country/city combo is required")


@pytest.mark.parametrize(
    "extra",
    [{"country_code": "US"}, {"city_name": "New York"}, {"city_id": 5128581}, {"country_code": "us"}],
)
def test_us_postal_code_must_come_alone(sandbox, client_for, extra):
    """O:UserCreate: "for domestic addresses ONLY postal_code can be provided"; city/country are refused."""
    _refused(
        client_for(sandbox),
        member("us@example.com", **extra),
        "For domestic addresses ONLY postal_code can be provided",
    )
    assert sandbox.admin.members() == []


def test_us_member_cannot_gain_a_city_on_update(sandbox, client_for):
    client = client_for(sandbox)
    client.create_user(member("us2@example.com", postal_code="02134-1234"))
    with pytest.raises(CrowdTwistValidationError) as caught:
        client.update_user("us2@example.com", {"city_name": "Boston"})
    assert caught.value.message == "For domestic addresses ONLY postal_code can be provided"
    assert sandbox.admin.member("us2@example.com")["postal_code"] == "02134-1234"


def test_location_is_rechecked_on_update(sandbox, client_for):
    client = client_for(sandbox)
    client.create_user(member("move@example.com"))
    with pytest.raises(CrowdTwistValidationError) as caught:
        client.update_user("move@example.com", {"country_code": "DE"})
    assert caught.value.message == "US zip code or country/city combo is required"
    moved = client.update_user("move@example.com", {"country_code": "DE", "city_name": "Berlin"})
    assert moved["country_code"] == "DE"


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("Zo\u00eb O\u2019Brien-Smith", True),
        ("J.R. Ewing, Jr_2 @home", True),
        ("José", True),
        ("Bobby; DROP TABLE", False),
        ("Ann (Annie)", False),
        ("Ann\tLee", False),
        ("Bill/Ted", False),
        ("O'Brien", True),  # the ASCII apostrophe Oracle's escaped class allows (curled by the docs site)
        ("D\u2019Arcy O'Neil", True),  # both apostrophes in one name
        ("\u674e\u5c0f\u9f99", True),  # letters in any script
        ("Ann`s", False),  # a backtick is not an apostrophe
    ],
)
def test_name_characters(sandbox, client_for, name, ok):
    client = client_for(sandbox)
    body = member("name@example.com", first_name=name)
    if ok:
        assert client.create_user(body)["first_name"] == name
    else:
        error = _refused(client, body, "first_name contains characters that are not allowed", exact=False)
        assert "first_name" in error.message


def test_email_taken_on_create_and_on_update(sandbox, client_for):
    client = client_for(sandbox)
    client.create_user(member("taken@example.com"))
    client.create_user(member("other@example.com"))
    _refused(client, member("TAKEN@example.com"), "email_address already taken")
    with pytest.raises(CrowdTwistValidationError) as caught:
        client.update_user("other@example.com", {"email_address": "taken@example.com"})
    assert caught.value.message == "email_address already taken"
    # re-sending a member's own email on update is not "taken"
    assert client.update_user("taken@example.com", {"email_address": "taken@example.com"})
    client.create_user(member("x@example.com", username="u1"))
    _refused(client, member("y@example.com", username="u1"), "username already taken")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("date_of_birth", "1990-01-01", "date_of_birth must be an integer epoch"),
        ("date_of_birth", 631152000.5, "date_of_birth must be an integer epoch"),
        ("date_of_birth", True, "date_of_birth must be an integer epoch"),
        ("email_is_verified", 2, "email_is_verified must be 0 or 1"),
        ("receive_email_updates", True, "receive_email_updates must be 0 or 1"),
        ("email_address", "not-an-email", "email_address is not a valid email address"),
        ("country_code", "USA", "country_code must be a two-letter"),
        ("custom_data", ["favorite_store"], "custom_data must be a JSON object"),
        ("first_name", None, "first_name is required"),
    ],
)
def test_attribute_types(sandbox, client_for, field, value, fragment):
    _refused(client_for(sandbox), member("types@example.com", **{field: value}), fragment, exact=False)


def test_integer_epoch_date_is_accepted(sandbox, client_for):
    created = client_for(sandbox).create_user(
        member("dob@example.com", date_of_birth=631152000, email_is_verified=1)
    )
    assert created["date_of_birth"] == 631152000
    assert created["email_is_verified"] == 1


def test_custom_data_keys_must_be_configured(sandbox, client_for):
    client = client_for(sandbox)
    _refused(
        client,
        member("cd1@example.com", custom_data={"favorite_color": "red"}),
        "Unrecognized attribute name",
    )
    with SandboxServer(custom_attributes=()) as bare:
        bare_client = client_for(bare)
        _refused(
            bare_client,
            member("cd2@example.com", custom_data={"favorite_store": "A"}),
            "No custom attributes setup for client",
        )
        assert bare_client.create_user(member("cd3@example.com"))["custom_data"] == {}


def test_unknown_attributes_are_rejected(sandbox, client_for):
    client = client_for(sandbox)
    error = _refused(
        client, member("unk@example.com", favourite_colour="red"), "favourite_colour", exact=False
    )
    assert error.message == "Unknown attribute 'favourite_colour'"
    client.create_user(member("unk@example.com", instagram_user_id="ig1", foursquare_token="fs"))
    with pytest.raises(CrowdTwistValidationError) as caught:
        client.update_user("unk@example.com", {"points": 5})
    assert caught.value.message == "Unknown attribute 'points'"


def test_remove_points_is_a_flag_that_wipes_points_on_deactivation(sandbox, client_for):
    """O:UserUpdate: ``remove_points`` (0/1) is sent with ``is_active: 0`` and removes the points."""
    client = client_for(sandbox)
    client.create_user(member("upd@example.com"))
    client.create_user(member("keep@example.com"))
    for email in ("upd@example.com", "keep@example.com"):
        client.credit_activity(email, "signup")
    kept = client.update_user("keep@example.com", {"is_active": 0, "remove_points": 0})
    assert (kept["is_active"], kept["redeemable_points"]) == (0, 50)
    alone = client.update_user("upd@example.com", {"remove_points": 1})  # no deactivation: no effect
    assert (alone["is_active"], alone["redeemable_points"]) == (1, 50)
    after = client.update_user("upd@example.com", {"remove_points": 1, "is_active": 0})
    assert (after["is_active"], after["redeemable_points"], after["total_points"]) == (0, 0, 50)
    assert "remove_points" not in after  # an instruction, not an attribute
    for bad in (20, True, "1"):
        with pytest.raises(CrowdTwistValidationError) as caught:
            client.update_user("upd@example.com", {"remove_points": bad})
        assert caught.value.message == f"remove_points must be 0 or 1, got {bad!r}"
    with pytest.raises(CrowdTwistValidationError):
        client.update_user("upd@example.com", {"is_active": "no"})


def test_update_only_fields_do_not_apply_on_create(sandbox, client_for):
    """The create body does not take ``is_active``/``remove_points`` (O:UserCreate): not applied there."""
    client = client_for(sandbox)
    created = client.create_user(member("new@example.com", is_active=0, remove_points=1))
    assert created["is_active"] == 1
    assert "remove_points" not in created
    assert sandbox.admin.member("new@example.com")["is_active"] == 1
    with pytest.raises(CrowdTwistValidationError) as caught:  # still checked as values
        client.create_user(member("new2@example.com", is_active=5))
    assert caught.value.message == "is_active must be 0 or 1, got 5"


def test_bad_id_type_and_bad_bodies_on_the_wire(sandbox):
    assert raw(sandbox, "GET", "/v2/users/a%40b.com?id_type=nickname", headers=API_KEY_HEADER).json() == {
        "error": "param_error",
        "message": "Invalid id_type 'nickname'; expected one of email, facebook_user_id, twitter_user_id, "
        "id, third_party_id, username, mobile_phone_number",
    }
    not_json = raw(
        sandbox,
        "POST",
        "/v2/users",
        data=b"{nope",
        headers={**API_KEY_HEADER, "Content-Type": "application/json"},
    )
    assert (not_json.status_code, not_json.json()["message"]) == (400, "Request body is not valid JSON")
    as_form = raw(sandbox, "POST", "/v2/users", data={"first_name": "A"}, headers=API_KEY_HEADER)
    assert as_form.json()["message"] == "Content-Type must be application/json"
    array = raw(sandbox, "POST", "/v2/users", json=[member("a@b.com")], headers=API_KEY_HEADER)
    assert array.json()["message"] == "Request body must be a JSON object"
    # default id_type is the CrowdTwist id
    created = raw(sandbox, "POST", "/v2/users", json=member("a@b.com"), headers=API_KEY_HEADER).json()
    assert (
        raw(sandbox, "GET", f"/v2/users/{created['id']}", headers=API_KEY_HEADER).json()["id"]
        == created["id"]
    )
    assert raw(sandbox, "GET", "/v2/users/a%40b.com", headers=API_KEY_HEADER).status_code == 404
