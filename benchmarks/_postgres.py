"""A throwaway PostgreSQL server for a benchmark (Debian's binaries, loopback, fsync off, removed after).

The tests start theirs in ``tests/e2e/conftest.py``; benchmarks do not import the tests, so this is the
same recipe in a few lines: ``initdb`` and ``pg_ctl`` run as the ``postgres`` user when we are root.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@contextlib.contextmanager
def temporary_postgres() -> Iterator[tuple[str, int, str]]:
    """``(host, port, user)`` of a running server; raises ``RuntimeError`` when there is no PostgreSQL."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
    bindir = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="crowdtwist-bench-pg-"))
    root.chmod(0o755)
    data = root / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = False
    try:
        initdb = [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
        subprocess.run(_as_postgres(initdb), check=True, capture_output=True, timeout=120)
        options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off"
        log = str(root / "log")
        start = [str(bindir / "pg_ctl"), "-D", str(data), "-l", log, "-o", options, "-w", "start"]
        subprocess.run(_as_postgres(start), check=True, capture_output=True, timeout=120)
        started = True
        yield "127.0.0.1", port, "postgres"
    finally:
        if started:
            stop = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
            subprocess.run(_as_postgres(stop), capture_output=True, timeout=120, check=False)
        shutil.rmtree(root, ignore_errors=True)
