"""Small file helpers shared by training, evaluation and caching."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from motionlab.utils.errors import InputError, disk_error


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


# ".<name>.<pid>.<8 random>[.old].tmp[<suffix>]": the temporary files and folders of atomic_path / atomic_dir
SCRATCH_NAME = re.compile(r"^\.(?P<stem>.+)\.(?P<pid>\d+)\.[a-z0-9_]{8}(?P<old>\.old)?\.tmp(?:\.[^.]+)?$")


def remove_stale_scratch(folder: Path, stem: str | None = None, recursive: bool = False) -> list[Path]:
    """Delete the temporary files and folders that killed writers (their process is gone) left in ``folder`` (and its
    sub-folders with ``recursive``), of target ``stem`` only if given; returns them. A previous version that
    :func:`atomic_dir` had moved aside (``.old``) when the writer was killed before its new one took the place is the
    only copy: it is put back, not deleted."""
    removed = []
    for candidate in list(folder.rglob(".*") if recursive else folder.glob(".*")):
        match = SCRATCH_NAME.match(candidate.name)
        if match and (stem is None or match["stem"] == stem) and not _process_alive(int(match["pid"])):
            target = candidate.with_name(match["stem"])
            if match["old"] and not target.exists():
                candidate.rename(target)
                continue
            if candidate.is_dir():
                shutil.rmtree(candidate, ignore_errors=True)
            else:
                candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; on success it is renamed onto ``path``.

    A crash or an exception inside the block leaves ``path`` as it was (and no temporary file behind); a kill
    leaves the temporary file (named with the writer's process id), which the next write of ``path`` deletes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_scratch(path.parent, path.stem)
    handle, scratch = tempfile.mkstemp(prefix=f".{path.stem}.{os.getpid()}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(handle)
    try:
        os.chmod(scratch, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        yield Path(scratch)
        os.replace(scratch, path)
    except Exception as error:
        disk = disk_error(error)
        if disk is not None:  # name the file the user asked for, not the temporary one
            raise OSError(disk.errno, os.strerror(disk.errno), str(path)) from error
        raise
    finally:
        if os.path.exists(scratch):
            os.remove(scratch)


@contextmanager
def atomic_dir(path: str | os.PathLike, replaces: Callable[[Path], bool]) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path`` to fill; on success it takes ``path``'s place, and only then is
    a previous ``path`` removed. An existing ``path`` must satisfy ``replaces`` (what this writer itself writes), so
    a folder of other files is never deleted. A failure or kill leaves ``path`` as it was."""
    path = Path(path)
    if path.parent.is_dir():  # first, a previous version a killed writer had moved aside is put back
        remove_stale_scratch(path.parent, path.name)
    if path.exists() and not (path.is_dir() and (not any(path.iterdir()) or replaces(path))):
        raise FileExistsError(errno.EEXIST, "exists and is not a folder this command wrote; choose a new output folder", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    try:
        yield scratch
        if path.exists():
            previous = scratch.with_name(scratch.name[: -len(".tmp")] + ".old.tmp")
            path.rename(previous)
            scratch.rename(path)
            shutil.rmtree(previous)
        else:
            scratch.rename(path)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a file that appears at ``path`` (fsynced) only when the block succeeds."""
    with atomic_path(path) as scratch, open(scratch, mode) as file:
        yield file
        file.flush()
        os.fsync(file.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path) as file:
        file.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, payload) -> Path:
    return atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def check_output_path(path: str | os.PathLike, key: str, suffixes: tuple[str, ...]) -> Path:
    """Check an output path before any work: a known file type, not a folder, in a folder that exists or can be
    created and can be written; raises :class:`~motionlab.utils.errors.InputError` naming ``key``."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise InputError(f"{key}={path}: the output must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise InputError(f"{key}={path} is a folder; give a file name ending in {' or '.join(suffixes)}")
    existing = path.parent.resolve()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise InputError(f"{key}={path}: {existing} cannot be written to; choose another output folder")
    return path


def flatten(mapping: dict, prefix: str = "", separator: str = "/") -> dict:
    """Nested dicts to one level with joined keys (``{"a": {"b": 1}}`` -> ``{"a/b": 1}``)."""
    flat = {}
    for key, value in mapping.items():
        name = f"{prefix}{separator}{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(flatten(value, name, separator))
        else:
            flat[name] = value
    return flat


def user_cache_dir() -> Path:
    """Where motionlab keeps what it derives from a user's files (compiled ONNX graphs): ``$MOTIONLAB_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/motionlab``, else ``~/.cache/motionlab``; never beside the user's inputs."""
    if os.environ.get("MOTIONLAB_CACHE_DIR"):
        return Path(os.environ["MOTIONLAB_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "motionlab"


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_array(path: str | os.PathLike):
    """A ``.npy`` array read without pickle (an object array, which could run code, is refused), with one-line errors
    naming the file."""
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except ValueError as error:
        what = "holds Python objects, which are never unpickled" if "allow_pickle" in str(error) else f"is not a readable .npy array ({error})"
        raise InputError(f"{path} {what}; save a numeric array with numpy.save") from error
    except (OSError, EOFError) as error:
        raise InputError(f"{path} is not a readable .npy array ({type(error).__name__}: {error})") from error


def append_jsonl(path: str | os.PathLike, record: dict) -> Path:
    """Append ``record`` (with the time, ISO 8601, UTC) as one JSON line to ``path``: a run's metric history that later
    evaluations extend rather than replace. One ``write`` of a whole line, so a kill leaves whole lines only."""
    import datetime

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), **record}, sort_keys=False)
    with open(path, "a") as file:
        file.write(line + "\n")
    return path
