"""CrowdTwistHook: turns an Airflow connection into a ready, validated CrowdTwist client.

The hook is the only place that knows how connection fields map to :class:`ClientConfig`; everything
below it (the client, the sync engine) is plain Python that never sees an Airflow connection. Three
rules shape it:

* the connection is fetched lazily, never in ``__init__``, so building a hook in a DAG file costs
  nothing and needs no metadata database;
* every configuration problem is reported before the first request, naming the connection and the
  field (``host``, ``login``, ``password`` or ``extra 'x'``) the user has to fix;
* secrets (the API key or HMAC private key) are registered with Airflow's secrets masker as soon as
  the connection is read, and every message this module builds is scrubbed of them as well.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus, urlsplit

from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_crowdtwist import _compat
from airflow_provider_crowdtwist.client.client import CrowdTwistClient
from airflow_provider_crowdtwist.client.config import ClientConfig
from airflow_provider_crowdtwist.client.errors import CrowdTwistConfigError
from airflow_provider_crowdtwist.client.pos import CrowdTwistPosClient
from airflow_provider_crowdtwist.client.redact import Redactor
from airflow_provider_crowdtwist.formats import show
from airflow_provider_crowdtwist.hooks.extras import ExtraError, config_name, read_extras
from airflow_provider_crowdtwist.hooks.health import ApiCheck, CheckStatus, CheckTarget, check_api, error_text
from airflow_provider_crowdtwist.provider_info import (
    CONN_FIELDS,
    CONN_TYPE,
    CONNECTION_FIELD_LABELS,
    HOOK_NAME,
    LEGACY_EXTRAS,
    UI_FIELD_BEHAVIOUR,
)

if TYPE_CHECKING:
    from airflow_provider_crowdtwist.client.ratelimit import Pacer

_MASK = "***"

# The sensor and trigger compare against these; they are the members of CheckStatus.
CHECK_SUCCESS = CheckStatus.SUCCESS
CHECK_WAITING = CheckStatus.WAITING
CHECK_AUTH_ERROR = CheckStatus.AUTH_ERROR
CHECK_MISSING_ACTIVITIES = CheckStatus.MISSING_ACTIVITIES
CHECK_ERROR = CheckStatus.ERROR


def mask_secret(secret: str) -> None:
    """Register ``secret`` with Airflow's secrets masker, on Airflow 2 and 3 alike.

    Resolved lazily through ``_compat`` (common-compat < 1.23 has no ``mask_secret`` in ``sdk``).
    """
    _compat.mask_secret(secret)


class CrowdTwistHook(BaseHook):
    """Connect to an Oracle CrowdTwist program (REST API v2).

    :param crowdtwist_conn_id: the Airflow connection (type ``crowdtwist``).
    :param client_overrides: :class:`ClientConfig` fields that replace what the connection says, e.g.
        ``{"max_retries": 0}`` for a sensor whose poke interval is the retry, or a task-level
        ``requests_per_minute``. Unknown field names fail with a clear message.
    :param rate_limiter: shared limiter for every request of this hook's client (a sync passes one
        limiter shared by all its workers). Without one, a ``rate_limit_conn_id`` (the connection's
        extra, or :meth:`new_client`'s argument) gives the program's shared limiter in Redis
        (docs/scale-out.md); else each client paces itself.
    """

    conn_name_attr = "crowdtwist_conn_id"
    default_conn_name = "crowdtwist_default"
    conn_type = CONN_TYPE
    hook_name = HOOK_NAME

    def __init__(
        self,
        crowdtwist_conn_id: str = default_conn_name,
        *,
        client_overrides: Mapping[str, Any] | None = None,
        rate_limiter: Pacer | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.crowdtwist_conn_id = crowdtwist_conn_id
        self.client_overrides: dict[str, Any] = dict(client_overrides or {})
        self.rate_limiter = rate_limiter
        self._connection: Any = None
        self._client: CrowdTwistClient | None = None
        self._redactor = Redactor()
        self._extras_cache: dict[str, Any] | None = None

    # ------------------------------------------------------------------ UI form (both Airflow lines)

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """WTForms widgets for Airflow 2's connection form, derived from ``provider_info.CONN_FIELDS``.

        Airflow 3.2+ reads ``conn-fields`` from the provider info instead and never calls this; the
        imports stay inside the method because Airflow 3 does not ship flask_appbuilder or wtforms.
        """
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import IntegerField, StringField
        from wtforms.validators import AnyOf, NumberRange, Optional

        widgets: dict[str, Any] = {}
        for name, spec in CONN_FIELDS.items():
            schema = spec["schema"]
            types = schema["type"]
            default = schema.get("default")
            label = lazy_gettext(spec["label"])
            description = spec.get("description")
            enum = [value for value in schema.get("enum", []) if value is not None]
            if "integer" in types:
                widgets[name] = IntegerField(
                    label,
                    widget=BS3TextFieldWidget(),
                    validators=[Optional(), NumberRange(min=schema.get("minimum"))],
                    default=default,
                    description=description,
                )
            else:
                validators: list[Any] = [Optional()]
                if enum:
                    validators.append(AnyOf(enum))
                widgets[name] = StringField(
                    label,
                    widget=BS3TextFieldWidget(),
                    validators=validators,
                    default=None if default is None else str(default),
                    description=description,
                )
        return widgets

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabel and hide the standard fields (Airflow 2; Airflow 3 reads ``ui-field-behaviour``)."""
        return {
            "hidden_fields": list(UI_FIELD_BEHAVIOUR["hidden_fields"]),
            "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
            "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
        }

    # ------------------------------------------------------------------ connection -> config

    @property
    def connection(self) -> Any:
        """The Airflow connection, fetched on first use and its secrets registered with the masker."""
        if self._connection is None:
            conn = self.get_connection(self.crowdtwist_conn_id)
            if conn.password:
                # the query-string and path spellings of a key are what would leak through a URL
                for spelling in {conn.password, quote(conn.password, safe=""), quote_plus(conn.password)}:
                    mask_secret(spelling)
                self._redactor.add(conn.password)
            self._connection = conn
        return self._connection

    def _fail(self, text: str) -> CrowdTwistConfigError:
        return _config_error(f"Connection '{self.crowdtwist_conn_id}': {self.scrub(text)}")

    def scrub(self, text: str) -> str:
        """Remove this connection's secrets from ``text`` (a second line of defence after the masker)."""
        return self._redactor.redact(text)

    def _extras(self) -> dict[str, Any]:
        if self._extras_cache is None:
            self._extras_cache = self._read_extras()
        return self._extras_cache

    def _read_extras(self) -> dict[str, Any]:
        conn = self.connection
        try:
            extras = conn.extra_dejson
        except Exception as exc:  # a malformed extra is a configuration error, not a crash
            raise self._fail(f"extra is not valid JSON ({type(exc).__name__})") from None
        if not isinstance(extras, Mapping):
            raise self._fail("extra must be a JSON object")
        prefix = f"extra__{CONN_TYPE}__"
        out: dict[str, Any] = {}
        for key, value in extras.items():
            # Airflow 2 forms of some versions store prefixed names; both spellings are accepted.
            name = key[len(prefix) :] if key.startswith(prefix) else key
            if value is None or (isinstance(value, str) and value.strip() == ""):
                continue
            out[name] = value
        self._apply_legacy_names(out)
        unknown = sorted(set(out) - set(CONN_FIELDS))
        if unknown:
            self.log.warning(
                "Connection '%s': ignoring unknown extra(s) %s; known extras are %s",
                self.crowdtwist_conn_id,
                ", ".join(repr(u) for u in unknown),
                ", ".join(CONN_FIELDS),
            )
        return out

    def _apply_legacy_names(self, extras: dict[str, Any]) -> None:
        """Read an extra saved under its old name (``api_key_in``) as its current one, in place.

        The old name contained "api_key", so Airflow's UI masked its value and a form saved with the
        mask stored ``***``: that carries no choice and falls back to the default. When both names are
        set they must agree, otherwise the hook would have to guess which one the user meant.
        """
        for legacy, current in LEGACY_EXTRAS.items():
            if legacy not in extras:
                continue
            value = extras.pop(legacy)
            if value == _MASK:
                self.log.warning(
                    "Connection '%s': extra '%s' holds the UI mask '***'; ignoring it (rename it to '%s')",
                    self.crowdtwist_conn_id,
                    legacy,
                    current,
                )
                continue
            if current in extras and _norm(extras[current]) != _norm(value):
                raise self._fail(
                    f"extra '{current}' is {show(extras[current])} but the old extra '{legacy}' is "
                    f"{show(value)}; keep only '{current}'"
                )
            extras.setdefault(current, value)

    def _settings(self) -> dict[str, Any]:
        """Every extra, checked and defaulted by its definition in ``CONN_FIELDS`` (``hooks/extras.py``)."""
        try:
            return read_extras(self._extras())
        except ExtraError as exc:
            raise self._fail(str(exc)) from None

    def _base_url(self, scheme_extra: str | None) -> str:
        """The API base URL from host, port and schema; ``scheme_extra`` is the extra 'scheme', if set."""
        conn = self.connection
        host = (conn.host or "").strip()
        if not host:
            raise self._fail("host (the API base URL, e.g. https://sbapi123.crowdtwist.com) is empty")
        if "://" in host:
            parts = urlsplit(host)
            scheme = parts.scheme.lower()
            netloc, path = parts.netloc, parts.path
            if parts.query or parts.fragment:
                raise self._fail(f"host {host!r} must not carry a query string or fragment")
            if scheme_extra and scheme_extra != scheme:
                raise self._fail(
                    f"host says {scheme!r} but extra 'scheme' says {scheme_extra!r}; drop one of them"
                )
        else:
            # A URI such as crowdtwist://user:key@host gives a bare host. https unless told otherwise:
            # a plain-text default would send keys in clear to any non-loopback host.
            scheme = scheme_extra or "https"
            netloc, _, rest = host.partition("/")
            path = f"/{rest}" if rest else ""
        if scheme not in ("https", "http"):
            raise self._fail(f"host {host!r}: scheme must be https (or http for loopback), got {scheme!r}")
        if not netloc:
            raise self._fail(f"host {host!r} has no host name")
        if conn.port:
            try:
                existing_port = urlsplit(f"//{netloc}").port
            except ValueError:
                raise self._fail(f"host {host!r} has an invalid port") from None
            if existing_port is None:
                netloc = f"{netloc}:{int(conn.port)}"
            elif existing_port != int(conn.port):
                raise self._fail(f"host says port {existing_port} but port says {conn.port}; drop one")
        schema = (getattr(conn, "schema", None) or "").strip("/")
        if schema:
            # A URI path (crowdtwist://...@host/prefix) lands in `schema`: a path prefix (API gateway).
            path = f"{path.rstrip('/')}/{schema}"
        # http for a non-loopback host is refused by ClientConfig.validate(), naming the host field.
        base_url = f"{scheme}://{netloc}{path.rstrip('/')}"
        return base_url

    def get_client_config(self, **overrides: Any) -> ClientConfig:
        """Map the connection to a validated :class:`ClientConfig`.

        ``overrides`` (and the hook's ``client_overrides``) replace single fields, e.g. ``max_retries``.
        Raises :class:`CrowdTwistConfigError` naming the connection and the field to fix.
        """
        conn = self.connection
        settings = self._settings()
        auth_type = settings["auth_type"]
        login = (conn.login or "").strip() or None
        password = conn.password or None
        if auth_type == "api_key":
            if "auth_type" not in self._extras() and login:
                raise self._fail(
                    "login (the HMAC public key) is set but extra 'auth_type' is not; set "
                    "auth_type to 'hmac' (login + private key in password) or 'api_key' (key in password)"
                )
            if not password:
                raise self._fail("password (the API key) is empty; auth_type is 'api_key'")
        else:
            if not login:
                raise self._fail("login (the HMAC public key) is empty; extra 'auth_type' is 'hmac'")
            if not password:
                raise self._fail("password (the HMAC private key) is empty; extra 'auth_type' is 'hmac'")
        known = {f.name for f in dataclasses.fields(ClientConfig)}
        # every extra that names a ClientConfig field sets it; the others (scheme) are the hook's own
        fields: dict[str, Any] = {
            config_name(extra): value for extra, value in settings.items() if config_name(extra) in known
        }
        fields.update(
            base_url=self._base_url(settings["scheme"]),
            api_key=password if auth_type == "api_key" else None,
            hmac_public_key=login if auth_type == "hmac" else None,
            hmac_private_key=password if auth_type == "hmac" else None,
            # Airflow's rule for short secrets, applied to member passwords by the client and the engine
            min_length_masked_secret=_compat.min_length_masked_secret(),
        )
        for name, value in {**self.client_overrides, **overrides}.items():
            if name not in known:
                raise _config_error(
                    f"CrowdTwistHook: unknown client setting {name!r}; known: {', '.join(sorted(known))}"
                )
            fields[name] = value
        config = ClientConfig(**fields)
        try:
            config.validate(CONNECTION_FIELD_LABELS)
        except CrowdTwistConfigError as exc:
            # the client's messages already name the connection field (host, password, extra 'x')
            raise self._fail(error_text(exc)) from None
        return config

    # ------------------------------------------------------------------ client

    def new_client(
        self,
        *,
        max_workers: int | None = None,
        pace: Callable[[int], int] | None = None,
        rate_limit_conn_id: str | None = None,
        **overrides: Any,
    ) -> CrowdTwistClient:
        """A fresh client (not cached), e.g. one without retries for a probe; the caller closes it.

        ``overrides`` replace single settings (``requests_per_minute``, ``max_retries``...); a sync
        passes ``max_workers`` (the HTTP pool holds that many connections) and, for one partition of
        ``n``, ``pace`` (the cap -> its share, so the partitions together stay under the cap). Without
        a shared ``rate_limiter`` the client builds its one limiter from ``requests_per_minute``.

        ``rate_limit_conn_id`` (default: the connection's extra; ``""`` turns it off): a Redis
        connection holding the program's one pace for every task. The client then paces at the whole
        cap together with every other task of the program, and ``pace`` only sets its fallback for
        when Redis cannot be reached. A name that is no Redis connection fails here, before any request.
        """
        config, limiter = self._paced_config(max_workers, pace, rate_limit_conn_id, overrides)
        return CrowdTwistClient(config, rate_limiter=limiter)

    def _paced_config(
        self,
        max_workers: int | None,
        pace: Callable[[int], int] | None,
        rate_limit_conn_id: str | None,
        overrides: dict[str, Any],
    ) -> tuple[ClientConfig, Pacer | None]:
        """The client settings for a sync, and its limiter: the hook's, the program's shared one
        (keyed by the API host, so purchases and member writes share the program's one bucket), or
        None (the client paces itself at ``requests_per_minute``)."""
        config = self.get_client_config(**overrides)
        if max_workers is not None and config.pool_size < max_workers:
            config = dataclasses.replace(config, pool_size=max_workers)
        cap = config.requests_per_minute
        if pace is not None:
            config = dataclasses.replace(config, requests_per_minute=pace(cap))
        limiter: Pacer | None = self.rate_limiter
        shared_id = self.rate_limit_conn_id if rate_limit_conn_id is None else rate_limit_conn_id.strip()
        if limiter is None and shared_id:
            from airflow_provider_crowdtwist.hooks.rate_limit import shared_rate_limiter

            share = config.requests_per_minute
            limiter = shared_rate_limiter(
                shared_id,
                base_url=config.base_url,
                requests_per_minute=cap,
                fallback_requests_per_minute=share,
                fallback_note=f"this task's share of {cap}/min" if share != cap else "",
                logger=self.log,
            )
        return config, limiter

    @property
    def rate_limit_conn_id(self) -> str | None:
        """The connection's ``rate_limit_conn_id`` extra: the Redis connection of the shared limiter."""
        value = self._extras().get("rate_limit_conn_id")
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._fail(f"extra 'rate_limit_conn_id' must be a connection id (text), got {show(value)}")
        return value.strip() or None

    def new_pos_client(
        self,
        *,
        max_workers: int | None = None,
        pace: Callable[[int], int] | None = None,
        rate_limit_conn_id: str | None = None,
        **overrides: Any,
    ) -> CrowdTwistPosClient:
        """A client of the POS host (extra ``pos_host``) for purchases and returns; the caller closes it.

        Settings as :meth:`new_client`. The POS host takes the API key header only: an HMAC connection,
        or one without ``pos_host``, fails here, before any request, naming why.
        """
        config, limiter = self._paced_config(max_workers, pace, rate_limit_conn_id, overrides)
        try:
            return CrowdTwistPosClient(
                config,
                self._extras().get("pos_host"),
                rate_limiter=limiter,
                labels=CONNECTION_FIELD_LABELS,
            )
        except CrowdTwistConfigError as exc:
            raise self._fail(error_text(exc)) from None

    def get_conn(self) -> CrowdTwistClient:
        """The hook's client, built on first use and reused (one HTTP connection pool per hook)."""
        if self._client is None:
            self._client = self.new_client()
        return self._client

    def close(self) -> None:
        """Close the cached client's HTTP connections."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> CrowdTwistHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ API (delegates to the client)

    def list_activities(self) -> list[Any]:
        """The program's active activities (``GET /v2/activities``)."""
        return self.get_conn().list_activities()

    def get_user(self, user_id: str, id_type: str | None = None, *, pii: bool = True) -> dict:
        """A member's profile; ``id_type`` defaults to the connection's ``id_type``.

        ``pii=False`` reads it without personal data (``id``/``third_party_id`` id types only).
        """
        return self.get_conn().get_user(user_id, id_type=id_type, pii=pii)

    def create_user(self, fields: Mapping[str, Any]) -> dict:
        """Create a member (``POST /v2/users``)."""
        return self.get_conn().create_user(fields)

    def update_user(self, user_id: str, fields: Mapping[str, Any], id_type: str | None = None) -> dict:
        """Update a member (``PUT /v2/users/{id}``); unknown member -> ``CrowdTwistNotFoundError``."""
        return self.get_conn().update_user(user_id, fields, id_type=id_type)

    def upsert_user(
        self, user_id: str, fields: Mapping[str, Any], id_type: str | None = None
    ) -> tuple[str, dict]:
        """Update a member, creating it on 404; returns ``("updated" | "created", user)``."""
        return self.get_conn().upsert_user(user_id, fields, id_type=id_type)

    def credit_activity(self, user_id: str, activity_id: str, **options: Any) -> dict:
        """Credit one activity to a member; ``options`` are the client's (``id_type``, ``num_points``,
        ``activity_date``, ``extra_data``). Not idempotent on CrowdTwist's side: use the credit operator
        (with its ledger) for anything that may be retried."""
        return self.get_conn().credit_activity(user_id, activity_id, **options)

    def activity_history(
        self, user_id: str, id_type: str | None = None, *, since: float | None = None
    ) -> list[Any]:
        """The member's activities since ``since`` (epoch seconds; all of them when None), newest first
        where CrowdTwist orders them so; each item carries the ``extra_data`` its credit was sent with."""
        return list(self.get_conn().activity_history(user_id, id_type, since=since))

    # ------------------------------------------------------------------ health checks

    def check_api(
        self, activity_ids: Iterable[str] | None = None, *, client: CrowdTwistClient | None = None
    ) -> ApiCheck:
        """Ask ``GET /v2/activities`` once and classify the answer (see :mod:`.health`).

        Used by the sensor's poke, the trigger and :meth:`test_connection`, so all three apply the
        same rules. ``client`` lets a caller reuse one client across checks; by default the hook's own.
        """
        key_kind = "HMAC public/private key" if self._auth_type() == "hmac" else "API key"
        target = CheckTarget(scrub=self.scrub, base_url=self._base_url_or_host, key_kind=key_kind)
        try:
            api = client if client is not None else self.get_conn()
        except CrowdTwistConfigError as exc:
            return ApiCheck(CHECK_ERROR, self.scrub(f"Bad configuration: {error_text(exc)}"))
        return check_api(api, target, activity_ids)

    def _auth_type(self) -> str:
        try:
            return str(self._settings()["auth_type"])
        except Exception:
            return "api_key"

    def _base_url_or_host(self) -> str:
        try:
            return self._base_url(self._settings()["scheme"])
        except Exception:
            return repr(getattr(self._connection, "host", None))

    def test_connection(self) -> tuple[bool, str]:
        """The UI's "Test" button: one ``GET /v2/activities`` without retries; never raises.

        The message tells apart a refused key, an unreachable host, a wrong base URL and success, and
        never contains a secret.
        """
        client: CrowdTwistClient | None = None
        try:
            _ = self.connection  # load first, so that scrub() knows the secrets whatever fails next
            client = self.new_client(max_retries=0)
            result = self.check_api(client=client)
            if result.status == CHECK_AUTH_ERROR and client.config.auth_type == "hmac":
                return False, self._hmac_unit_hint(client.config.hmac_timestamp_unit, result.message)
        except CrowdTwistConfigError as exc:
            return False, self.scrub(error_text(exc))
        except Exception as exc:  # the UI must get an answer, not a stack trace
            return False, self.scrub(f"Connection test failed: {type(exc).__name__}: {exc}")
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        return result.status == CHECK_SUCCESS, result.message

    def _hmac_unit_hint(self, refused_unit: str, refused_message: str) -> str:
        """The HMAC timestamp unit is an OPEN point (Oracle's examples: ms; AP: s): when the configured
        unit is refused, one more check in the other unit tells the user which setting works, or that
        the keys themselves are refused."""
        other = "ms" if refused_unit == "s" else "s"
        probe = self.new_client(max_retries=0, hmac_timestamp_unit=other)
        try:
            second = self.check_api(client=probe)
        finally:
            with contextlib.suppress(Exception):
                probe.close()
        if second.status == CHECK_SUCCESS:
            return self.scrub(
                f"CrowdTwist refused the HMAC signature with timestamps in {_UNIT_WORDS[refused_unit]} but "
                f"accepted it in {_UNIT_WORDS[other]}: set the connection extra 'hmac_timestamp_unit' to "
                f"'{other}' ({second.message})"
            )
        if second.status == CHECK_AUTH_ERROR:
            return self.scrub(
                f"{refused_message} (timestamps were tried in both seconds and milliseconds: the keys, "
                "not the timestamp unit, are refused)"
            )
        return refused_message


# ---------------------------------------------------------------------- helpers

_UNIT_WORDS = {"s": "seconds", "ms": "milliseconds"}


def _config_error(message: str) -> CrowdTwistConfigError:
    return CrowdTwistConfigError(message)


def _norm(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value
