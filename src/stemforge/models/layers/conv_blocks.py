"""Convolutional building blocks shared by the Demucs family.

``LayerScale`` (learnt per-channel residual scale), ``BLSTM`` (bidirectional LSTM applied on
overlapping chunks), ``LocalState`` (local attention with learnt distance decay), ``DConv`` (the
dilated residual branch of each encoder/decoder layer) and ``rescale_module`` (the weight-init
trick).
State-dict names match the reference implementation so official weights load unchanged.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from stemforge.models.layers.fused_dconv import (
    fusable_layer,
    fused_dconv_layer,
    usable_for,
)
from stemforge.models.layers.utils import frame_signal


class LayerScale(nn.Module):
    """Multiply a residual branch by a learnt per-channel scale, initialised to ``init``.

    ``channel_last=False``: ``x: (B, C, T)``;
    ``channel_last=True``: ``x: (..., C)`` (e.g. ``(T, B, C)``).
    """

    def __init__(self, channels: int, init: float = 0.0, channel_last: bool = False) -> None:
        super().__init__()
        self.channel_last = channel_last
        self.scale = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channel_last:
            return self.scale * x
        return self.scale[:, None] * x


class BLSTM(nn.Module):
    """Bidirectional LSTM over time with hidden size ``dim``, projected back to ``dim`` channels.

    When ``max_steps`` is set and the input is longer, the LSTM runs independently on chunks of
    ``max_steps`` frames overlapping by half, and the centres of the chunks are stitched back.
    ``x: (B, C, T)`` -> ``(B, C, T)``.
    """

    def __init__(self, dim: int, layers: int = 1, max_steps: int | None = None,
                 skip: bool = False) -> None:
        super().__init__()
        if max_steps is not None and max_steps % 4 != 0:
            raise ValueError("max_steps must be a multiple of 4")
        self.max_steps = max_steps
        self.skip = skip
        self.lstm = nn.LSTM(input_size=dim, hidden_size=dim, num_layers=layers, bidirectional=True)
        self.linear = nn.Linear(2 * dim, dim)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """LSTM + projection on ``x: (N, C, T)`` -> ``(N, C, T)``."""
        y = self.lstm(x.permute(2, 0, 1))[0]
        return self.linear(y).permute(1, 2, 0)

    def _run_chunked(self, x: torch.Tensor) -> torch.Tensor:
        """Chunked variant of :meth:`_run` for ``x: (B, C, T)`` with ``T > max_steps``."""
        batch, channels, length = x.shape
        width = self.max_steps
        hop = width // 2
        frames = frame_signal(x, width, hop)  # (B, C, F, W)
        n_frames = frames.shape[2]
        flat = frames.permute(0, 2, 1, 3).reshape(batch * n_frames, channels, width)
        out = self._run(flat).reshape(batch, n_frames, channels, width)
        margin = hop // 2
        pieces = []
        for index in range(n_frames):
            start = 0 if index == 0 else margin
            stop = width if index == n_frames - 1 else width - margin
            pieces.append(out[:, index, :, start:stop])
        return torch.cat(pieces, dim=-1)[..., :length]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.max_steps is not None and x.shape[-1] > self.max_steps:
            y = self._run_chunked(x)
        else:
            y = self._run(x)
        return y + x if self.skip else y


class LocalState(nn.Module):
    """Content-based local attention over time, without positional embedding.

    Each head's attention logits get a learnt penalty growing with the time distance
    (``ndecay`` decay rates mixed by a query-dependent gate); a frame never attends to itself.
    ``nfreqs > 0`` adds periodic (cosine) terms, kept for compatibility.
    ``x: (B, C, T)`` -> ``(B, C, T)`` (residual included).
    """

    def __init__(self, channels: int, heads: int = 4, nfreqs: int = 0, ndecay: int = 4) -> None:
        super().__init__()
        if channels % heads != 0:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.heads = heads
        self.nfreqs = nfreqs
        self.ndecay = ndecay
        self.content = nn.Conv1d(channels, channels, 1)
        self.query = nn.Conv1d(channels, channels, 1)
        self.key = nn.Conv1d(channels, channels, 1)
        if nfreqs:
            self.query_freqs = nn.Conv1d(channels, heads * nfreqs, 1)
        if ndecay:
            self.query_decay = nn.Conv1d(channels, heads * ndecay, 1)
            # start with a tiny decay (sigmoid near its bottom) so the initial window is wide
            with torch.no_grad():
                self.query_decay.weight.mul_(0.01)
                self.query_decay.bias.fill_(-2.0)
        self.proj = nn.Conv1d(channels + heads * nfreqs, channels, 1)

    def _heads(self, y: torch.Tensor) -> torch.Tensor:
        """``(B, H * D, T)`` -> ``(B, H, D, T)``."""
        return y.view(y.shape[0], self.heads, -1, y.shape[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, length = x.shape
        pos = torch.arange(length, device=x.device, dtype=x.dtype)
        distance = pos[:, None] - pos[None, :]  # (key t, query s)

        keys = self._heads(self.key(x))
        queries = self._heads(self.query(x))
        logits = torch.einsum("bhct,bhcs->bhts", keys, queries) / keys.shape[2] ** 0.5
        if self.nfreqs:
            periods = torch.arange(1, self.nfreqs + 1, device=x.device, dtype=x.dtype)
            freq_kernel = torch.cos(2 * math.pi * distance / periods[:, None, None])
            freq_gate = self._heads(self.query_freqs(x)) / self.nfreqs ** 0.5
            logits = logits + torch.einsum("fts,bhfs->bhts", freq_kernel, freq_gate)
        if self.ndecay:
            rates = torch.arange(1, self.ndecay + 1, device=x.device, dtype=x.dtype)
            decay_gate = torch.sigmoid(self._heads(self.query_decay(x))) / 2
            decay_kernel = -rates[:, None, None] * distance.abs() / self.ndecay ** 0.5
            logits = logits + torch.einsum("fts,bhfs->bhts", decay_kernel, decay_gate)

        self_mask = torch.eye(length, device=x.device, dtype=torch.bool)
        weights = torch.softmax(logits.masked_fill(self_mask, -100.0), dim=2)
        result = torch.einsum("bhts,bhct->bhcs", weights, self._heads(self.content(x)))
        if self.nfreqs:
            periodic = torch.einsum("bhts,fts->bhfs", weights, freq_kernel)
            result = torch.cat([result, periodic], dim=2)
        return x + self.proj(result.reshape(batch, -1, length))


class DConv(nn.Module):
    """Residual branch of dilated 1D convolutions, optionally with BLSTM and local attention.

    Each of the ``|depth|`` layers computes ``x + LayerScale(GLU(conv1x1(act(conv_k(x)))))`` in a
    space compressed ``compress`` times; dilation doubles per layer unless ``depth < 0``.
    ``x: (B, C, T)`` -> ``(B, C, T)``.
    """

    def __init__(self, channels: int, compress: float = 4, depth: int = 2, init: float = 1e-4,
                 norm: bool = True, attn: bool = False, heads: int = 4, ndecay: int = 4,
                 lstm: bool = False, gelu: bool = True, kernel: int = 3,
                 dilate: bool = True) -> None:
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError("DConv kernel must be odd")
        self.channels = channels
        self.compress = compress
        self.depth = abs(depth)
        # as in the reference, the sign of `depth` (not `dilate`) decides about dilation
        use_dilation = depth > 0
        hidden = int(channels / compress)
        self.layers = nn.ModuleList()
        for index in range(self.depth):
            dilation = 2 ** index if use_dilation else 1
            self.layers.append(self._make_layer(
                channels, hidden, kernel, dilation, norm, gelu, attn, heads, ndecay, lstm, init))

    @staticmethod
    def _make_layer(channels: int, hidden: int, kernel: int, dilation: int, norm: bool,
                    gelu: bool, attn: bool, heads: int, ndecay: int, lstm: bool,
                    init: float) -> nn.Sequential:
        def normalisation(dim: int) -> nn.Module:
            return nn.GroupNorm(1, dim) if norm else nn.Identity()

        # created in the reference's order so that a given seed gives identical initial weights
        head: list[nn.Module] = [
            nn.Conv1d(channels, hidden, kernel, dilation=dilation,
                      padding=dilation * (kernel // 2)),
            normalisation(hidden),
            nn.GELU() if gelu else nn.ReLU(),
        ]
        tail: list[nn.Module] = [
            nn.Conv1d(hidden, 2 * channels, 1),
            normalisation(2 * channels),
            nn.GLU(1),
            LayerScale(channels, init),
        ]
        attention = [LocalState(hidden, heads=heads, ndecay=ndecay)] if attn else []
        recurrent = [BLSTM(hidden, layers=2, max_steps=200, skip=True)] if lstm else []
        modules = head + recurrent + attention + tail
        return nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            parts = fusable_layer(layer)
            if parts is not None and usable_for(parts, x):
                x = fused_dconv_layer(parts, x)  # same maths, fewer passes (inference)
            else:
                x = x + layer(x)
        return x


_RESCALED = (nn.Conv1d, nn.ConvTranspose1d, nn.Conv2d, nn.ConvTranspose2d)


def rescale_conv(conv: nn.Module, reference: float) -> None:
    """Divide a convolution's weight and bias by ``sqrt(std(weight) / reference)``."""
    if conv.weight.is_meta:  # built for checkpoint loading: the stored values come later
        return
    with torch.no_grad():
        factor = (conv.weight.std() / reference) ** 0.5
        conv.weight.div_(factor)
        if conv.bias is not None:
            conv.bias.div_(factor)


def rescale_module(module: nn.Module, reference: float) -> None:
    """Apply :func:`rescale_conv` to every (transposed) convolution in ``module``."""
    for sub in module.modules():
        if isinstance(sub, _RESCALED):
            rescale_conv(sub, reference)
