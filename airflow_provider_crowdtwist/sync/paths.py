"""Where the engine's files live: a local path, or an object-storage path it reads and writes whole.

Sources, rejects files, the member state and the credit ledger all take either a local path or a
path-like object with ``.open()`` (the operators pass Airflow's ``ObjectStoragePath``). One rule
decides which, so that the four never disagree about the same location.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

# The concrete local classes. ``ObjectStoragePath`` subclasses ``pathlib.Path`` with some
# universal-pathlib versions (0.2, the one Airflow 2.11 pins), so ``isinstance`` cannot tell them apart.
_LOCAL_PATH_TYPES = (
    pathlib.Path,
    pathlib.PosixPath,
    pathlib.WindowsPath,
    pathlib.PurePath,
    pathlib.PurePosixPath,
    pathlib.PureWindowsPath,
)


def is_local(location: Any) -> bool:
    """True for a filesystem path: a string without a URL scheme, or a plain ``pathlib`` path.

    Anything else with ``.open()`` (an object-storage path) is remote: the engine copies it to a
    temporary local file, or writes it whole, through that ``.open()``.
    """
    if isinstance(location, str):
        return "://" not in location
    if type(location) in _LOCAL_PATH_TYPES:
        return True
    return not hasattr(location, "open") and isinstance(location, os.PathLike)


def describe(location: Any) -> str:
    """The location as users wrote it, for logs and the summary."""
    return os.fspath(location) if type(location) in _LOCAL_PATH_TYPES else str(location)
