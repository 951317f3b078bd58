"""Atomic file writes: a reader sees the old file or the whole new one, never a part.

Every write goes to a hidden temporary file in the target's own directory (``.<name>.<random>.tmp``, so that the
final ``os.replace`` is a rename within one file system), is flushed and ``fsync``-ed, given the mode an ordinary
``open`` would have given it (``0o666 & ~umask``: ``tempfile.mkstemp`` creates ``0o600``, which would hide
reports and results from the other people who read them), and then renamed over the target. On any exception,
``KeyboardInterrupt`` included, the temporary file is removed and the older version of the target, if any, is
left as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FILE_MODE", "atomic_savez", "atomic_write_bytes", "atomic_write_json", "atomic_write_text"]


def _current_umask() -> int:
    # The only portable way to read the umask is to set it; restore it at once. Done once, at import, so that
    # no write races another thread's file creation under a zero umask.
    mask = os.umask(0)
    os.umask(mask)
    return mask


# The mode of every file written here: what ``open(path, "w")`` would give under the process's umask.
FILE_MODE = 0o666 & ~_current_umask()


def _fsync_dir(directory: Path) -> None:
    # The rename itself must reach the disk, or a power loss can undo it; not every OS allows opening a dir.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write_with(path: str | os.PathLike[str], write: Any, *, sync_dir: bool) -> None:
    """Call ``write(fh)`` on a temporary binary file beside ``path``, then move it onto ``path``."""
    path = Path(path)
    directory = path.parent.absolute()
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir:
        _fsync_dir(directory)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, sync_dir: bool = False) -> None:
    """Write ``data`` to ``path`` atomically.

    Args:
        path: the target file; its directory is created if missing.
        data: the whole new content.
        sync_dir: also ``fsync`` the directory after the rename, so that the rename survives a power loss.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"data must be bytes, got {type(data).__name__}")
    _atomic_write_with(path, lambda fh: fh.write(data), sync_dir=sync_dir)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8",
                      sync_dir: bool = False) -> None:
    """Write ``text`` to ``path`` atomically, encoded with ``encoding`` (see :func:`atomic_write_bytes`)."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    atomic_write_bytes(path, text.encode(encoding), sync_dir=sync_dir)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, sync_dir: bool = False) -> None:
    """Write ``obj`` as strict JSON (``indent=2``, no ``NaN``/``Infinity`` tokens, a trailing newline) atomically.

    The document is serialized before any file is created, so an object that is not JSON (or holds a
    non-finite float) raises ``TypeError``/``ValueError`` and leaves the disk untouched.
    """
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    atomic_write_text(path, text, sync_dir=sync_dir)


def atomic_savez(path: str | os.PathLike[str], arrays: Mapping[str, Any], *, sync_dir: bool = False) -> None:
    """``numpy.savez`` (uncompressed) of ``arrays`` written atomically to ``path``.

    The file is readable with ``numpy.load(path, allow_pickle=False)`` when every array is numeric. ``path`` is
    used as given: unlike ``numpy.savez`` on a file name, no ``.npz`` suffix is appended.
    """
    arrays = {str(k): v for k, v in arrays.items()}
    _atomic_write_with(path, lambda fh: np.savez(fh, **arrays), sync_dir=sync_dir)
