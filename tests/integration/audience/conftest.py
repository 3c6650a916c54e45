"""Fixtures of the audience sync tests: a real SFTP server (tests/sftp_server.py) for the module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sftp_server import SftpServer, sftp_server


@pytest.fixture(scope="module")
def sftp() -> Iterator[SftpServer]:
    with sftp_server() as server:
        yield server
