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
import time
from collections.abc import Iterable, Iterator
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


#: The first bytes of every SQLite database file.
SQLITE_HEADER = b"SQLite format 3\x00"


def holds_database(target: Any) -> bool:
    """True when the local file ``target`` exists and is a SQLite database (a state or a ledger).

    Output files the engine rewrites whole (the rejects file) must never be one: a ``rejects_path``
    that names the state or the ledger -- by a typo, a symlink, a hard link -- would empty it. Read by
    its first bytes. A remote target is not read (that would cost a request per run; object stores
    have no links, so only the same URL can name the same object); anything unreadable is no database.
    """
    if not is_local(target):
        return False
    try:
        with open(os.path.expanduser(os.fspath(target)), "rb") as handle:
            return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:  # missing, a directory, unreadable: not a database we would destroy
        return False


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

    def keep_aside(self) -> str | None:
        """Copy the downloaded (broken) file to a sibling object ``NAME.broken-<UTC time>``; its name.

        A state or ledger that lost its content is kept for a post-mortem before a new one replaces
        it. None when there is nothing to keep or the store cannot name a sibling (then only the
        local copy existed, and the caller says so).
        """
        if not self.is_remote or not os.path.exists(self.path):
            return None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        try:
            aside = self.target.with_name(f"{self.target.name}.broken-{stamp}")
            with open(self.path, "rb") as src, aside.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
        except Exception:  # a store without with_name, or refusing the write: nothing kept
            return None
        return describe(aside)

    def close(self) -> None:
        """Remove the temporary copy (uploading is the caller's choice, see :meth:`upload`)."""
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


class FileInUseError(RuntimeError):
    """Another running sync holds the lock of this file (state or ledger)."""


class FileLock:
    """An exclusive, non-blocking advisory lock on a local file, held until :meth:`release`.

    Two locks, both ``flock``:

    * on the FILE ITSELF (its device and inode), so every name that reaches it -- a hard link, a
      symlink, a relative path, a bind mount -- meets the same lock. Taken when the file exists (the
      state and the ledger create theirs whole before locking, :mod:`.file_guard`);
    * on a lock file named after the resolved real path (``os.path.realpath`` + ``.lock``), which
      also covers the moment before the file exists and keeps out runs of older provider versions,
      which take only this one.

    ``flock`` locks are independent of the POSIX locks SQLite takes on the same file (Linux, BSD);
    the descriptor is closed only after the caller closed its SQLite connection (closing any
    descriptor of a file drops the process's POSIX locks on it). When another process (or another
    open in this one) holds either lock, ``busy`` is raised: "``what`` is in use by another running
    sync ...; run syncs that share ``shared`` one at a time".
    """

    def __init__(
        self, path: str | os.PathLike[str], busy: type[FileInUseError], *, what: str, shared: str
    ) -> None:
        real = os.path.realpath(os.fspath(path))
        self.lock_path = real + ".lock"
        self._busy = busy
        self._what = what
        self._shared = shared
        self._handle: IO[Any] | None = None
        self._file_fd: int | None = None
        if fcntl is None:  # pragma: no cover - Windows: no lock, documented
            return
        handle = open(self.lock_path, "a+")  # noqa: SIM115 - held open for the life of the lock
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise self._refusal(f"lock {self.lock_path}") from exc
        self._handle = handle
        if os.path.exists(real):
            try:
                self.lock_file(real)
            except BaseException:
                self.release()
                raise

    def lock_file(self, path: str) -> None:
        """Lock the file at ``path`` itself (its inode): held with the name lock until :meth:`release`.

        Called again after the file was replaced (a broken file set aside): the old inode's lock is
        dropped and the new one's taken.
        """
        if fcntl is None:  # pragma: no cover - Windows: no lock, documented
            return
        if self._file_fd is not None:
            held, there = os.fstat(self._file_fd), os.stat(path)
            if (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino):
                return  # this very file is locked already
        self.unlock_file()
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            st = os.fstat(fd)
            os.close(fd)
            raise self._refusal(
                f"the file {path} (device {st.st_dev}, inode {st.st_ino}) is locked, perhaps under "
                "another name: a hard link, a symlink or another spelling of the path"
            ) from exc
        self._file_fd = fd

    def unlock_file(self) -> None:
        """Drop the lock on the file itself (keep the name lock)."""
        if self._file_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._file_fd)
            self._file_fd = None

    def _refusal(self, detail: str) -> FileInUseError:
        return self._busy(
            f"{self._what} is in use by another running sync ({detail}); run syncs that share "
            f"{self._shared} one at a time (e.g. max_active_runs=1)"
        )

    def release(self) -> None:
        """Release both locks; safe to call twice."""
        self.unlock_file()
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


class BatchedWrites:
    """Results queued per SQL statement and committed together, every ``rows`` results or ``seconds``.

    A state records one result per row on the sending path: one transaction (one fsync) per row
    would cost more than the request. The member state and the audience state share this one queue.
    """

    def __init__(self, statements: Iterable[str], *, rows: int = 1000, seconds: float = 0.1) -> None:
        self._pending: dict[str, list[tuple[Any, ...]]] = {sql: [] for sql in statements}
        self._rows, self._seconds = rows, seconds
        self.queued = 0
        self._first = 0.0

    def add(self, *writes: tuple[str, tuple[Any, ...]]) -> bool:
        """Queue one result's writes; True when the batch is due (the caller then calls :meth:`flush`)."""
        if not self.queued:
            self._first = time.monotonic()
        for sql, params in writes:
            self._pending[sql].append(params)
        self.queued += 1
        return self.queued >= self._rows or time.monotonic() - self._first >= self._seconds

    def flush(self, db: sqlite3.Connection) -> bool:
        """Commit the queued writes in one transaction; False when there was nothing to write."""
        if not self.queued:
            return False
        with transaction(db):
            for sql, rows in self._pending.items():
                if rows:
                    db.executemany(sql, rows)
        for rows in self._pending.values():
            rows.clear()
        self.queued = 0
        return True
