"""Shared fixtures: a CrowdTwist sandbox for every test that needs one, and a client pointed at it.

One in-process sandbox serves the whole session (it starts in milliseconds, but a socket per test adds
up); the function-scoped ``sandbox`` fixture resets it first, so every test starts from no members, no
credits, zero counts and no faults. ``sandbox_process`` is a separate child process for tests that must
kill or isolate the server. Neither leaves anything running when a test fails: fixtures stop them in
``finally``, and the child also exits by itself when this process dies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_crowdtwist.sandbox.process import SandboxProcess
from airflow_provider_crowdtwist.sandbox.server import SandboxServer
from tests.readings import READINGS, Reading

# Retry timings for tests: the production defaults (0.5 s first backoff, up to 120 s) would make every
# fault test slow, and the behaviour under test is *whether* the client retries, not how long it waits.
FAST_RETRIES: dict[str, Any] = {"backoff_base": 0.01, "backoff_max": 0.05, "max_retry_wait": 5.0}


def pytest_configure(config: pytest.Config) -> None:
    # Slow tests stay in the suite (they are still fast enough); the mark lets a developer skip them.
    config.addinivalue_line("markers", "slow: takes more than a second or two; deselect with -m 'not slow'")


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    """The session's in-process sandbox (default settings). Prefer ``sandbox``, which resets it."""
    server = SandboxServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sandbox(sandbox_server: SandboxServer) -> SandboxServer:
    """A clean sandbox: ``.base_url``, ``.admin`` (SandboxAdmin), ``.api_key``, ``.hmac_*_key``."""
    sandbox_server.reset()
    return sandbox_server


@pytest.fixture
def sandbox_process() -> Iterator[SandboxProcess]:
    """A sandbox in its own child process (default settings), stopped after the test whatever happens."""
    process = SandboxProcess().start()
    try:
        yield process
    finally:
        process.stop()


class SandboxReading:
    """The session sandbox switched to one ``Reading``: ``.sandbox``, ``.reading``, ``.client_options``.

    ``client(**overrides)`` builds a client configured to match the reading (closed after the test);
    ``client_options`` are the same settings for code that builds its own client or Airflow connection.
    """

    def __init__(self, sandbox: SandboxServer, reading: Reading) -> None:
        self.sandbox = sandbox
        self.reading = reading
        self.client_options: dict[str, Any] = {**FAST_RETRIES, **reading.client}
        self._clients: list[Any] = []

    @property
    def name(self) -> str:
        return self.reading.name

    def client(self, **overrides: Any) -> Any:
        made = client_for(self.sandbox, **{**self.client_options, **overrides})
        self._clients.append(made)
        return made

    def close(self) -> None:
        for made in self._clients:
            made.close()


@pytest.fixture(params=READINGS, ids=[r.name for r in READINGS])
def sandbox_reading(request: pytest.FixtureRequest, sandbox: SandboxServer) -> Iterator[SandboxReading]:
    """The clean session sandbox under each reading of the OPEN points in turn (see ``tests/readings.py``).

    A test that takes this fixture runs once per reading; the settings are switched at runtime and the
    next test's reset restores the defaults.
    """
    reading: Reading = request.param
    sandbox.configure(**reading.sandbox)
    handle = SandboxReading(sandbox, reading)
    try:
        yield handle
    finally:
        handle.close()
        sandbox.reset()


def client_for(sandbox: Any, **overrides: Any) -> Any:
    """A ``CrowdTwistClient`` for ``sandbox`` (anything with ``.base_url`` and the default credentials).

    API-key auth in the header unless overridden; ``auth_type="hmac"`` fills in the sandbox's HMAC keys.
    Fast retry timings (``FAST_RETRIES``) unless overridden. The caller closes it (it is a context manager).
    """
    from airflow_provider_crowdtwist.client.client import CrowdTwistClient
    from airflow_provider_crowdtwist.client.config import ClientConfig

    options: dict[str, Any] = {"base_url": sandbox.base_url, **FAST_RETRIES}
    if overrides.get("auth_type", "api_key") == "hmac":
        options["hmac_public_key"] = sandbox.hmac_public_key
        options["hmac_private_key"] = sandbox.hmac_private_key
    else:
        options["api_key"] = sandbox.api_key
    options.update(overrides)
    return CrowdTwistClient(ClientConfig(**options))


@pytest.fixture(name="client_for")
def client_for_fixture() -> Iterator[Callable[..., Any]]:
    """``client_for(sandbox, **overrides)`` as a fixture; every client it built is closed afterwards."""
    made: list[Any] = []

    def make(sandbox: Any, **overrides: Any) -> Any:
        client = client_for(sandbox, **overrides)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    """A real ``redis-server`` on a free loopback port for the session (tests/redis_server.py).

    Fails under ``CI=true`` and skips elsewhere when Debian's ``redis-server`` is missing. Prefer
    ``redis_db``, which empties it first; a test that kills Redis takes ``own_redis_server``.
    """
    from tests.redis_server import RedisServer, require_redis_server

    server = RedisServer(require_redis_server()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_db(redis_server: Any) -> Any:
    """The session's Redis, emptied (``FLUSHALL``): a test starts with no limiter state."""
    client = redis_server.client()
    client.flushall()
    client.close()
    return redis_server


@pytest.fixture
def own_redis_server() -> Iterator[Any]:
    """A Redis server of this test's own, which it may kill; stopped afterwards whatever happens."""
    from tests.redis_server import RedisServer, require_redis_server

    server = RedisServer(require_redis_server()).start()
    try:
        yield server
    finally:
        server.stop()
