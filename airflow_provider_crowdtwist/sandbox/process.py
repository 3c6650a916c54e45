"""``SandboxProcess``: the sandbox as a child process, for isolation and for honest benchmarks.

A child has its own interpreter and GIL, so a load generator or a sync engine in the parent does not
steal the sandbox's CPU (and vice versa), and a test can kill it to see a connection refused. It is
started on port 0 and the parent reads the bound port from the ready line, so there is no race for a
"free" port. It must never outlive the parent: ``stop()`` / the context manager / ``atexit`` end it, and
if the parent is killed outright the child notices its parent changed (``--exit-with-parent``) and exits.
"""

from __future__ import annotations

import atexit
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import IO, Any

from airflow_provider_crowdtwist.sandbox.admin import SandboxAddresses
from airflow_provider_crowdtwist.sandbox.cli import READY_PREFIX, SECRET_ENV
from airflow_provider_crowdtwist.sandbox.settings import (
    DEFAULT_API_KEY,
    DEFAULT_HMAC_PRIVATE_KEY,
    DEFAULT_HMAC_PUBLIC_KEY,
)

# Settings whose command-line form is a ``--no-...`` switch, so ``SandboxProcess(retry_after=False)``
# means what ``SandboxServer(retry_after=False)`` does.
NEGATED_FLAGS = {"retry_after": "no_retry_after", "activity_date_enabled": "no_activity_date"}


def options_to_args(options: dict[str, Any]) -> list[str]:
    """``latency_ms=200, custom_attributes=("a",), access_log=True`` -> command-line flags."""
    args: list[str] = []
    for name, value in options.items():
        if name in NEGATED_FLAGS:  # the setting's name (as SandboxServer takes it) -> its --no- flag
            name, value = NEGATED_FLAGS[name], not value
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)):
            args.extend([flag, ",".join(str(v) for v in value)])
        else:
            args.extend([flag, str(value)])
    return args


def wait_ready_line(
    process: subprocess.Popen[bytes], prefix: str, timeout: float, what: str, stderr_tail: Any
) -> str:
    """The child's first stdout line starting with ``prefix``; fails (with its stderr) when it exits first.

    Used by every child server of the package (the sandbox, the live push receiver): each prints its
    ready line only once its socket listens, so waiting for it replaces sleeping and guessing.
    """
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    buffer = b""
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"{what} did not start within {timeout:.0f} s" + stderr_tail())
            if not selector.select(remaining):
                continue
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                code = process.wait(5)
                raise RuntimeError(f"{what} exited with code {code} before it was ready{stderr_tail()}")
            buffer += chunk
            for line in buffer.decode(errors="replace").splitlines():
                if line.startswith(prefix):
                    return line
    finally:
        selector.close()


def end_child(process: subprocess.Popen[bytes], signum: int = signal.SIGTERM, timeout: float = 5.0) -> int:
    """Send ``signum``, wait, SIGKILL if it does not exit in time; close its stdout. Its exit code."""
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    if process.stdout is not None:
        process.stdout.close()
    return process.returncode


class SandboxProcess(SandboxAddresses):
    """``with SandboxProcess(latency_ms=200) as sb: ... sb.base_url ...``; options are CLI flags by name."""

    def __init__(
        self,
        port: int = 0,
        *,
        startup_timeout: float = 10.0,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        **options: Any,
    ) -> None:
        self.port_requested = port
        self.startup_timeout = startup_timeout
        self.options = options
        # Keys travel in the child's environment, not on its command line (visible to `ps`).
        secrets = {SECRET_ENV[k]: str(options[k]) for k in SECRET_ENV if options.get(k) is not None}
        self.args = [*options_to_args({k: v for k, v in options.items() if k not in SECRET_ENV}), *extra_args]
        self.env = {**(env if env is not None else os.environ), **secrets}
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self._stderr: IO[bytes] | None = None
        self.api_key = str(options.get("api_key", DEFAULT_API_KEY))
        self.hmac_public_key = str(options.get("hmac_public_key", DEFAULT_HMAC_PUBLIC_KEY))
        self.hmac_private_key = str(options.get("hmac_private_key", DEFAULT_HMAC_PRIVATE_KEY))

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "airflow_provider_crowdtwist.sandbox",
            "--port",
            str(self.port_requested),
            "--exit-with-parent",
            str(os.getpid()),
            *self.args,
        ]

    def start(self) -> SandboxProcess:
        if self.process is not None:
            raise RuntimeError("SandboxProcess already started")
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 -- lives as long as the child
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=self.env,
        )
        atexit.register(self.stop)
        try:
            self.port = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> int:
        assert self.process is not None
        line = wait_ready_line(
            self.process, READY_PREFIX, self.startup_timeout, "crowdtwist sandbox", self._stderr_tail
        )
        return int(line.rsplit(":", 1)[1])

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip()
        return f": {text[-2000:]}" if text else ""

    def stop(self, timeout: float = 5.0) -> None:
        process, self.process = self.process, None
        atexit.unregister(self.stop)
        if process is not None:
            end_child(process, signal.SIGTERM, timeout)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> SandboxProcess:
        if self.process is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def reset(self) -> None:
        self.admin.reset()

    def set_faults(self, **changes: Any) -> None:
        self.admin.set_faults(**changes)

    def configure(self, **changes: Any) -> None:
        """Switch readings of OPEN points (or fault knobs) at runtime; ``reset()`` restores the start."""
        self.admin.configure(**changes)
