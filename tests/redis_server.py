"""A real Redis server for tests and benchmarks: Debian's ``redis-server`` on a free loopback port.

No persistence (``save ""``, no AOF), its own temporary folder, and it dies with the process that
started it (``PR_SET_PDEATHSIG``), so a crashed test run leaves no server behind. :meth:`kill` and
:meth:`start` let a test take Redis away mid-run. When the binary is missing, the fixtures FAIL under
``CI=true`` (CI must never go green without Redis) and skip elsewhere, as for PostgreSQL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1


def redis_server_binary() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )


def missing_reason() -> str:
    return "redis-server not found; `apt-get install redis-server` provides it (.ci/run installs it)"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process; ``url`` stays the same across :meth:`kill` and :meth:`start`."""

    def __init__(self, binary: str | None = None) -> None:
        found = binary or redis_server_binary()
        if found is None:
            raise FileNotFoundError(missing_reason())
        self.binary = found
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="crowdtwist-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 15.0) -> RedisServer:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--protected-mode", "no",
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{log}")
            try:
                if self.client().ping():
                    return self
            except Exception:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"redis-server did not answer on {self.url} within {timeout:.0f} s")

    def client(self, **options: Any) -> Any:
        import redis

        options.setdefault("socket_timeout", 2.0)
        options.setdefault("socket_connect_timeout", 2.0)
        return redis.Redis(host=self.host, port=self.port, **options)

    def kill(self) -> None:
        """SIGKILL: Redis gone at once, as a crashed or unreachable server would be."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def require_redis_server() -> str:
    """The binary's path, or fail (under ``CI=true``) / skip (elsewhere) the calling test."""
    import pytest

    found = redis_server_binary()
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(missing_reason())
        pytest.skip(missing_reason())
    return found
