"""A sample of a run's API calls, kept per class of answer: the "live debugger" of the sync log.

A million-row run makes a million calls; nobody reads them, but the one request CrowdTwist refused is
what a data engineer needs to see. So the run keeps at most ``calls_per_class`` calls of each class of
answer -- the call's result (``ok``, ``refused``, ``rate_limited``, ``server_error``, ``no_answer``) x
HTTP status x CrowdTwist error code -- and always the first 429, the first 5xx and the first ambiguous
failure, whatever the cap. Memory is bounded by the number of classes, not by the rows.

Nothing secret is kept: no headers at all (the API key and HMAC signature live there), a query
``api_key`` is cut from the path, and ``password``-like fields are masked. Member PII is masked by
default: identifiers in paths and identifying or naming fields in bodies become a stable short hash
(``h:`` + 10 hex digits of SHA-256), the same value giving the same hash in every call and run, so
calls can still be matched to each other; any e-mail address left in free text is hashed too.
``calls_pii=True`` keeps them as sent. No Airflow import.

.. seealso:: ``docs/sync-log.md``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from airflow_provider_crowdtwist.client.observe import Call

#: Response bodies are cut here (CrowdTwist answers are a few hundred bytes; an HTML error page is not).
MAX_BODY = 4096
#: Classes beyond this many are counted, not sampled (a pathological run cannot grow the sample).
MAX_CLASSES = 200
#: Fields whose value identifies or names a member (masked unless ``calls_pii``).
PII_FIELDS = frozenset(
    {
        "email_address",
        "email",
        "first_name",
        "last_name",
        "middle_name",
        "username",
        "mobile_phone_number",
        "phone_number",
        "third_party_id",
        "date_of_birth",
        "postal_code",
        "city_name",
        "address",
        "emailaddress",
        "firstname",
        "lastname",
        "thirdpartyid",
        "user_id",
        "user",
    }
)
#: Fields that are secrets whatever ``calls_pii`` says.
SECRET_FIELDS = frozenset({"password", "api_key", "private_key", "token", "secret"})
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
#: Path segments that carry a member identifier: /v2/users/{id}[/...] (and deletion status).
_USER_PATH = re.compile(r"^(/v2(?:\.\d)?/users/(?:delete/)?)([^/?]+)")
MASK = "***"


def pii_hash(value: Any) -> str:
    """``h:`` + 10 hex digits: stable, short, not the value."""
    return "h:" + hashlib.sha256(str(value).encode("utf-8")).hexdigest()[:10]


def call_class(call: Call) -> tuple[str, int | None, str | None]:
    """(result, HTTP status, error code): the unit the sample is kept per."""
    status = call.status
    if status is None:
        result = "no_answer"
    elif status == 429:
        result = "rate_limited"
    elif status >= 500:
        result = "server_error"
    elif 200 <= status < 300 and not call.ambiguous:
        result = "ok"
    elif call.ambiguous:
        result = "ambiguous"
    else:
        result = "refused"
    return result, status, call.error_code


class CallSampler:
    """Collects calls from worker threads (the client's observer) and writes the sample as JSON lines."""

    def __init__(
        self,
        *,
        per_class: int = 10,
        pii: bool = False,
        redact: Callable[[str], str] = lambda text: text,
    ) -> None:
        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 0:
            raise ValueError(f"calls_per_class must be an integer >= 0, got {per_class!r}")
        self.per_class = per_class
        self.pii = pii
        self.redact = redact
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int | None, str | None], int] = {}
        self._kept: list[dict[str, Any]] = []
        self._firsts: set[str] = set()
        self.seen = 0

    def __call__(self, call: Call) -> None:
        """The client's observer: keep ``call`` if its class is not full, or it is a first of its kind."""
        klass = call_class(call)
        first = None
        if call.status == 429:
            first = "first_429"
        elif call.status is not None and call.status >= 500:
            first = "first_5xx"
        elif call.ambiguous:
            first = "first_ambiguous"
        with self._lock:
            self.seen += 1
            count = self._counts.get(klass)
            if count is None and len(self._counts) >= MAX_CLASSES:
                return
            count = (count or 0) + 1
            self._counts[klass] = count
            always = first is not None and first not in self._firsts
            if always:
                self._firsts.add(str(first))
            if count > self.per_class and not always:
                return
        record = self._record(call, klass, first if always else None)
        with self._lock:
            self._kept.append(record)

    # ------------------------------------------------------------------ what is written

    def _record(
        self, call: Call, klass: tuple[str, int | None, str | None], first: str | None
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "class": klass[0],
            "method": call.method,
            "path": self._path(call.path),
            "request_body": self._body(call.request_body, cut=False),
            "status": call.status,
            "error_code": call.error_code,
            "response_body": self._body(call.response_body, cut=True),
            "latency_ms": round(call.latency_s * 1000, 1),
            "attempt": call.attempt,
            "ambiguous": call.ambiguous,
        }
        if first:
            record["first"] = first
        return record

    def _path(self, path: str) -> str:
        parts = urlsplit(path)
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "api_key"]
        clean = parts.path
        if not self.pii:
            clean = _USER_PATH.sub(lambda m: m.group(1) + quote(pii_hash(unquote(m.group(2))), ":"), clean)
        clean = self.redact(clean)
        return f"{clean}?{urlencode(query)}" if query else clean

    def _body(self, raw: bytes | None, *, cut: bool) -> Any:
        if raw is None or raw == b"":
            return None
        text = raw.decode("utf-8", errors="replace")
        truncated = cut and len(text) > MAX_BODY
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = None
            text = self._text(text)
        else:
            value = self._mask(value)
            text = json.dumps(value, ensure_ascii=False, sort_keys=True)
        if truncated or (cut and len(text) > MAX_BODY):
            return {"truncated": True, "text": text[:MAX_BODY]}
        return value if value is not None else text

    def _mask(self, value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: self._mask(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self._mask(v, key) for v in value]
        name = (key or "").lower()
        if value is not None and any(word in name for word in SECRET_FIELDS):
            return MASK
        if not self.pii and value is not None and name in PII_FIELDS and not isinstance(value, (dict, list)):
            return pii_hash(value)
        if isinstance(value, str):
            return self._text(value)
        return value

    def _text(self, text: str) -> str:
        text = self.redact(text)
        return text if self.pii else _EMAIL.sub(lambda m: pii_hash(m.group(0)), text)

    # ------------------------------------------------------------------ output

    def records(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            kept = list(self._kept)
        yield from kept

    def classes(self) -> dict[str, int]:
        """``{"result status code": calls}`` for the summary: how many calls each class had."""
        with self._lock:
            items = sorted(self._counts.items(), key=str)
        return {" ".join(str(p) for p in k if p is not None): n for k, n in items}

    def write(self, fh: Any) -> int:
        """Write the sample as JSON lines to the text file ``fh``; returns the number of calls written."""
        n = 0
        for record in self.records():
            fh.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
        return n
