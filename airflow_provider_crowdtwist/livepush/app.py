"""The receiver as a plain ASGI application (served by uvicorn; no web framework needed for two routes).

Order of checks on a push: the route, then the credentials (before a byte of the body is read, so a
stranger cannot make us buffer anything), then the size (a ``Content-Length`` over the limit is refused
at once; a chunked body is counted as it arrives), then the body must arrive within ``body_timeout_s``,
then its JSON and shape. Only a push that passed everything is appended to the durable buffer, and the
200 goes out only once that append returned, i.e. once the line is fsync'd.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from airflow_provider_crowdtwist.livepush.feeds import FEEDS, PushRejected, encode_line, parse_push
from airflow_provider_crowdtwist.livepush.metrics import Metrics
from airflow_provider_crowdtwist.livepush.output import Output
from airflow_provider_crowdtwist.livepush.settings import ReceiverSettings
from airflow_provider_crowdtwist.livepush.store import FeedLog

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
PUSH_PATHS = {f"/push/{feed}": feed for feed in FEEDS}


class BodyTooLarge(Exception):
    pass


class LivePushApp:
    def __init__(self, settings: ReceiverSettings) -> None:
        settings.validate()
        self.settings = settings
        self.metrics = Metrics()
        self.output = Output(settings.output)
        spool = settings.spool_dir or self.output.default_spool_dir()
        if spool is None:
            raise ValueError("--spool-dir is required with an object-storage --output")
        self.logs = {feed: FeedLog(feed, spool, self.output, settings.roll) for feed in FEEDS}
        self.started = False

    # ---- lifecycle -----------------------------------------------------------------------------

    async def startup(self) -> None:
        for feed_log in self.logs.values():
            await feed_log.start()
        self.started = True

    async def shutdown(self) -> None:
        self.started = False
        for feed_log in self.logs.values():
            await feed_log.close()

    # ---- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        feed = PUSH_PATHS.get(path)
        if feed is not None:
            if method != "POST":
                await _json(send, 405, {"error": "method_not_allowed", "message": "use POST"})
                return
            await self._push(feed, scope, receive, send)
        elif path == "/health" and method == "GET":
            await self._health(send)
        elif path == "/metrics" and method == "GET":
            published = {feed: fl.files_published for feed, fl in self.logs.items()}
            body = self.metrics.render(published).encode()
            await _respond(send, 200, body, b"text/plain; version=0.0.4")
        else:
            await _json(send, 404, {"error": "not_found", "message": f"no route {path}"})

    async def _health(self, send: Send) -> None:
        """200 once started; 503 while starting, or while a feed's last write failed (a full disk)."""
        failing = {feed: fl.write_error for feed, fl in self.logs.items() if fl.write_error}
        if not self.started:
            await _json(send, 503, {"status": "starting"})
        elif failing:
            await _json(send, 503, {"status": "write_failing", "feeds": failing})
        else:
            await _json(send, 200, {"status": "ok"})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _push(self, feed: str, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        if not self.settings.auth.check(headers):
            self.metrics.count(feed, "unauthorized")
            await _json(send, 401, {"error": "unauthorized", "message": "missing or wrong credentials"})
            return
        try:
            raw = await asyncio.wait_for(
                self._read_body(headers, receive), timeout=self.settings.body_timeout_s
            )
        except BodyTooLarge:
            self.metrics.count(feed, "too_large")
            limit = self.settings.max_body_bytes
            await _json(send, 413, {"error": "too_large", "message": f"body over {limit} bytes"})
            return
        except asyncio.TimeoutError:
            self.metrics.count(feed, "timeout")
            message = f"body not received within {self.settings.body_timeout_s:g} s"
            await _json(send, 408, {"error": "timeout", "message": message})
            return
        if raw is None:  # the client went away
            self.metrics.count(feed, "disconnected")
            return
        try:
            push = parse_push(feed, raw)
            line = encode_line(push)
        except PushRejected as exc:
            outcome = "bad_json" if str(exc).startswith("body is not JSON") else "bad_shape"
            self.metrics.count(feed, outcome)
            await _json(send, 400, {"error": "input_error", "message": str(exc)})
            return
        try:
            await self.logs[feed].append(line)
        except Exception as exc:
            self.metrics.count(feed, "write_failed")
            log.error("live push %s: push %s not written: %s", feed, push.key, type(exc).__name__)
            await _json(send, 503, {"error": "unavailable", "message": "could not store the push; retry"})
            return
        self.metrics.count(feed, "accepted")
        await _json(send, 200, self._answer(push.body) if feed == "profile" else {"status": "ok"})

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes | None:
        limit = self.settings.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _answer(self, profile: dict[str, Any]) -> dict[str, Any]:
        """The profile's answer: ``third_party_id`` from the configured field, when there is one."""
        answer: dict[str, Any] = {"status": "ok"}
        if self.settings.third_party_id_field is None:
            return answer
        value: Any = profile
        for part in self.settings.third_party_id_field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value not in (None, ""):
            answer["third_party_id"] = str(value)
        return answer


async def _respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, payload: dict[str, Any]) -> None:
    await _respond(send, status, json.dumps(payload).encode(), b"application/json")
