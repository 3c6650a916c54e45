"""A real SFTP server for tests: Debian's OpenSSH ``sshd`` on a free loopback port, with key auth.

Why a real server: the segment file's contract is with an SFTP server (a rename that does not
overwrite, a directory listing, what a half-written file looks like), and only a real one tells
whether the upload does what CrowdTwist's server will see. The server gets its own generated host
key, its own client key in its own ``AuthorizedKeysFile``, ``Subsystem sftp internal-sftp`` and
nothing of the machine's ssh configuration. It logs in the user running the tests (as root, root
with a key: ``PermitRootLogin prohibit-password``; root's sshd needs ``/run/sshd``, which Debian's
service creates at boot and this helper creates when missing).

When ``sshd`` is missing the tests FAIL under ``CI=true`` (CI installs ``openssh-server``) and are
skipped elsewhere, like the PostgreSQL tests.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class SftpServer:
    """A running server: where it listens, who logs in with which key, the directory tests use."""

    host: str
    port: int
    username: str
    key_path: Path
    root: Path  # a directory on the server the tests may use (absolute path, same on both sides)

    def connect(self):  # -> paramiko.SFTPClient (paramiko comes with the SFTP provider)
        """A fresh SFTP client (the caller closes it; closing the client closes its transport)."""
        import paramiko

        ssh = paramiko.SSHClient()
        ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        ssh.connect(
            self.host,
            port=self.port,
            username=self.username,
            key_filename=str(self.key_path),
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
        sftp = ssh.open_sftp()
        sftp._crowdtwist_ssh = ssh  # keep the transport alive as long as the client
        return sftp

    def connection_json(self) -> str:
        """An Airflow connection (``AIRFLOW_CONN_...``) for the SFTP provider's hook."""
        import json

        return json.dumps(
            {
                "conn_type": "sftp",
                "host": self.host,
                "port": self.port,
                "login": self.username,
                "extra": {"key_file": str(self.key_path), "no_host_key_check": True},
            }
        )


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@contextlib.contextmanager
def sftp_server() -> Iterator[SftpServer]:
    """Start ``sshd -D`` on 127.0.0.1 and a free port; stop it (and remove its files) afterwards."""
    if not os.access(SSHD, os.X_OK) or shutil.which("ssh-keygen") is None:
        _missing(f"{SSHD} or ssh-keygen not found; `apt-get install openssh-server` provides them")
    try:
        import paramiko  # noqa: F401
    except ImportError:
        _missing("paramiko is not installed (it comes with apache-airflow-providers-sftp)")
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # root's sshd checks its privsep directory
    home = Path(tempfile.mkdtemp(prefix="crowdtwist-sshd-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        for name in ("host_key", "client_key"):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / name)],
                check=True,
                capture_output=True,
                timeout=30,
            )
        shutil.copy(home / "client_key.pub", home / "authorized_keys")
        root = home / "sftp"
        root.mkdir()
        port = _free_port()
        config = home / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {home / 'host_key'}",
                    f"PidFile {home / 'sshd.pid'}",
                    f"AuthorizedKeysFile {home / 'authorized_keys'}",
                    "StrictModes no",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "Subsystem sftp internal-sftp",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        log = open(home / "sshd.log", "wb")  # noqa: SIM115 - closed below
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                pytest.fail(f"sshd exited at start: {(home / 'sshd.log').read_text(errors='replace')}")
            with contextlib.closing(socket.socket()) as probe:
                probe.settimeout(0.5)
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                pytest.fail("sshd did not listen within 15 s")
            time.sleep(0.05)
        yield SftpServer("127.0.0.1", port, getpass.getuser(), home / "client_key", root)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(home, ignore_errors=True)
