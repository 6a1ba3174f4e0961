"""Cross-domain transformer at the bottom of HTDemucs.

Two token streams meet here: the spectrogram branch ``x: (B, C, F, T1)`` (flattened to
``T1 * F`` tokens, time-major) and the waveform branch ``xt: (B, C, T2)``. Layers alternate
between self-attention within each stream and cross-attention from one stream to the other.

Parameter names (``layers.{i}.self_attn.in_proj_weight``, ``layers_t.{i}.cross_attn...``,
``norm_in``, ``gamma_1.scale``, ...) follow the reference so official weights load unchanged.
Only dense attention is implemented; the sparse (xformers) variants raise ``NotImplementedError``.
"""
from __future__ import annotations

import math
import random
from typing import Callable, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from stemforge.models.layers.conv_blocks import LayerScale
from stemforge.models.layers.fastops import activate_fresh
from stemforge.models.layers.utils import drawn_embedding

Activation = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------
# Positional embeddings
# --------------------------------------------------------------------------------------------

def _cos_sin_of_positions(pos: torch.Tensor, dim: int, max_period: float) -> torch.Tensor:
    """``[cos | sin]`` of ``pos`` at ``dim // 2`` geometric frequencies.

    ``pos: (T, B, 1)`` float -> ``(T, B, dim)``; the first half holds cosines, the second sines.
    """
    half = dim // 2
    exponents = torch.arange(half, device=pos.device).view(1, 1, -1) / (half - 1)
    phase = pos / (max_period ** exponents)
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


def sin_embedding(length: int, dim: int, shift: int = 0, device: torch.device | str = "cpu",
                  max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of positions ``shift .. shift + length - 1``: ``(length, 1, dim)``."""
    if dim % 2:
        raise ValueError(f"sinusoidal embedding needs an even dimension, got {dim}")
    pos = shift + torch.arange(length, device=device).view(-1, 1, 1)
    return _cos_sin_of_positions(pos, dim, max_period)


def sin_embedding_2d(dim: int, height: int, width: int, device: torch.device | str = "cpu",
                     max_period: float = 10000.0) -> torch.Tensor:
    """2D sinusoidal embedding: ``(1, dim, height, width)``.

    The first ``dim / 2`` channels encode the width (time) position, interleaving sin (even
    channels) and cos (odd channels); the last ``dim / 2`` encode the height (frequency) alike.
    """
    if dim % 4:
        raise ValueError(f"2D sinusoidal embedding needs a dimension divisible by 4, got {dim}")
    half = dim // 2
    freqs = torch.exp(torch.arange(0.0, half, 2) * -(math.log(max_period) / half))  # (half / 2,)
    pos_w = torch.arange(0.0, width)[:, None] * freqs  # (W, half / 2)
    pos_h = torch.arange(0.0, height)[:, None] * freqs  # (H, half / 2)
    emb = torch.zeros(dim, height, width)
    emb[0:half:2] = torch.sin(pos_w).t()[:, None, :]
    emb[1:half:2] = torch.cos(pos_w).t()[:, None, :]
    emb[half::2] = torch.sin(pos_h).t()[:, :, None]
    emb[half + 1::2] = torch.cos(pos_h).t()[:, :, None]
    return emb[None].to(device)


def cape_embedding(length: int, dim: int, batch_size: int, mean_normalize: bool, augment: bool,
                   max_global_shift: float = 0.0, max_local_shift: float = 0.0,
                   max_scale: float = 1.0, device: torch.device | str = "cpu",
                   max_period: float = 10000.0) -> torch.Tensor:
    """CAPE embedding (https://arxiv.org/abs/2106.03143): ``(length, batch_size, dim)`` float32.

    Positions are optionally centred; with ``augment`` (training only) each batch item gets a
    random global shift, per-position jitter and a random log-uniform scaling of the positions.
    Without ``augment`` the result is deterministic.
    """
    if dim % 2:
        raise ValueError(f"CAPE embedding needs an even dimension, got {dim}")
    pos = torch.arange(length, dtype=torch.float32).view(-1, 1, 1).repeat(1, batch_size, 1)
    if mean_normalize:
        pos = pos - pos.mean(dim=0, keepdim=True)
    if augment:
        pos = _cape_augment(pos, max_global_shift, max_local_shift, max_scale)
    return _cos_sin_of_positions(pos.to(device), dim, max_period).float()


def _uniform(shape: Sequence[int], bound: float) -> torch.Tensor:
    """Samples of U(-bound, bound) in float64."""
    return (torch.rand(*shape, dtype=torch.float64) * 2 - 1) * bound


def _cape_augment(pos: torch.Tensor, max_global_shift: float, max_local_shift: float,
                  max_scale: float) -> torch.Tensor:
    """Random shift / jitter / scaling of ``pos: (T, B, 1)`` (float64 result)."""
    length, batch_size, _ = pos.shape
    delta = _uniform((1, batch_size, 1), max_global_shift)
    jitter = _uniform((length, batch_size, 1), max_local_shift)
    log_scale = _uniform((1, batch_size, 1), math.log(max_scale))
    return (pos.double() + delta + jitter) * torch.exp(log_scale)


class BoostedEmbedding(nn.Module):
    """Learnt position embedding stored scaled down by ``boost`` (a per-module learning-rate boost).

    ``pos: (T,)`` int -> ``(T, dim)``.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, scale: float = 1.0,
                 boost: float = 3.0) -> None:
        super().__init__()
        self.embedding = drawn_embedding(num_embeddings, embedding_dim,
                                         lambda weight: weight * (scale / boost))
        self.boost = boost

    @property
    def weight(self) -> torch.Tensor:
        return self.embedding.weight * self.boost

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        return self.embedding(pos) * self.boost


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------

class TokenGroupNorm(nn.GroupNorm):
    """GroupNorm over channel-last tokens ``x: (B, T, C)``; with one group it normalises each
    batch item over all of ``T`` and ``C``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_groups == 1 and x.dim() == 3:
            # one group: normalise each item over (T, C) in place of layout, no transposed copies
            y = F.layer_norm(x, x.shape[1:], eps=self.eps)
            return torch.addcmul(self.bias, y, self.weight) if self.affine else y
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def _make_norm(group_norm: int | bool, dim: int, eps: float) -> nn.Module:
    if group_norm:
        return TokenGroupNorm(int(group_norm), dim, eps=eps)
    return nn.LayerNorm(dim, eps=eps)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, T, H * D) -> (B, H, T, D)`` (a view)."""
    b, t, c = x.shape
    return x.view(b, t, heads, c // heads).transpose(1, 2)


def multihead_attention(attn: nn.MultiheadAttention, query: torch.Tensor,
                        key: torch.Tensor) -> torch.Tensor:
    """What ``attn(query, key, key, need_weights=False)[0]`` computes (batch first, no masks).

    The projections use ``attn``'s parameters directly and the attention itself runs through
    :func:`F.scaled_dot_product_attention` (fused kernels: no ``(T, S)`` weight matrix is kept
    per head), in one projection GEMM when ``query is key``.
    ``query: (B, T, C)``, ``key: (B, S, C)`` -> ``(B, T, C)``.
    """
    heads, dim = attn.num_heads, attn.embed_dim
    weight, bias = attn.in_proj_weight, attn.in_proj_bias
    if query is key:
        q, k, v = F.linear(query, weight, bias).chunk(3, dim=-1)
    else:
        q = F.linear(query, weight[:dim], None if bias is None else bias[:dim])
        k, v = F.linear(key, weight[dim:], None if bias is None else bias[dim:]).chunk(2, dim=-1)
    dropout = attn.dropout if attn.training else 0.0
    out = F.scaled_dot_product_attention(_split_heads(q, heads), _split_heads(k, heads),
                                         _split_heads(v, heads), dropout_p=dropout)
    batch, _, length, _ = out.shape
    out = out.transpose(1, 2).reshape(batch, length, dim)
    return F.linear(out, attn.out_proj.weight, attn.out_proj.bias)


def _resolve_activation(activation: str | Activation) -> Activation:
    if callable(activation):
        return activation
    if activation == "relu":
        return F.relu
    if activation == "gelu":
        return F.gelu
    raise ValueError(f"activation should be 'relu' or 'gelu', not {activation!r}")


def _residual_scale(dim: int, layer_scale: bool, init_values: float) -> nn.Module:
    if layer_scale:
        return LayerScale(dim, init_values, channel_last=True)
    return nn.Identity()


def _check_dense(sparse: bool) -> None:
    if sparse:
        raise NotImplementedError(
            "sparse attention (t_sparse_self_attn / t_sparse_cross_attn) is not supported: "
            "it needs xformers in the reference; official HTDemucs models use dense attention")


class _TransformerLayerBase(nn.Module):
    """Feed-forward block, residual scales and optional output norm shared by both layer kinds.

    Subclasses create their attention module and norms *before* calling ``_build_tail`` so that
    the parameter order matches the reference.
    """

    def _build_feedforward(self, d_model: int, dim_feedforward: int, dropout: float) -> None:
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)

    def _build_tail(self, d_model: int, norm_first: bool, norm_out: int | bool, layer_scale: bool,
                    init_values: float, dropout: float, activation: str | Activation) -> None:
        self.norm_first = norm_first
        self.norm_out: Optional[nn.Module] = None
        if norm_first and norm_out:
            self.norm_out = TokenGroupNorm(num_groups=int(norm_out), num_channels=d_model)
        self.gamma_1 = _residual_scale(d_model, layer_scale, init_values)
        self.gamma_2 = _residual_scale(d_model, layer_scale, init_values)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = _resolve_activation(activation)

    @staticmethod
    def _residual(x: torch.Tensor, scale: nn.Module, branch: torch.Tensor) -> torch.Tensor:
        """``x + scale(branch)``, fused into one pass when ``scale`` is a LayerScale."""
        if isinstance(scale, LayerScale):
            return torch.addcmul(x, scale.scale, branch)
        return x + scale(branch)

    def _feedforward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, T, C)`` -> ``(B, T, C)``."""
        hidden = self.dropout(activate_fresh(self.activation, self.linear1(x)))
        return self.dropout2(self.linear2(hidden))

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_out(x) if self.norm_out is not None else x


class SelfAttentionLayer(_TransformerLayerBase):
    """Transformer encoder layer (self-attention + feed-forward) on ``x: (B, T, C)``.

    With ``norm_first`` the norms precede each block (pre-norm) and an optional GroupNorm
    (``norm_out`` groups) follows the layer; otherwise the norms follow each residual sum.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: str | Activation = F.relu,
                 group_norm: int | bool = 0, norm_first: bool = False,
                 norm_out: int | bool = False, layer_norm_eps: float = 1e-5,
                 layer_scale: bool = False, init_values: float = 1e-4,
                 sparse: bool = False) -> None:
        super().__init__()
        _check_dense(sparse)
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self._build_feedforward(d_model, dim_feedforward, dropout)
        self.norm1 = _make_norm(group_norm, d_model, layer_norm_eps)
        self.norm2 = _make_norm(group_norm, d_model, layer_norm_eps)
        self._build_tail(d_model, norm_first, norm_out, layer_scale, init_values, dropout,
                         activation)

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout1(multihead_attention(self.self_attn, x, x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, T, C)`` -> ``(B, T, C)``."""
        if self.norm_first:
            x = self._residual(x, self.gamma_1, self._attend(self.norm1(x)))
            x = self._residual(x, self.gamma_2, self._feedforward(self.norm2(x)))
            return self._finish(x)
        x = self.norm1(self._residual(x, self.gamma_1, self._attend(x)))
        return self.norm2(self._residual(x, self.gamma_2, self._feedforward(x)))


class CrossAttentionLayer(_TransformerLayerBase):
    """Cross-attention + feed-forward: tokens ``q: (B, T, C)`` attend to ``k: (B, S, C)``.

    Pre-norm (``norm_first``) uses ``norm1`` on queries, ``norm2`` on keys and ``norm3`` before the
    feed-forward; post-norm uses ``norm1`` and ``norm2`` after the residual sums (``norm3`` unused).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: str | Activation = F.relu,
                 layer_norm_eps: float = 1e-5, layer_scale: bool = False,
                 init_values: float = 1e-4, norm_first: bool = False,
                 group_norm: int | bool = False, norm_out: int | bool = False,
                 sparse: bool = False) -> None:
        super().__init__()
        _check_dense(sparse)
        self.cross_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self._build_feedforward(d_model, dim_feedforward, dropout)
        self.norm1 = _make_norm(group_norm, d_model, layer_norm_eps)
        self.norm2 = _make_norm(group_norm, d_model, layer_norm_eps)
        self.norm3 = _make_norm(group_norm, d_model, layer_norm_eps)
        self._build_tail(d_model, norm_first, norm_out, layer_scale, init_values, dropout,
                         activation)

    def _attend(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return self.dropout1(multihead_attention(self.cross_attn, q, k))

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """``q: (B, T, C)``, ``k: (B, S, C)`` -> ``(B, T, C)``."""
        if self.norm_first:
            x = self._residual(q, self.gamma_1, self._attend(self.norm1(q), self.norm2(k)))
            x = self._residual(x, self.gamma_2, self._feedforward(self.norm3(x)))
            return self._finish(x)
        x = self.norm1(self._residual(q, self.gamma_1, self._attend(q, k)))
        return self.norm2(self._residual(x, self.gamma_2, self._feedforward(x)))


# --------------------------------------------------------------------------------------------
# The two-stream encoder
# --------------------------------------------------------------------------------------------

def _flatten_spectral(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, F, T) -> (B, T * F, C)`` with time as the outer token index."""
    b, c, fr, t = x.shape
    return x.permute(0, 3, 2, 1).reshape(b, t * fr, c)


def _unflatten_spectral(x: torch.Tensor, freqs: int) -> torch.Tensor:
    """Inverse of :func:`_flatten_spectral`: ``(B, T * F, C) -> (B, C, F, T)``."""
    b, tokens, c = x.shape
    return x.reshape(b, tokens // freqs, freqs, c).permute(0, 3, 2, 1)


class CrossTransformerEncoder(nn.Module):
    """Alternating self / cross attention over a spectrogram and a waveform token stream.

    Layer ``i`` is a self-attention layer in each branch when ``i % 2 == classic_parity``
    (``classic_parity = 1`` if ``cross_first`` else 0), otherwise each branch cross-attends to
    the other branch's output of the previous layer. Keyword arguments mirror the reference.
    """

    def __init__(
        self,
        dim: int,
        emb: str = "sin",
        hidden_scale: float = 4.0,
        num_heads: int = 8,
        num_layers: int = 6,
        cross_first: bool = False,
        dropout: float = 0.0,
        max_positions: int = 1000,
        norm_in: bool = True,
        norm_in_group: bool = False,
        group_norm: int = False,
        norm_first: bool = False,
        norm_out: bool = False,
        max_period: float = 10000.0,
        weight_decay: float = 0.0,
        lr: Optional[float] = None,
        layer_scale: bool = False,
        gelu: bool = True,
        sin_random_shift: int = 0,
        weight_pos_embed: float = 1.0,
        cape_mean_normalize: bool = True,
        cape_augment: bool = True,
        cape_glob_loc_scale: Sequence[float] = (5000.0, 1.0, 1.4),
        sparse_self_attn: bool = False,
        sparse_cross_attn: bool = False,
        mask_type: str = "diag",
        mask_random_seed: int = 42,
        sparse_attn_window: int = 500,
        global_window: int = 50,
        auto_sparsity: bool = False,
        sparsity: float = 0.95,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        if emb not in ("sin", "cape", "scaled"):
            raise ValueError(f"unknown positional embedding {emb!r} (sin, cape or scaled)")
        _check_dense(sparse_self_attn or sparse_cross_attn)
        self.num_layers = num_layers
        self.classic_parity = 1 if cross_first else 0
        self.emb = emb
        self.max_period = max_period
        self.weight_decay = weight_decay
        self.lr = lr
        self.weight_pos_embed = weight_pos_embed
        self.sin_random_shift = sin_random_shift
        self.cape_mean_normalize = cape_mean_normalize
        self.cape_augment = cape_augment
        self.cape_glob_loc_scale = list(cape_glob_loc_scale)
        if emb == "scaled":
            self.position_embeddings = BoostedEmbedding(max_positions, dim, scale=0.2)

        self.norm_in, self.norm_in_t = self._input_norms(dim, norm_in, norm_in_group)
        common = dict(d_model=dim, nhead=num_heads, dim_feedforward=int(dim * hidden_scale),
                      dropout=dropout, activation=F.gelu if gelu else F.relu,
                      group_norm=group_norm, norm_first=norm_first, norm_out=norm_out,
                      layer_scale=layer_scale)
        self.layers = nn.ModuleList()  # spectrogram branch
        self.layers_t = nn.ModuleList()  # waveform branch
        for idx in range(num_layers):
            kind = SelfAttentionLayer if self._is_self_layer(idx) else CrossAttentionLayer
            self.layers.append(kind(**common))
            self.layers_t.append(kind(**common))

    @staticmethod
    def _input_norms(dim: int, norm_in: bool, norm_in_group: int | bool
                     ) -> tuple[nn.Module, nn.Module]:
        if norm_in:
            return nn.LayerNorm(dim), nn.LayerNorm(dim)
        if norm_in_group:
            return TokenGroupNorm(int(norm_in_group), dim), TokenGroupNorm(int(norm_in_group), dim)
        return nn.Identity(), nn.Identity()

    def _is_self_layer(self, idx: int) -> bool:
        return idx % 2 == self.classic_parity

    def forward(self, x: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: (B, C, F, T1)`` spectral features, ``xt: (B, C, T2)`` waveform features.

        Returns both streams with unchanged shapes.
        """
        _, channels, freqs, frames = x.shape
        pos_2d = self._cached(("2d", channels, freqs, frames, x.device), lambda: _flatten_spectral(
            sin_embedding_2d(channels, freqs, frames, x.device, self.max_period)))
        x = self._add_position(self.norm_in(_flatten_spectral(x)), pos_2d)

        batch, _, length = xt.shape
        pos_1d = self._time_embedding(length, batch, channels, x.device).transpose(0, 1)
        xt = self._add_position(self.norm_in_t(xt.transpose(1, 2)), pos_1d)

        for idx in range(self.num_layers):
            if self._is_self_layer(idx):
                x, xt = self.layers[idx](x), self.layers_t[idx](xt)
            else:
                x, xt = self.layers[idx](x, xt), self.layers_t[idx](xt, x)

        return _unflatten_spectral(x, freqs), xt.transpose(1, 2)

    def _add_position(self, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """``tokens + weight_pos_embed * pos`` (one fused pass)."""
        pos = pos.to(tokens.dtype)
        if self.weight_pos_embed == 1:
            return tokens + pos
        return torch.add(tokens, pos, alpha=self.weight_pos_embed)

    def _cached(self, key: tuple, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Deterministic positional embeddings, computed once per shape and device (in eval
        mode; they are not parameters, and the cache is not part of the state)."""
        if self.training:
            return make()
        cache = self.__dict__.setdefault("_embedding_cache", {})
        if key not in cache:
            if len(cache) >= 8:
                cache.clear()
            cache[key] = make()
        return cache[key]

    def _time_embedding(self, length: int, batch: int, dim: int,
                        device: torch.device) -> torch.Tensor:
        """Positional embedding of the waveform tokens: ``(length, B or 1, dim)``."""
        if self.emb == "sin":
            # Like the reference, draw the shift from Python's `random` (in eval mode too).
            shift = random.randrange(self.sin_random_shift + 1)
            return self._cached(("1d", length, dim, shift, device), lambda: sin_embedding(
                length, dim, shift=shift, device=device, max_period=self.max_period))
        if self.emb == "cape":
            augment = self.training and self.cape_augment
            glob, loc, scale = self.cape_glob_loc_scale
            return cape_embedding(length, dim, batch, mean_normalize=self.cape_mean_normalize,
                                  augment=augment, max_global_shift=glob, max_local_shift=loc,
                                  max_scale=scale, device=device, max_period=self.max_period)
        pos = torch.arange(length, device=device)
        return self.position_embeddings(pos)[:, None]

    def make_optim_group(self) -> dict:
        """Optimizer parameter group with this module's weight decay (and learning rate)."""
        group: dict = {"params": list(self.parameters()), "weight_decay": self.weight_decay}
        if self.lr is not None:
            group["lr"] = self.lr
        return group
