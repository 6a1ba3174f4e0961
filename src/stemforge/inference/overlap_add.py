"""Overlap-add of segment outputs, with bounded memory.

Segments arrive in order of their start offset. Each is multiplied by a transition weight and
added into an accumulator; dividing by the summed weights gives the output. Because no later
segment starts before the current one, every sample left of the newest segment's start is final
and is handed out (:meth:`OverlapAdd.pop`) and forgotten: memory is one segment, not one track.
"""
from __future__ import annotations

import torch


def transition_weights(segment_length: int, power: float = 1.0) -> torch.Tensor:
    """Triangular weights peaking mid-segment, normalised to max 1: ``(segment_length,)``.

    ``1, 2, ..., n//2, n - n//2, ..., 2, 1`` divided by its maximum, raised to ``power`` (>= 1;
    larger gives sharper transitions). With overlap < 50% the cross-fade is linear.
    """
    if power < 1:
        raise ValueError("transition power must be >= 1")
    half = segment_length // 2
    rising = torch.arange(1, half + 1, dtype=torch.float32)
    falling = torch.arange(segment_length - half, 0, -1, dtype=torch.float32)
    weight = torch.cat([rising, falling])
    return (weight / weight.max()) ** power


class OverlapAdd:
    """Weighted accumulation of ``(S, C, n)`` segment outputs over a signal of ``length`` samples.

    ``weight: (segment_length,)`` is applied to every segment (truncated for the short last one).
    """

    def __init__(self, length: int, weight: torch.Tensor):
        self.length = length
        self.weight = weight
        self.emitted = 0                      # samples already handed out
        self._sum: torch.Tensor | None = None  # (S, C, buffered) weighted sum from `emitted`
        self._norm = torch.zeros(0, dtype=weight.dtype)  # (buffered,) summed weights

    def add(self, offset: int, chunk: torch.Tensor) -> None:
        """Accumulate ``chunk: (S, C, n)`` covering samples ``[offset, offset + n)``."""
        if offset < self.emitted:
            raise ValueError("segment starts before samples already emitted")
        n = chunk.shape[-1]
        weight = self.weight[:n].to(chunk.device, chunk.dtype)
        start = offset - self.emitted
        have = self._grow(start + n, chunk)
        if start > have:  # a gap no segment covered yet: zero, so that later sums start from 0
            self._sum[..., have:start].zero_()
        overlap = max(min(have - start, n), 0)  # samples already holding earlier segments' sums
        if overlap:
            self._sum[..., start:start + overlap] += weight[:overlap] * chunk[..., :overlap]
        # past them the sum is this segment alone: written, not added to zeros
        torch.mul(weight[overlap:], chunk[..., overlap:], out=self._sum[..., start + overlap:start + n])
        self._norm[start:start + n] += weight.to(self._norm.device, self._norm.dtype)

    def pop(self, upto: int) -> torch.Tensor:
        """Hand out the finished samples ``[emitted, upto)``: ``(S, C, upto - emitted)``."""
        upto = min(upto, self.length)
        count = upto - self.emitted
        if self._sum is None or count <= 0:
            return self._empty()
        if count > self._norm.shape[0]:
            raise ValueError("cannot pop samples no segment has covered")
        norm = self._norm[:count]
        if bool((norm <= 0).any()):
            raise ValueError("some samples received no segment")
        out = self._sum[..., :count] / norm.to(self._sum.device)
        self._sum = self._sum[..., count:]
        self._norm = self._norm[count:]
        self.emitted = upto
        return out

    def _grow(self, needed: int, like: torch.Tensor) -> int:
        """Make room for ``needed`` buffered samples; returns how many were there before (the
        new ones are left unset in ``_sum``, zero in ``_norm``)."""
        if self._sum is None:
            self._sum = like.new_empty(*like.shape[:-1], 0)
            self._norm = self._norm.to(like.device)
        have = self._sum.shape[-1]
        if needed > have:
            grown = self._sum.new_empty(*self._sum.shape[:-1], needed)
            grown[..., :have] = self._sum
            self._sum = grown
            self._norm = torch.cat([self._norm, self._norm.new_zeros(needed - have)])
        return have

    def _empty(self) -> torch.Tensor:
        if self._sum is None:
            return torch.zeros(0, 0, 0)
        return self._sum[..., :0]
