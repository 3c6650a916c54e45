"""Pushes the loader could not load get a 400 with the reason; the header deadline holds on every request.

Each over real HTTP to a real receiver process (issue 22, items 5 and 6).
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import requests

from airflow_provider_crowdtwist.livepush.feeds import MAX_DEPTH
from airflow_provider_crowdtwist.livepush.process import ReceiverProcess
from airflow_provider_crowdtwist.livepush.samples import sample_activity, sample_profile
from tests.integration.livepush._helpers import landed
from tests.integration.livepush.conftest import API_KEY

HEADERS = {"x-api-key": API_KEY, "Content-Type": "application/json"}


def post_raw(rx: ReceiverProcess, feed: str, data: bytes) -> requests.Response:
    return requests.post(f"{rx.url}/push/{feed}", data=data, headers=HEADERS, timeout=10)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_lone_surrogate_gets_400_with_the_reason_not_503(receiver: ReceiverProcess) -> None:
    body = json.dumps(sample_profile(1))[:-1] + ', "nickname": "a\\ud800b"}'
    answer = post_raw(receiver, "profile", body.encode())
    assert answer.status_code == 400, answer.text
    assert "surrogate" in answer.json()["message"] and "\\ud800" in answer.json()["message"]
    # a surrogate pair is a character and lands; the receiver is healthy (nothing blamed on the disk)
    pair = json.dumps(sample_profile(2))[:-1] + ', "nickname": "\\ud83d\\ude00"}'
    assert post_raw(receiver, "profile", pair.encode()).status_code == 200
    assert requests.get(f"{receiver.url}/health", timeout=5).json() == {"status": "ok"}
    receiver.stop()
    pushes = [line["push"] for line in landed(Path(receiver.output), "profile")]
    assert [p["id"] for p in pushes] == [2] and pushes[0]["nickname"] == "\U0001f600"


def test_deep_nesting_gets_400_naming_where_at_any_depth(receiver: ReceiverProcess) -> None:
    for depth in (MAX_DEPTH + 1, 980, 995, 5_000, 100_000):
        body = json.dumps(sample_activity(depth))[:-1] + f', "deep": {nested(depth - 1)}}}'
        answer = post_raw(receiver, "activity", body.encode())
        assert answer.status_code == 400, (depth, answer.status_code, answer.text[:200])
        message = answer.json()["message"]
        assert f"nested deeper than {MAX_DEPTH}" in message and "column" in message, message
    at_limit = json.dumps(sample_activity(1))[:-1] + f', "deep": {nested(MAX_DEPTH - 1)}}}'
    assert post_raw(receiver, "activity", at_limit.encode()).status_code == 200
    # brackets inside strings are text, not nesting
    text = json.dumps({**sample_activity(2), "notes": "[" * 5_000})
    assert post_raw(receiver, "activity", text.encode()).status_code == 200


def test_profile_id_beyond_64_bits_gets_400(receiver: ReceiverProcess) -> None:
    for member_id in (2**63, str(2**64)):
        answer = post_raw(receiver, "profile", json.dumps({**sample_profile(1), "id": member_id}).encode())
        assert answer.status_code == 400 and "64 bits" in answer.json()["message"]
    assert post_raw(receiver, "profile", json.dumps({**sample_profile(1), "id": 2**63 - 1}).encode()).ok


def test_header_deadline_applies_to_every_request_on_a_kept_alive_connection(
    receiver: ReceiverProcess,
) -> None:
    """After one quick GET /health, the next request's headers trickle: cut off at --header-timeout (3 s)."""
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b"}"):  # the head and the body may come in two reads
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200") and b'"ok"' in first
        sock.sendall(b"POST /push/activity HTTP/1.1\r\n")
        started = time.monotonic()
        closed_after = None
        for byte in b"x-api-key: " + API_KEY.encode() * 10:  # a byte every 0.2 s for up to 18 s
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed_after = time.monotonic() - started
                break
            sock.settimeout(0.2)
            try:
                if sock.recv(1024) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                pass
            if time.monotonic() - started > 18:
                break
        assert closed_after is not None, "the trickling request was never cut off"
        assert closed_after < 3 + 2.5
    # the next client is served as ever, on a kept-alive connection with two quick requests
    with requests.Session() as session:
        for n in range(2):
            assert session.get(f"{receiver.url}/health", timeout=5).ok
            body = json.dumps(sample_activity(n))
            assert session.post(f"{receiver.url}/push/activity", data=body, headers=HEADERS, timeout=5).ok
