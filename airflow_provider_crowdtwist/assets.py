"""CrowdTwist assets: one per program and object, ``crowdtwist://<host>/members``,
``crowdtwist://<host>/activities[/<activity_id>]``, ``crowdtwist://<host>/purchases`` and ``/returns``,
and ``crowdtwist://<host>/audiences/<name>``.

A downstream DAG can be scheduled on "members synced into this program" without inventing a URI:
the sync operators emit events for exactly these assets (see ``operators/_outcome.py``), and the
URI scheme is registered in the provider info (``asset-uris`` on Airflow 3, ``dataset-uris`` on
Airflow 2) with :func:`sanitize_uri`, so that ``crowdtwist://SBAPI123.crowdtwist.com:443/members/``
written by hand in a DAG is the same asset as the one the operator emits. No Airflow import: Airflow
calls the normalizer while it loads providers.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult, quote, unquote, urlsplit

SCHEME = "crowdtwist"
MEMBERS = "members"
ACTIVITIES = "activities"
PURCHASES = "purchases"
RETURNS = "returns"
AUDIENCES = "audiences"
#: The host part of the live push assets: a landed feed is not one program's API host.
LIVE_PUSH_HOST = "live-push"
LIVE_PUSH_FEEDS = ("profile", "activity")


def program_host(base_url: str) -> str:
    """The program part of an asset URI from the connection's API base URL (host[:port], lower case).

    The API root path, if any, is left out on purpose: one program is one host.
    """
    parts = urlsplit(base_url if "://" in base_url else f"https://{base_url}")
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError(f"no host in the CrowdTwist base URL {base_url!r}")
    default_port = 443 if parts.scheme == "https" else 80
    return host if parts.port in (None, default_port) else f"{host}:{parts.port}"


def member_asset_uri(base_url: str) -> str:
    """``crowdtwist://<host>/members``: the program's member profiles."""
    return f"{SCHEME}://{program_host(base_url)}/{MEMBERS}"


def activity_asset_uri(base_url: str, activity_id: str | None = None) -> str:
    """``crowdtwist://<host>/activities/<activity_id>``, or ``.../activities`` for credits of any activity."""
    uri = f"{SCHEME}://{program_host(base_url)}/{ACTIVITIES}"
    return f"{uri}/{quote(str(activity_id), safe='')}" if activity_id else uri


def pos_asset_uri(base_url: str, what: str) -> str:
    """``crowdtwist://<host>/purchases`` or ``/returns``: receipts and returns sent to the program.

    ``base_url`` is the connection's API base URL (not the POS host): the asset names the program.
    """
    if what not in (PURCHASES, RETURNS):
        raise ValueError(f"a POS asset is {PURCHASES} or {RETURNS}, not {what!r}")
    return f"{SCHEME}://{program_host(base_url)}/{what}"


def audience_asset_uri(base_url: str, name: str) -> str:
    """``crowdtwist://<host>/audiences/<name>``: an audience (its attribute or segment name)."""
    return f"{SCHEME}://{program_host(base_url)}/{AUDIENCES}/{quote(str(name), safe='')}"


def live_push_database(conn_type: str, host: str | None, port: int | None, database: str | None) -> str:
    """The database part of a live push asset URI, one path segment, from the warehouse connection.

    PostgreSQL: ``<database>@<host>:<port>`` (the port always written, 5432 by default). SQLite: the
    database file's path (``/`` quoted). Two loads of one table name into two databases are two assets.
    """
    kind = conn_type.lower()
    if kind in ("postgres", "postgresql"):
        where = f"{database or ''}@{(host or '').lower()}:{port or 5432}"
        return quote(where, safe="@:")
    return quote(host or database or "", safe="")


def live_push_asset_uri(feed: str, database: str, table: str) -> str:
    """``crowdtwist://live-push/<feed>/<database>/<table>``: a warehouse table loaded from a feed.

    ``database`` is :func:`live_push_database`'s segment, already quoted.
    """
    return f"{SCHEME}://{LIVE_PUSH_HOST}/{quote(feed, safe='')}/{database}/{quote(table, safe='')}"


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Airflow's URI normalizer for the ``crowdtwist`` scheme.

    Host lower-cased, the default port (443) dropped, a trailing slash dropped; the path must name an
    object this provider emits (``/members``, ``/activities``, ``/activities/<id>``, ``/purchases``,
    ``/returns``, ``/audiences/<name>``, or for the host ``live-push`` a loaded feed,
    ``/<feed>/<database>/<table>``). Anything else
    raises ``ValueError``, which Airflow reports as an invalid asset URI.
    """
    if not uri.hostname:
        raise ValueError("a crowdtwist:// asset URI needs the program's host: crowdtwist://<host>/members")
    if uri.query or uri.fragment:
        raise ValueError("a crowdtwist:// asset URI has no query string or fragment")
    host = uri.hostname.lower()
    netloc = host if uri.port in (None, 443) else f"{host}:{uri.port}"
    segments = [s for s in uri.path.split("/") if s]
    if host == LIVE_PUSH_HOST:
        if len(segments) != 3 or segments[0] not in LIVE_PUSH_FEEDS:
            raise ValueError(
                f"crowdtwist://{LIVE_PUSH_HOST} asset path {uri.path!r} must be /<feed>/<database>/<table> "
                f"with feed one of {', '.join(LIVE_PUSH_FEEDS)} (see docs/live-push.md)"
            )
        return SplitResult(SCHEME, host, "/" + "/".join(segments), "", "")
    if not (
        segments in ([MEMBERS], [ACTIVITIES], [PURCHASES], [RETURNS])
        or (len(segments) == 2 and segments[0] in (ACTIVITIES, AUDIENCES))
    ):
        raise ValueError(
            f"crowdtwist:// asset path {uri.path!r} must be /{MEMBERS}, /{ACTIVITIES}, "
            f"/{ACTIVITIES}/<activity_id>, /{PURCHASES}, /{RETURNS} or /{AUDIENCES}/<name>"
        )
    if len(segments) == 2:
        segments[1] = quote(unquote(segments[1]), safe="")
    return SplitResult(SCHEME, netloc, "/" + "/".join(segments), "", "")


def create_asset(
    *,
    host: str,
    object: str = MEMBERS,
    activity_id: str | None = None,
    name: str | None = None,
    extra: dict | None = None,
) -> Any:
    """Airflow's asset factory for the scheme: ``create_asset(host="api1.crowdtwist.com")`` is the
    program's members asset, ``object="activities", activity_id="purchase"`` one activity's credits.

    ``host`` may be the connection's whole base URL. The URI goes through :func:`sanitize_uri`, so a
    factory-made asset equals the one the operators emit.
    """
    from airflow.providers.common.compat.sdk import Asset

    if object == MEMBERS:
        uri = member_asset_uri(host)
    elif object == ACTIVITIES:
        uri = activity_asset_uri(host, activity_id)
    elif object in (PURCHASES, RETURNS):
        uri = pos_asset_uri(host, object)
    elif object == AUDIENCES and name:
        uri = audience_asset_uri(host, name)
    else:
        raise ValueError(
            f"object must be one of {MEMBERS}, {ACTIVITIES}, {PURCHASES}, {RETURNS} or {AUDIENCES} "
            f"(with name=), got {object!r}"
        )
    return Asset(uri=uri, extra=extra)


def convert_asset_to_openlineage(asset: Any, lineage_context: Any = None) -> Any:
    """The OpenLineage dataset of a ``crowdtwist://`` asset: namespace ``crowdtwist://<host>``, name the
    object path (``members``, ``activities/<id>``) -- the same naming as the sync operators' own
    lineage (``operators/_lineage.py``), so both meet on one node of a lineage graph."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    parts = sanitize_uri(urlsplit(asset.uri))
    return Dataset(namespace=f"{parts.scheme}://{parts.netloc}", name=parts.path.lstrip("/"))
