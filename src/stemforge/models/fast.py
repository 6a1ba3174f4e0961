"""Opt-in fast inference modes (approximate: not bit-compatible with the reference).

``make_fast(model, mode)`` returns a module that separates like ``model`` (same ``sources``,
``samplerate``, ``audio_channels``, ``segment``, ``max_segment``, ``valid_length``) but trades
exactness for CPU speed:

- ``"bf16"``: the whole network runs under CPU autocast in bfloat16 (matrix products and
  convolutions in bf16, which uses AMX / AVX512-BF16 units where the CPU has them; norms,
  softmax and the STFT stay in float32). Inputs and outputs are float32. Fastest; the error
  grows with the depth of the convolutional branches. For HTDemucs the U-Net activations are
  kept channels last (oneDNN's bf16 convolutions otherwise transpose every input and output,
  which cost more than the convolutions saved), with a layout-preserving GroupNorm; its
  waveform branch stays float32 (in bf16 it alone cost ~20 dB of SDR on music), and so do the
  frequency layers' DConvs (their fused float32 form is faster than bf16 and more accurate).
- ``"bf16-transformer"`` (HTDemucs only): only the cross-domain transformer (most of the FLOPs)
  runs in bfloat16; the convolutional U-Nets stay float32. Much closer to exact.
- ``"int8"``: dynamic int8 quantisation of the ``nn.Linear`` (and ``nn.LSTM``) layers: weights
  stored in int8, activations quantised per batch on the fly. Convolutions stay float32.
- ``"exact"``: the model itself (for symmetry in benchmarks and CLIs).

The fast output should stay within ~30 dB SDR of the exact output (see ``tests/models/test_fast.py``
and ``benchmarks/forward.py --fast bf16 int8``). The wrapped model is not modified (int8 works on
a copy).
"""
from __future__ import annotations

import copy
import logging
from typing import Optional

import torch
from torch import nn

logger = logging.getLogger(__name__)

FAST_MODES = ("exact", "bf16", "bf16-transformer", "int8")


class FastModel(nn.Module):
    """``inner`` run in a faster numeric mode; ``forward(mix: (B, C, T)) -> (B, S, C, T)`` float32."""

    def __init__(self, inner: nn.Module, mode: str) -> None:
        super().__init__()
        self.inner = inner
        self.mode = mode
        for name in ("sources", "samplerate", "audio_channels"):
            setattr(self, name, getattr(inner, name))

    @property
    def segment(self):
        return self.inner.segment

    @property
    def max_segment(self) -> Optional[float]:
        return getattr(self.inner, "max_segment", None)

    def valid_length(self, length: int) -> int:
        fn = getattr(self.inner, "valid_length", None)
        return fn(length) if fn is not None else length

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        if self.mode == "bf16":
            with torch.autocast(mix.device.type, dtype=torch.bfloat16):
                out = self.inner(mix)
            return out.float()
        return self.inner(mix)


class Autocast(nn.Module):
    """Run ``inner`` under CPU (or the input's device) autocast; float32 tensors out."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.inner = inner
        self.dtype = dtype

    def forward(self, *args: torch.Tensor):
        device = args[0].device.type
        with torch.autocast(device, dtype=self.dtype):
            out = self.inner(*args)
        if isinstance(out, tuple):
            return tuple(t.float() for t in out)
        return out.float()


def _with_bf16_transformer(model: nn.Module) -> nn.Module:
    """A shallow copy of an HTDemucs ``model`` (parameters shared) whose transformer runs in bf16."""
    transformer = getattr(model, "crosstransformer", None)
    if transformer is None:
        raise ValueError(f"{type(model).__name__} has no cross transformer: use mode 'bf16'")
    clone = copy.copy(model)
    clone._modules = dict(model._modules)  # do not touch the original's submodules
    clone._modules["crosstransformer"] = Autocast(transformer)
    return clone


class _LayoutFreeGroupNorm(nn.Module):
    """``norm`` (an ``nn.GroupNorm``, parameters shared) computed in float32 without first
    copying a channels-last input to contiguous; one group only (other inputs go to ``norm``)."""

    def __init__(self, norm: nn.GroupNorm) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.norm
        if x.is_contiguous() or norm.num_groups != 1:
            return norm(x)
        # each sample is one dense block in memory: normalise it as a flat (contiguous) vector
        # with the native kernel, then view it back in the input's layout
        order = sorted(range(1, x.dim()), key=lambda dim: -x.stride(dim))
        permuted = x.permute(0, *order)
        flat = permuted.reshape(x.shape[0], 1, -1)
        normed = nn.functional.group_norm(flat.float(), 1, eps=norm.eps).view(permuted.shape)
        y = normed.permute(0, *[order.index(dim) + 1 for dim in range(1, x.dim())])
        if not norm.affine:
            return y
        channel = (1, -1) + (1,) * (x.dim() - 2)
        return torch.addcmul(norm.bias.float().view(channel), y, norm.weight.float().view(channel))


class _ChannelsLastConv(nn.Module):
    """A ``Conv1d``/``Conv2d``/``ConvTranspose1d``/``ConvTranspose2d`` run as its 2-D form on
    channels-last bfloat16 tensors, with the weight converted once (autocast would convert it on
    every call). 1-D inputs ``(B, C, T)`` are treated as ``(B, C, 1, T)`` images; the output has
    the input's rank and is channels last (strides ``(T * C, 1, C)`` for 1-D)."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.transposed = isinstance(conv, (nn.ConvTranspose1d, nn.ConvTranspose2d))
        self.one_d = isinstance(conv, (nn.Conv1d, nn.ConvTranspose1d))
        weight = conv.weight.detach()
        if self.one_d:
            weight = weight.unsqueeze(2)
            self.stride, self.padding, self.dilation = ((1, conv.stride[0]), (0, conv.padding[0]),
                                                        (1, conv.dilation[0]))
            self.output_padding = (0, conv.output_padding[0]) if self.transposed else None
        else:
            self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
            self.output_padding = conv.output_padding if self.transposed else None
        self.groups = conv.groups
        # buffers (not saved): they follow the model's .to(device), e.g. an out-of-memory fallback
        self.register_buffer("weight", weight.to(torch.bfloat16).contiguous(
            memory_format=torch.channels_last), persistent=False)
        self.register_buffer("bias", None if conv.bias is None else
                             conv.bias.detach().to(torch.bfloat16), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x.unsqueeze(2) if self.one_d else x
        image = image.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        if self.transposed:
            out = nn.functional.conv_transpose2d(image, self.weight, self.bias, self.stride,
                                                 self.padding, self.output_padding, self.groups,
                                                 self.dilation)
        else:
            out = nn.functional.conv2d(image, self.weight, self.bias, self.stride, self.padding,
                                       self.dilation, self.groups)
        return out.squeeze(2) if self.one_d else out


_CONVS = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d)


def _clone_tree(module: nn.Module) -> nn.Module:
    """A copy of ``module``'s tree of submodules that shares every parameter and buffer, so
    that submodules can be swapped in the copy without touching the original."""
    clone = copy.copy(module)
    clone._modules = {name: (_clone_tree(child) if child is not None else None)
                      for name, child in module._modules.items()}
    return clone


class _Float32Layer(nn.Module):
    """A layer kept in float32 inside the bf16 mode: autocast off, tensor inputs made float32 and
    contiguous (one copy). Used for

    - the waveform branch's encoder/decoder layers: in bf16 that branch alone costs most of the
      accuracy (its first encoder layer in bf16 gave 17 dB SDR to exact on music, every frequency
      layer >= 48 dB) for little time (~13% of a forward);
    - the frequency layers' DConvs: in float32 they take the fused inference path
      (``layers/fused_dconv.py``), faster than their unfused bf16 form with its group norms,
      sigmoids and layout copies (official htdemucs forward 1.33 -> 1.21 s, SDR to exact on music
      41.7 -> 43.2 dB).
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    @property
    def empty(self) -> bool:
        return getattr(self.layer, "empty", False)

    def forward(self, *args):
        args = tuple(a.to(torch.float32, memory_format=torch.contiguous_format)
                     if isinstance(a, torch.Tensor) else a for a in args)
        with torch.autocast(args[0].device.type, enabled=False):
            return self.layer(*args)


def _channels_last_clone(model: nn.Module) -> nn.Module:
    """For the bf16 mode: a parameter-sharing copy of an HTDemucs ``model`` whose U-Net runs on
    channels-last activations, with GroupNorm modules that keep that layout; the waveform
    branch's layers and the frequency layers' DConvs stay float32 (see :class:`_Float32Layer`)."""
    clone = _clone_tree(model)
    slots = [(module, name, child) for module in clone.modules()
             for name, child in module._modules.items()]
    for module, name, child in slots:
        if isinstance(child, nn.GroupNorm):
            module._modules[name] = _LayoutFreeGroupNorm(child)
        elif isinstance(child, _CONVS) and child.padding_mode == "zeros":
            module._modules[name] = _ChannelsLastConv(child)
    # after the swaps above (which only touched the clone's copies): the waveform layers are
    # replaced by the original float32 ones
    for name in ("tencoder", "tdecoder"):
        layers = clone._modules.get(name)
        if layers is not None:
            for index, original in enumerate(getattr(model, name)):
                layers[index] = _Float32Layer(original)
    for name in ("encoder", "decoder"):
        for layer, original in zip(clone._modules.get(name) or (), getattr(model, name, ())):
            if getattr(original, "dconv", None) is not None:
                layer._modules["dconv"] = _Float32Layer(original.dconv)
    clone.channels_last = True
    return clone


def _quantise_int8(model: nn.Module) -> nn.Module:
    from torch.ao.quantization import quantize_dynamic

    quantised = quantize_dynamic(copy.deepcopy(model), {nn.Linear, nn.LSTM}, dtype=torch.qint8)
    return quantised


def make_fast(model: nn.Module, mode: str) -> nn.Module:
    """Wrap ``model`` (in eval mode, CPU) for the fast ``mode`` (one of :data:`FAST_MODES`)."""
    if mode not in FAST_MODES:
        raise ValueError(f"unknown fast mode {mode!r} (choose from {', '.join(FAST_MODES)})")
    if mode == "exact":
        return model
    if mode == "int8":
        return FastModel(_quantise_int8(model).eval(), mode)
    if mode == "bf16-transformer":
        if getattr(model, "crosstransformer", None) is None:
            logger.info("%s has no cross transformer: --fast bf16-transformer leaves it exact",
                        type(model).__name__)
            return model
        return FastModel(_with_bf16_transformer(model), mode)
    if hasattr(model, "channels_last"):
        return FastModel(_channels_last_clone(model), mode)
    return FastModel(model, mode)
