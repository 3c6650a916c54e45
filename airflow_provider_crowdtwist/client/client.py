"""``CrowdTwistClient``: the CrowdTwist REST API v2 calls, over :class:`~.caller.Caller`.

The machinery every call shares (rate limit, the one transport, retries, typed and redacted errors)
lives in :mod:`.caller`; this module holds what each endpoint means: its path, its body, which answers
are its success and which refusals it types (see docs/architecture.md for the contract).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import requests
from requests.structures import CaseInsensitiveDict

from airflow_provider_crowdtwist.client.caller import USER_AGENT, Caller
from airflow_provider_crowdtwist.client.config import (
    CREDIT_ID_TYPES,
    ID_TYPE_ATTRIBUTES,
    ID_TYPES,
    PII_FREE_ID_TYPES,
    UPDATE_ONLY_FIELDS,
    id_type_problem,
)
from airflow_provider_crowdtwist.client.errors import (
    CrowdTwistAlreadyProcessedError,
    CrowdTwistConfigError,
    CrowdTwistDeletionNotFoundError,
    CrowdTwistDeletionRefusedError,
    CrowdTwistError,
    CrowdTwistNotFoundError,
    CrowdTwistValidationError,
)
from airflow_provider_crowdtwist.client.models import (
    Activity,
    ActivityHistoryItem,
    ActivityPage,
    DeletionRequest,
    parse_activities,
    parse_activity_history,
    parse_activity_page,
    parse_deletion,
)

ALREADY_PROCESSED = "already processed"
#: O:Activities-Extended21: at most 25 activities a page.
MAX_EXTENDED_PAGE_SIZE = 25
#: The deletion-status path is an OPEN point: O:UserDeletionStatus names the first, its own sample
#: the second. Both are tried (the one that answered is remembered).
DELETION_STATUS_PATHS: tuple[str, ...] = ("/v2/users/delete/{}", "/v2/user_deletion/{}")
#: 404 messages that are about the member, not about the path (so the other path is not tried).
_MEMBER_404 = ("member not found", "member id is invalid", "user does not exist")
#: Activities asked per history page; a server may serve fewer (the end is an empty page, not a short one).
HISTORY_PAGE_SIZE = 100
#: A history look-up that needs more pages than this gives up (it cannot conclude) rather than loop.
HISTORY_MAX_PAGES = 200
_ALREADY_TAKEN = ("already taken", "already exists")
#: The answers that prove a credit applied: CrowdTwist documents 200 ``{"awarded": true}``.
_CREDIT_SUCCESS = (200, 201)


class CrowdTwistClient(Caller):
    """Talks to the CrowdTwist REST API v2; safe to share between threads. Takes :class:`Caller`'s
    arguments (``config``; keyword-only ``rate_limiter``, ``transport``, ``logger``, clocks, ``rng``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deletion_status_paths: tuple[str, ...] = DELETION_STATUS_PATHS
        #: None until the first history read tells whether the program serves the v2.1 date filter.
        self._history_date_filter: bool | None = None

    def __repr__(self) -> str:
        return f"CrowdTwistClient(base_url={self.config.base_url!r}, auth={self._auth!r})"

    def __enter__(self) -> CrowdTwistClient:
        return self

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> requests.Response:
        """One logical request (with retries) to ``path`` (URL-encoded, relative to the base URL): the
        2xx response, else the typed error."""
        answer, response = self._call(method, path, params=params, body=json), requests.Response()
        response.status_code, response.reason = answer.status_code, answer.reason
        response.headers = CaseInsensitiveDict(answer.headers.items())
        response._content, response.url = answer.content, getattr(answer, "url", "")
        response.encoding = requests.utils.get_encoding_from_headers(response.headers)
        return response

    # -- id helpers ----------------------------------------------------------------------------

    def _id_type(self, id_type: str | None, allowed: tuple[str, ...] = ID_TYPES) -> str:
        chosen = id_type or self.config.id_type
        if problem := id_type_problem(chosen, allowed):
            raise CrowdTwistConfigError(problem)
        return chosen

    @staticmethod
    def _member_path(user_id: Any, suffix: str = "") -> str:
        if user_id is None or str(user_id).strip() == "":
            raise CrowdTwistValidationError("user_id is empty")
        return f"/v2/users/{quote_path_value(user_id)}{suffix}"

    # -- API calls -----------------------------------------------------------------------------

    def list_activities(self) -> list[Activity]:
        """``GET /v2/activities``: the program's active activities (also the connection test)."""
        response = self._call("GET", "/v2/activities")
        return parse_activities(self._json(response, "GET", "/v2/activities"))

    def activities_page(self, page: int = 1, page_size: int = 10) -> ActivityPage:
        """``GET /v2.1/activities/extended?page=&page_size=``: one page (O:Activities-Extended21)."""
        if type(page_size) is not int or not 0 < page_size <= MAX_EXTENDED_PAGE_SIZE:  # (bool is no int here)
            raise CrowdTwistConfigError(
                f"page_size must be a whole number from 1 to {MAX_EXTENDED_PAGE_SIZE}; got {page_size!r}"
            )
        path = "/v2.1/activities/extended"
        response = self._call("GET", path, params={"page": page, "page_size": page_size})
        return parse_activity_page(self._json(response, "GET", path))

    def list_activities_extended(self, page_size: int = MAX_EXTENDED_PAGE_SIZE) -> list[Activity]:
        """Every active activity through the v2.1 paged list (O:Activities-Extended21).

        Only the page number of a ``paging.next_page`` URL is used, so a link naming another host never
        gets the credentials. A bad page is "page 1 or an empty list", so the walk stops on an empty
        page, on a repeat of page 1, and after ``paging.pages`` pages: it cannot loop."""
        activities: list[Activity] = []
        seen: set[str] = set()
        first_ids: tuple[str, ...] | None = None
        page, pages_read = 1, 0
        while True:
            result = self.activities_page(page, page_size)
            pages_read += 1
            ids = tuple(a.id for a in result.activities)
            if not ids or (first_ids is not None and ids == first_ids):
                break
            if first_ids is None:
                first_ids = ids
            for activity in result.activities:
                if activity.id not in seen:
                    seen.add(activity.id)
                    activities.append(activity)
            following = result.next_page
            if following is None or following <= page:
                following = page + 1 if result.pages is not None and page < result.pages else None
            limit = result.pages if result.pages is not None else (result.total or len(seen)) + 1
            if following is None or pages_read >= max(limit, 1):
                break
            page = following
        return activities

    def get_user(self, user_id: str, id_type: str | None = None, *, pii: bool = True) -> dict:
        """``GET /v2/users/{user_id}?id_type=T``: the profile. ``pii=False`` sends ``pii=false``
        (O:UserProfile): no personal data back; only the ``id`` and ``third_party_id`` id types take it."""
        path = self._member_path(user_id)
        chosen = self._id_type(id_type)
        params = {"id_type": chosen}
        if not pii:
            if chosen not in PII_FREE_ID_TYPES:
                raise CrowdTwistConfigError(
                    f"pii=false works only with id_type {' or '.join(PII_FREE_ID_TYPES)}; got {chosen!r}"
                )
            params["pii"] = "false"
        return _as_dict(self._json(self._call("GET", path, params=params), "GET", path))

    def create_user(self, fields: Mapping[str, Any]) -> dict:
        """``POST /v2/users``: a new member."""
        body = dict(fields)
        response = self._call("POST", "/v2/users", body=body, extra_secrets=_body_secrets(body))
        return _as_dict(self._json(response, "POST", "/v2/users"))

    def update_user(self, user_id: str, fields: Mapping[str, Any], id_type: str | None = None) -> dict:
        """``PUT /v2/users/{user_id}?id_type=T``; 404 (:class:`CrowdTwistNotFoundError`) when unknown."""
        path = self._member_path(user_id)
        params = {"id_type": self._id_type(id_type)}
        body = dict(fields)
        response = self._call("PUT", path, params=params, body=body, extra_secrets=_body_secrets(body))
        return _as_dict(self._json(response, "PUT", path))

    def upsert_user(
        self, user_id: str, fields: Mapping[str, Any], id_type: str | None = None
    ) -> tuple[str, dict]:
        """PUT first (one request in the common case); POST on 404, carrying the identifier it was
        looked up by (``email_address`` for ``id_type=email``) so the next PUT finds the member. A POST
        refused "already taken" means our own earlier ambiguous attempt created it ("created", profile
        read back) or another writer did (the update is applied once more)."""
        chosen = self._id_type(id_type)
        try:
            return "updated", self.update_user(user_id, fields, chosen)
        except CrowdTwistNotFoundError:
            pass
        body, update_only = split_update_only(fields)
        attribute = ID_TYPE_ATTRIBUTES.get(chosen)
        if attribute and body.get(attribute) in (None, ""):
            body[attribute] = user_id
        taken: CrowdTwistValidationError | None = None
        try:
            created = self.create_user(body)
        except CrowdTwistValidationError as err:
            if not any(word in err.message.lower() for word in _ALREADY_TAKEN):
                raise
            taken = err
        else:
            if update_only:  # is_active & co. are not taken by the create (O:UserUpdate)
                return "created", self.update_user(user_id, update_only, chosen)
            return "created", created
        if taken.ambiguous:  # our own earlier POST landed: it still lacks the update-only fields
            if update_only:
                return "created", self.update_user(user_id, update_only, chosen)
            return "created", self.get_user(user_id, chosen)
        try:
            return "updated", self.update_user(user_id, fields, chosen)
        except CrowdTwistNotFoundError:
            pass
        raise taken

    def delete_user(self, user_id: str, id_type: str | None = None) -> DeletionRequest:
        """``DELETE /v2/users/{user_id}?id_type=T``: *queue* the deletion (O:UserDelete), answered
        ``{"user_id": N, "status": "Queued"}``. Its documented refusals are typed, with ``.reason``:
        400 :class:`CrowdTwistDeletionRefusedError`, 404 :class:`CrowdTwistDeletionNotFoundError`."""
        path = self._member_path(user_id)
        refused: CrowdTwistError | None = None
        try:
            response = self._call("DELETE", path, params={"id_type": self._id_type(id_type)})
        except CrowdTwistNotFoundError as err:
            refused = _retyped(CrowdTwistDeletionNotFoundError, err)
        except CrowdTwistValidationError as err:
            refused = _retyped(CrowdTwistDeletionRefusedError, err)
        if refused is not None:
            raise refused
        return parse_deletion(self._json(response, "DELETE", path))

    def deletion_status(self, user_id: str, id_type: str | None = None) -> DeletionRequest:
        """The state of a queued deletion (O:UserDeletionStatus). Its path is OPEN: a 404 that is not
        about the member means "no such path", so the other one is tried (and tried first from then on)."""
        params = {"id_type": self._id_type(id_type)}
        quoted = quote_path_value(user_id)
        if not str(user_id).strip():
            raise CrowdTwistValidationError("user_id is empty")
        missing_path: CrowdTwistNotFoundError | None = None
        for template in self._deletion_status_paths:
            path = template.format(quoted)
            try:
                response = self._call("GET", path, params=params)
            except CrowdTwistNotFoundError as err:
                if any(word in err.message.lower() for word in _MEMBER_404):
                    raise _retyped(CrowdTwistDeletionNotFoundError, err) from None
                missing_path = err
                continue
            if template != self._deletion_status_paths[0]:
                self._deletion_status_paths = (template, *(p for p in DELETION_STATUS_PATHS if p != template))
            return parse_deletion(self._json(response, "GET", path))
        assert missing_path is not None
        raise missing_path

    def credit_activity(
        self,
        user_id: str,
        activity_id: str,
        *,
        id_type: str | None = None,
        num_points: int | None = None,
        activity_date: int | None = None,
        extra_data: Mapping | None = None,
    ) -> dict:
        """``POST /v2/users/{user_id}/activities?id_type=T``, never resent once it may have landed.

        CrowdTwist has no idempotency key. Only a 200/201 with JSON is success; any answer that is not
        a certain refusal (docs/activity-credits.md, the answer table) raises with ``ambiguous=True``,
        for the caller to settle in the member's activity history. "Event already processed" raises
        :class:`CrowdTwistAlreadyProcessedError` (ambiguous: an identical credit, maybe not this one).
        """
        if activity_id is None or str(activity_id).strip() == "":
            raise CrowdTwistValidationError("activity_id is empty")
        path = self._member_path(user_id, "/activities")
        params = {"id_type": self._id_type(id_type, CREDIT_ID_TYPES)}
        body: dict[str, Any] = {"activity_id": str(activity_id)}
        if num_points is not None:
            body["num_points"] = num_points
        if activity_date is not None:
            body["activity_date"] = activity_date
        if extra_data is not None:
            body["extra_data"] = dict(extra_data)
        duplicate: CrowdTwistValidationError | None = None
        try:
            response = self._call("POST", path, params=params, body=body, credit=True)
        except CrowdTwistValidationError as err:
            if ALREADY_PROCESSED not in err.message.lower():
                raise
            duplicate = err
        if duplicate is not None:
            raise _retyped(CrowdTwistAlreadyProcessedError, duplicate)  # (ambiguous, by its class)
        if response.status_code not in _CREDIT_SUCCESS:  # a 202 "accepted", a 204: not proof
            raise CrowdTwistError(
                f"CrowdTwist answered {response.status_code}, not 200: whether it applied is unknown",
                status=response.status_code,
                method="POST",
                path=self._redactor.redact(path),
                ambiguous=True,
            )
        data = self._json(response, "POST", path, strict=True)
        return data if isinstance(data, dict) else {"awarded": True, "response": data}

    def activity_history(
        self,
        user_id: str,
        id_type: str | None = None,
        *,
        since: float | None = None,
        page_size: int = HISTORY_PAGE_SIZE,
        max_pages: int = HISTORY_MAX_PAGES,
    ) -> Iterator[ActivityHistoryItem]:
        """The member's activities (``GET .../activity_history``), page by page.

        ``since`` (epoch seconds) bounds the read: the v2.1 form filters on the server
        (``date_start``); where it is missing (404/400, remembered) the v2 list is paged and stops once
        a newest-first page reaches before ``since``. The end is an empty page or the ``paging`` block,
        never a short page. Each page is one request (counted in :attr:`history_requests_sent`): stop
        iterating once found. More than ``max_pages`` pages raises :class:`CrowdTwistError`."""
        chosen = self._id_type(id_type)
        path = self._member_path(user_id, "/activity_history")
        filtered = since is not None and self._history_date_filter is not False
        for number in range(1, max_pages + 1):
            params: dict[str, Any] = {"id_type": chosen, "page_size": page_size, "page_number": number}
            if filtered:
                params["date_start"] = int(since)  # type: ignore[arg-type]
                try:
                    response = self._call("GET", "/v2.1" + path[3:], params=params, history=True)
                except (CrowdTwistNotFoundError, CrowdTwistValidationError) as err:
                    if number > 1 or err.ambiguous:
                        raise
                    # No v2.1 history on this program (or no date filter): page the v2 list instead;
                    # a member that really does not exist gets its 404 from the v2 path too.
                    filtered = False
                    del params["date_start"]
                    response = self._call("GET", path, params=params, history=True)
                    self._history_date_filter = False
                    self.log.info(
                        "CrowdTwist: no date-filtered activity history (v2.1 answered %s); paging the v2 "
                        "history instead",
                        err.status,
                    )
                else:
                    self._history_date_filter = True
            else:
                response = self._call("GET", path, params=params, history=True)
            page = parse_activity_history(self._json(response, "GET", path))
            yield from page.items
            if page.is_last(number) or (since is not None and page.reaches_before(since)):
                return
        raise CrowdTwistError(
            f"the activity history has more than {max_pages} pages since {since}; the look-up stopped",
            method="GET",
            path=self._redactor.redact(path),
        )


def quote_path_value(value: Any) -> str:
    """URL-encode a value for one path segment (``a+b@c.com`` -> ``a%2Bb%40c.com``)."""
    return quote(str(value), safe="")


def split_update_only(fields: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(create body, update-only fields)``: the create does not take ``is_active``/``remove_points``
    (O:UserUpdate), so a new member that needs them gets them with the PUT that follows the POST."""
    body = {k: v for k, v in fields.items() if k not in UPDATE_ONLY_FIELDS}
    return body, {k: v for k, v in fields.items() if k in UPDATE_ONLY_FIELDS}


def _retyped(cls: type[CrowdTwistError], err: CrowdTwistError) -> CrowdTwistError:
    """``err`` as the more precise ``cls`` (same redacted message and state)."""
    return cls(err.message, **err._state())


def _as_dict(data: Any) -> dict:
    return data if isinstance(data, dict) else {"response": data}


def _body_secrets(body: Mapping[str, Any]) -> tuple[str | None, ...]:
    password = body.get("password")
    return (password if isinstance(password, str) else None,)


def _short(error: CrowdTwistError | None) -> str:
    return error.message if error is not None else "error"


__all__ = ["USER_AGENT", "CrowdTwistClient", "quote_path_value", "split_update_only"]
