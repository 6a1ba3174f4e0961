"""Combining passes: random shifts of one model and the members of a bag.

Demucs averages ``shifts`` randomly shifted passes per model, then takes a per-source weighted
average over the models of a bag. The same result is computed here block by block: every pass is
a stream of finished blocks, and :func:`weighted_merge` advances all streams in lockstep, so
memory stays bounded whatever the number of passes or the track length.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn


@dataclass(frozen=True)
class PassSpec:
    """One model applied with one time shift. ``weights: (S,)`` its share in each source."""

    model: nn.Module
    delay: int
    weights: torch.Tensor


def bag_members(model: nn.Module) -> list[tuple[nn.Module, list[float]]]:
    """``[(model, per-source weights)]`` for a bag, or ``[(model, ones)]`` for a single model."""
    members = getattr(model, "models", None)
    if members is None:
        return [(model, [1.0] * len(model.sources))]
    return list(zip(members, model.weights))


def shift_delays(model: nn.Module, shifts: int, rng: random.Random) -> list[int]:
    """Delays (samples) for ``shifts`` random shifts, drawn as Demucs draws them.

    Demucs pads by ``max_shift = 0.5 s`` and picks ``offset = randint(0, max_shift)``; the shifted
    signal is the mix delayed by ``max_shift - offset``. ``shifts=0`` means one unshifted pass.
    """
    if shifts <= 0:
        return [0]
    max_shift = int(0.5 * model.samplerate)
    return [max_shift - rng.randint(0, max_shift) for _ in range(shifts)]


def plan_passes(model: nn.Module, shifts: int, rng: random.Random) -> tuple[list[PassSpec], torch.Tensor]:
    """All passes for ``model`` (single or bag), and the per-source normaliser ``(S,)``.

    Shifts are drawn member after member, in the reference's order, so a seeded ``rng`` gives the
    reference's offsets for a reference run seeded with the same value.
    """
    passes: list[PassSpec] = []
    totals = torch.zeros(len(model.sources), dtype=torch.float64)
    for member, member_weights in bag_members(model):
        weights = torch.tensor(member_weights, dtype=torch.float64)
        delays = shift_delays(member, shifts, rng)
        for delay in delays:
            passes.append(PassSpec(member, delay, weights / len(delays)))
        totals += weights
    if bool((totals <= 0).any()):
        raise ValueError("every source needs a positive total weight in the bag")
    return passes, totals


def weighted_merge(streams: Sequence[Iterator[torch.Tensor]], weights: Sequence[torch.Tensor],
                   totals: torch.Tensor) -> Iterator[torch.Tensor]:
    """``sum_p weights[p][s] * stream_p / totals[s]``, block by block.

    Each stream yields ``(S, C, n)`` blocks of varying ``n``; all streams cover the same length.
    """
    buffers: list[torch.Tensor | None] = [None] * len(streams)
    while True:
        for index, stream in enumerate(streams):
            while buffers[index] is None or buffers[index].shape[-1] == 0:
                block = next(stream, None)
                if block is None:
                    return
                buffers[index] = block
        count = min(buffer.shape[-1] for buffer in buffers)
        yield _combine([buffer[..., :count] for buffer in buffers], weights, totals)
        buffers = [buffer[..., count:] for buffer in buffers]


def _combine(blocks: list[torch.Tensor], weights: Sequence[torch.Tensor], totals: torch.Tensor) -> torch.Tensor:
    if len(blocks) == 1 and bool((weights[0] == totals).all()):
        return blocks[0]
    out = torch.zeros_like(blocks[0])
    for block, weight in zip(blocks, weights):
        out += block * weight.to(block.dtype)[:, None, None]
    return out / totals.to(out.dtype)[:, None, None]
