"""Pure tensor helpers used by the Demucs-family layers, and their embedding initialisation."""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import nn
from torch.nn import functional as F


def center_trim(tensor: torch.Tensor, reference: torch.Tensor | int) -> torch.Tensor:
    """Trim the last axis of ``tensor`` symmetrically down to ``reference`` samples.

    ``reference`` is a length or a tensor whose last-axis size is used. When the excess is odd,
    the extra sample is removed on the right. ``tensor: (..., T)`` -> ``(..., T_ref)``.
    """
    target = reference.shape[-1] if isinstance(reference, torch.Tensor) else int(reference)
    excess = tensor.shape[-1] - target
    if excess < 0:
        raise ValueError(f"cannot trim a tensor of length {tensor.shape[-1]} to {target}")
    left = excess // 2
    return tensor[..., left:left + target]


def frame_signal(x: torch.Tensor, width: int, hop: int) -> torch.Tensor:
    """Cut ``x: (..., T)`` into ``ceil(T / hop)`` frames of ``width`` samples every ``hop``.

    The end is zero padded so that the last frame is complete. Returns ``(..., n_frames, width)``.
    """
    length = x.shape[-1]
    n_frames = math.ceil(length / hop)
    needed = (n_frames - 1) * hop + width
    x = F.pad(x, (0, needed - length))
    return x.unfold(-1, width, hop)


def unet_pass(x: torch.Tensor, encoder, decoder, middle=None) -> torch.Tensor:
    """The waveform U-Net walk shared by Demucs v2 and v3: encode keeping skips, optional middle
    (LSTM), decode adding each skip centre-trimmed to the current length. ``x: (B, C, T)``."""
    skips = []
    for encode in encoder:
        x = encode(x)
        skips.append(x)
    if middle is not None:
        x = middle(x)
    for decode in decoder:
        x = decode(x + center_trim(skips.pop(), x))
    return x


def drawn_embedding(num_embeddings: int, embedding_dim: int,
                    init: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> nn.Embedding:
    """An ``nn.Embedding`` drawn like its own init (standard normal, same RNG use), then mapped
    by ``init`` (a rescale, a smoothing...). On the meta device (checkpoint loading: the values
    come from the file) nothing is drawn or mapped: random and in-place ops on meta tensors fall
    into PyTorch's Python reference implementations, which import torch._dynamo / sympy
    (0.4-1 s of start-up)."""
    weight = torch.empty(num_embeddings, embedding_dim)
    if not weight.is_meta:
        weight.normal_()
        if init is not None:
            weight = init(weight)
    return nn.Embedding(num_embeddings, embedding_dim, _weight=weight)
