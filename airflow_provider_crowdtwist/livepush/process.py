"""``ReceiverProcess``: the receiver as a child process, as CrowdTwist meets it (and as a test kills it).

Started with ``--port 0``; the port comes from the ready line. Secrets go into the child's
environment under the variable the command is told to read, never onto its command line.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from airflow_provider_crowdtwist.livepush.server import READY_PREFIX
from airflow_provider_crowdtwist.sandbox.process import end_child, wait_ready_line

API_KEY_ENV = "CROWDTWIST_LIVE_PUSH_API_KEY"
BASIC_AUTH_ENV = "CROWDTWIST_LIVE_PUSH_BASIC_AUTH"


class ReceiverProcess:
    """``with ReceiverProcess(out_dir, api_key="k") as rx: requests.post(rx.url + "/push/profile", ...)``."""

    def __init__(
        self,
        output: str | Path,
        *,
        api_key: str | None = None,
        basic_auth: str | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 15.0,
        port: int = 0,
    ) -> None:
        self.output = str(output)
        self.env = dict(os.environ)
        self.args = ["serve", "--port", str(port), "--output", self.output, *extra_args]
        self.args += ["--exit-with-parent", str(os.getpid())]
        if api_key is not None:
            self.env[API_KEY_ENV] = api_key
            self.args += ["--api-key-env", API_KEY_ENV]
        if basic_auth is not None:
            self.env[BASIC_AUTH_ENV] = basic_auth
            self.args += ["--basic-auth-env", BASIC_AUTH_ENV]
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="live-push-", suffix=".log", delete=False)  # noqa: SIM115

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ReceiverProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "airflow_provider_crowdtwist.livepush", *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=self.env,
        )
        atexit.register(self.kill)
        try:
            line = wait_ready_line(
                self.process, READY_PREFIX, self.startup_timeout, "live push receiver", self._log_tail
            )
        except BaseException:
            self.kill()
            raise
        self.port = int(line.rsplit(":", 1)[1])
        return self

    def _log_tail(self) -> str:
        text = self.log_text().strip()
        return f": {text[-2000:]}" if text else ""

    def log_text(self) -> str:
        """Everything the receiver wrote to stderr (its log)."""
        return Path(self.log.name).read_text(errors="replace")

    def _end(self, signum: int, timeout: float) -> int | None:
        process, self.process = self.process, None
        atexit.unregister(self.kill)
        if process is None:
            return None
        return end_child(process, signum, timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM: the receiver finishes its requests, publishes its open files and exits."""
        return self._end(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL: nothing is flushed or published; what was acknowledged is in the spool."""
        return self._end(signal.SIGKILL, 5.0)

    def __enter__(self) -> ReceiverProcess:
        if self.process is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
