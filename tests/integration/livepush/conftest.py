from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_crowdtwist.livepush.process import ReceiverProcess

API_KEY = "lp_live_5d1c2b9a8e7f6a5b4c3d2e1f0a9b8c7d"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverProcess]:
    """A receiver child process with an API key, short body/header deadlines and fast rolling."""
    rx = ReceiverProcess(
        tmp_path / "out",
        api_key=API_KEY,
        extra_args=["--body-timeout", "2", "--header-timeout", "3", "--roll-seconds", "0.5"],
    )
    with rx:
        yield rx
