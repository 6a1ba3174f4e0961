"""Sample-rate conversion with soxr (high quality, the library the field trusts)."""
from __future__ import annotations

import numpy as np


def resample(wav: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample ``wav: (C, T)`` float32 from ``from_rate`` to ``to_rate``; returns ``(C, T')``."""
    if from_rate == to_rate:
        return wav
    import soxr

    out = soxr.resample(np.ascontiguousarray(wav.T), from_rate, to_rate, quality="HQ")
    return np.ascontiguousarray(out.T, dtype=np.float32)
