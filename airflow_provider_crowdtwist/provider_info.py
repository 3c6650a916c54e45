"""Static provider metadata, and the one definition of the connection form.

Airflow 3.2+ renders the connection form from ``connection-types[].conn-fields`` and
``ui-field-behaviour`` without importing the hook, while Airflow 2.x asks the hook for WTForms widgets.
Both are derived from :data:`CONN_FIELDS` and :data:`UI_FIELD_BEHAVIOUR` below, so the two forms cannot
drift apart. This module imports nothing (not even the client) because Airflow reads it at start-up
for every process that lists providers.
"""

from __future__ import annotations

from typing import Any

CONN_TYPE = "crowdtwist"
HOOK_NAME = "CrowdTwist"
INTEGRATION_NAME = "Oracle CrowdTwist"

# Kept in step with ``client.config.ID_TYPES`` by a unit test (importing the client here would make
# provider discovery pay for ``requests``).
ID_TYPES = (
    "email",
    "facebook_user_id",
    "twitter_user_id",
    "id",
    "third_party_id",
    "username",
    "mobile_phone_number",
)

# Extras of the connection, in form order. ``schema`` is a JSON schema (Airflow 3 form); the Airflow 2
# widget is derived from it in ``hooks.crowdtwist.CrowdTwistHook.get_connection_form_widgets``.
# No field has a default that could contradict another field: ``scheme`` has none because the host may
# carry its own scheme, and a pre-filled "https" would then conflict with "http://127.0.0.1:...".
# No enum lists ``None``: Airflow 3's form turns every enum member into a dropdown option, and ``None``
# showed as the literal word "null". An extra left empty is simply not saved (the hook's default).
#: Old extra names the hook still reads, mapped to their current name.
LEGACY_EXTRAS: dict[str, str] = {"api_key_in": "key_placement"}

CONN_FIELDS: dict[str, dict[str, Any]] = {
    "auth_type": {
        "label": "Auth type",
        "description": "api_key: the password is the API key. hmac: login is the HMAC public key and "
        "the password the HMAC private key.",
        "schema": {"type": ["string", "null"], "default": "api_key", "enum": ["api_key", "hmac"]},
    },
    "key_placement": {
        "label": "Send API key in",
        "description": "header (X-CT-Authorization, recommended: keeps the key out of URLs and logs) "
        "or query (?api_key=). Read from the old name api_key_in too.",
        # Not called "api_key_in" any more: Airflow's secrets masker hides every extra whose name
        # contains a sensitive word ("api_key", "secret", "token"...), so the edit form showed "***"
        # for this plain choice. No sensitive word in this name; the hook still reads api_key_in.
        "schema": {"type": ["string", "null"], "default": "header", "enum": ["header", "query"]},
    },
    "hmac_timestamp_unit": {
        "label": "HMAC timestamp unit",
        "description": "s or ms. CrowdTwist's documentation is ambiguous; seconds is what working "
        "signers send.",
        "schema": {"type": ["string", "null"], "default": "s", "enum": ["s", "ms"]},
    },
    "id_type": {
        "label": "Default id_type",
        "description": "How members are identified when a task does not say: " + ", ".join(ID_TYPES) + ".",
        "schema": {"type": ["string", "null"], "default": "email", "enum": list(ID_TYPES)},
    },
    "scheme": {
        "label": "Scheme",
        "description": "https or http, only used when the host has no scheme of its own. Defaults "
        "to https; http is accepted for loopback hosts only.",
        "schema": {"type": ["string", "null"], "enum": ["https", "http"]},
    },
    "timeout": {
        "label": "Read timeout (seconds)",
        "description": "How long to wait for an answer to one request.",
        "schema": {"type": ["number", "null"], "default": 30, "exclusiveMinimum": 0},
    },
    "connect_timeout": {
        "label": "Connect timeout (seconds)",
        "description": "How long to wait for the TCP/TLS connection.",
        "schema": {"type": ["number", "null"], "default": 5, "exclusiveMinimum": 0},
    },
    "requests_per_minute": {
        "label": "Requests per minute",
        "description": "The program's rate cap (CrowdTwist: 10000). 0 means no limit.",
        "schema": {"type": ["integer", "null"], "default": 10000, "minimum": 0},
    },
    "pos_host": {
        "label": "POS base URL",
        "description": "The POS host for purchases and returns, e.g. https://sbpos123.crowdtwist.com "
        "(https://{env}pos{client_id}.crowdtwist.com). It takes the API key only (no HMAC).",
        "schema": {"type": ["string", "null"]},
    },
    "rate_limit_conn_id": {
        "label": "Shared rate limit (Redis connection id)",
        "description": "An Airflow Redis connection: every task of this program, on every worker, "
        "then shares one pace (docs/scale-out.md). Empty: each task paces on its own.",
        "schema": {"type": ["string", "null"]},
    },
    "verify": {
        "label": "Verify TLS",
        "description": "true, false, or the path of a CA bundle file.",
        "schema": {"type": ["string", "null"], "default": "true"},
    },
    "max_answer_bytes": {
        "label": "Largest answer (bytes)",
        "description": "An answer larger than this (raw or decoded) fails the request. A CrowdTwist "
        "answer is a few KB; the default is 8 MiB.",
        "schema": {"type": ["integer", "null"], "default": 8388608, "minimum": 1024},
    },
    "attempt_deadline": {
        "label": "Deadline of one attempt (seconds)",
        "description": "The most one attempt may take in all, however slowly the server answers. "
        "Empty: connect timeout + read timeout.",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
    },
    "client_cert": {
        "label": "Client certificate (PEM path)",
        "description": "For a gateway that asks for a client certificate: its PEM file on the worker.",
        "schema": {"type": ["string", "null"]},
    },
    "client_key": {
        "label": "Client certificate key (PEM path)",
        "description": "The client certificate's key, when it is not in the certificate's file.",
        "schema": {"type": ["string", "null"]},
    },
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    # Port stays visible: Airflow 3.3's Test button sends port 0 for a connection saved without one and
    # then refuses to reuse the stored key ("host or port differs"); giving the port (443) avoids it.
    "hidden_fields": ["schema"],
    "relabeling": {
        "host": "API base URL",
        "port": "Port (optional)",
        "login": "HMAC public key",
        "password": "API key / HMAC private key",
    },
    # An extra's placeholder is its default; the extras without one say what empty means.
    "placeholders": {
        "host": "https://sbapi123.crowdtwist.com",
        "port": "443",
        "login": "only for auth type hmac",
        "password": "API key, or HMAC private key",
        **{name: str(f["schema"]["default"]) for name, f in CONN_FIELDS.items() if "default" in f["schema"]},
        "scheme": "https",
        "rate_limit_conn_id": "crowdtwist_rate (optional)",
        "attempt_deadline": "connect + read timeout",
        "client_cert": "/path/to/client.pem (optional)",
        "client_key": "/path/to/client.key (optional)",
        "pos_host": "https://sbpos123.crowdtwist.com",
    },
}


def _ui_field_behaviour_kebab() -> dict[str, Any]:
    """The provider-info spelling of :data:`UI_FIELD_BEHAVIOUR` (kebab-case keys)."""
    return {
        "hidden-fields": list(UI_FIELD_BEHAVIOUR["hidden_fields"]),
        "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
        "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
    }


ASSET_URI_HANDLER = "airflow_provider_crowdtwist.assets.sanitize_uri"
PLUGIN_CLASS = "airflow_provider_crowdtwist.plugins.plugin.CrowdTwistPlugin"
RUN_LINK_CLASS = "airflow_provider_crowdtwist.operators.links.CrowdTwistRunLink"
#: The scheme's entry: the normalizer, the asset factory and the OpenLineage converter (``assets.py``).
ASSET_URIS: list[dict[str, Any]] = [
    {
        "schemes": ["crowdtwist"],
        "handler": ASSET_URI_HANDLER,
        "factory": "airflow_provider_crowdtwist.assets.create_asset",
        "to_openlineage_converter": "airflow_provider_crowdtwist.assets.convert_asset_to_openlineage",
    }
]


def _modules(*modules: str) -> list[dict[str, Any]]:
    return [{"integration-name": INTEGRATION_NAME, "python-modules": list(modules)}]


PROVIDER_INFO: dict[str, Any] = {
    "package-name": "airflow-provider-crowdtwist",
    "name": "CrowdTwist",
    "description": "Sync warehouse rows into Oracle CrowdTwist loyalty programs.",
    "integrations": [
        {
            "integration-name": INTEGRATION_NAME,
            "external-doc-url": "https://docs.oracle.com/en/cloud/saas/crowdtwist/",
            "tags": ["service"],
        }
    ],
    "hooks": _modules("airflow_provider_crowdtwist.hooks.crowdtwist"),
    "operators": _modules(
        "airflow_provider_crowdtwist.operators.user_sync",
        "airflow_provider_crowdtwist.operators.activity_credit",
        "airflow_provider_crowdtwist.operators.purchase",
        "airflow_provider_crowdtwist.operators.returns",
        "airflow_provider_crowdtwist.operators.live_push",
        "airflow_provider_crowdtwist.operators.audience",
    ),
    "sensors": _modules("airflow_provider_crowdtwist.sensors.crowdtwist"),
    "triggers": _modules("airflow_provider_crowdtwist.triggers.crowdtwist"),
    # The crowdtwist:// asset scheme and its normalizer: "asset-uris" is what Airflow 3 reads,
    # "dataset-uris" what Airflow 2 reads.
    "asset-uris": ASSET_URIS,
    "dataset-uris": ASSET_URIS,
    # The CrowdTwist pages of the Airflow 3.1+ UI (docs/ui.md). Also an ``airflow.plugins`` entry point
    # in pyproject.toml: Airflow 3 reads provider-info plugins only with lazy_discover_providers=False.
    "plugins": [{"name": "crowdtwist", "plugin-class": PLUGIN_CLASS}],
    # Airflow 2's webserver rebuilds extra links from these classes; Airflow 3 keeps them as XComs.
    "extra-links": [RUN_LINK_CLASS],
    "connection-types": [
        {
            "connection-type": CONN_TYPE,
            "hook-class-name": "airflow_provider_crowdtwist.hooks.crowdtwist.CrowdTwistHook",
            "hook-name": HOOK_NAME,
            "conn-fields": CONN_FIELDS,
            "ui-field-behaviour": _ui_field_behaviour_kebab(),
        }
    ],
}


#: The ClientConfig field an extra sets where its name is not the extra's own. Every other extra sets
#: the ClientConfig field of its name, or, when ClientConfig has none (``scheme``), is the hook's own.
#: With CONN_FIELDS this is the whole definition of an extra: ``hooks/extras.py`` reads choices,
#: defaults and ranges from the field's schema.
EXTRA_CONFIG_NAMES: dict[str, str] = {"key_placement": "api_key_in", "timeout": "read_timeout"}

#: How each ClientConfig field is known to a user who configured an Airflow connection (the hook
#: passes these to ``ClientConfig.validate`` so its messages name the connection field). The extras'
#: labels are derived, so an extra's message always names the extra the user set.
CONNECTION_FIELD_LABELS: dict[str, str] = {
    "base_url": "connection host (API base URL)",
    "api_key": "password (API key)",
    "hmac_public_key": "login (HMAC public key)",
    "hmac_private_key": "password (HMAC private key)",
    **{EXTRA_CONFIG_NAMES.get(extra, extra): f"connection extra '{extra}'" for extra in CONN_FIELDS},
}
