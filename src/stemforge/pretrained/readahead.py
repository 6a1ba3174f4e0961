"""Model files read into memory in a background thread while the CLI is still importing torch.

``import torch`` keeps one core busy for 1-1.5 s while the other is idle, and loading an official
checkpoint then spends ~0.3 s more reading its 170 MB, checking the CRC of every zip member and
its sha256 (htdemucs: ``Separator`` init 0.48 s). :func:`start` begins that work before torch is
imported; it is torch-free (file reads, ``hashlib`` and ``zlib`` release the GIL on large
buffers). The checkpoint reader then takes the bytes with :func:`claim` (its tensors are views
of them: no second copy) and the checksum check takes :func:`sha256`. A file whose size or
modification time changed since, or whose read failed, is simply read again the normal way:
the read-ahead never changes what is loaded, only when the bytes were read.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import zipfile
import zlib
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

logger = logging.getLogger(__name__)

_BLOCK = 1 << 22  # bytes per read (and hash update)
ZIP_MAGIC = b"PK\x03\x04"
"""The signature that starts a zip archive and each of its local file headers."""

PathLike = str | os.PathLike


@dataclass(frozen=True)
class FileContent:
    """A whole file in memory, with its sha256 and the zip members whose CRC-32 matched."""

    data: bytearray
    sha256: str
    crc_checked: frozenset[str]

    def open(self) -> MemoryFile:
        return MemoryFile(self.data)


class MemoryFile:
    """A read-only, seekable file over a buffer (what ``zipfile`` needs), which can also hand
    out zero-copy views of its bytes."""

    def __init__(self, buffer: bytearray) -> None:
        self._buffer = buffer
        self._view = memoryview(buffer)
        self._position = 0

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: len(self._view)}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def read(self, size: Optional[int] = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._position + size)
        chunk = bytes(self._view[self._position:end])
        self._position = max(self._position, end)
        return chunk

    def readline(self, size: Optional[int] = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._position + size)
        newline = self._buffer.find(b"\n", self._position, end)
        return self.read(end - self._position if newline < 0 else newline + 1 - self._position)

    def readinto(self, buffer: bytearray | memoryview) -> int:
        chunk = self._view[self._position:self._position + len(buffer)]
        buffer[:len(chunk)] = chunk
        self._position += len(chunk)
        return len(chunk)

    def view(self, offset: int, size: int) -> memoryview:
        """The bytes ``[offset, offset + size)`` without copying (shorter at the end of the buffer)."""
        return self._view[offset:offset + size]

    def close(self) -> None:
        pass


def _signature(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def read_file(path: Path) -> FileContent:
    """Read ``path`` whole, hashing it as it comes, then check the CRC-32 of its zip members."""
    size = path.stat().st_size
    data = bytearray(size)
    view = memoryview(data)
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb", buffering=0) as file:
        while done < size:
            count = file.readinto(view[done:done + _BLOCK])
            if not count:
                break
            digest.update(view[done:done + count])
            done += count
        if done != size or file.read(1):
            raise OSError(f"{path} changed size while being read")
    return FileContent(data, digest.hexdigest(), _crc_checked_members(data))


def _crc_checked_members(data: bytearray) -> frozenset[str]:
    """Names of the stored (uncompressed) zip members whose CRC-32 matches; empty for a file that
    is not a readable zip archive (the loader then reports whatever is wrong)."""
    if not data.startswith(ZIP_MAGIC):
        return frozenset()
    file = MemoryFile(data)
    checked = set()
    try:
        with zipfile.ZipFile(file) as archive:  # type: ignore[arg-type]
            for info in archive.infolist():
                offset = data_offset(info, file.view(info.header_offset, LOCAL_HEADER_SIZE))
                if offset is None or info.compress_type != zipfile.ZIP_STORED:
                    continue
                member = file.view(offset, info.file_size)
                if len(member) == info.file_size and zlib.crc32(member) == info.CRC:
                    checked.add(info.filename)
    except (zipfile.BadZipFile, ValueError, OSError):
        return frozenset()
    return frozenset(checked)


LOCAL_HEADER_SIZE = 30
"""Bytes in the fixed part of a zip local file header."""


def data_offset(info: zipfile.ZipInfo, header: bytes | memoryview) -> Optional[int]:
    """Where a member's data starts, from the ``LOCAL_HEADER_SIZE`` bytes at its
    ``header_offset``; ``None`` if they are not a local file header."""
    if len(header) != LOCAL_HEADER_SIZE or bytes(header[:4]) != ZIP_MAGIC:
        return None
    name_length = int.from_bytes(header[26:28], "little")
    extra_length = int.from_bytes(header[28:30], "little")
    return info.header_offset + LOCAL_HEADER_SIZE + name_length + extra_length


class ReadAhead:
    """Background reads of whole files, claimed later by path (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[Path, tuple[tuple[int, int], Future[FileContent]]] = {}
        self._digests: dict[Path, tuple[tuple[int, int], str]] = {}

    def start(self, paths: Iterable[PathLike]) -> None:
        """Begin reading ``paths`` (one daemon thread, in order). Missing files are skipped."""
        queued: list[tuple[Path, Future[FileContent]]] = []
        with self._lock:
            for path in paths:
                key = Path(path).resolve()
                try:
                    signature = _signature(key)
                except OSError:
                    continue
                if key in self._jobs:
                    continue
                future: Future[FileContent] = Future()
                self._jobs[key] = (signature, future)
                queued.append((key, future))
        if queued:
            threading.Thread(target=_run, args=(queued,), name="stemforge-readahead",
                             daemon=True).start()

    def claim(self, path: PathLike) -> Optional[FileContent]:
        """The content of ``path`` if it was read ahead and is unchanged (waits for the read to
        finish); the read-ahead then forgets the bytes (the caller owns them)."""
        key = Path(path).resolve()
        with self._lock:
            job = self._jobs.pop(key, None)
        content = _result(key, job)
        if content is not None and job is not None:
            with self._lock:
                self._digests[key] = (job[0], content.sha256)
        return content

    def sha256(self, path: PathLike) -> Optional[str]:
        """The hex sha256 of ``path`` if it was read ahead and is unchanged (waits for the read)."""
        key = Path(path).resolve()
        with self._lock:
            job = self._jobs.get(key)
            known = self._digests.get(key)
        if job is not None:
            content = _result(key, job)
            return None if content is None else content.sha256
        if known is not None and _unchanged(key, known[0]):
            return known[1]
        return None

    def clear(self) -> None:
        """Forget every file not claimed yet (its bytes are freed once its read finishes)."""
        with self._lock:
            self._jobs.clear()
            self._digests.clear()


def _run(queued: list[tuple[Path, Future[FileContent]]]) -> None:
    for path, future in queued:
        try:
            future.set_result(read_file(path))
        except Exception as exc:  # noqa: BLE001 - reported to whoever claims the file
            future.set_exception(exc)


def _unchanged(path: Path, signature: tuple[int, int]) -> bool:
    try:
        return _signature(path) == signature
    except OSError:
        return False


def _result(path: Path, job: Optional[tuple[tuple[int, int], Future[FileContent]]]
            ) -> Optional[FileContent]:
    if job is None:
        return None
    signature, future = job
    try:
        content = future.result()
    except Exception as exc:  # noqa: BLE001 - fall back to a normal read
        logger.debug("read-ahead of %s failed: %s", path, exc)
        return None
    return content if _unchanged(path, signature) else None


_READ_AHEAD = ReadAhead()


def start(paths: Iterable[PathLike]) -> None:
    """Begin reading ``paths`` in the background (process-wide read-ahead)."""
    _READ_AHEAD.start(paths)


def claim(path: PathLike) -> Optional[FileContent]:
    """Take the read-ahead content of ``path``, if any (see :meth:`ReadAhead.claim`)."""
    return _READ_AHEAD.claim(path)


def sha256(path: PathLike) -> Optional[str]:
    """The read-ahead sha256 of ``path``, if any (see :meth:`ReadAhead.sha256`)."""
    return _READ_AHEAD.sha256(path)


def clear() -> None:
    """Drop what the process-wide read-ahead still holds (see :meth:`ReadAhead.clear`)."""
    _READ_AHEAD.clear()
