"""Training losses on stems: ``loss(estimate, target)`` with both ``(B, S, C, T)`` -> scalar."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch.nn import functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def per_source(estimate: torch.Tensor, target: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Loss per source ``(S,)``, averaged over batch, channels and time."""
    if kind == "l1":
        errors = (estimate - target).abs()
    elif kind in ("l2", "mse"):
        errors = (estimate - target).square()
    elif kind == "smooth_l1":
        errors = F.smooth_l1_loss(estimate, target, reduction="none", beta=0.1)
    else:
        raise ValueError(f"unknown loss {kind!r} (known: {', '.join(LOSSES)})")
    return errors.mean(dim=(0, 2, 3))


LOSSES = ("l1", "l2", "mse", "smooth_l1")


def build_loss(kind: str = "l1", weights: Optional[Sequence[float]] = None) -> LossFn:
    """The training loss: ``kind`` per source, then a (weighted) mean over sources."""
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r} (known: {', '.join(LOSSES)})")

    def loss(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        values = per_source(estimate, target, kind)
        if weights is None:
            return values.mean()
        w = torch.as_tensor(weights, dtype=values.dtype, device=values.device)
        return (values * w).sum() / w.sum()

    return loss
