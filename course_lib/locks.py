"""Lock files: which process works in a folder, so that two never compute (or overwrite) the same results.

A lock is a small JSON file (`<out_dir>/.lock` for a sweep, `<out_dir>/pretrain/.lock` for a pre-training,
`<out_dir>/runs/<run>.lock` for one run) created exclusively and holding the pid, host, start time and command of
its holder. `hold(path)` takes it for the duration of a `with` block: when another live process holds it, it stops
at once with an `InUseError` naming that process, or with `wait=True` it waits until the lock is free (how several
`--one-run` processes share one pre-training). A lock left by a process that is gone (same host, pid no longer
running, or reused by a newer process) is stale: it is taken over, and a note on stderr says so. A lock from another
host cannot be checked and counts as held; the message says which file to delete if that process is gone.
Used by `preflight`; nothing here knows about networks or results.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import InUseError, StorageError

__all__ = ["Holder", "read_holder", "is_stale", "holder_if_live", "hold"]

_UNREADABLE_S = 10.0  # a lock file is written within milliseconds of its creation
_held: dict[str, int] = {}  # locks this process holds (resolved path -> depth): a nested `hold` is re-entrant


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: process id, host, what it does, when it started (Unix time), its command line."""

    pid: int
    host: str
    kind: str
    started: float
    command: str
    process_started: float | None = None  # the holder's own start time (detects a reused pid)

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on host {self.host} ({self.kind}, since {since}: {self.command})"


def _process_started(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # psutil missing, or no such process
        return None


def _command() -> str:
    """This process's command line, short: `python -m course_lib cifar --out runs/x`, `ipykernel_launcher.py ...`."""
    if not sys.argv or not sys.argv[0]:
        return "python"
    first = Path(sys.argv[0])
    program = f"python -m {first.parent.name}" if first.name == "__main__.py" else first.name
    return " ".join([program, *sys.argv[1:]])[:300]


def _me(kind: str) -> Holder:
    command = _command()
    return Holder(os.getpid(), socket.gethostname(), kind, time.time(), command, _process_started(os.getpid()))


def read_holder(path: Path) -> Holder | None:
    """The holder written in the lock file `path`; None when there is no such file. A file that does not parse
    (being written this instant, or damaged) is read again a few times, then counts as held by an unknown process."""
    for attempt in range(5):
        try:
            return Holder(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError):
            time.sleep(0.05 * (attempt + 1))
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return Holder(-1, socket.gethostname(), "unknown: an unreadable lock file", stat.st_mtime, "?")


def _alive(holder: Holder) -> bool:
    try:
        import psutil
    except ImportError:
        try:
            os.kill(holder.pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    try:
        process = psutil.Process(holder.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return holder.process_started is None or abs(process.create_time() - holder.process_started) < 1.0
    except psutil.NoSuchProcess:
        return False


def is_stale(holder: Holder) -> bool:
    """Whether a lock's holder is gone: on this host, with its pid not running (or running a newer process). An
    unreadable lock file (its writer died before finishing it) is stale once it is older than `_UNREADABLE_S`."""
    if holder.pid < 0:
        return time.time() - holder.started > _UNREADABLE_S
    return holder.host == socket.gethostname() and not _alive(holder)


def _is_mine(holder: Holder) -> bool:
    return holder.host == socket.gethostname() and holder.pid == os.getpid()


def _remove_if_unchanged(path: Path, holder: Holder) -> None:
    """Delete a stale lock unless another process replaced it meanwhile."""
    if read_holder(path) == holder:
        path.unlink(missing_ok=True)


def holder_if_live(path: Path) -> Holder | None:
    """The live holder of `path` other than this process, or None; a stale lock is removed (with a note)."""
    holder = read_holder(path)
    if holder is None or _is_mine(holder):
        return None
    if is_stale(holder):
        _remove_if_unchanged(path, holder)
        print(f"note: removed the stale lock {path} of {holder.describe()}: that process is no longer running",
              file=sys.stderr)
        return None
    return holder


def _create(path: Path, holder: Holder) -> bool:
    """Create the lock file exclusively with `holder` in it; False when it exists already."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as exc:
        raise StorageError(f"could not create the lock file {path}: {exc.strerror or exc}. Choose a writable out_dir "
                           "(--out, OUT_DIR).") from exc
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(holder), f)
    except OSError as exc:  # a full disk: leave no empty lock behind
        path.unlink(missing_ok=True)
        raise StorageError(f"could not write the lock file {path}: {exc.strerror or exc}. Free some space or choose "
                           "another out_dir (--out, OUT_DIR).") from exc
    return True


def _in_use(path: Path, holder: Holder, what: str, advice: str) -> InUseError:
    gone = "" if holder.host == socket.gethostname() else (
        f" That process runs on another host and cannot be checked from here: if it is no longer running, delete "
        f"{path}.")
    return InUseError(f"{what} is in use: {holder.describe()} holds {path}. Nothing was changed. {advice}{gone}")


@contextlib.contextmanager
def hold(path: str | Path, kind: str, *, what: str | None = None, advice: str = "", wait: bool = False,
         poll_s: float = 2.0) -> Iterator[None]:
    """Hold the lock file `path` for a `with` block (re-entrant within one process); it is removed at the end.

    Args:
        path: the lock file, e.g. `<out_dir>/.lock`.
        kind: what the holder does, in words ("a sweep"), shown to whoever finds the lock held.
        what: the thing locked, in words, for messages (default: the folder of `path`).
        advice: what to do when it is held, appended to the error.
        wait: wait while another live process holds it (polling every `poll_s` seconds) instead of stopping.

    Raises:
        InUseError: held by another live process (and `wait` is False); nothing was changed.
        StorageError: the lock file cannot be created (a read-only folder).
    """
    path = Path(path)
    key = str(path.absolute())
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    me, waited = _me(kind), False
    while not _create(path, me):
        holder = read_holder(path)
        if holder is None:
            continue  # released meanwhile
        if is_stale(holder):
            _remove_if_unchanged(path, holder)
            print(f"note: took over the stale lock {path} of {holder.describe()}: that process is no longer running",
                  file=sys.stderr, flush=True)
            continue
        if not wait:
            raise _in_use(path, holder, what or str(path.parent), advice)
        if not waited:
            print(f"waiting: {holder.describe()} holds {path}; this process goes on when it is done", file=sys.stderr,
                  flush=True)
            waited = True
        time.sleep(poll_s)
    _held[key] = 1
    try:
        yield
    finally:
        del _held[key]
        if read_holder(path) == me:
            path.unlink(missing_ok=True)
