"""Reading a signal in segments, with the context each model input needs.

A separation pass walks a signal from left to right in fixed-size segments. Each segment is handed
to the model padded to the model's input length with *real neighbouring samples* (centred; zeros
only past the ends of the signal), and the model output is centre-trimmed back to the segment.

Signals are read through :class:`SignalSource`, a random-access reader of ``(C, n)`` blocks that
returns zeros outside ``[0, length)``. The same engine therefore runs on an in-memory array, a
delayed view of it (random shifts), or — later — a file decoded block by block.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch.nn import functional as F


class SignalSource:
    """A ``(channels, length)`` signal read in blocks; samples outside ``[0, length)`` are zero.

    Subclasses implement :meth:`_read_inside` for ``0 <= start < stop <= length``.
    """

    channels: int
    length: int

    def _read_inside(self, start: int, stop: int) -> torch.Tensor:
        raise NotImplementedError

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Samples ``[start, stop)``: ``(channels, stop - start)``, zero-padded outside the signal."""
        inner_start, inner_stop = max(start, 0), min(stop, self.length)
        if inner_stop <= inner_start:
            return torch.zeros(self.channels, stop - start, dtype=self.dtype)
        block = self._read_inside(inner_start, inner_stop)
        if inner_start == start and inner_stop == stop:
            return block  # F.pad would copy it for nothing
        return F.pad(block, (inner_start - start, stop - inner_stop))

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32


class ArraySource(SignalSource):
    """An in-memory signal. ``signal: (C, T)``."""

    def __init__(self, signal: torch.Tensor):
        if signal.dim() != 2:
            raise ValueError(f"expected a (channels, samples) tensor, got shape {tuple(signal.shape)}")
        self.signal = signal
        self.channels, self.length = signal.shape

    def _read_inside(self, start: int, stop: int) -> torch.Tensor:
        return self.signal[:, start:stop]

    @property
    def dtype(self) -> torch.dtype:
        return self.signal.dtype


class DelayedSource(SignalSource):
    """``base`` delayed by ``delay`` samples: ``out[t] = base[t - delay]``, ``length = base.length + delay``.

    This is how a random time shift is applied: the shifted signal is separated, and its first
    ``delay`` output samples are dropped.
    """

    def __init__(self, base: SignalSource, delay: int):
        if delay < 0:
            raise ValueError("delay must be >= 0")
        self.base = base
        self.delay = delay
        self.channels = base.channels
        self.length = base.length + delay

    def _read_inside(self, start: int, stop: int) -> torch.Tensor:
        return self.base.read(start - self.delay, stop - self.delay)

    @property
    def dtype(self) -> torch.dtype:
        return self.base.dtype


@dataclass(frozen=True)
class SegmentPlan:
    """Where the segments of one pass over a signal of ``length`` samples start.

    Segments start every ``stride`` samples from 0; the last ones are shorter when they run past
    the end. With ``split=False`` there is one segment covering the whole signal.
    """

    length: int
    segment_length: int
    stride: int

    @classmethod
    def split(cls, length: int, segment_length: int, overlap: float) -> "SegmentPlan":
        """Overlapping segments of ``segment_length`` samples (Demucs' rule for the stride)."""
        if segment_length <= 0:
            raise ValueError("segment_length must be positive")
        if not 0 <= overlap < 1:
            raise ValueError("overlap must be in [0, 1)")
        stride = int((1 - overlap) * segment_length)
        if stride <= 0:
            raise ValueError("overlap too large for this segment length")
        return cls(length, segment_length, stride)

    @classmethod
    def whole(cls, length: int) -> "SegmentPlan":
        """A single segment covering the whole signal (``--no-split``)."""
        return cls(length, max(length, 1), max(length, 1))

    @property
    def is_whole(self) -> bool:
        return self.segment_length >= self.length and self.stride >= self.length

    def offsets(self) -> range:
        return range(0, self.length, self.stride)

    def chunk_length(self, offset: int) -> int:
        """Samples of the signal that the segment starting at ``offset`` covers."""
        return min(self.segment_length, self.length - offset)


InputLength = Callable[[int], int]


def model_input_length(model: torch.nn.Module, segment: Optional[float]) -> InputLength:
    """The rule mapping a chunk length to the model's input length, as Demucs applies it.

    Models bound to their training length (``max_segment`` is not None, i.e. HTDemucs) take
    ``segment`` seconds when the user overrides the segment; otherwise a model's own
    ``valid_length`` decides; models without one take the chunk as it is.
    """
    if getattr(model, "max_segment", None) is not None and segment is not None:
        fixed = int(segment * model.samplerate)
        return lambda length: fixed
    valid_length = getattr(model, "valid_length", None)
    if valid_length is not None:
        return valid_length
    return lambda length: length


def read_with_context(source: SignalSource, offset: int, chunk_length: int,
                      input_length: int) -> torch.Tensor:
    """The model input for the chunk ``[offset, offset + chunk_length)``.

    Returns ``(C, input_length)``: the chunk centred in real context, zeros past the signal ends.
    """
    extra = input_length - chunk_length
    if extra < 0:
        raise ValueError(f"model input length {input_length} is shorter than the chunk {chunk_length}")
    start = offset - extra // 2
    return source.read(start, start + input_length)


def center_trim(tensor: torch.Tensor, length: int) -> torch.Tensor:
    """Trim ``tensor (..., T)`` to ``(..., length)`` symmetrically (the extra sample goes on the right)."""
    extra = tensor.shape[-1] - length
    if extra < 0:
        raise ValueError("cannot trim to a longer length")
    if extra == 0:
        return tensor
    return tensor[..., extra // 2: tensor.shape[-1] - (extra - extra // 2)]
