"""Opt-in fast modes: close to the exact output (SDR >= 30 dB), same interface, original untouched."""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from stemforge.models.fast import FAST_MODES, make_fast
from stemforge.models.htdemucs import HTDemucs

SMALL = dict(sources=["drums", "bass", "other", "vocals"], channels=8, depth=3, nfft=256,
             t_layers=2, t_heads=4, bottom_channels=32, dconv_mode=3, segment=Fraction(1, 2))


def sdr(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    num = reference.double().pow(2).sum() + 1e-7
    den = (reference.double() - estimate.double()).pow(2).sum() + 1e-7
    return float(10 * torch.log10(num / den))


def small_model(layer_scale: float | None = None, **overrides) -> HTDemucs:
    torch.manual_seed(0)
    model = HTDemucs(**dict(SMALL, **overrides)).eval()
    if layer_scale is not None:  # trained-like residual scales instead of the 1e-4 / 1e-3 init
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith(".scale"):
                    param.fill_(layer_scale)
    return model


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: thread synchronisation costs more than it saves (and the CI box is busy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mix() -> torch.Tensor:
    return torch.randn(1, 2, 22050, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("mode", ["bf16", "bf16-transformer", "int8"])
@pytest.mark.parametrize("layer_scale", [None, 0.1])
def test_fast_output_close_to_exact(mode, layer_scale, mix):
    model = small_model(layer_scale)
    with torch.inference_mode():
        exact = model(mix)
        fast = make_fast(model, mode)(mix)
        again = model(mix)
    assert fast.shape == exact.shape and fast.dtype == torch.float32
    assert torch.equal(again, exact), "making a fast model must not change the original"
    assert sdr(exact, fast) >= 30.0


@pytest.mark.parametrize("mode", FAST_MODES)
def test_fast_model_keeps_the_model_interface(mode):
    model = small_model()
    fast = make_fast(model, mode)
    assert fast.sources == model.sources
    assert fast.samplerate == model.samplerate and fast.audio_channels == model.audio_channels
    assert fast.segment == model.segment and fast.max_segment == model.max_segment
    assert fast.valid_length(1000) == model.valid_length(1000)
    short = torch.randn(1, 2, 5000)
    with torch.inference_mode():
        assert fast(short).shape == (1, 4, 2, 5000)


def test_exact_mode_is_the_model_itself():
    model = small_model()
    assert make_fast(model, "exact") is model


def test_bad_modes_raise():
    with pytest.raises(ValueError, match="unknown fast mode"):
        make_fast(small_model(), "fp8")
    plain = small_model(t_layers=0)
    assert make_fast(plain, "bf16-transformer") is plain  # nothing to convert: stays exact
