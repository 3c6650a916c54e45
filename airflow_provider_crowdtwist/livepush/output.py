"""Where finished JSON-lines files go: a local directory, or any object store fsspec can write.

A file is published whole. Locally that is a ``rename`` from the spool (same filesystem, so readers see
the whole file or nothing) followed by an fsync of the directory; in object storage it is one upload,
which the store makes visible atomically, and only then is the spooled copy removed. fsspec is imported
lazily: a receiver with a local output needs nothing beyond the standard library and uvicorn.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow_provider_crowdtwist.sync.paths import is_local


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` survive a power cut, not only a process crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _local_path(url: str) -> Path:
    return Path(url[len("file://") :] if url.startswith("file://") else url)


class Output:
    """The output URL: ``publish(local_file, feed)`` lands a finished file under ``URL/<feed>/``."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.local = is_local(url) or url.startswith("file://")
        self._fs: Any = None
        if self.local:
            self.root = _local_path(self.url)
            self.root.mkdir(parents=True, exist_ok=True)
        else:
            import fsspec  # lazily: only object-storage outputs need it

            self._fs, self._fs_root = fsspec.core.url_to_fs(self.url)

    def default_spool_dir(self) -> Path | None:
        """Next to a local output (same filesystem, so publishing is a rename); None for object storage."""
        return self.root / "_spool" if self.local else None

    def publish(self, local_file: Path, feed: str) -> str:
        """Land ``local_file`` as ``URL/<feed>/<name without .part>``; returns where it went."""
        name = local_file.name.removesuffix(".part")
        if self.local:
            target_dir = self.root / feed
            target_dir.mkdir(parents=True, exist_ok=True)
            target = target_dir / name
            os.replace(local_file, target)
            fsync_dir(target_dir)
            fsync_dir(local_file.parent)
            return str(target)
        remote = f"{self._fs_root.rstrip('/')}/{feed}/{name}"
        self._fs.put_file(str(local_file), remote)
        local_file.unlink()
        fsync_dir(local_file.parent)
        return f"{self.url}/{feed}/{name}"
