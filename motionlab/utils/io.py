"""Small file helpers shared by training, evaluation and caching."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; on success it is renamed onto ``path``.

    A crash or an exception inside the block leaves ``path`` as it was (and no temporary file behind).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(handle)
    try:
        os.chmod(scratch, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        yield Path(scratch)
        os.replace(scratch, path)
    finally:
        if os.path.exists(scratch):
            os.remove(scratch)


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


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
