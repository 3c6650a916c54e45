"""The receiver runs as a plain service and the loading engine is plain Python: neither imports Airflow."""

from __future__ import annotations

import subprocess
import sys


def test_livepush_imports_no_airflow() -> None:
    code = (
        "import sys\n"
        "import airflow_provider_crowdtwist.livepush.cli, airflow_provider_crowdtwist.livepush.load\n"
        "import airflow_provider_crowdtwist.livepush.process, airflow_provider_crowdtwist.sandbox.push\n"
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
