"""Custom attributes are typed per program: the sandbox refuses a wrong type, under each OPEN reading."""

from __future__ import annotations

import pytest

from airflow_provider_crowdtwist.client.errors import CrowdTwistValidationError
from airflow_provider_crowdtwist.sandbox.cli import build_parser, settings_from_args
from airflow_provider_crowdtwist.sandbox.process import SandboxProcess
from airflow_provider_crowdtwist.sandbox.server import SandboxServer
from tests.integration.sandbox._helpers import member
from tests.readings import CUSTOM_TYPE_READINGS, by_name

pytestmark = pytest.mark.integration

TYPED = ("in_audience:boolean", "score:number", "tier_name:string", "anything")
# what each reading of the boolean OPEN point accepts, and what it refuses
ACCEPTED = {
    "custom_boolean_json": (True, False),
    "custom_boolean_number": (1, 0),
    "custom_boolean_string": ("true", "false", "TRUE"),
    "custom_types_not_enforced": (True, 0, "false", "yes", 2.5),
}
REFUSED = {
    "custom_boolean_json": (1, 0, "true", "false"),
    "custom_boolean_number": (True, False, 2, "1"),
    "custom_boolean_string": (True, 1, "yes"),
    "custom_types_not_enforced": (),
}


@pytest.mark.parametrize("reading", CUSTOM_TYPE_READINGS, ids=lambda r: r.name)
def test_a_boolean_attribute_takes_what_the_reading_says(reading, client_for):
    with SandboxServer(custom_attributes=TYPED, **reading.sandbox) as sandbox:
        client = client_for(sandbox)
        client.create_user(member("b@example.com"))
        for value in ACCEPTED[reading.name]:
            stored = client.update_user("b@example.com", {"custom_data": {"in_audience": value}})
            assert stored["custom_data"]["in_audience"] == value
        for value in REFUSED[reading.name]:
            with pytest.raises(CrowdTwistValidationError) as caught:
                client.update_user("b@example.com", {"custom_data": {"in_audience": value}})
            assert caught.value.status == 400
            assert caught.value.message.startswith("custom_data.in_audience must be a boolean")
        # the configured values of the reading are accepted both ways round
        for value in reading.sync["values"]:
            client.update_user("b@example.com", {"custom_data": {"in_audience": value}})


def test_numbers_strings_and_untyped_attributes(sandbox, client_for):
    with SandboxServer(custom_attributes=TYPED) as typed:
        client = client_for(typed)
        client.create_user(member("n@example.com", custom_data={"score": 2.5, "tier_name": "gold"}))
        for body, message in (
            ({"score": "2.5"}, "custom_data.score must be a number, got '2.5'"),
            ({"score": True}, "custom_data.score must be a number, got True"),
            ({"tier_name": 7}, "custom_data.tier_name must be a string, got 7"),
        ):
            with pytest.raises(CrowdTwistValidationError) as caught:
                client.update_user("n@example.com", {"custom_data": body})
            assert caught.value.message == message
        # an untyped attribute takes any scalar, as before types existed
        for value in (1, "x", True, 2.5):
            client.update_user("n@example.com", {"custom_data": {"anything": value}})
        # a refused value changed nothing
        assert client.get_user("n@example.com")["custom_data"] == {
            "score": 2.5,
            "tier_name": "gold",
            "anything": 2.5,
        }


def test_the_default_program_has_boolean_traits(sandbox, client_for):
    client = client_for(sandbox)
    client.create_user(member("d@example.com", custom_data={"recent_buyer": True}))
    with pytest.raises(CrowdTwistValidationError):
        client.update_user("d@example.com", {"custom_data": {"churn_risk": "yes"}})
    sandbox.configure(custom_attribute_types="not_enforced")  # a runtime switch
    assert client.update_user("d@example.com", {"custom_data": {"churn_risk": "yes"}})["custom_data"] == {
        "recent_buyer": True,
        "churn_risk": "yes",
    }


def test_settings_refuse_an_unknown_type_and_the_cli_takes_the_switches():
    with pytest.raises(ValueError, match="type of 'x:date' must be one of"):
        SandboxServer(custom_attributes=("x:date",))
    args = build_parser().parse_args(
        [
            "--custom-attributes",
            "a:boolean,b",
            "--custom-attribute-types",
            "not_enforced",
            "--custom-boolean-values",
            "string",
        ]
    )
    settings = settings_from_args(args)
    assert settings.custom_attribute_kinds() == {"a": "boolean", "b": None}
    assert (settings.custom_attribute_types, settings.custom_boolean_values) == ("not_enforced", "string")
    assert by_name("custom_boolean_number").sync == {"values": (1, 0)}


def test_a_sandbox_process_enforces_types_too(client_for):
    with SandboxProcess(custom_attributes=("flag:boolean",), custom_boolean_values="number") as child:
        client = client_for(child)
        client.create_user(member("p@example.com", custom_data={"flag": 1}))
        with pytest.raises(CrowdTwistValidationError, match="must be a boolean"):
            client.update_user("p@example.com", {"custom_data": {"flag": True}})
