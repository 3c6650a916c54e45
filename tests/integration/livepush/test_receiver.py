"""The receiver over real HTTP: good pushes land, bad pushes get their status, none stops the receiver."""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from airflow_provider_crowdtwist.livepush.process import ReceiverProcess
from airflow_provider_crowdtwist.livepush.samples import sample_activity, sample_profile
from tests.integration.livepush._helpers import landed, spooled_and_landed_text, status_of
from tests.integration.livepush.conftest import API_KEY

HEADERS = {"x-api-key": API_KEY, "Content-Type": "application/json"}


def post(
    rx: ReceiverProcess, feed: str, body: object, headers: dict[str, str] | None = None
) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(f"{rx.url}/push/{feed}", data=data, headers=headers or HEADERS, timeout=10)


def assert_alive(rx: ReceiverProcess) -> None:
    assert requests.get(f"{rx.url}/health", timeout=5).json() == {"status": "ok"}
    assert post(rx, "activity", sample_activity(999_999)).status_code == 200


def metrics(rx: ReceiverProcess) -> dict[tuple[str, str], int]:
    out = {}
    for line in requests.get(f"{rx.url}/metrics", timeout=5).text.splitlines():
        if line.startswith("crowdtwist_live_push_pushes_total{"):
            labels, value = line.split("} ")
            feed = labels.split('feed="')[1].split('"')[0]
            outcome = labels.split('outcome="')[1].split('"')[0]
            out[(feed, outcome)] = int(value)
    return out


def test_good_pushes_land_as_sent(receiver: ReceiverProcess) -> None:
    profile = sample_profile(6566) | {"password": "hunter2-secret", "salt": "s4lt-secret"}
    answer = post(receiver, "profile", profile)
    assert answer.status_code == 200, answer.text
    assert post(receiver, "activity", sample_activity(1)).status_code == 200
    receiver.stop()  # publishes the open files
    out = Path(receiver.output)
    [line] = landed(out, "profile")
    expected = {k: v for k, v in sample_profile(6566).items() if k not in ("password", "salt")}
    assert line["push"] == expected
    assert abs(line["received_at"] - time.time()) < 60
    assert [x["push"] for x in landed(out, "activity")] == [sample_activity(1)]
    text = spooled_and_landed_text(out) + receiver.log_text()
    for secret in ("hunter2-secret", "s4lt-secret", API_KEY):
        assert secret not in text


def test_bad_pushes_get_their_status_and_the_receiver_goes_on(receiver: ReceiverProcess) -> None:
    wrong_key = post(receiver, "profile", sample_profile(1), {"x-api-key": API_KEY[:-1] + "x"})
    assert wrong_key.status_code == 401
    assert (
        post(receiver, "profile", sample_profile(1), {"Content-Type": "application/json"}).status_code == 401
    )
    not_json = post(receiver, "profile", b"{not json")
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["message"]
    array = post(receiver, "profile", [sample_profile(1)])
    assert array.status_code == 400 and "JSON object" in array.json()["message"]
    no_id = post(receiver, "profile", {"emailAddress": "a@b.c"})
    assert no_id.status_code == 400 and "'id'" in no_id.json()["message"]
    no_key = post(receiver, "activity", {"activityId": "purchase"})
    assert no_key.status_code == 400 and "userActivityId" in no_key.json()["message"]
    big = post(receiver, "profile", b'{"id": 1, "x": "' + b"a" * (10 * 1024 * 1024) + b'"}')
    assert big.status_code == 413

    def chunks():
        yield b'{"id": 1, "x": "'
        for _ in range(11):
            yield b"a" * (1024 * 1024)
        yield b'"}'

    chunked = requests.post(f"{receiver.url}/push/profile", data=chunks(), headers=HEADERS, timeout=10)
    assert chunked.status_code == 413
    assert requests.get(f"{receiver.url}/push/profile", timeout=5).status_code == 405
    assert (
        requests.post(f"{receiver.url}/push/other", data="{}", headers=HEADERS, timeout=5).status_code == 404
    )
    assert_alive(receiver)
    counts = metrics(receiver)
    assert counts[("profile", "unauthorized")] == 2
    assert counts[("profile", "bad_json")] == 1
    assert counts[("profile", "bad_shape")] == 2
    assert counts[("activity", "bad_shape")] == 1
    assert counts[("profile", "too_large")] == 2
    assert counts[("activity", "accepted")] == 1
    receiver.stop()
    assert [x["push"]["userActivityId"] for x in landed(Path(receiver.output), "activity")] == [999_999]
    assert landed(Path(receiver.output), "profile") == []


def test_basic_auth(tmp_path: Path) -> None:
    with ReceiverProcess(tmp_path / "out", basic_auth="ct-user:pa55-w0rd-secret") as rx:
        good = base64.b64encode(b"ct-user:pa55-w0rd-secret").decode()
        bad = base64.b64encode(b"ct-user:pa55-w0rd-secreX").decode()
        url = f"{rx.url}/push/activity"
        body = json.dumps(sample_activity(5))
        assert requests.post(url, data=body, headers={"Authorization": f"Basic {good}"}, timeout=5).ok
        for header in (f"Basic {bad}", f"Bearer {good}", "Basic !!!", ""):
            answer = requests.post(url, data=body, headers={"Authorization": header}, timeout=5)
            assert answer.status_code == 401, header
        rx.stop()
        assert "pa55-w0rd-secret" not in spooled_and_landed_text(tmp_path / "out") + rx.log_text()


def test_a_client_sending_one_byte_a_second_gets_408_while_others_are_served(
    receiver: ReceiverProcess,
) -> None:
    body = json.dumps(sample_activity(7)).encode()
    head = (
        f"POST /push/activity HTTP/1.1\r\nHost: x\r\nx-api-key: {API_KEY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    answers: list[bytes] = []

    def trickle() -> None:
        with socket.create_connection(("127.0.0.1", receiver.port), timeout=15) as sock:
            sock.sendall(head)
            for byte in body:  # one byte a second, until the receiver answers
                sock.sendall(bytes([byte]))
                readable, _, _ = select.select([sock], [], [], 1.0)
                if readable:
                    answers.append(sock.recv(65536))
                    return

    slow = threading.Thread(target=trickle)
    slow.start()
    started = time.monotonic()
    served = 0
    while slow.is_alive() and time.monotonic() - started < 12:
        assert post(receiver, "activity", sample_activity(100 + served)).status_code == 200
        served += 1
        time.sleep(0.1)
    slow.join(15)
    assert status_of(answers[0]) == 408
    assert served >= 5  # pushes went through while the slow one was pending
    # a client trickling its *headers* is cut off by the header deadline, and nothing else waits
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as sock:
        sock.sendall(b"POST /push/activity HTTP/1.1\r\n")
        started = time.monotonic()
        assert_alive(receiver)
        sock.settimeout(8)
        assert sock.recv(1024) == b""  # closed
        assert time.monotonic() - started < 6
    assert metrics(receiver)[("activity", "timeout")] == 1


def test_200_concurrent_connections_are_all_acknowledged_and_landed(receiver: ReceiverProcess) -> None:
    barrier = threading.Barrier(200)

    def push(i: int) -> int:
        with requests.Session() as session:
            barrier.wait(30)
            data = json.dumps(sample_activity(i))
            return session.post(
                f"{receiver.url}/push/activity", data=data, headers=HEADERS, timeout=30
            ).status_code

    with ThreadPoolExecutor(200) as pool:
        statuses = list(pool.map(push, range(200)))
    assert statuses == [200] * 200
    # 200 idle open connections do not stop it either
    socks = [socket.create_connection(("127.0.0.1", receiver.port), timeout=5) for _ in range(200)]
    try:
        assert_alive(receiver)
    finally:
        for sock in socks:
            sock.close()
    receiver.stop()
    ids = sorted(x["push"]["userActivityId"] for x in landed(Path(receiver.output), "activity"))
    assert ids == [*range(200), 999_999]


def test_third_party_id_answer_only_without_auth(tmp_path: Path) -> None:
    with ReceiverProcess(tmp_path / "out", extra_args=["--third-party-id-field", "customData.crm_id"]) as rx:
        profile = sample_profile(42) | {"customData": {"crm_id": "CRM-42"}}
        answer = requests.post(f"{rx.url}/push/profile", json=profile, timeout=5)
        assert answer.json() == {"status": "ok", "third_party_id": "CRM-42"}
        assert requests.post(f"{rx.url}/push/profile", json=sample_profile(43), timeout=5).json() == {
            "status": "ok"
        }
    refused = ReceiverProcess(
        tmp_path / "out2", api_key="k", extra_args=["--third-party-id-field", "thirdPartyId"]
    )
    try:
        refused.start()
        raise AssertionError("the receiver started with third_party_id answering and authentication")
    except RuntimeError as exc:
        assert "only without authentication" in str(exc)


def test_missing_secret_variable_fails_before_listening(tmp_path: Path) -> None:
    rx = ReceiverProcess(tmp_path / "out")
    rx.args += ["--api-key-env", "CROWDTWIST_TEST_UNSET_VARIABLE"]
    rx.env.pop("CROWDTWIST_TEST_UNSET_VARIABLE", None)
    try:
        rx.start()
        raise AssertionError("started without its secret")
    except RuntimeError as exc:
        assert "CROWDTWIST_TEST_UNSET_VARIABLE" in str(exc) and "is not set" in str(exc)


def test_the_receiver_exits_with_the_process_that_started_it(tmp_path: Path) -> None:
    code = (
        "import os\n"
        "from airflow_provider_crowdtwist.livepush.process import ReceiverProcess\n"
        f"rx = ReceiverProcess({str(tmp_path / 'out')!r}).start()\n"
        "print(rx.process.pid, flush=True)\n"
        "os._exit(0)  # no clean-up: the receiver must notice on its own\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    pid = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError("the receiver outlived its parent")
