"""Property: whatever identifier or payload a DAG sends, the client's signature and the sandbox's check
agree -- percent-encoded paths, unicode, plus signs and JSON bodies included.

The sandbox computes signatures independently of the client, so an encoding slip on either side (the
URI signed before or after quoting, a body re-serialised after signing) shows up here as a 401.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import client_for
from tests.integration.sandbox._helpers import member

pytestmark = pytest.mark.integration

_counter = itertools.count()
LOCAL_CHARS = st.sampled_from([*list("abcXYZ019._+-'%&=!#$*/?^`{|}~"), "é", "ß", "ø", "名"])
local_parts = st.text(LOCAL_CHARS, min_size=1, max_size=20).filter(lambda s: not s.startswith("."))
payload_values = st.one_of(st.text(max_size=30), st.integers(-(10**12), 10**12), st.booleans(), st.none())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(local=local_parts, extra=st.dictionaries(st.text(min_size=1, max_size=10), payload_values, max_size=4))
def test_client_hmac_and_sandbox_agree_on_any_identifier_and_body(sandbox, local, extra):
    # `sandbox` is reset once per test, not per example: unique emails keep the examples apart.
    email = f"{local}.{next(_counter)}@example.com"
    client = client_for(sandbox, auth_type="hmac", max_retries=0)
    try:
        created = client.create_user(member(email))
        assert client.get_user(email)["id"] == created["id"]
        assert client.credit_activity(email, "purchase", extra_data=extra) == {"awarded": True}
    finally:
        client.close()
