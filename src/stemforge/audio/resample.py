"""Sample-rate conversion with soxr (high quality, the library the field trusts)."""
from __future__ import annotations

import numpy as np


def resample(wav: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample ``wav: (C, T)`` float32 from ``from_rate`` to ``to_rate``; returns ``(C, T')``."""
    if from_rate == to_rate:
        return wav
    resampler = StreamResampler(from_rate, to_rate, wav.shape[0])
    return resampler.process(np.asarray(wav, dtype=np.float32), last=True)


class StreamResampler:
    """Block-by-block resampling of ``(C, n)`` float32 blocks (soxr's streaming interface).

    Feeding a signal in any block sizes then calling :meth:`flush` gives the same samples as
    resampling it in one go with :func:`resample`.
    """

    def __init__(self, from_rate: int, to_rate: int, channels: int):
        self.passthrough = from_rate == to_rate
        if not self.passthrough:
            import soxr

            self._stream = soxr.ResampleStream(from_rate, to_rate, channels, dtype="float32", quality="HQ")

    def process(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        if self.passthrough:
            return block
        out = self._stream.resample_chunk(np.ascontiguousarray(block.T, dtype=np.float32), last=last)
        return np.ascontiguousarray(out.T)

    def flush(self, channels: int) -> np.ndarray:
        return self.process(np.zeros((channels, 0), dtype=np.float32), last=True)
