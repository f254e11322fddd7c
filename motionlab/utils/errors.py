"""Errors a user can fix, and the one way commands report them.

Expected failures (a bad input file, a bad config value, missing weights, no space left) derive from
:class:`MotionlabError` or are the operating system's path and disk errors; commands print them as one line,
``motionlab-<name>: error: <what, which file or key, what to do>``, and exit with 2. Anything else is a bug and keeps
its traceback. ``MOTIONLAB_DEBUG=1`` shows the traceback of expected failures too.
"""

from __future__ import annotations

import errno
import os

EXIT_USAGE = 2
# the disk is full / over quota / read-only: the user's to fix, named with the file
DISK_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "the file system is read-only"}
PATH_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


class MotionlabError(Exception):
    """A failure the user can fix; the message says what was wrong, with which file or key, and what to do."""


class InputError(MotionlabError, ValueError):
    """A bad value or file given to a command or a config."""


def check_positive(**values: float | None) -> None:
    """Each given value (None: not set) must be > 0; the error names the key."""
    for key, value in values.items():
        if value is not None and not value > 0:
            raise InputError(f"{key}={value}: must be > 0")


def _chain(error: BaseException):
    """``error`` and what it wraps (Hydra's instantiate and torch's writers wrap the errors they meet)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def disk_error(error: BaseException) -> OSError | None:
    """The full-disk / read-only error behind ``error``, if any."""
    return next((e for e in _chain(error) if isinstance(e, OSError) and e.errno in DISK_ERRNOS), None)


def expected_error(error: BaseException) -> BaseException | None:
    """The user-fixable error behind ``error``, or None for a bug."""
    return next((e for e in _chain(error) if isinstance(e, (MotionlabError, *PATH_ERRORS))
                 or (isinstance(e, OSError) and e.errno in DISK_ERRNOS)), None)


def describe(error: BaseException) -> str:
    """One line (or two) for an expected error."""
    if isinstance(error, OSError) and error.errno in DISK_ERRNOS:
        where = f" writing {error.filename}" if error.filename else ""
        remedy = "write elsewhere" if error.errno == errno.EROFS else "free space or write elsewhere"
        return f"{DISK_ERRNOS[error.errno]}{where}; {remedy} (nothing written was left half-done)"
    if isinstance(error, OSError) and error.filename is not None and not isinstance(error, MotionlabError):
        return f"{error.strerror or error}: {error.filename}"
    return str(error).strip() or type(error).__name__


def debug_enabled() -> bool:
    return os.environ.get("MOTIONLAB_DEBUG", "") not in ("", "0")
