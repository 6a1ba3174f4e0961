"""Model configurations shared by tests and benchmarks."""
from __future__ import annotations

from fractions import Fraction
from typing import Any

OFFICIAL_HTDEMUCS_PARAMS = 41_984_456


def official_htdemucs_kwargs() -> dict[str, Any]:
    """Constructor kwargs of the official ``htdemucs`` model (reference defaults + these).

    Building ``HTDemucs(**official_htdemucs_kwargs())`` gives ``OFFICIAL_HTDEMUCS_PARAMS``
    parameters, a 7.8 s training segment at 44.1 kHz, stereo, four stems.
    """
    return dict(
        sources=["drums", "bass", "other", "vocals"],
        channels=48,
        bottom_channels=512,
        dconv_mode=3,
        t_layers=5,
        segment=Fraction(39, 5),
    )


def with_layer_scales(model, value: float | None):
    """``model`` with every LayerScale filled with ``value``: trained-like residual scales instead
    of the 1e-4 / 1e-3 init, which hides most residual branches and flatters approximate (fast)
    modes. ``None`` leaves the init."""
    import torch

    if value is not None:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith(".scale"):
                    param.fill_(value)
    return model
