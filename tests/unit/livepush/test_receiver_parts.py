"""The receiver's parts, one at a time: push checks, auth, the spool's recovery and its group commit."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from pathlib import Path

import pytest

from airflow_provider_crowdtwist.livepush.auth import AuthConfigError, PushAuth
from airflow_provider_crowdtwist.livepush.feeds import PushRejected, encode_line, parse_push
from airflow_provider_crowdtwist.livepush.output import Output
from airflow_provider_crowdtwist.livepush.settings import ReceiverSettings
from airflow_provider_crowdtwist.livepush.store import FeedLog, RollPolicy, recover_part


@pytest.mark.parametrize(
    ("feed", "body", "reason"),
    [
        ("profile", b"{", "body is not JSON"),
        ("profile", b"\xff\xfe", "body is not JSON"),
        ("profile", b"[1]", "must be a JSON object, got list"),
        ("profile", b'{"id": true}', "'id' must be the member's CrowdTwist id"),
        ("profile", b'{"id": "abc"}', "'id' must be the member's CrowdTwist id"),
        ("activity", b'{"userActivityId": " "}', "'userActivityId' must identify"),
        ("activity", b"{}", "'userActivityId' must identify"),
    ],
)
def test_bad_pushes_say_why(feed: str, body: bytes, reason: str) -> None:
    with pytest.raises(PushRejected, match=reason):
        parse_push(feed, body)


def test_a_push_is_kept_as_sent_except_secret_fields() -> None:
    push = parse_push("profile", b'{"id": "12", "password": "p", "salt": "s", "brandNew": [1]}')
    assert push.key == "12" and push.body == {"id": "12", "brandNew": [1]}
    line = json.loads(encode_line(push, received_at=5.25))
    assert line == {"received_at": 5.25, "push": {"id": "12", "brandNew": [1]}}


def test_auth_from_the_environment_and_its_checks() -> None:
    env = {"K": "secret-key", "B": "user:pa:ss"}
    api = PushAuth.from_env(api_key_env="K", environ=env)
    assert api.check({b"x-api-key": b"secret-key"})
    assert not api.check({b"x-api-key": b"secret-kex"}) and not api.check({})
    basic = PushAuth.from_env(basic_auth_env="B", environ=env)
    token = base64.b64encode(b"user:pa:ss")
    assert basic.check({b"authorization": b"Basic " + token})
    assert basic.check({b"authorization": b"basic " + token})
    assert not basic.check({b"authorization": b"Bearer " + token})
    assert not basic.check({b"authorization": b"Basic %%%"})
    assert "secret" not in repr(api) and "pa:ss" not in repr(basic)
    assert PushAuth.from_env(environ={}).check({})
    with pytest.raises(AuthConfigError, match=r"K2 .* is not set"):
        PushAuth.from_env(api_key_env="K2", environ=env)
    with pytest.raises(AuthConfigError, match="user:password"):
        PushAuth.from_env(basic_auth_env="K", environ=env)
    with pytest.raises(AuthConfigError, match="not both"):
        PushAuth.from_env(api_key_env="K", basic_auth_env="B", environ=env)


def test_settings_are_checked_before_listening() -> None:
    with pytest.raises(ValueError, match="only without authentication"):
        ReceiverSettings(
            output="/x", auth=PushAuth("api_key", b"k"), third_party_id_field="thirdPartyId"
        ).validate()
    with pytest.raises(ValueError, match="max-body-bytes"):
        ReceiverSettings(output="/x", max_body_bytes=10).validate()
    with pytest.raises(ValueError, match="invalid field path"):
        ReceiverSettings(output="/x", third_party_id_field="a..b").validate()


def test_recovery_cuts_a_torn_last_line(tmp_path: Path) -> None:
    part = tmp_path / "a.jsonl.part"
    part.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c"')
    assert recover_part(part) == len(b'{"a": 1}\n{"b": 2}\n')
    assert part.read_bytes() == b'{"a": 1}\n{"b": 2}\n'


def test_start_up_publishes_what_a_killed_receiver_left(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    (spool / "profile").mkdir(parents=True)
    (spool / "profile" / "profile-old.jsonl.part").write_bytes(b'{"x": 1}\n{"tor')
    (spool / "profile" / "profile-empty.jsonl.part").write_bytes(b'{"torn')
    log = FeedLog("profile", spool, Output(str(tmp_path / "out")), RollPolicy())
    published = log.recover()
    assert [Path(p).name for p in published] == ["profile-old.jsonl"]
    assert (tmp_path / "out" / "profile" / "profile-old.jsonl").read_bytes() == b'{"x": 1}\n'
    assert not list(spool.rglob("*.part"))


def test_concurrent_pushes_share_fsyncs_and_files_roll_by_size(tmp_path: Path) -> None:
    async def run() -> FeedLog:
        out = Output(str(tmp_path / "out"))
        log = FeedLog("activity", tmp_path / "spool", out, RollPolicy(max_bytes=2500))
        await log.start()
        for wave in range(5):  # five waves of 100 concurrent pushes, ~1 KB each
            await asyncio.gather(*(log.append(b'{"n": %d}\n' % (wave * 100 + i)) for i in range(100)))
        await log.close()
        return log

    log = asyncio.run(run())
    assert log.lines_written == 500
    assert log.batches < 500  # group commit: many pushes per write + fsync
    files = sorted((tmp_path / "out" / "activity").glob("*.jsonl"))
    assert len(files) == log.files_published >= 2  # rolled by size, the rest published on close
    assert all(f.stat().st_size < 2500 + 1100 for f in files)
    numbers = [json.loads(line)["n"] for f in files for line in f.read_text().splitlines()]
    assert sorted(numbers) == list(range(500))


def test_object_storage_output_uploads_whole_files_then_drops_the_spooled_copy(tmp_path: Path) -> None:
    import fsspec

    async def run() -> FeedLog:
        log = FeedLog("profile", tmp_path / "spool", Output("memory://live-push-test/out"), RollPolicy())
        await log.start()
        await asyncio.gather(*(log.append(b'{"n": %d}\n' % i) for i in range(10)))
        await log.close()
        return log

    assert Output("memory://x").default_spool_dir() is None  # a spool dir must be given for object storage
    log = asyncio.run(run())
    fs = fsspec.filesystem("memory")
    [name] = fs.ls("/live-push-test/out/profile", detail=False)
    assert name.endswith(".jsonl") and log.files_published == 1
    assert sorted(json.loads(x)["n"] for x in fs.cat(name).splitlines()) == list(range(10))
    assert not list((tmp_path / "spool").rglob("*.part"))


class _GatedOutput(Output):
    """An output whose publishing waits for a gate, and fails the first ``failures`` times."""

    def __init__(self, url: str, failures: int = 0) -> None:
        super().__init__(url)
        self.gate = threading.Event()
        self.failures = failures

    def publish(self, local_file: Path, feed: str) -> str:
        self.gate.wait(timeout=30)
        if self.failures:
            self.failures -= 1
            raise OSError("the store is down")
        return super().publish(local_file, feed)


def test_rolling_never_holds_up_the_writer(tmp_path: Path) -> None:
    out = _GatedOutput(str(tmp_path / "out"))

    async def run() -> tuple[int, int]:
        log = FeedLog("activity", tmp_path / "spool", out, RollPolicy(max_bytes=100))
        await log.start()
        for n in range(50):  # ~12 bytes each: a roll every ~8 pushes, while no publish can finish
            await asyncio.wait_for(log.append(b'{"n": %d}\n' % n), timeout=10)
        acknowledged_while_blocked = log.lines_written
        out.gate.set()
        await log.close()
        return acknowledged_while_blocked, log.files_published

    acknowledged, published = asyncio.run(run())
    assert acknowledged == 50 and published >= 5
    numbers = [json.loads(x)["n"] for f in (tmp_path / "out" / "activity").glob("*.jsonl") for x in f.open()]
    assert sorted(numbers) == list(range(50))
    assert not list((tmp_path / "spool").rglob("*.part"))  # the spare file made ahead is removed


def test_a_failed_publish_keeps_the_file_and_publishes_it_later(tmp_path: Path) -> None:
    out = _GatedOutput(str(tmp_path / "out"), failures=1)
    out.gate.set()

    async def run() -> FeedLog:
        log = FeedLog("profile", tmp_path / "spool", out, RollPolicy(max_bytes=5, max_seconds=0.2))
        await log.start()
        await log.append(b'{"n": 1}\n')  # rolls; its publish fails
        for _ in range(100):  # retried a tick (0.05 s) later, with no other push or roll
            if log.files_published == 1:
                break
            await asyncio.sleep(0.05)
        assert log.files_published == 1 and out.failures == 0
        await log.append(b'{"n": 2}\n')
        await log.close()
        return log

    log = asyncio.run(run())
    files = sorted((tmp_path / "out" / "profile").glob("*.jsonl"))
    assert [json.loads(f.read_text())["n"] for f in files] == [1, 2] and log.files_published == 2


def test_a_torn_write_is_cut_back_even_when_the_first_cut_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC after a partial write, then a failing ftruncate: the next batch cuts first, then appends."""
    import errno
    import os

    from airflow_provider_crowdtwist.livepush import store

    log = FeedLog("activity", tmp_path / "spool", Output(str(tmp_path / "out")), RollPolicy())
    spool = log._create()
    log._write(spool, b'{"a":1}\n')
    real_write, real_truncate = os.write, os.ftruncate
    calls = {"write": 0, "truncate": 0}

    def half_then_full(fd: int, data: object) -> int:
        calls["write"] += 1
        if calls["write"] == 1:
            return real_write(fd, bytes(data)[:5])  # type: ignore[call-overload]
        raise OSError(errno.ENOSPC, "No space left on device")

    def truncate_fails_once(fd: int, length: int) -> None:
        calls["truncate"] += 1
        if calls["truncate"] == 1:
            raise OSError(errno.EIO, "I/O error")
        real_truncate(fd, length)

    monkeypatch.setattr(store.os, "write", half_then_full)
    monkeypatch.setattr(store.os, "ftruncate", truncate_fails_once)
    with pytest.raises(OSError, match="No space"):
        log._write(spool, b'{"b":2}\n{"c":3}\n')
    assert spool.torn and spool.path.read_bytes() == b'{"a":1}\n{"b":'  # the cut failed: torn bytes remain
    monkeypatch.setattr(store.os, "write", real_write)
    log._write(spool, b'{"d":4}\n')  # cuts first, then appends: no line merges with torn bytes
    assert not spool.torn and spool.path.read_bytes() == b'{"a":1}\n{"d":4}\n'
    os.close(spool.fd)


def test_the_fast_depth_check_agrees_with_the_exact_scan() -> None:
    """``too_deep`` (C-speed peeling, strings removed) says what the byte-by-byte scan says."""
    import random

    from airflow_provider_crowdtwist.livepush.feeds import nesting_error, too_deep

    rng = random.Random(22)
    pieces = ["[", "]", "{", "}", '"[["', '"]"', '"a\\"["', '"\\\\"', ",", "1", '"k":']
    for _ in range(3_000):
        limit = rng.choice([1, 2, 3, 5, 8])
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 60)))
        if rng.random() < 0.5:  # a valid nest of a chosen depth, around the limit
            depth = rng.randint(0, limit + 2)
            text = "[" * depth + text.replace("[", "").replace("]", "") + "]" * depth
        raw = text.encode()
        assert (too_deep(raw, limit) is None) == (nesting_error(raw, limit) is None), (raw, limit)
