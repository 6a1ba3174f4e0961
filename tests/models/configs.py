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
