"""Run a worker process until a condition holds, then SIGKILL it (the kill tests of both syncs)."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence

#: The repository root, for the worker's PYTHONPATH (it must import this checkout, not another).
ROOT = pathlib.Path(__file__).parents[2]


def kill_when(
    command: Sequence[str],
    ready: Callable[[], bool],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> int:
    """Start ``command``; once ``ready()`` is true, SIGKILL it. Returns its exit code (``-SIGKILL``).

    Fails the test when the worker exits first (its stderr shown) or makes no progress in ``timeout``.
    """
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    worker = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert worker.poll() is None, worker.stderr.read().decode() if worker.stderr else ""
            assert time.monotonic() < deadline, "the worker made no progress"
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    return worker.returncode
