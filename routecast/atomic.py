"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one.

Every file routecast writes (embedding caches, checkpoints, reports, plots, decisions) goes
through these helpers: the content is written to a temporary file in the same directory,
flushed to disk, then renamed over the target with :func:`os.replace`, which is atomic on POSIX.

Folders (checkpoints, encoder folders, sharded outputs) are built in a temporary sibling and
swapped into place by :func:`replace_folder` (:func:`atomic_folder` around it), the one folder swap.

It also holds the other file-safety pieces every command shares: :func:`out_lock` (one writer per
output, ``fcntl.flock``), :func:`sigterm_as_exception` (SIGTERM unwinds, so temp files go),
:func:`remove_stale_temps` (what a SIGKILL left), :func:`file_errors` (PermissionError and friends
as one line) and :func:`make_shareable` (0644/0755 for exported folders).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Iterator

from routecast.errors import BusyError, FileAccessError, RoutecastError


def _umask_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp makes them owner-only)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    if "r" in mode or "a" in mode:
        raise ValueError("atomic_open only writes whole files ('w' or 'wb')")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with _renamed_into_place(tmp, path):
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path for libraries that insist on writing by file name (savefig, parquet).

    The temporary name keeps the target's suffix so format detection by extension still works.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    with _renamed_into_place(tmp, path):
        yield Path(tmp)


@contextlib.contextmanager
def _renamed_into_place(tmp: str, path: Path) -> Iterator[None]:
    """Run the body that fills ``tmp``; then give it the umask's mode and rename it over ``path``
    (atomic on POSIX), or on any error - a kill included - remove it, leaving ``path`` untouched."""
    try:
        yield
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Strict JSON (NaN/inf as null, numpy values as plain numbers), written atomically."""
    from routecast.jsonable import dumps

    write_text(path, dumps(obj) + "\n")


# --------------------------------------------------------------------------- folders
def temp_folder(path: str | os.PathLike) -> Path:
    """A new empty sibling folder of ``path`` named ``.NAME.*.tmp`` (what :func:`remove_stale_temps` cleans)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))


def replace_folder(tmp: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move the finished folder ``tmp`` to ``target`` with one rename, so a reader sees the old
    folder or the new one, never half of one. An existing folder at ``target`` is renamed aside
    (``.NAME.*.old``) first and deleted after; a file or a symlink there is refused, not replaced."""
    tmp, target = Path(tmp), Path(target)
    if not target.exists() and not target.is_symlink():
        os.replace(tmp, target)
        return
    if target.is_symlink() or not target.is_dir():
        raise FileAccessError(f"{target}: exists and is not a folder; refusing to replace it")
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    old.rmdir()
    os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary sibling folder of ``path``; fill it, and on success it replaces
    ``path`` (:func:`replace_folder`); on an exception (Ctrl-C included) it is removed."""
    tmp = temp_folder(path)
    try:
        yield tmp
        replace_folder(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- file modes
def make_shareable(folder: str | os.PathLike) -> None:
    """Give a folder written for others (an exported checkpoint) modes 0755 (folders) / 0644 (files).

    WHY explicit modes rather than the umask: ``mkdtemp`` creates 0700 folders, and a checkpoint
    exported by one user is usually served by another (a service account) that must read it.
    """
    root = Path(folder)
    os.chmod(root, 0o755)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)


# --------------------------------------------------------------------------- OS errors
#: errno -> what to tell the user; everything else is a real bug and keeps its traceback
_FILE_ERRNOS = {
    errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a parent of this path is a file, not a folder", errno.EISDIR: "is a folder, expected a file",
    errno.EROFS: "the file system is read-only", errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded", errno.ENAMETOOLONG: "the name is too long",
    errno.ELOOP: "too many symbolic links", errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists",
}


def describe_os_error(exc: BaseException) -> str | None:
    """One line naming the path and the cause of a file-system error a user can fix, else None."""
    if not isinstance(exc, OSError) or isinstance(exc, RoutecastError) or exc.errno not in _FILE_ERRNOS:
        return None
    path = exc.filename if exc.filename is not None else "?"
    other = f" -> {exc.filename2}" if exc.filename2 is not None else ""
    cause = _FILE_ERRNOS[exc.errno]
    if exc.errno == errno.EEXIST and exc.filename is not None and os.path.isfile(exc.filename):
        cause = "is a file, expected a folder"  # mkdir(exist_ok=True) on a file
    return f"{path}{other}: {cause}"


@contextlib.contextmanager
def file_errors() -> Iterator[None]:
    """Turn PermissionError, NotADirectoryError, a read-only or full disk... into one
    :class:`~routecast.errors.FileAccessError` naming the path (the CLI prints it, exit 2)."""
    try:
        yield
    except OSError as exc:
        message = describe_os_error(exc)
        if message is None:
            raise
        raise FileAccessError(message) from None


# --------------------------------------------------------------------------- SIGTERM
class Terminated(BaseException):
    """Raised in the main thread when SIGTERM arrives inside :func:`sigterm_as_exception`.

    A BaseException (like KeyboardInterrupt) so ``except Exception`` does not swallow it, while
    every ``finally`` and the temp-file cleanup of :func:`atomic_open` still run.
    """


@contextlib.contextmanager
def sigterm_as_exception() -> Iterator[None]:
    """Inside this block SIGTERM raises :class:`Terminated` instead of killing the process outright,
    so temporary files are removed and partial output is left consistent. Outside the main thread
    (where handlers cannot be installed) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):  # noqa: ARG001 - signal handler signature
        raise Terminated(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete temporary siblings left by a writer of ``path`` that was killed (SIGKILL, power loss).

    Only call this while holding :func:`out_lock` on ``path``: then no live writer owns them.
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    name, stem, suffix = (glob.escape(part) for part in (path.name, path.stem, path.suffix))
    # the names atomic_open, atomic_path and the checkpoint writer give their temporaries
    patterns = (f".{name}.*.tmp", f".{name}.*.old", f".{stem}.*.tmp{suffix}")
    for item in sorted({item for pattern in patterns for item in path.parent.glob(pattern)}):
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                item.unlink()
        removed.append(item)
    return removed


# --------------------------------------------------------------------------- output locks
def lock_path_for(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.parent / f".{path.name}.lock"


class OutLock:
    """An exclusive ``fcntl.flock`` on ``.<name>.lock`` next to an output file or folder.

    WHY: two ``train``/``export``/``route`` runs into one ``--out`` used to both succeed, the
    last silently winning. A second writer now fails at once with :class:`BusyError`. The kernel
    drops the lock when the process dies (even on SIGKILL), so a crash never leaves a stale lock;
    the lock file is removed on release.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock_file = lock_path_for(self.path)
        self._fd: int | None = None

    def acquire(self) -> "OutLock":
        import fcntl

        with file_errors():
            self.lock_file.parent.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
                    os.close(fd)
                    raise BusyError(f"{self.path}: another routecast process (pid {holder}) is writing it "
                                    f"(lock {self.lock_file}); wait for it to finish or choose another output") from None
                # the previous holder may have unlinked the file between our open and flock: retry on the new one
                try:
                    same = os.fstat(fd).st_ino == os.stat(self.lock_file).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.lock_file)  # while still holding it, so no one else can own this inode
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "OutLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def out_lock(path: str | os.PathLike) -> OutLock:
    """``with out_lock(out): ...`` holds the output lock of ``out`` for the block."""
    return OutLock(path)
