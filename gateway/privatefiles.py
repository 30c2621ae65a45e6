"""Files that hold secrets (keys, the database, the config): created 0600, refused if exposed."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


class ExposedFileError(Exception):
    """A file holding secrets can be read or written by its group or by others."""


def create_private(path: Path, data: bytes = b"") -> bool:
    """Create ``path`` owner-only with ``data``; False (file untouched) if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return True


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` owner-only, replacing it whole (a 0600 temp file renamed over it)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def exposure(path: Path) -> str | None:
    """What to fix if group or others can access ``path``; None if not (or if it is missing)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"{path} must not be accessible by group or others (chmod 600 {path})"
    return None


def require_private(*paths: Path) -> None:
    """Raise ExposedFileError for the first of ``paths`` that others can access."""
    for path in paths:
        problem = exposure(path)
        if problem is not None:
            raise ExposedFileError(problem)
