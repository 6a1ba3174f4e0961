"""What the inference engine needs from a separation model.

Every model class (``HTDemucs``, ``HDemucs``, ``Demucs``, ``DemucsV2``, ...) is a ``torch.nn.Module``
whose ``forward(mix)`` maps ``mix: (B, C, T) float32`` at ``samplerate`` to
``(B, S, C, T')`` stems, where ``S = len(sources)``. Models never do I/O.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Protocol, Sequence, Union, runtime_checkable

import torch

Segment = Union[float, Fraction]


@runtime_checkable
class SeparationModel(Protocol):
    """Attributes a model exposes to the engine.

    - ``sources``: stem names, in output order.
    - ``samplerate``: the rate the model works at (Hz).
    - ``audio_channels``: channels of the input and of each stem.
    - ``segment``: seconds of audio the model is applied to at once (a bag may override it).
    - ``max_segment``: for models that cannot run on longer inputs than they were trained on
      (HTDemucs), that length in seconds; ``None`` otherwise.
    - ``valid_length(length)`` (optional): the input length the model wants for ``length`` samples;
      the engine pads the chunk with context to that length and centre-trims the output.
    """

    sources: Sequence[str]
    samplerate: int
    audio_channels: int
    segment: Segment

    @property
    def max_segment(self) -> float | None: ...

    def forward(self, mix: torch.Tensor) -> torch.Tensor: ...
