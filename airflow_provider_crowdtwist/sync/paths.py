"""Where the engine's files live: a local path, or an object-storage path it reads and writes whole.

Sources, rejects files, the member state and the credit ledger all take either a local path or a
path-like object with ``.open()`` (the operators pass Airflow's ``ObjectStoragePath``). One rule
decides which (:func:`is_local`), one class makes a local working copy of either
(:class:`WorkingCopy`), and one lock keeps two runs off one file (:class:`FileLock`), so the four
never disagree about the same location.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from typing import IO, Any

try:  # POSIX advisory locks keep two runs from sharing one local state or ledger at the same time.
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock, documented
    fcntl = None  # type: ignore[assignment]

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


def make_parent(target: Any) -> None:
    """Create the parent "directory" of a path-like target where the store has directories.

    Local file systems need it; object stores (s3, gs) have no directories and may refuse: ignored.
    """
    parent = getattr(target, "parent", None)
    if parent is None or not hasattr(parent, "mkdir"):
        return
    with contextlib.suppress(Exception):
        parent.mkdir(parents=True, exist_ok=True)


class WorkingCopy:
    """A local file standing for ``target``: the file itself when local, else a downloaded temp copy.

    Rejects, member state and credit ledger all need a real local file (SQLite, appends) while their
    location may be object storage, which is read and written whole. ``download=True`` fetches the
    current object first (a missing one starts empty); :meth:`upload` writes the copy back (callers
    decide when: the ledger after each chunk, the others on close); :meth:`close` removes the temp dir.
    For a local target ``path`` is the target (parent directories created) and both are no-ops.
    """

    def __init__(self, target: Any, *, name: str, download: bool = True) -> None:
        self.target = target
        self.location = describe(target)
        self.is_remote = not is_local(target)
        self._tmpdir: str | None = None
        if not self.is_remote:
            self.path = os.path.expanduser(os.fspath(target))
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            return
        self._tmpdir = tempfile.mkdtemp(prefix="crowdtwist-")
        self.path = os.path.join(self._tmpdir, name)
        self.downloaded = False
        if download:
            try:
                self._download()
            except Exception:
                self.close()
                raise

    def _download(self) -> None:
        exists = getattr(self.target, "exists", None)
        try:
            if exists is not None and not exists():
                return
        except Exception:  # a store that cannot tell: try to read it
            pass
        try:
            with self.target.open("rb") as src, open(self.path, "wb") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
            self.downloaded = True
        except FileNotFoundError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def upload(self) -> None:
        """Write the local copy to the remote target whole (no-op for a local target)."""
        if not self.is_remote:
            return
        make_parent(self.target)
        with open(self.path, "rb") as src, self.target.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)

    def close(self) -> None:
        """Remove the temporary copy (uploading is the caller's choice, see :meth:`upload`)."""
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


class FileInUseError(RuntimeError):
    """Another running sync holds the lock of this file (state or ledger)."""


class FileLock:
    """An exclusive, non-blocking advisory lock next to a local file, held until :meth:`release`.

    The lock file is named after the file's RESOLVED real path (``os.path.realpath``), so a symlink
    and its target, or two spellings of one path, take the same lock. When another process (or another
    open in this one) holds it, ``busy`` is raised: "``what`` is in use by another running sync ...;
    run syncs that share ``shared`` one at a time".
    """

    def __init__(
        self, path: str | os.PathLike[str], busy: type[FileInUseError], *, what: str, shared: str
    ) -> None:
        real = os.path.realpath(os.fspath(path))
        self.lock_path = real + ".lock"
        self._handle: IO[Any] | None = None
        if fcntl is None:  # pragma: no cover - Windows: no lock, documented
            return
        handle = open(self.lock_path, "a+")  # noqa: SIM115 - held open for the life of the lock
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise busy(
                f"{what} is in use by another running sync (lock {self.lock_path}); run syncs that share "
                f"{shared} one at a time (e.g. max_active_runs=1)"
            ) from exc
        self._handle = handle

    def release(self) -> None:
        """Release the lock; safe to call twice."""
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None


@contextlib.contextmanager
def transaction(db: sqlite3.Connection, *, immediate: bool = False) -> Iterator[None]:
    """One SQLite transaction on an autocommit connection: committed, or rolled back on any error."""
    db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
