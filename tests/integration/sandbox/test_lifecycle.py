"""Starting and stopping: fast, on a free port, and never leaving a process or a socket behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from airflow_provider_crowdtwist.client.errors import CrowdTwistAuthError
from airflow_provider_crowdtwist.sandbox.process import SandboxProcess
from airflow_provider_crowdtwist.sandbox.server import SandboxServer
from tests.integration.sandbox._helpers import API_KEY_HEADER

pytestmark = pytest.mark.integration

CLI = Path(sys.executable).with_name("crowdtwist-sandbox")


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie of ours still answers kill(0); reap it if it is our child
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


def test_in_process_server_starts_fast_and_frees_its_port():
    start = time.monotonic()
    with SandboxServer() as server:
        startup = time.monotonic() - start
        assert server.base_url.startswith("http://127.0.0.1:")
        assert server.admin_url == server.base_url + "/_admin"
        assert requests.get(server.base_url + "/v2/activities", headers=API_KEY_HEADER, timeout=5).ok
        port = server.port
    assert startup < 10.0  # no fixed sleep: the ready line is awaited (2 s on a quiet machine)
    assert not server.running
    assert _refused(port)


def test_stop_with_requests_still_held_by_latency():
    with SandboxServer(latency_ms=5000) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"GET /v2/activities HTTP/1.1\r\nX-CT-Authorization: CTApiKey sandbox-api-key\r\n\r\n")
        time.sleep(0.05)
    assert not server.running  # did not wait for the 5 s request
    sock.close()


def test_bad_settings_fail_before_listening():
    with pytest.raises(ValueError, match="error_rate"):
        SandboxServer(error_rate=2)
    with pytest.raises(ValueError, match="timestamp_unit"):
        SandboxServer(timestamp_unit="us")
    with pytest.raises(ValueError, match="unknown sandbox setting"):
        SandboxServer(latency=5)


def test_port_in_use_is_reported():
    with SandboxServer() as server, pytest.raises(OSError):
        SandboxServer(port=server.port).start()


def test_child_process_starts_fast_prints_its_url_and_is_killed_on_exit():
    start = time.monotonic()
    with SandboxProcess(error_rate=1.0, error_status=503, custom_attributes=("tier",)) as child:
        startup = time.monotonic() - start
        pid, port = child.pid, child.port
        assert child.base_url == f"http://127.0.0.1:{port}"
        # the CLI flags reached the child
        assert (
            requests.get(child.base_url + "/v2/activities", headers=API_KEY_HEADER, timeout=5).status_code
            == 503
        )
        assert child.admin.faults()["error_status"] == 503
    assert startup < 10.0  # no fixed sleep: the ready line is awaited (2 s on a quiet machine)
    assert _gone(pid)
    assert _refused(port)


def test_child_process_is_killed_when_the_test_fails():
    with pytest.raises(RuntimeError, match="boom"), SandboxProcess() as child:
        pid = child.pid
        raise RuntimeError("boom")
    assert _gone(pid)


def test_child_exits_when_its_parent_is_killed(tmp_path):
    """kill -9 of the process that started it (a crashed test session): the sandbox goes too."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import time\n"
        "from airflow_provider_crowdtwist.sandbox.process import SandboxProcess\n"
        "p = SandboxProcess().start()\n"
        "print(p.pid, p.port, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child_pid, port = (int(x) for x in parent.stdout.readline().split())
        assert requests.get(f"http://127.0.0.1:{port}/_admin/health", timeout=5).ok
        parent.send_signal(signal.SIGKILL)
        parent.wait(5)
        assert _gone(child_pid)
        assert _refused(port)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_child_reports_why_it_did_not_start():
    with pytest.raises(RuntimeError, match="invalid setting: error_rate must be a fraction"):
        SandboxProcess(error_rate=3).start()


def test_console_command_prints_the_ready_line():
    assert CLI.exists(), "the crowdtwist-sandbox console script is installed with the package"
    start = time.monotonic()
    proc = subprocess.Popen(
        [str(CLI), "--port", "0", "--latency-ms", "0", "--seed", "3"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        startup = time.monotonic() - start
        assert line.startswith("CrowdTwist sandbox listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        assert requests.get(url + "/v2/activities", headers=API_KEY_HEADER, timeout=5).ok
        assert startup < 10.0  # no fixed sleep: the ready line is awaited (2 s on a quiet machine)
    finally:
        proc.terminate()
        assert proc.wait(5) == 0  # SIGTERM is a clean stop


def test_console_command_refuses_a_busy_port_and_bad_options():
    with SandboxServer() as server:
        busy = subprocess.run(
            [str(CLI), "--port", str(server.port)], capture_output=True, text=True, timeout=30
        )
    assert busy.returncode == 1
    assert f"cannot listen on 127.0.0.1:{server.port}" in busy.stderr
    bad = subprocess.run([str(CLI), "--drop-rate", "7"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2
    assert "drop_rate must be a fraction" in bad.stderr
    bad_activity = subprocess.run(
        [str(CLI), "--activity", "purchase"], capture_output=True, text=True, timeout=30
    )
    assert bad_activity.returncode == 2
    assert "--activity expects ID=POINTS" in bad_activity.stderr


def test_console_command_custom_activities_and_hmac_only(tmp_path):
    with SandboxProcess(
        extra_args=["--activity", "visit=3", "--activity", "old=9:inactive"], auth_modes=("hmac",)
    ) as child:
        assert (
            requests.get(child.base_url + "/v2/activities", headers=API_KEY_HEADER, timeout=5).status_code
            == 401
        )
        from tests.integration.sandbox._helpers import sign

        listed = requests.get(
            child.base_url + "/v2/activities", headers=sign("GET", "/v2/activities"), timeout=5
        )
        assert [a["id"] for a in listed.json()["activities"]] == ["visit"]


def test_child_keys_travel_in_the_environment_not_the_command_line(client_for):
    api_key, private_key = "ck_live_5f2d9a7e1b3c", "pk_live_0e9d8c7b6a5f"
    with SandboxProcess(api_key=api_key, hmac_private_key=private_key) as child:
        cmdline = Path(f"/proc/{child.pid}/cmdline").read_bytes().decode()
        assert api_key not in cmdline
        assert private_key not in cmdline
        assert client_for(child, api_key=api_key).list_activities()
        assert client_for(child, auth_type="hmac", hmac_private_key=private_key).list_activities()
        with pytest.raises(CrowdTwistAuthError):
            client_for(child, api_key="sandbox-api-key", max_retries=0).list_activities()
