"""A float32 sample spool on disk: append ``(C, n)`` blocks, read any range back.

Long tracks are kept here instead of in RAM: the separation engine reads model inputs from the
input spool and the stems are spooled before their final encoding (which needs their peak).
Reads use ``os.pread`` (no shared file position, no memory map), so resident memory stays small.
"""
from __future__ import annotations

import os
import tempfile
from typing import Optional

import numpy as np


class SampleSpool:
    """``channels``-channel float32 samples, stored interleaved in an unlinked temp file."""

    def __init__(self, channels: int, directory: Optional[str] = None):
        self.channels = channels
        self.length = 0
        self.peak = 0.0
        handle = tempfile.TemporaryFile(dir=directory)
        self._file = handle
        self._fd = handle.fileno()

    def append(self, block: np.ndarray) -> None:
        """Append ``block: (C, n)``."""
        if block.shape[0] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {block.shape[0]}")
        if block.shape[1] == 0:
            return
        frames = np.ascontiguousarray(block.T, dtype=np.float32)
        data, offset = memoryview(frames).cast("B"), self.length * self.channels * 4
        while data:  # pwrite may write less than asked
            written = os.pwrite(self._fd, data, offset)
            data, offset = data[written:], offset + written
        self.length += block.shape[1]
        self.peak = max(self.peak, float(frames.max()), -float(frames.min()))

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)`` with ``0 <= start <= stop <= length``: ``(C, stop - start)``."""
        if not 0 <= start <= stop <= self.length:
            raise ValueError(f"range [{start}, {stop}) outside the spool (length {self.length})")
        count = (stop - start) * self.channels
        data = os.pread(self._fd, count * 4, start * self.channels * 4)
        return np.frombuffer(data, dtype=np.float32).reshape(stop - start, self.channels).T

    def blocks(self, block_frames: int = 1 << 16):
        """Iterate over the whole spool in ``(C, n)`` blocks."""
        for start in range(0, self.length, block_frames):
            yield self.read(start, min(start + block_frames, self.length))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "SampleSpool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
