"""Opt-in fast inference modes (approximate: not bit-compatible with the reference).

``make_fast(model, mode)`` returns a module that separates like ``model`` (same ``sources``,
``samplerate``, ``audio_channels``, ``segment``, ``max_segment``, ``valid_length``) but trades
exactness for CPU speed:

- ``"bf16"``: the whole network runs under CPU autocast in bfloat16 (matrix products and
  convolutions in bf16, which uses AMX / AVX512-BF16 units where the CPU has them; norms,
  softmax and the STFT stay in float32). Inputs and outputs are float32. Fastest; the error
  grows with the depth of the convolutional branches.
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
    return FastModel(model, mode)
