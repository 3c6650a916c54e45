"""``SandboxServer``: the sandbox inside the current process, on a background thread.

In-process is the cheap way for a test session: it starts in milliseconds and its state can be read
directly. The event loop runs on a daemon thread so a test that forgets ``stop()`` cannot hang the
interpreter at exit; ``start()`` waits until the port is listening, so the first request never races.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future
from typing import Any

from airflow_provider_crowdtwist.sandbox.admin import SandboxAddresses
from airflow_provider_crowdtwist.sandbox.app import SandboxApp
from airflow_provider_crowdtwist.sandbox.http import HttpServer
from airflow_provider_crowdtwist.sandbox.settings import SandboxSettings
from airflow_provider_crowdtwist.sandbox.state import SandboxState

HOST = "127.0.0.1"


class SandboxServer(SandboxAddresses):
    """A running sandbox: ``with SandboxServer() as sb: ... sb.base_url ...``.

    ``overrides`` are settings or fault knobs by name (``SandboxServer(timestamp_unit="ms",
    latency_ms=200)``); they are validated here, before anything listens.
    """

    def __init__(
        self,
        settings: SandboxSettings | None = None,
        *,
        port: int = 0,
        access_log: bool = False,
        **overrides: Any,
    ) -> None:
        settings = (settings or SandboxSettings()).with_overrides(**overrides)
        settings.validate()
        self.settings = settings
        self.state = SandboxState(settings.first_member_id)
        self.app = SandboxApp(settings, self.state, access_log_enabled=access_log)
        self._requested_port = port
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._http: HttpServer | None = None
        self._stopped: asyncio.Event | None = None

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> SandboxServer:
        if self._thread is not None:
            raise RuntimeError("SandboxServer already started")
        ready: Future[int] = Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="crowdtwist-sandbox", daemon=True
        )
        self._thread.start()
        try:
            self.port = ready.result(timeout)
        except BaseException:
            self._thread.join(1.0)
            self._thread = None
            raise
        return self

    def _run(self, ready: Future[int]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(ready))
        finally:
            loop.close()

    async def _serve(self, ready: Future[int]) -> None:
        self._stopped = asyncio.Event()
        self._http = HttpServer(self.app)
        try:
            port = await self._http.start(HOST, self._requested_port)
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(port)
        await self._stopped.wait()
        await self._http.close()
        # let handlers that were sleeping (latency) finish or be cancelled cleanly
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is None:
            return
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(stopped.set)
        self._thread.join(timeout)
        self._thread = None
        self.app.close()

    def __enter__(self) -> SandboxServer:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pusher(self) -> Any:
        """The live pusher (``LivePusher``), or None when no push endpoint is configured."""
        return self.app.pusher

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- addresses and credentials -------------------------------------------------------------

    @property
    def api_key(self) -> str:
        return self.settings.api_key

    @property
    def hmac_public_key(self) -> str:
        return self.settings.hmac_public_key

    @property
    def hmac_private_key(self) -> str:
        return self.settings.hmac_private_key

    # ---- direct control (same effect as the admin endpoints, without HTTP) ---------------------

    def _on_loop(self, fn: Any, *args: Any) -> Any:
        if self._loop is None or not self.running:
            return fn(*args)

        async def call() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(5.0)

    def reset(self) -> None:
        """Clear members, credits and counts; faults back to the start-up settings."""
        self._on_loop(self.app.reset)

    def set_faults(self, **changes: Any) -> None:
        self._on_loop(self.app.faults.update, changes)

    def configure(self, **changes: Any) -> None:
        """Switch readings of OPEN points (or fault knobs) at runtime; ``reset()`` restores the start."""
        self._on_loop(self.app.configure, changes)

    def add_listener(self, listener: Any) -> None:
        """``listener(event, payload)`` on every applied change; see ``SandboxState.add_listener``."""
        self.state.add_listener(listener)

    def remove_listener(self, listener: Any) -> None:
        self.state.remove_listener(listener)
