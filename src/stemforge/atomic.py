"""Atomic file writes: a temporary file beside the destination, renamed into place when complete.

Shared by every writer in stemforge (stems, checkpoints, model files, JSON), so an interrupted run
never leaves a truncated file, and finished files get the usual permissions (not mkstemp's 0600).
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def new_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def temp_file_beside(path: Path, suffix: str = ".part") -> Path:
    """Create an empty hidden temporary file in ``path``'s folder (made if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(name, new_file_mode())
    return Path(name)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, on error delete it."""
    path = Path(path)
    tmp = temp_file_beside(path)
    try:
        yield tmp
        os.chmod(tmp, new_file_mode())  # some writers (safetensors) recreate the file as 0600
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
