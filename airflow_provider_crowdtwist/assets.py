"""CrowdTwist assets: one per program and object, ``crowdtwist://<host>/members``,
``crowdtwist://<host>/activities[/<activity_id>]`` and ``crowdtwist://<host>/audiences/<name>``.

A downstream DAG can be scheduled on "members synced into this program" without inventing a URI:
the sync operators emit events for exactly these assets (see ``operators/_outcome.py``), and the
URI scheme is registered in the provider info (``asset-uris`` on Airflow 3, ``dataset-uris`` on
Airflow 2) with :func:`sanitize_uri`, so that ``crowdtwist://SBAPI123.crowdtwist.com:443/members/``
written by hand in a DAG is the same asset as the one the operator emits. No Airflow import: Airflow
calls the normalizer while it loads providers.
"""

from __future__ import annotations

from urllib.parse import SplitResult, quote, unquote, urlsplit

SCHEME = "crowdtwist"
MEMBERS = "members"
ACTIVITIES = "activities"
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


def audience_asset_uri(base_url: str, name: str) -> str:
    """``crowdtwist://<host>/audiences/<name>``: an audience (its attribute or segment name)."""
    return f"{SCHEME}://{program_host(base_url)}/{AUDIENCES}/{quote(str(name), safe='')}"


def live_push_asset_uri(feed: str, table: str) -> str:
    """``crowdtwist://live-push/<feed>/<table>``: a warehouse table loaded from a live push feed."""
    return f"{SCHEME}://{LIVE_PUSH_HOST}/{quote(feed, safe='')}/{quote(table, safe='')}"


def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Airflow's URI normalizer for the ``crowdtwist`` scheme.

    Host lower-cased, the default port (443) dropped, a trailing slash dropped; the path must name an
    object this provider emits (``/members``, ``/activities``, ``/activities/<id>``,
    ``/audiences/<name>``, or for the host
    ``live-push`` a loaded feed, ``/<feed>/<table>``). Anything else
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
        if len(segments) != 2 or segments[0] not in LIVE_PUSH_FEEDS:
            raise ValueError(
                f"crowdtwist://{LIVE_PUSH_HOST} asset path {uri.path!r} must be /<feed>/<table> with feed "
                f"one of {', '.join(LIVE_PUSH_FEEDS)}"
            )
        return SplitResult(SCHEME, host, "/" + "/".join(segments), "", "")
    if not (
        segments == [MEMBERS]
        or segments == [ACTIVITIES]
        or (len(segments) == 2 and segments[0] in (ACTIVITIES, AUDIENCES))
    ):
        raise ValueError(
            f"crowdtwist:// asset path {uri.path!r} must be /{MEMBERS}, /{ACTIVITIES}, "
            f"/{ACTIVITIES}/<activity_id> or /{AUDIENCES}/<name>"
        )
    if len(segments) == 2:
        segments[1] = quote(unquote(segments[1]), safe="")
    return SplitResult(SCHEME, netloc, "/" + "/".join(segments), "", "")
