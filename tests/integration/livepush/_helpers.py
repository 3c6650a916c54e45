"""What the receiver tests share: reading back what landed, and raw-socket clients."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any


def landed(output: Path, feed: str) -> list[dict[str, Any]]:
    """Every landed line of ``feed`` (published files, loaded or not), in file order."""
    lines: list[dict[str, Any]] = []
    for path in sorted((output / feed).rglob("*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines


def spooled_and_landed_text(output: Path) -> str:
    """Everything the receiver wrote (spool included), for secret checks."""
    return "".join(p.read_text(errors="replace") for p in output.rglob("*") if p.is_file())


def raw_request(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` as is on a fresh connection; the whole answer (the receiver closes or answers)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return sock.recv(65536)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
