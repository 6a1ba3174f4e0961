"""Inference path of a DConv layer with fewer passes over memory (same maths).

A DConv layer computes ``x + LayerScale(GLU(GroupNorm(conv1x1(h))))`` with
``h = GELU(GroupNorm(conv_k(x)))`` in a space compressed ``compress`` times, the group norms having
one group (statistics over all channels and steps of a row). The 1x1 convolution expands the
``H`` hidden channels to ``2C``, so the plain path writes and re-reads the widest tensor of the
block four times (convolution, norm, GLU, scale) before the residual add.

Here the statistics of ``y = W h + b`` come from the ``H x H`` second moments of ``h`` (computed
in float64, so the variance does not suffer from cancellation), and the norm's affine map and the
LayerScale are folded into per-row weights: one batched matrix product writes the normalised
``2C`` channels, a sigmoid gates half of them in place and one ``addcmul`` adds the residual.
The dilated convolution into the hidden space is one GEMM over all taps plus shifted sums.
Results agree with the module to float32 rounding (the variance is more accurate, not less).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

FusedParts = tuple[nn.Conv1d, nn.GroupNorm, nn.Module, nn.Conv1d, nn.GroupNorm, nn.Module]


def fusable_layer(layer: nn.Module) -> FusedParts | None:
    """The parts of a DConv layer ``[conv_k, norm, act, conv1x1, norm, GLU, LayerScale]`` with
    one-group norms, or ``None`` for any other structure (LSTM, local attention, no norm...)."""
    parts = list(layer) if isinstance(layer, nn.Sequential) else []
    if len(parts) != 7:
        return None
    conv1, norm1, act, conv2, norm2, glu, scale = parts
    shapes_ok = (isinstance(conv1, nn.Conv1d) and isinstance(conv2, nn.Conv1d)
                 and conv2.kernel_size == (1,) and conv1.groups == conv2.groups == 1
                 and conv1.stride == (1,) and conv1.kernel_size[0] % 2 == 1
                 and conv1.padding == (conv1.dilation[0] * (conv1.kernel_size[0] // 2),)
                 and conv1.bias is not None and conv2.bias is not None
                 and isinstance(act, (nn.GELU, nn.ReLU)) and isinstance(glu, nn.GLU) and glu.dim == 1
                 and isinstance(getattr(scale, "scale", None), torch.Tensor)
                 and getattr(scale, "channel_last", True) is False)  # a LayerScale over (R, C, T)
    norms_ok = all(isinstance(norm, nn.GroupNorm) and norm.num_groups == 1 and norm.affine
                   for norm in (norm1, norm2))
    if not (shapes_ok and norms_ok):
        return None
    return conv1, norm1, act, conv2, norm2, scale


def usable_for(parts: FusedParts, x: torch.Tensor) -> bool:
    """True when the fused path applies: inference (no autograd), float32 weights and input on a
    device with float64 support."""
    return (not torch.is_grad_enabled() and x.dtype == torch.float32 and x.device.type in ("cpu", "cuda")
            and parts[0].weight.dtype == torch.float32 and parts[3].weight.dtype == torch.float32)


def fused_dconv_layer(parts: FusedParts, x: torch.Tensor) -> torch.Tensor:
    """``x + layer(x)`` for the parts returned by :func:`fusable_layer`; ``x: (R, C, T)``
    (rows independent) -> ``(R, C, T)``. Inference only (no autograd through the folded weights)."""
    conv1, norm1, act, conv2, norm2, scale = parts
    h = _same_conv_by_gemm(x, conv1)
    h = act(F.group_norm(h, 1, norm1.weight, norm1.bias, norm1.eps))  # (R, H, T)
    weight = _normalised_expansion(h, conv2, norm2, scale)
    # the bias rides in the product as the weight of a constant row (no separate pass)
    y = torch.bmm(weight, torch.cat([h, h.new_ones(h.shape[0], 1, h.shape[2])], dim=1))
    value, gate = y.chunk(2, dim=1)  # (R, 2C, T): LayerScale * norm(value), norm(gate)
    return torch.addcmul(x, value, gate.sigmoid_())


def _same_conv_by_gemm(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """``conv(x)`` for an odd kernel with "same" padding, ``x: (R, C, T)`` -> ``(R, H, T)``: one
    GEMM for all taps, then the taps' outputs shifted by their dilated offsets and summed
    (the direct convolution is ~2.5x slower for these few output channels)."""
    hidden, _, kernel = conv.weight.shape
    dilation = conv.dilation[0]
    steps = x.shape[-1]
    taps = torch.matmul(conv.weight.permute(2, 0, 1).reshape(kernel * hidden, -1), x)  # (R, K*H, T)
    centre = kernel // 2
    out = taps[:, centre * hidden:(centre + 1) * hidden] + conv.bias[:, None]
    for k in range(kernel):
        shift = (k - centre) * dilation  # tap k reads x[t + shift]
        if k == centre or abs(shift) >= steps:
            continue
        tap = taps[:, k * hidden:(k + 1) * hidden]
        if shift > 0:
            out[:, :, :steps - shift] += tap[:, :, shift:]
        else:
            out[:, :, -shift:] += tap[:, :, :steps + shift]
    return out


def _normalised_expansion(h: torch.Tensor, conv: nn.Conv1d, norm: nn.GroupNorm, scale: nn.Module
                          ) -> torch.Tensor:
    """Per-row weights ``(R, 2C, H + 1)`` (the bias last) such that ``weight @ [h; 1]`` is
    ``GroupNorm(conv(h))``, with the value half (the first ``C`` channels) also multiplied by
    the LayerScale. ``h: (R, H, T)``."""
    steps = h.shape[-1]
    w = conv.weight[:, :, 0].double()  # (2C, H)
    b = conv.bias.double()  # (2C,)
    hd = h.double()
    mean_h = hd.mean(dim=-1)  # (R, H)
    moments = torch.bmm(hd, hd.transpose(1, 2)) / steps  # (R, H, H): E_t[h h^T]
    projected = mean_h @ w.t()  # (R, 2C): E_t[W h]
    mean = (projected + b).mean(dim=-1)  # (R,)
    # E_t[(W_c h + b_c)^2] = W_c M W_c^T + 2 b_c E_t[W_c h] + b_c^2
    quadratic = ((moments @ w.t()) * w.t()).sum(dim=1)  # (R, 2C)
    mean_square = (quadratic + 2 * b * projected + b * b).mean(dim=-1)
    inv_std = (mean_square - mean * mean).clamp_min(0).add(norm.eps).rsqrt()  # (R,)
    gain = inv_std[:, None] * norm.weight.double()  # (R, 2C)
    channels = w.shape[0] // 2
    layer_scale = torch.cat([scale.scale.double(), torch.ones(channels, dtype=torch.float64,
                                                              device=w.device)])
    gain = gain * layer_scale
    weight = gain[:, :, None] * w
    bias = (b - mean[:, None]) * gain + norm.bias.double() * layer_scale
    return torch.cat([weight, bias[:, :, None]], dim=2).to(h.dtype)
