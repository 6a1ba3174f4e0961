"""Encoder/decoder layers of the hybrid (time + frequency) Demucs models.

Shared by ``HDemucs`` (v3) and ``HTDemucs`` (v4). Frequency layers act on ``(B, C, F, T)``
spectrogram tensors with kernels along frequency only; time layers act on ``(B, C, T)`` waveforms.
Attribute names mirror the reference so that official state dicts load unchanged.
:func:`build_hybrid_unet` creates the encoder/decoder stacks of both models.
"""
from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from stemforge.models.layers.conv_blocks import DConv
from stemforge.models.layers.fastops import activate_fresh, apply_by_row_blocks, conv_transpose
from stemforge.models.layers.utils import drawn_embedding


def pad1d(x: torch.Tensor, paddings: tuple[int, int], mode: str = "constant",
          value: float = 0.0) -> torch.Tensor:
    """``F.pad`` on the last axis that also allows reflect padding of very short inputs.

    When the input is not longer than the reflect padding, it is first extended with zeros
    (on the right preferably) so that the reflection is defined.
    ``x: (..., T)`` -> ``(..., left + T + right)``.
    """
    left, right = paddings
    length = x.shape[-1]
    if mode == "reflect" and length <= max(left, right):
        extra = max(left, right) - length + 1
        extra_right = min(right, extra)
        extra_left = extra - extra_right
        x = F.pad(x, (extra_left, extra_right))
        left, right = left - extra_left, right - extra_right
    return F.pad(x, (left, right), mode, value)


class ScaledEmbedding(nn.Module):
    """Embedding whose stored weight is divided by ``scale`` (boosting its effective learning rate).

    ``smooth=True`` initialises it as a normalised cumulative sum, i.e. smooth across indices.
    ``x: (...)`` integer -> ``(..., embedding_dim)``.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, scale: float = 10.0,
                 smooth: bool = False) -> None:
        super().__init__()
        def smooth_and_scale(weight: torch.Tensor) -> torch.Tensor:
            if smooth:
                counts = torch.arange(1, num_embeddings + 1).to(weight)
                weight = weight.cumsum(dim=0) / counts.sqrt()[:, None]
            return weight / scale

        self.embedding = drawn_embedding(num_embeddings, embedding_dim, smooth_and_scale)
        self.scale = scale

    @property
    def weight(self) -> torch.Tensor:
        return self.embedding.weight * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(x) * self.scale


def _norm_factory(norm: bool, groups: int):
    def make(dim: int) -> nn.Module:
        return nn.GroupNorm(groups, dim) if norm else nn.Identity()
    return make


def _dconv_over_freqs(dconv: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """Apply a time DConv independently on every frequency row of ``y: (B, C, F, T)``
    (block by block, see :func:`apply_by_row_blocks`)."""
    return apply_by_row_blocks(dconv, y)


class HEncLayer(nn.Module):
    """One encoder layer: strided conv, norm, GELU, optional DConv, optional 1x1 conv + GLU.

    ``freq=True``: ``x: (B, Cin, F, T)`` -> ``(B, Cout, F / stride, T)`` (kernel along F).
    ``freq=False``: ``x: (B, Cin, T)`` (or ``(B, C, F, T)``, flattened)
    -> ``(B, Cout, ceil(T / stride))``.
    ``empty=True`` keeps only the first conv (used right before the two branches merge).
    ``pad=True`` pads by ``kernel_size // 4`` so the output length is input / stride.
    """

    def __init__(self, chin: int, chout: int, kernel_size: int = 8, stride: int = 4,
                 norm_groups: int = 1, empty: bool = False, freq: bool = True,
                 dconv: bool = True, norm: bool = True, context: int = 0,
                 dconv_kw: dict[str, Any] = {}, pad: bool = True,  # noqa: B006 (reference API)
                 rewrite: bool = True) -> None:
        super().__init__()
        make_norm = _norm_factory(norm, norm_groups)
        pad_amount = kernel_size // 4 if pad else 0
        self.freq = freq
        self.kernel_size = kernel_size
        self.stride = stride
        self.empty = empty
        self.norm = norm
        self.pad = pad_amount
        if freq:
            conv_cls: type[nn.Module] = nn.Conv2d
            self.conv = nn.Conv2d(chin, chout, (kernel_size, 1), (stride, 1), (pad_amount, 0))
        else:
            conv_cls = nn.Conv1d
            self.conv = nn.Conv1d(chin, chout, kernel_size, stride, pad_amount)
        self.rewrite = None
        self.dconv = None
        if empty:
            return
        self.norm1 = make_norm(chout)
        if rewrite:
            self.rewrite = conv_cls(chout, 2 * chout, 1 + 2 * context, 1, context)
            self.norm2 = make_norm(2 * chout)
        if dconv:
            self.dconv = DConv(chout, **dconv_kw)

    def forward(self, x: torch.Tensor, inject: torch.Tensor | None = None) -> torch.Tensor:
        """``inject`` (time-branch output with the same length) is added after the conv."""
        if not self.freq:
            if x.dim() == 4:
                x = x.reshape(x.shape[0], -1, x.shape[-1])
            remainder = x.shape[-1] % self.stride
            if remainder:
                x = F.pad(x, (0, self.stride - remainder))
        y = self.conv(x)
        if self.empty:
            return y
        if inject is not None:
            if inject.shape[-1] != y.shape[-1]:
                raise ValueError(f"cannot inject {tuple(inject.shape)} into {tuple(y.shape)}")
            if inject.dim() == 3 and y.dim() == 4:
                inject = inject[:, :, None]
            y = y + inject
        y = activate_fresh(F.gelu, self.norm1(y))  # y: this layer's conv output (+ inject)
        if self.dconv is not None:
            y = _dconv_over_freqs(self.dconv, y) if self.freq else self.dconv(y)
        if self.rewrite is not None:
            return F.glu(self.norm2(self.rewrite(y)), dim=1)
        return y


class HDecLayer(nn.Module):
    """One decoder layer: add skip, optional 1x1 conv + GLU, optional DConv, transposed conv.

    ``forward(x, skip, length)`` returns ``(out, pre)`` where ``pre`` is the tensor just before the
    transposed convolution. ``freq=True``: ``(B, Cin, F, T)`` -> ``(B, Cout, F * stride, T)``
    (minus padding); ``freq=False``: ``(B, Cin, T)`` -> ``(B, Cout, length)``.
    ``empty=True`` keeps only the transposed conv (and ``skip`` must be ``None``).
    """

    def __init__(self, chin: int, chout: int, last: bool = False, kernel_size: int = 8,
                 stride: int = 4, norm_groups: int = 1, empty: bool = False, freq: bool = True,
                 dconv: bool = True, norm: bool = True, context: int = 1,
                 dconv_kw: dict[str, Any] = {}, pad: bool = True,  # noqa: B006 (reference API)
                 context_freq: bool = True, rewrite: bool = True) -> None:
        super().__init__()
        make_norm = _norm_factory(norm, norm_groups)
        self.pad = kernel_size // 4 if pad else 0
        self.last = last
        self.freq = freq
        self.chin = chin
        self.empty = empty
        self.stride = stride
        self.kernel_size = kernel_size
        self.norm = norm
        self.context_freq = context_freq
        if freq:
            self.conv_tr = nn.ConvTranspose2d(chin, chout, (kernel_size, 1), (stride, 1))
        else:
            self.conv_tr = nn.ConvTranspose1d(chin, chout, kernel_size, stride)
        self.norm2 = make_norm(chout)
        self.rewrite = None
        self.dconv = None
        if empty:
            return
        if rewrite:
            self.rewrite = self._make_rewrite(chin, context)
            self.norm1 = make_norm(2 * chin)
        if dconv:
            self.dconv = DConv(chin, **dconv_kw)

    def _make_rewrite(self, chin: int, context: int) -> nn.Module:
        if not self.freq:
            return nn.Conv1d(chin, 2 * chin, 1 + 2 * context, 1, context)
        if self.context_freq:
            return nn.Conv2d(chin, 2 * chin, 1 + 2 * context, 1, context)
        return nn.Conv2d(chin, 2 * chin, (1, 1 + 2 * context), 1, (0, context))

    def _body(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        y = x + skip
        if self.rewrite is not None:
            y = F.glu(self.norm1(self.rewrite(y)), dim=1)
        if self.dconv is not None:
            y = _dconv_over_freqs(self.dconv, y) if self.freq else self.dconv(y)
        return y

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None,
                length: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.freq and x.dim() == 3:
            x = x.reshape(x.shape[0], self.chin, -1, x.shape[-1])
        if self.empty:
            if skip is not None:
                raise ValueError("an empty decoder layer takes no skip connection")
            y = x
        else:
            y = self._body(x, skip)
        z = self.norm2(conv_transpose(self.conv_tr, y))
        if self.freq:
            if self.pad:
                z = z[..., self.pad:-self.pad, :]
        else:
            z = z[..., self.pad:self.pad + length]
            if z.shape[-1] != length:
                raise ValueError(f"decoder produced {z.shape[-1]} samples, expected {length}")
        if not self.last:
            z = activate_fresh(F.gelu, z)  # z: this layer's transposed-conv output
        return z, y


class MultiWrap(nn.Module):
    """Replicate a frequency layer once per frequency band (``len(split_ratios) + 1`` bands).

    Bands are cut at ``ratio * F`` with overlaps chosen so that, were all replicas identical,
    the result would equal applying the original layer on the full spectrum.
    Encoder: ``x: (B, C, F, T)`` -> ``(B, C', F', T)``; decoder: returns ``(out, None)``.
    """

    def __init__(self, layer: HEncLayer | HDecLayer, split_ratios: Sequence[float]) -> None:
        super().__init__()
        if layer.norm or not layer.freq or not layer.pad:
            raise ValueError("MultiWrap needs a padded frequency layer without normalisation")
        self.split_ratios = split_ratios
        self.conv = isinstance(layer, HEncLayer)
        if not self.conv and layer.context_freq:
            raise ValueError("MultiWrap decoder layers need context_freq=False")
        self.layers = nn.ModuleList()
        for _ in range(len(split_ratios) + 1):
            replica = deepcopy(layer)
            if self.conv:
                replica.conv.padding = (0, 0)
            else:
                replica.pad = False
            for module in replica.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
            self.layers.append(replica)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None,
                length: int | None = None):
        if self.conv:
            return self._encode(x)
        return self._decode(x, skip), None

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        freqs = x.shape[2]
        ratios = list(self.split_ratios) + [1]
        start = 0
        outs = []
        for ratio, layer in zip(ratios, self.layers):
            pad = layer.kernel_size // 4
            first = start == 0
            if ratio == 1:
                limit = freqs
            else:
                limit = int(round(freqs * ratio))
                span = limit - start + (pad if first else 0)
                frames = round((span - layer.kernel_size) / layer.stride + 1)
                limit = start + (frames - 1) * layer.stride + layer.kernel_size
                if first:
                    limit -= pad
            if not start < limit <= freqs:
                raise ValueError(f"invalid frequency band [{start}, {limit}) of {freqs}")
            band = x[:, :, start:limit, :]
            if first:
                band = F.pad(band, (0, 0, pad, 0))
            if ratio == 1:
                band = F.pad(band, (0, 0, 0, pad))
            outs.append(layer(band))
            start = limit - layer.kernel_size + layer.stride
        return torch.cat(outs, dim=2)

    def _decode(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        freqs = x.shape[2]
        ratios = list(self.split_ratios) + [1]
        start = 0
        outs: list[torch.Tensor] = []
        last = False
        for ratio, layer in zip(ratios, self.layers):
            limit = freqs if ratio == 1 else int(round(freqs * ratio))
            last = layer.last
            layer.last = True  # no activation yet: overlapping parts are summed first
            try:
                out, _ = layer(x[:, :, start:limit], skip[:, :, start:limit], None)
            finally:
                layer.last = last
            stride = layer.stride
            if outs:
                bias = layer.conv_tr.bias.view(1, -1, 1, 1)
                outs[-1][:, :, -stride:] += out[:, :, :stride] - bias
                out = out[:, :, stride:]
            if ratio == 1:
                out = out[:, :, :-stride // 2, :]
            if start == 0:
                out = out[:, :, stride // 2:, :]
            outs.append(out)
            start = limit
        out = torch.cat(outs, dim=2)
        return out if last else activate_fresh(F.gelu, out)  # out: the new concatenation


@dataclass
class HybridUNetLayers:
    """The layer stacks of a hybrid U-Net, as :func:`build_hybrid_unet` makes them.

    ``encoder``/``tencoder`` run outermost first, ``decoder``/``tdecoder`` innermost first. The
    time branch (``t*``) only has a layer where the frequency branch has a frequency layer, and is
    empty for non-hybrid models. ``freq_emb`` is the frequency embedding after the first
    frequency encoder layer, if any.
    """

    encoder: nn.ModuleList = field(default_factory=nn.ModuleList)
    decoder: nn.ModuleList = field(default_factory=nn.ModuleList)
    tencoder: nn.ModuleList = field(default_factory=nn.ModuleList)
    tdecoder: nn.ModuleList = field(default_factory=nn.ModuleList)
    freq_emb: ScaledEmbedding | None = None


def _layer_kw(index: int, freqs: int, last_freq: bool, *, kernel_size: int, stride: int,
              time_stride: int, rewrite: bool, norm_starts: int, norm_groups: int,
              dconv_kw: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of the frequency-branch layers at depth ``index`` with ``freqs`` bins
    left: frequency convolutions while ``freqs > 1`` (the ``last_freq`` one spans all remaining
    bins, unpadded), then time convolutions of stride ``time_stride``."""
    freq = freqs > 1
    return {
        "kernel_size": (freqs if last_freq else kernel_size) if freq else time_stride * 2,
        "stride": stride if freq else time_stride,
        "freq": freq,
        "pad": not last_freq,
        "norm": index >= norm_starts,
        "rewrite": rewrite,
        "norm_groups": norm_groups,
        "dconv_kw": dconv_kw,
    }


def _dconv_kw_at(index: int, dconv_depth: int, dconv_comp: float, dconv_init: float,
                 dconv_attn: int | None, dconv_lstm: int | None) -> dict[str, Any]:
    """:class:`DConv` keyword arguments of the layers at depth ``index``; the ``lstm``/``attn``
    flags only when their first depth is given (otherwise the DConv defaults apply)."""
    kw: dict[str, Any] = {"depth": dconv_depth, "compress": dconv_comp, "init": dconv_init,
                          "gelu": True}
    if dconv_lstm is not None:
        kw["lstm"] = index >= dconv_lstm
    if dconv_attn is not None:
        kw["attn"] = index >= dconv_attn
    return kw


def build_hybrid_unet(*, audio_channels: int, n_sources: int, cac: bool, nfft: int, depth: int,
                      hybrid: bool, channels: int, channels_time: int | None, growth: float,
                      kernel_size: int, stride: int, time_stride: int, context: int,
                      context_enc: int, rewrite: bool, norm_starts: int, norm_groups: int,
                      dconv_mode: int, dconv_depth: int, dconv_comp: float, dconv_init: float,
                      multi_freqs: Sequence[float] | None, multi_freqs_depth: int,
                      freq_emb: float, emb_scale: float, emb_smooth: bool,
                      dconv_attn: int | None = None,
                      dconv_lstm: int | None = None) -> HybridUNetLayers:
    """Create the encoder/decoder layers of the frequency and (if ``hybrid``) time branches.

    The frequency branch reduces ``nfft // 2`` bins by ``stride`` per layer; the layer whose
    kernel covers all remaining bins (``last_freq``) collapses them to one, and the time branch's
    matching layer is reduced to its first conv (``empty``) so that the branches merge there.
    Deeper layers (single bin) are shared time convolutions. ``dconv_*`` configure the DConv
    residual branches (``dconv_mode``: 1 encoder, 2 decoder, 3 both; ``dconv_attn``/``dconv_lstm``:
    first depth using attention / an LSTM, ``None`` for the DConv default).
    Layers are created in the reference order, so the same seed gives the same initial weights.
    """
    layers = HybridUNetLayers()
    spec_mult = 2 if cac else 1  # complex as channels doubles spectrogram channels
    chin_t = audio_channels
    chin_z = chin_t * spec_mult
    chout_t = channels_time or channels
    chout_z = channels
    freqs = nfft // 2
    for index in range(depth):
        freq = freqs > 1
        last_freq = freq and freqs <= kernel_size
        kw = _layer_kw(index, freqs, last_freq, kernel_size=kernel_size, stride=stride,
                       time_stride=time_stride, rewrite=rewrite, norm_starts=norm_starts,
                       norm_groups=norm_groups,
                       dconv_kw=_dconv_kw_at(index, dconv_depth, dconv_comp, dconv_init,
                                             dconv_attn, dconv_lstm))
        if last_freq:
            chout_z = max(chout_t, chout_z)
            chout_t = chout_z
        kw_time = dict(kw, freq=False, kernel_size=kernel_size, stride=stride, pad=True)
        multi = bool(multi_freqs) and index < multi_freqs_depth
        kw_dec = dict(kw, context_freq=False) if multi else kw
        time_layers = hybrid and freq

        enc: nn.Module = HEncLayer(chin_z, chout_z, dconv=dconv_mode & 1, context=context_enc,
                                   **kw)
        if time_layers:
            layers.tencoder.append(HEncLayer(chin_t, chout_t, dconv=dconv_mode & 1,
                                             context=context_enc, empty=last_freq, **kw_time))
        if multi:
            enc = MultiWrap(enc, multi_freqs)
        layers.encoder.append(enc)

        if index == 0:  # the outermost decoders output every source
            chin_t = audio_channels * n_sources
            chin_z = chin_t * spec_mult
        dec: nn.Module = HDecLayer(chout_z, chin_z, dconv=dconv_mode & 2, last=index == 0,
                                   context=context, **kw_dec)
        if multi:
            dec = MultiWrap(dec, multi_freqs)
        if time_layers:
            layers.tdecoder.insert(0, HDecLayer(chout_t, chin_t, dconv=dconv_mode & 2,
                                                empty=last_freq, last=index == 0,
                                                context=context, **kw_time))
        layers.decoder.insert(0, dec)

        chin_t, chin_z = chout_t, chout_z
        chout_t, chout_z = int(growth * chout_t), int(growth * chout_z)
        if freq:
            freqs = 1 if freqs <= kernel_size else freqs // stride
        if index == 0 and freq_emb:
            layers.freq_emb = ScaledEmbedding(freqs, chin_z, smooth=emb_smooth, scale=emb_scale)
    return layers
