"""The crowdtwist:// asset URIs: built from the connection's base URL, normalized by Airflow itself
through the handler the provider info registers (``asset-uris`` on 3.x, ``dataset-uris`` on 2.x)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from airflow_provider_crowdtwist.assets import (
    activity_asset_uri,
    audience_asset_uri,
    member_asset_uri,
    program_host,
    sanitize_uri,
)


@pytest.mark.parametrize(
    ("base_url", "host"),
    [
        ("https://SBAPI123.CrowdTwist.com", "sbapi123.crowdtwist.com"),
        ("https://sbapi123.crowdtwist.com:443/", "sbapi123.crowdtwist.com"),
        ("https://api.example.com:8443/v2root", "api.example.com:8443"),
        ("http://127.0.0.1:8765", "127.0.0.1:8765"),
    ],
)
def test_program_host(base_url: str, host: str) -> None:
    assert program_host(base_url) == host


def test_uris() -> None:
    assert member_asset_uri("https://a.example.com") == "crowdtwist://a.example.com/members"
    assert activity_asset_uri("https://a.example.com") == "crowdtwist://a.example.com/activities"
    assert activity_asset_uri("https://a.example.com", "refer a/friend") == (
        "crowdtwist://a.example.com/activities/refer%20a%2Ffriend"
    )
    assert audience_asset_uri("https://A.example.com", "recent_buyer") == (
        "crowdtwist://a.example.com/audiences/recent_buyer"
    )


@pytest.mark.parametrize(
    ("uri", "normal"),
    [
        ("crowdtwist://SBAPI.crowdtwist.com:443/members/", "crowdtwist://sbapi.crowdtwist.com/members"),
        ("crowdtwist://h:8443/activities", "crowdtwist://h:8443/activities"),
        ("crowdtwist://h/activities/purchase", "crowdtwist://h/activities/purchase"),
        (
            "crowdtwist://LIVE-PUSH/profile/warehouse@db:5432/members_live/",
            "crowdtwist://live-push/profile/warehouse@db:5432/members_live",
        ),
        ("crowdtwist://H/audiences/recent_buyer/", "crowdtwist://h/audiences/recent_buyer"),
    ],
)
def test_sanitize_uri(uri: str, normal: str) -> None:
    assert sanitize_uri(urlsplit(uri)).geturl() == normal


@pytest.mark.parametrize(
    "uri",
    [
        "crowdtwist:///members",
        "crowdtwist://h/users",
        "crowdtwist://h/members?x=1",
        "crowdtwist://h/",
        "crowdtwist://h/audiences",
        "crowdtwist://live-push/members",
        "crowdtwist://live-push/redemption/db/t",
        "crowdtwist://live-push/profile/members_live",  # before the database was in the URI
    ],
)
def test_sanitize_uri_refuses_what_the_provider_never_emits(uri: str) -> None:
    with pytest.raises(ValueError, match="crowdtwist://"):
        sanitize_uri(urlsplit(uri))


def test_airflow_uses_the_registered_normalizer() -> None:
    from airflow.providers.common.compat.sdk import Asset
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    # Airflow 3 calls them asset URI handlers, Airflow 2 dataset URI handlers
    names = [n for n in ("asset_uri_handlers", "dataset_uri_handlers") if hasattr(manager, n)]
    handlers = getattr(manager, names[0])
    assert handlers["crowdtwist"] is sanitize_uri
    assert (
        Asset("crowdtwist://SBAPI.crowdtwist.com:443/members/").uri
        == "crowdtwist://sbapi.crowdtwist.com/members"
    )


def test_factory_and_openlineage_converter_are_registered() -> None:
    from airflow.providers_manager import ProvidersManager

    from airflow_provider_crowdtwist.assets import convert_asset_to_openlineage, create_asset

    manager = ProvidersManager()
    factories = next(
        getattr(manager, n) for n in ("asset_factories", "dataset_factories") if hasattr(manager, n)
    )
    converters = next(
        getattr(manager, n)
        for n in ("asset_to_openlineage_converters", "dataset_to_openlineage_converters")
        if hasattr(manager, n)
    )
    assert factories["crowdtwist"] is create_asset
    assert converters["crowdtwist"] is convert_asset_to_openlineage

    asset = create_asset(host="https://SBAPI7.crowdtwist.com:443/", object="activities", activity_id="a b")
    assert asset.uri == "crowdtwist://sbapi7.crowdtwist.com/activities/a%20b"
    assert create_asset(host="sbapi7.crowdtwist.com").uri == "crowdtwist://sbapi7.crowdtwist.com/members"
    with pytest.raises(ValueError, match="object"):
        create_asset(host="sbapi7.crowdtwist.com", object="rewards")


def test_openlineage_dataset_matches_the_operators_naming() -> None:
    pytest.importorskip("airflow.providers.openlineage")
    from airflow.providers.common.compat.sdk import Asset

    from airflow_provider_crowdtwist.assets import convert_asset_to_openlineage

    dataset = convert_asset_to_openlineage(Asset("crowdtwist://SBAPI7.crowdtwist.com/activities/purchase"))
    # operators/_lineage.py names the program's object the same way
    assert (dataset.namespace, dataset.name) == ("crowdtwist://sbapi7.crowdtwist.com", "activities/purchase")


def test_purchase_and_return_assets_name_the_program() -> None:
    from urllib.parse import urlsplit

    from airflow_provider_crowdtwist.assets import pos_asset_uri, sanitize_uri

    assert (
        pos_asset_uri("https://SBAPI123.crowdtwist.com:443/", "purchases")
        == "crowdtwist://sbapi123.crowdtwist.com/purchases"
    )
    assert pos_asset_uri("http://127.0.0.1:8765", "returns") == "crowdtwist://127.0.0.1:8765/returns"
    assert (
        sanitize_uri(urlsplit("crowdtwist://SB.crowdtwist.com/returns/")).geturl()
        == "crowdtwist://sb.crowdtwist.com/returns"
    )
    with pytest.raises(ValueError, match="purchases or returns"):
        pos_asset_uri("https://sb.crowdtwist.com", "refunds")
