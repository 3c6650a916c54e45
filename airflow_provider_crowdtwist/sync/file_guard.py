"""The state or ledger file a run claims: created whole, locked, refused when it lost its content.

Why it is built this way: ``docs/sync-design.md``, section ``sync/file_guard.py``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable

from airflow_provider_crowdtwist.sync.paths import SQLITE_HEADER, FileInUseError, FileLock

__all__ = [
    "BrokenFileError",
    "GuardedFile",
    "create_whole",
    "inspect_file",
    "is_corruption",
    "missing_problem",
    "quick_check",
    "set_aside",
]

#: SQLite result codes (primary, ``code & 0xFF``) that mean the bytes are not a sound database.
_CORRUPT_CODES = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
#: How many problems SQLite's quick check reports (the first few say enough).
_CHECK_LINES = 3


class BrokenFileError(Exception):
    """A state or ledger file exists but lost its content: it is refused, never taken for a new one.

    ``path`` is the file as the user named it, ``reason`` what is wrong ("is empty (0 bytes)", ...).
    """

    def __init__(self, message: str, *, path: str, reason: str) -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason


def is_corruption(exc: BaseException) -> bool:
    """True for an SQLite error saying the bytes are not a sound database (not a busy or I/O error)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _CORRUPT_CODES
    # Python 3.10 has no code; an error raised by hand has none either (and is not SQLite's verdict)
    text = str(exc)
    return "malformed" in text or "file is not a database" in text


def _log_size(path: str, suffix: str) -> int:
    try:
        return os.path.getsize(path + suffix)
    except OSError:
        return 0


def inspect_file(path: str) -> str | None:
    """What is wrong with the existing file at ``path``, judged by its size and header alone.

    None when it looks whole; SQLite's quick check (:func:`quick_check`) judges the pages after it
    is opened. While a write-ahead log or a rollback journal is there (a killed run's), the main
    file may legitimately lag behind its header: only the header itself is checked then.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:  # closed before SQLite opens the file
            header = handle.read(100)
    except OSError:
        return None  # unreadable: SQLite's own error names it
    if size == 0:
        return "is empty (0 bytes)"
    if not header.startswith(SQLITE_HEADER[: len(header)]) or len(header) < len(SQLITE_HEADER):
        return f"is not a SQLite database: its {size} bytes do not start with the SQLite header"
    if len(header) < 100:
        return f"is truncated: {size} bytes, shorter than a SQLite header"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return f"is corrupt: its header names a page size of {page_size} bytes"
    if _log_size(path, "-wal") or _log_size(path, "-journal"):
        return None  # SQLite folds the log in when it opens the file; the quick check judges the result
    if size % page_size:
        return f"is truncated: {size} bytes is not a whole number of its {page_size}-byte pages"
    pages = int.from_bytes(header[28:32], "big")
    header_counts_pages = header[24:28] == header[92:96]  # the "valid-for" number: the count is current
    if header_counts_pages and pages and size < pages * page_size:
        return (
            f"is truncated: its header counts {pages} pages of {page_size} bytes "
            f"({pages * page_size} bytes), the file has {size}"
        )
    return None


def quick_check(db: sqlite3.Connection) -> str | None:
    """SQLite's ``PRAGMA quick_check`` (every page read, b-trees checked): None when sound."""
    lines = [str(row[0]) for row in db.execute(f"PRAGMA quick_check({_CHECK_LINES})")]
    if lines == ["ok"]:
        return None
    return "is corrupt (SQLite's quick check: " + "; ".join(lines) + ")"


def missing_problem(given: str, real: str) -> str | None:
    """Why a file that does not exist must still not be taken for a first run, or None."""
    if os.path.lexists(given) and not os.path.exists(given):
        return f"is a symbolic link to {real}, which does not exist (an unmounted volume?)"
    wal = _log_size(real, "-wal")
    if wal:
        return (
            f"does not exist, but its write-ahead log {real}-wal ({wal} bytes) does: the file was "
            "deleted or moved without its log"
        )
    return None


def _fsync_dir(directory: str) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def create_whole(path: str, init: Callable[[sqlite3.Connection], None]) -> bool:
    """Create the SQLite file ``path`` with ``init``'s schema, whole or not at all; False if one exists.

    Built under a temporary name in the same directory, flushed to disk, then hard-linked into
    place: the link never replaces a file another run created meanwhile (that one wins, False).
    Where the file system has no hard links, an exclusive create and a copy stand in (a kill during
    the copy then leaves a short file, which is refused like any other).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".new", dir=directory)
    os.close(fd)
    try:
        db = sqlite3.connect(temp, isolation_level=None)
        try:
            init(db)
        finally:
            db.close()
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        except OSError:  # no hard links here (some network and FUSE file systems)
            try:
                with open(path, "xb") as dst, open(temp, "rb") as src:
                    dst.write(src.read())
                    dst.flush()
                    os.fsync(dst.fileno())
            except FileExistsError:
                return False
        _fsync_dir(directory)
        return True
    finally:
        for leftover in (temp, temp + "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


def set_aside(path: str) -> str:
    """Move the broken file ``path`` and its logs to ``path.broken-<UTC time>``; return the new name.

    The ``-shm`` index is removed: it describes the moved log, and a new file must not meet it.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = f"{path}.broken-{stamp}"
    number = 1
    while any(os.path.lexists(aside + s) for s in ("", "-wal", "-journal")):
        number += 1
        aside = f"{path}.broken-{stamp}-{number}"
    for suffix in ("", "-wal", "-journal"):
        if os.path.lexists(path + suffix):
            os.rename(path + suffix, aside + suffix)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path + "-shm")
    _fsync_dir(os.path.dirname(os.path.abspath(path)))
    return aside


class GuardedFile:
    """One run's claim on a local SQLite state or ledger file.

    On construction: the name is locked (``lock``: ``(busy, what, shared)`` for
    :class:`~.paths.FileLock`; None for a private working copy of an object-storage file); a missing
    file is created whole with ``init`` (``created``), unless a log or a dangling symlink says it is
    not a first run; the file itself is locked; then ``problem`` says what is wrong with it, from its
    size and header (None when it looks whole: the caller opens it and runs :func:`quick_check` and
    its own checks of the tables).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        init: Callable[[sqlite3.Connection], None],
        *,
        lock: tuple[type[FileInUseError], str, str] | None,
    ) -> None:
        given = os.path.expanduser(os.fspath(path))
        self.path = os.path.realpath(given)
        self._init = init
        self.created = False
        self.problem: str | None = None
        self._lock: FileLock | None = None
        self._lock_args = lock
        if not os.path.exists(self.path):
            # a dangling symlink's target directory may not exist: nothing to lock until replace()
            self.problem = missing_problem(given, self.path)
            if self.problem is not None:
                return
        self._take_lock()
        try:
            if not os.path.exists(self.path):
                self.created = create_whole(self.path, init)
                if self._lock is not None:
                    self._lock.lock_file(self.path)
            if not self.created:
                if self._lock is not None:
                    self._lock.lock_file(self.path)  # no-op when FileLock took it already
                self.problem = inspect_file(self.path)
        except BaseException:
            self.release()
            raise

    def replace(self) -> str | None:
        """Set the broken file aside (see :func:`set_aside`) and create a new one whole, locked.

        Returns where the broken file went (None when there was no file, only a log or a link).
        """
        self._take_lock()
        aside = None
        if os.path.lexists(self.path) or _log_size(self.path, "-wal") or _log_size(self.path, "-journal"):
            aside = set_aside(self.path)
        if self._lock is not None:
            self._lock.unlock_file()
        if not create_whole(self.path, self._init):
            raise FileExistsError(f"{self.path} was created by someone else while it was being replaced")
        if self._lock is not None:
            self._lock.lock_file(self.path)
        self.created = True
        self.problem = None
        return aside

    def modified(self) -> float | None:
        """When the file (or its log) last changed, epoch seconds; None when neither exists."""
        times = []
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                times.append(os.stat(self.path + suffix).st_mtime)
        return max(times) if times else None

    def _take_lock(self) -> None:
        if self._lock is None and self._lock_args is not None:
            busy, what, shared = self._lock_args
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._lock = FileLock(self.path, busy, what=what, shared=shared)

    def release(self) -> None:
        """Release the locks (after the caller closed its SQLite connection); safe to call twice."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
