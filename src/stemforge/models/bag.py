"""A bag of models whose estimates the engine averages with per-source weights.

The bag only holds the members and their weights; applying it (chunking, averaging) is the
inference engine's job, so :meth:`ModelBag.forward` raises.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .base import Segment


class BagError(ValueError):
    """The members of a bag do not fit together, or the weights do not fit the members."""


def _signature(model: nn.Module) -> dict[str, object]:
    return {"sources": list(model.sources), "samplerate": model.samplerate,
            "audio_channels": model.audio_channels}


def _check_members_agree(models: Sequence[nn.Module]) -> None:
    expected = _signature(models[0])
    for index, other in enumerate(models[1:], start=1):
        for attr, value in _signature(other).items():
            if value != expected[attr]:
                raise BagError(f"bag member {index} has {attr}={value!r} but member 0 has "
                               f"{attr}={expected[attr]!r}; all models of a bag must agree")


def _checked_weights(weights: Sequence[Sequence[float]] | None, num_models: int,
                     num_sources: int) -> list[list[float]]:
    if weights is None:
        return [[1.0] * num_sources for _ in range(num_models)]
    if len(weights) != num_models:
        raise BagError(f"bag has {num_models} models but {len(weights)} weight rows")
    for index, row in enumerate(weights):
        if len(row) != num_sources:
            raise BagError(f"weight row {index} has {len(row)} entries, expected one per source "
                           f"({num_sources})")
    return [[float(w) for w in row] for row in weights]


def _override_segment(model: nn.Module, segment: Segment) -> None:
    """Set the bag's segment on ``model`` the way Demucs' BagOfModels does (in place).

    Models with a maximum input length (HTDemucs) only accept a segment that does not exceed
    their own; for the others the bag's segment always wins.
    """
    limited = getattr(model, "max_segment", None) is not None
    if not limited or segment <= model.segment:
        model.segment = segment


class ModelBag(nn.Module):
    """Several separation models with per-model, per-source weights.

    ``models`` must agree on ``sources``, ``samplerate`` and ``audio_channels``.
    ``weights[i][j]`` weighs model ``i``'s estimate of source ``j`` (default all ones).
    ``segment`` (seconds), when given, overrides the members' ``segment`` in place (see
    :func:`_override_segment`).
    """

    def __init__(self, models: Sequence[nn.Module],
                 weights: Sequence[Sequence[float]] | None = None,
                 segment: Segment | None = None) -> None:
        super().__init__()
        if len(models) == 0:
            raise BagError("a bag needs at least one model")
        _check_members_agree(models)
        first = models[0]
        self.sources: list[str] = list(first.sources)
        self.samplerate: int = first.samplerate
        self.audio_channels: int = first.audio_channels
        self.weights = _checked_weights(weights, len(models), len(self.sources))
        if segment is not None:
            for model in models:
                _override_segment(model, segment)
        self.segment = segment  # the bag's override (None: each member keeps its own)
        self.models = nn.ModuleList(models)

    @property
    def max_segment(self) -> float | None:
        """Shortest ``max_segment`` among the members (seconds), or ``None`` if none is limited."""
        limits = [m.max_segment for m in self.models if getattr(m, "max_segment", None) is not None]
        return min(float(limit) for limit in limits) if limits else None

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("a ModelBag is applied by the inference engine "
                                  "(stemforge.inference), not called directly")
