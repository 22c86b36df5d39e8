"""The course's expected failures: a wrong setting, a missing file. Each carries a message that says what to do.

`python -m course_lib <command>` prints such an error as one line `error: <message>` and exits with status 2; any
other exception is a bug and keeps its traceback. In a notebook they are ordinary exceptions with the same message.
"""

from __future__ import annotations

__all__ = ["CourseError", "ConfigError", "StoredResultError", "NotReadyError", "InUseError", "StorageError"]


class CourseError(Exception):
    """An expected failure whose message says what was wrong, where, and how to fix it."""


class ConfigError(CourseError, ValueError):
    """A setting that is unknown or out of range. Several problems of one config are reported together."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class StoredResultError(CourseError, ValueError):
    """A stored result in the out dir was made with other settings; nothing was overwritten."""


class NotReadyError(CourseError, ValueError):
    """A run cannot start: its out dir, data or start checkpoint is not usable. Every problem found before any work
    is listed in one message."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            listing = "\n".join(f"  {i}. " + p.replace("\n", "\n     ") for i, p in enumerate(self.problems, 1))
            message = f"{len(self.problems)} problems, nothing was started:\n{listing}"
        super().__init__(message)


class InUseError(CourseError):
    """Another live process holds the out dir (or the run) this process would write; nothing was changed."""


class StorageError(CourseError, OSError):
    """A result or checkpoint could not be written (a full disk, no permission); the message names the file, the
    free space, and says what was kept."""
