"""Writing files safely: atomic writes that fail with a clear message, and the free space where they go.

Every result (`results.write_json_atomic`) and checkpoint (`train.save_checkpoint_atomic`) is written by
`write_atomic`: a temporary file in the same folder, then a rename, so an interrupted or failed write never leaves
half a file and never touches the previous version. When the write fails (a full disk, a quota, no permission) the
`StorageError` names the file, the cause and the free space, and says that nothing was lost. Nothing here knows about
networks or data; `outdir` checks a run's folder before it starts.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import StorageError

__all__ = ["write_atomic", "free_bytes", "format_bytes", "existing_ancestor"]

_FULL = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up"}


def format_bytes(n: float) -> str:
    """`n` bytes in words: `812 kB`, `3.4 MB`, `1.2 GB` (powers of 1000)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def existing_ancestor(path: Path) -> Path:
    """`path` itself or its closest ancestor that exists (where a folder would be created)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: str | Path) -> int:
    """Free bytes for this user on the file system that holds (or would hold) `path`."""
    return shutil.disk_usage(existing_ancestor(Path(path))).free


def _write_fd(fd: int, data: bytes) -> int:
    """The one low-level write of every result and checkpoint (tests make it fail to simulate a full disk)."""
    return os.write(fd, data)


class _FileWriter:
    """A write-only file object on an open descriptor: every byte goes through `_write_fd` (partial writes retried)."""

    def __init__(self, fd: int):
        self.fd = fd

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            done += _write_fd(self.fd, view[done:])
        return len(view)

    def flush(self) -> None:
        pass


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind `exc`: itself, or one in its cause/context chain (torch.save wraps write errors)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _failure(path: Path, error: OSError) -> StorageError:
    cause = _FULL.get(error.errno, error.strerror or str(error))
    try:
        free = f"{format_bytes(free_bytes(path.parent))} free there"
    except OSError:
        free = "free space unknown"
    previous = "its previous version is intact" if path.exists() else "no partial file was left"
    return StorageError(
        f"could not write {path}: {cause} ({error.strerror or error}; {free}). Nothing was lost: {previous}, and every "
        "finished result and the last epoch checkpoint are kept. Free some space (or choose another out_dir), then "
        "run the same command again: it resumes where it stopped.")


def write_atomic(path: str | Path, write: Callable[[Any], object], mode: int = 0o644) -> Path:
    """Write a file atomically: `write(f)` fills a temporary file in the same folder, which then replaces `path`.

    Args:
        path: the file to write; its folder is created when missing.
        write: called once with a write-only binary file object.
        mode: permission bits of the new file (mkstemp would leave 0600; results are meant to be shared).

    Raises:
        StorageError: the folder could not be created or the file not written (full disk, quota, permission); the
            previous version of `path`, if any, is untouched and no temporary file is left behind.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            write(_FileWriter(fd))
        finally:
            os.close(fd)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        tmp = None
    except Exception as exc:
        _remove(tmp)  # first, so that the message reports the space the failed write does not hold
        error = _os_error(exc)
        if error is None or isinstance(exc, StorageError):
            raise
        raise _failure(path, error) from exc
    finally:
        _remove(tmp)
    return path


def _remove(tmp: str | None) -> None:
    if tmp is not None and os.path.exists(tmp):
        os.remove(tmp)
