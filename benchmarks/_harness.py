"""What the throughput benchmarks share: the baseline package from git, child runs, a table.

The baseline is *today's* code measured in the same run: the package as it was at ``BASELINE_REV``
is exported from git into a temporary folder and imported by a child process instead of the
working tree (``PYTHONPATH``), so both sides run the same benchmark code against the same sandbox.
Every measured run is a child process of its own, so the CPU time it reports is its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: main before issue 16: the plain token-bucket limiter and the client as profiled in docs/performance.md.
BASELINE_REV = "caaa19d"
PACKAGE = "airflow_provider_crowdtwist"


def member_rows(prefix: str, n: int, generation: int) -> Any:
    """``n`` members ``{prefix}{i}@example.com`` that CrowdTwist can create (US postal code);
    ``generation`` changes the last name, so that each pass really updates every member."""
    import pandas as pd

    return pd.DataFrame(
        {
            "user_id": [f"{prefix}{i}@example.com" for i in range(n)],
            "first_name": [f"First{i}" for i in range(n)],
            "last_name": [f"Last{generation}" for _ in range(n)],
            "postal_code": ["10001"] * n,
        }
    )


def export_baseline(rev: str, into: Path) -> Path:
    """The package at ``rev`` extracted under ``into``; returns the folder to put on ``PYTHONPATH``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, PACKAGE],
        check=True,
        capture_output=True,
    ).stdout
    target = into / f"baseline-{rev}"
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as tmp:
        tmp.write(archive)
        tmp.seek(0)
        with tarfile.open(fileobj=tmp) as tar:
            tar.extractall(target, filter="data")
    return target


def run_child(script: Path, args: Sequence[str], pythonpath: Path, timeout: float = 900.0) -> dict[str, Any]:
    """Run ``script --child ARGS`` with ``pythonpath`` first; its last stdout line is its JSON result."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    done = subprocess.run(
        [sys.executable, str(script), "--child", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    if done.stderr.strip():
        sys.stderr.write(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(title: str, columns: Sequence[tuple[str, str]], rows: Sequence[dict[str, Any]]) -> None:
    """``columns`` = (key, format spec); the first column is the run's name."""
    widths = [max(len(key), 12) for key, _ in columns]
    widths[0] = max(widths[0], *(len(str(r[columns[0][0]])) for r in rows))
    print()
    print(title)
    names = [key for key, _ in columns]
    pairs = enumerate(zip(names, widths, strict=True))
    header = "  ".join(f"{k:>{w}}" if i else f"{k:<{w}}" for i, (k, w) in pairs)
    print(header)
    print("-" * len(header))
    for row in rows:
        cells = []
        for i, ((key, spec), w) in enumerate(zip(columns, widths, strict=True)):
            value = row.get(key)
            text = "-" if value is None else (format(value, spec) if spec else str(value))
            cells.append(f"{text:>{w}}" if i else f"{text:<{w}}")
        print("  ".join(cells))
