"""The rejects file: every rejected, failed or unknown row as one JSON line, secrets masked.

Why it is built this way: ``docs/sync-design.md``, section ``sync/rejects.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import IO, Any

from airflow_provider_crowdtwist.sync.outcomes import RowResult
from airflow_provider_crowdtwist.sync.paths import WorkingCopy

MASK = "***"

#: Field names that always hold secrets.
SECRET_FIELDS = frozenset({"password", "api_key", "apikey", "private_key", "hmac_private_key", "secret"})
_SECRET_PARTS = ("password", "secret", "token", "api_key", "private_key")


#: Characters that ``str.splitlines()`` takes for line ends and JSON leaves raw: written escaped.
_LINE_BREAKS = {c: f"\\u{c:04x}" for c in (0x0B, 0x0C, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029)}


def is_secret_field(name: str) -> bool:
    """True for field names that hold secrets (``password``, ``*_token``, ``*secret*``, ...)."""
    lowered = name.lower()
    return lowered in SECRET_FIELDS or any(part in lowered for part in _SECRET_PARTS)


def mask_secrets(value: Any) -> Any:
    """Return a copy of ``value`` with secret fields replaced by ``***``, recursively."""
    if isinstance(value, Mapping):
        return {
            str(k): (MASK if is_secret_field(str(k)) and v is not None else mask_secrets(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [mask_secrets(v) for v in value]
    return value


class RejectsWriter:
    """Writes :class:`RowResult` problems as JSON lines; a context manager."""

    def __init__(self, target: Any, *, redact: Callable[[str], str] | None = None) -> None:
        self._copy = WorkingCopy(target, name="rejects.jsonl", download=False)
        self.location = self._copy.location
        self.redact = redact
        self.written = 0
        self._handle: IO[str] = open(self._copy.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._closed = False

    def record(self, result: RowResult) -> dict[str, Any]:
        """Build the JSON object written for ``result`` (secrets masked)."""
        message = result.message
        if message is not None and self.redact is not None:
            message = self.redact(message)
        record: dict[str, Any] = {
            "row_number": result.row_number,
            "identifier": result.identifier,
            "outcome": str(result.outcome),
            "error_code": result.code,
            "status": result.status,
            "message": message,
            "payload": mask_secrets(result.payload) if result.payload is not None else None,
        }
        if result.extra:
            record["extra"] = mask_secrets(result.extra)
        return record

    def write(self, result: RowResult) -> None:
        """Append one row: one line, whatever the text holds (line separators other than ``\\n`` --
        U+0085, U+2028, U+2029 -- are escaped, so that ``str.splitlines()`` sees the same lines)."""
        line = json.dumps(self.record(result), ensure_ascii=False, default=str)
        self._handle.write(line.translate(_LINE_BREAKS) + "\n")
        self.written += 1

    def close(self) -> None:
        """Flush and, for a remote target, upload the file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._handle.close()
        try:
            self._copy.upload()
        finally:
            self._copy.close()

    def __enter__(self) -> RejectsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NullRejectsWriter:
    """Stands in when no ``rejects_path`` is given: writes nothing."""

    location: str | None = None

    def __init__(self) -> None:
        self.written = 0

    def write(self, result: RowResult) -> None:
        """Nothing is written; ``written`` stays 0 so the summary does not claim a file."""

    def close(self) -> None:
        """Nothing to close."""

    def __enter__(self) -> NullRejectsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_rejects(
    target: Any | None, *, redact: Callable[[str], str] | None = None
) -> RejectsWriter | NullRejectsWriter:
    """A writer for ``target``, or a no-op when ``target`` is ``None``."""
    if target is None or (isinstance(target, str) and not target.strip()):
        return NullRejectsWriter()
    return RejectsWriter(target, redact=redact)
