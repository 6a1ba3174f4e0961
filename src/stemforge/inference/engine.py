"""One separation pass: a model walked over a signal in segments, producing finished blocks.

A *pass* is one model applied to one (possibly time-shifted) view of the normalised mix. It
yields ``(S, C, n)`` blocks left to right as soon as they are final, so a caller can write stems
while the rest of the track is still being computed.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, TypeVar

import torch

from .chunking import (DelayedSource, InputLength, SegmentPlan, SignalSource, center_trim,
                       model_input_length, read_with_context)
from .overlap_add import OverlapAdd, transition_weights

T = TypeVar("T")
R = TypeVar("R")

SegmentCallback = Callable[[int], None]
"""Called with the number of signal samples a segment covered, after it is computed."""


@dataclass(frozen=True)
class PassSettings:
    """How to cut a signal for a pass.

    ``segment``: seconds per segment, overriding the model's own (None: the model's);
    ``split=False`` runs the model on the whole signal at once.
    """

    split: bool = True
    overlap: float = 0.25
    segment: Optional[float] = None
    transition_power: float = 1.0
    batch_size: int = 1
    """Segments stacked into one forward (fills a GPU; the output does not change)."""


ModelRunner = Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]
"""``runner(model, inputs (B, C, L)) -> (B, S, C, L')``: where and how a model is applied (see
:class:`stemforge.inference.device.DeviceRunner`)."""


def plan_for(model: torch.nn.Module, length: int, settings: PassSettings) -> SegmentPlan:
    """The segment plan Demucs would use for ``model`` on ``length`` samples."""
    if not settings.split:
        return SegmentPlan.whole(length)
    segment = settings.segment if settings.segment is not None else model.segment
    segment_length = int(model.samplerate * segment)
    return SegmentPlan.split(length, segment_length, settings.overlap)


def run_pass(model: torch.nn.Module, source: SignalSource, settings: PassSettings,
             runner: ModelRunner, on_segment: Optional[SegmentCallback] = None,
             pool: Optional[Executor] = None, lookahead: int = 0) -> Iterator[torch.Tensor]:
    """Separate ``source`` with ``model``; yields consecutive ``(S, C, n)`` blocks covering it.

    Segments go to the model ``settings.batch_size`` at a time. With a thread ``pool``, up to
    ``lookahead`` batches beyond the current one are computed in parallel; results are still
    accumulated in order, so the output does not change.
    """
    plan = plan_for(model, source.length, settings)
    input_length: InputLength = model_input_length(model, settings.segment)
    if plan.is_whole:
        weight = torch.ones(plan.segment_length)
    else:
        weight = transition_weights(plan.segment_length, settings.transition_power)
    accumulator = OverlapAdd(plan.length, weight)
    offsets = list(plan.offsets())

    def separate_batch(batch: list[int]) -> list[torch.Tensor]:
        chunks = [plan.chunk_length(offset) for offset in batch]
        inputs = [read_with_context(source, offset, chunk, input_length(chunk)) for offset, chunk in zip(batch, chunks)]
        outputs: list[torch.Tensor] = []
        for group in _runs_of_equal_length(inputs):
            outputs.extend(runner(model, group[0][None] if len(group) == 1 else torch.stack(group)))
        return [center_trim(output, chunk) for output, chunk in zip(outputs, chunks)]

    batches = [offsets[i:i + max(settings.batch_size, 1)] for i in range(0, len(offsets), max(settings.batch_size, 1))]
    index = 0
    for outputs in _in_order(separate_batch, batches, pool, lookahead):
        for output in outputs:
            accumulator.add(offsets[index], output)
            if on_segment is not None:
                on_segment(output.shape[-1])
            index += 1
            finished_upto = offsets[index] if index < len(offsets) else plan.length
            block = accumulator.pop(finished_upto)
            if block.shape[-1]:
                yield block


def _runs_of_equal_length(inputs: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Consecutive inputs of the same length, grouped so each group can be stacked."""
    runs: list[list[torch.Tensor]] = []
    for tensor in inputs:
        if runs and runs[-1][-1].shape == tensor.shape:
            runs[-1].append(tensor)
        else:
            runs.append([tensor])
    return runs


def _in_order(function: Callable[[T], R], items: list[T], pool: Optional[Executor],
              lookahead: int) -> Iterator[R]:
    """``function(item)`` for each item, in order; computed ahead on ``pool`` when given."""
    if pool is None or lookahead <= 0:
        for item in items:
            yield function(item)
        return
    pending: deque[Future] = deque()
    upcoming = iter(items)
    try:
        for item in upcoming:
            pending.append(pool.submit(function, item))
            if len(pending) > lookahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()


def run_shifted_pass(model: torch.nn.Module, source: SignalSource, delay: int, settings: PassSettings,
                     runner: ModelRunner, on_segment: Optional[SegmentCallback] = None,
                     pool: Optional[Executor] = None, lookahead: int = 0) -> Iterator[torch.Tensor]:
    """A pass over ``source`` delayed by ``delay`` samples, re-aligned to ``source``'s time axis."""
    blocks = run_pass(model, DelayedSource(source, delay), settings, runner, on_segment, pool, lookahead)
    return drop_leading(blocks, delay)


def drop_leading(blocks: Iterator[torch.Tensor], count: int) -> Iterator[torch.Tensor]:
    """Skip the first ``count`` samples of a stream of ``(..., n)`` blocks."""
    for block in blocks:
        if count >= block.shape[-1]:
            count -= block.shape[-1]
            continue
        yield block[..., count:]
        count = 0
