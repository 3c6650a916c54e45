"""Fixtures for the end-to-end tests: a real Airflow, a real sandbox, real databases.

Why subprocesses: Airflow 3's ``dag.test()`` needs the DAG in a file under the configured dags folder
and reads its configuration once per process. Running the ``airflow`` command in a child process with
its own ``AIRFLOW_HOME`` (one per test session, ``airflow db migrate`` once) is how a user runs a DAG,
works the same on Airflow 2.11 and 3.x, and keeps Airflow's global configuration away from every other
test in the suite.

Why a real PostgreSQL: the sync reads any common.sql connection, and PostgreSQL hands pandas real
``DATE``/``TIMESTAMP``/``NUMERIC`` values where SQLite hands strings; the same sync must give the same
result from both. The server is started from Debian's binaries on a free loopback port and always
stopped in teardown. When the binaries are missing the postgres tests FAIL under ``CI=true`` (CI must
never go green without them) and skip elsewhere.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO / "dags_examples"
SCRIPTS_DIR = REPO / "scripts"
BIN_DIR = Path(sys.executable).parent

# The demo's sandbox credentials (airflow_provider_crowdtwist.sandbox defaults).
SANDBOX_API_KEY = "sandbox-api-key"
SANDBOX_HMAC_PUBLIC = "sandbox-public"
SANDBOX_HMAC_PRIVATE = "sandbox-private"

# The example DAGs' run date: the data interval is the day before, and the sample warehouse puts its
# events in the days before END_DATE, so a run on END_DATE - 1 day... see warehouse_rows().
RUN_DATE = "2026-11-22"
WAREHOUSE_END = dt.datetime(2026, 11, 22)


def _load_script(name: str) -> ModuleType:
    """Import a module from ``scripts/`` (not a package: it is also run as a plain script)."""
    spec = importlib.util.spec_from_file_location(f"_e2e_{name}", SCRIPTS_DIR / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


make_warehouse = _load_script("make_warehouse")
show_summaries = _load_script("show_summaries")


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def airflow_major() -> int:
    from importlib.metadata import version

    return int(version("apache-airflow").split(".")[0])


@dataclass
class AirflowEnv:
    """An isolated Airflow installation: its own home, metadata DB and the example dags folder."""

    home: Path
    base_env: dict[str, str] = field(default_factory=dict)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(self.base_env)
        env.update(extra or {})
        return env

    def run(
        self, *args: str, extra_env: Mapping[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run the ``airflow`` command of this virtual environment; output captured as text."""
        return subprocess.run(
            [str(BIN_DIR / "airflow"), *args],
            env=self.env(extra_env),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def python(
        self, code: str, *, extra_env: Mapping[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run Python code in a child process configured like the ``airflow`` command."""
        return subprocess.run(
            [sys.executable, "-c", code],
            env=self.env(extra_env),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def dags_test(
        self, dag_id: str, *, extra_env: Mapping[str, str] | None = None, run_date: str = RUN_DATE
    ) -> subprocess.CompletedProcess[str]:
        """``airflow dags test DAG_ID DATE``: a real run of the DAG file, exit code 0 on success."""
        return self.run("dags", "test", dag_id, run_date, extra_env=extra_env)

    def summaries(self, dag_id: str) -> dict[str, dict[str, Any]]:
        """The sync summaries (XCom return values) of the DAG's latest run, by task id."""
        return show_summaries.read_summaries(self.home / "airflow.db", dag_id)


def explain(proc: subprocess.CompletedProcess[str], limit: int = 12_000) -> str:
    """The tail of a child's output, for an assertion message that shows why a run failed."""
    text = (proc.stdout or "") + "\n--- stderr ---\n" + (proc.stderr or "")
    return text[-limit:]


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> AirflowEnv:
    """One migrated Airflow home for the session (``airflow db migrate`` takes a few seconds)."""
    home = tmp_path_factory.mktemp("airflow_home")
    base = {
        k: v
        for k, v in os.environ.items()
        # Nothing from the developer's own Airflow set-up may leak into the test installation.
        if not k.startswith(("AIRFLOW", "CROWDTWIST_"))
    }
    base.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONWARNINGS": "ignore::DeprecationWarning",
        }
    )
    env = AirflowEnv(home=home, base_env=base)
    proc = env.run("db", "migrate", timeout=240)
    assert proc.returncode == 0, f"airflow db migrate failed:\n{explain(proc)}"
    return env


# --------------------------------------------------------------------------------------------------
# The sample warehouse


@dataclass(frozen=True)
class WarehouseRows:
    members: list[dict[str, Any]]
    events: list[dict[str, Any]]

    def events_between(self, start: str, end: str) -> list[dict[str, Any]]:
        """Events with ``start <= event_time < end`` (strings 'YYYY-MM-DD HH:MM:SS')."""
        return [e for e in self.events if start <= e["event_time"] < end]


@pytest.fixture(scope="session")
def warehouse_rows() -> WarehouseRows:
    """A small deterministic warehouse: 300 members, 600 events over the 3 days before RUN_DATE."""
    members = make_warehouse.generate_members(300, seed=7, end=WAREHOUSE_END)
    events = make_warehouse.generate_events(members, 600, seed=7, end=WAREHOUSE_END, days=3)
    return WarehouseRows(members=members, events=events)


@pytest.fixture
def sqlite_warehouse(tmp_path: Path, warehouse_rows: WarehouseRows) -> dict[str, str]:
    """The sample warehouse in a SQLite file; returns the env that points the DAGs at it."""
    db = tmp_path / "warehouse.db"
    make_warehouse.write_sqlite(db, warehouse_rows.members, warehouse_rows.events)
    return {"AIRFLOW_CONN_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(db)})}


# --------------------------------------------------------------------------------------------------
# PostgreSQL


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _install_postgres() -> str | None:
    """Install Debian's PostgreSQL when running as root with apt (``scripts/test`` does it first).

    Returns why it could not, or None. Here too so that a bare ``python -m pytest`` on a fresh machine
    gets the server as well.
    """
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "not root, or no apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "postgresql"]):
        proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, check=False)
        if proc.returncode != 0:
            return f"{' '.join(args)} failed: {proc.stderr[-2000:]}"
    return None


def _as_postgres(args: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the ``postgres`` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str

    def connect(self, dbname: str = "postgres") -> Any:
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=dbname)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on a free loopback port, for the session; always stopped afterwards."""
    bindir = _pg_bindir()
    if bindir is None:
        why_not = _install_postgres()
        bindir = _pg_bindir()
    if bindir is None:
        reason = (
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb) and could not be "
            f"installed ({why_not}); `apt-get install postgresql` provides them"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    # Not under pytest's tmp dir: that one is private to root, and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="crowdtwist-pg-"))
    root.chmod(0o755)
    data = root / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
    port = free_port()
    log = root / "server.log"
    started = False
    try:
        subprocess.run(
            _as_postgres(
                [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off"
        subprocess.run(
            _as_postgres(
                [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        started = True
        yield PostgresServer(host="127.0.0.1", port=port, user="postgres")
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace")
        if log.exists():
            detail += "\n" + log.read_text(errors="replace")[-4000:]
        pytest.fail(f"could not start PostgreSQL: {exc}\n{detail}")
    finally:
        if started:
            subprocess.run(
                _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                capture_output=True,
                timeout=120,
                check=False,
            )
        shutil.rmtree(root, ignore_errors=True)


def load_postgres(server: PostgresServer, dbname: str, rows: WarehouseRows) -> None:
    """(Re)create ``dbname`` with the warehouse tables, in PostgreSQL's own types."""
    admin = server.connect()
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
        cur.execute(f'CREATE DATABASE "{dbname}"')
    admin.close()
    con = server.connect(dbname)
    try:
        with con.cursor() as cur:
            cur.execute(
                """
                CREATE TABLE members (
                    user_id TEXT, first_name TEXT, last_name TEXT, postal_code TEXT, country_code TEXT,
                    city_name TEXT, date_of_birth DATE, receive_email_updates SMALLINT,
                    favorite_store TEXT, loyalty_segment TEXT, preferred_channel TEXT,
                    lifetime_value NUMERIC(12, 2), updated_at TIMESTAMP
                );
                CREATE TABLE events (
                    event_id TEXT PRIMARY KEY, user_email TEXT, activity_id TEXT, points INTEGER,
                    event_time TIMESTAMP, store TEXT
                );
                """
            )
            mcols = make_warehouse.MEMBER_COLUMNS
            ecols = make_warehouse.EVENT_COLUMNS
            cur.executemany(
                f"INSERT INTO members ({', '.join(mcols)}) VALUES ({', '.join(['%s'] * len(mcols))})",
                [tuple(m[c] for c in mcols) for m in rows.members],
            )
            cur.executemany(
                f"INSERT INTO events ({', '.join(ecols)}) VALUES ({', '.join(['%s'] * len(ecols))})",
                [tuple(e[c] for c in ecols) for e in rows.events],
            )
        con.commit()
    finally:
        con.close()


@pytest.fixture
def postgres_warehouse(postgres_server: PostgresServer, warehouse_rows: WarehouseRows) -> dict[str, str]:
    """The sample warehouse in a fresh PostgreSQL database; returns the env for the DAGs."""
    load_postgres(postgres_server, "warehouse", warehouse_rows)
    conn = {
        "conn_type": "postgres",
        "host": postgres_server.host,
        "port": postgres_server.port,
        "login": postgres_server.user,
        "schema": "warehouse",
    }
    return {"AIRFLOW_CONN_WAREHOUSE": json.dumps(conn)}


# --------------------------------------------------------------------------------------------------
# The sandbox, with key values that look real so that the secret checks mean something

E2E_API_KEY = "ctk_live_7f3a9c1e5b2d48a6b0e4c8d2f6a1b3e5"
E2E_HMAC_PUBLIC = "ctpub_9d8c7b6a5f4e"
E2E_HMAC_PRIVATE = "ctpriv_Q2hhbmdlTWVQbGVhc2UxMjM0NTY3ODkw"
SECRETS = (E2E_API_KEY, E2E_HMAC_PRIVATE)


@contextlib.contextmanager
def e2e_sandbox_running(**options: Any) -> Iterator[Any]:
    """An in-process sandbox with the e2e credentials (and ``options``), always stopped afterwards."""
    from airflow_provider_crowdtwist.sandbox.server import SandboxServer

    server = SandboxServer(
        api_key=E2E_API_KEY, hmac_public_key=E2E_HMAC_PUBLIC, hmac_private_key=E2E_HMAC_PRIVATE, **options
    ).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def e2e_sandbox_server() -> Iterator[Any]:
    """One in-process sandbox for the e2e session (the Airflow child processes reach it over loopback)."""
    with e2e_sandbox_running() as server:
        yield server


@pytest.fixture
def e2e_sandbox(e2e_sandbox_server: Any) -> Any:
    """The e2e sandbox, emptied: no members, no credits, zero counts, no faults."""
    e2e_sandbox_server.reset()
    return e2e_sandbox_server


def api_key_conn(sandbox: Any) -> str:
    """``AIRFLOW_CONN_...`` JSON of an API-key connection to ``sandbox``."""
    return json.dumps(
        {
            "conn_type": "crowdtwist",
            "host": sandbox.base_url,
            "password": E2E_API_KEY,
            "extra": {"auth_type": "api_key"},
        }
    )


def hmac_conn(sandbox: Any) -> str:
    """``AIRFLOW_CONN_...`` JSON of an HMAC connection to ``sandbox``."""
    return json.dumps(
        {
            "conn_type": "crowdtwist",
            "host": sandbox.base_url,
            "login": E2E_HMAC_PUBLIC,
            "password": E2E_HMAC_PRIVATE,
            "extra": {"auth_type": "hmac", "hmac_timestamp_unit": "s"},
        }
    )


def files_under(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.exists():
            yield from (p for p in root.rglob("*") if p.is_file())


def assert_no_secrets(*texts: str, paths: Iterable[Path] = ()) -> None:
    """No secret value in any of the texts or files (logs, XComs, rejects, ledgers)."""
    path_list = list(paths)
    assert texts or path_list, "nothing to check"
    for secret in SECRETS:
        for text in texts:
            assert secret not in text, "a secret leaked into process output"
        for path in path_list:
            data = path.read_bytes()
            assert secret.encode() not in data, f"a secret leaked into {path}"
