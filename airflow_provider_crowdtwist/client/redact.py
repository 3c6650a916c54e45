"""Removing secrets from any text before it reaches a log line or an exception.

``urllib3`` puts the full URL into its exception texts and DEBUG lines; with the key in the query that
URL *is* the secret. Every text the client emits goes through a :class:`Redactor`, and a filter on
urllib3's loggers does the same for its own lines (filters run before records reach any handler).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"

# ``api_key=VALUE`` in a query string, whatever the key value is (even one we were never told).
_QUERY_KEY = re.compile(r"(?i)((?:^|[?&;\s'\"(])api_key=)[^&#\s'\")]*")
# ``CTApiKey VALUE`` / ``CTApiV2Auth public:signature`` in a dumped header.
_HEADER_KEY = re.compile(r"(?i)(CTApiKey\s+|CTApiV2Auth\s+)[^\s'\",}]+")

# urllib3 loggers that write URLs (request lines, retries, redirects).
URLLIB3_LOGGERS = (
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.poolmanager",
    "urllib3.util.retry",
    "urllib3.response",
)


def maskable(secret: str | None, min_length: int) -> bool:
    """Whether a per-request secret is masked: non-empty and at least ``min_length`` characters.

    Airflow's secrets masker skips secrets shorter than ``[logging] min_length_masked_secret`` (default
    5): masking a 1-character member password would replace that letter everywhere in a message
    ("chec*** the host"), destroying the message while protecting nothing. The connection's own keys
    are always masked (:meth:`Redactor.add`); only per-request secrets follow this rule.
    """
    return bool(secret) and len(secret or "") >= min_length


class Redactor:
    """Replaces registered secrets, their URL-encoded forms and ``api_key=`` values with ``***``."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        """Register a secret (and the forms it takes once URL-encoded)."""
        if not secret:
            return
        variants = {secret, quote(secret, safe=""), quote_plus(secret)}
        with self._lock:
            merged = set(self._secrets) | variants
            # Longest first, so that a secret containing another is replaced whole.
            self._secrets = tuple(sorted(merged, key=len, reverse=True))

    def redact(self, text: object, extra: Iterable[str | None] = ()) -> str:
        """Return ``text`` as a string with every known secret masked.

        ``extra`` holds per-call secrets (e.g. a member's ``password`` in the request body) that
        must not be registered for the client's whole life (the caller drops those :func:`maskable`
        refuses).
        """
        out = text if isinstance(text, str) else str(text)
        secrets = self._secrets
        extras = [e for e in extra if e]
        if extras:
            more: set[str] = set()
            for e in extras:
                more |= {e, quote(e, safe=""), quote_plus(e)}
            secrets = tuple(sorted(set(secrets) | more, key=len, reverse=True))
        for secret in secrets:
            if secret in out:
                out = out.replace(secret, MASK)
        out = _QUERY_KEY.sub(lambda m: m.group(1) + MASK, out)
        out = _HEADER_KEY.sub(lambda m: m.group(1) + MASK, out)
        return out

    def __repr__(self) -> str:
        return f"Redactor({len(self._secrets)} patterns)"


#: Secrets of every client in this process, for the urllib3 log filter (which has no client).
GLOBAL_REDACTOR = Redactor()


class SecretLogFilter(logging.Filter):
    """Rewrites a record's message with the secrets masked; never drops a record."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to fix; still mask the template
            message = str(record.msg)
        clean = self.redactor.redact(message)
        if clean != message or record.args:
            record.msg = clean
            record.args = None
        return True


_install_lock = threading.Lock()
_installed = False


def install_urllib3_filter() -> None:
    """Attach the global secret filter to urllib3's loggers, once per process."""
    global _installed
    with _install_lock:
        if _installed:
            return
        log_filter = SecretLogFilter(GLOBAL_REDACTOR)
        for name in URLLIB3_LOGGERS:
            logging.getLogger(name).addFilter(log_filter)
        _installed = True


__all__ = ["GLOBAL_REDACTOR", "MASK", "Redactor", "SecretLogFilter", "install_urllib3_filter", "maskable"]
