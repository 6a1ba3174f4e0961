"""Parity of our ``HDemucs`` (v3 hybrid) with ``demucs.hdemucs.HDemucs`` (demucs==4.1.0)."""
from __future__ import annotations

import pytest
import torch
from demucs.hdemucs import HDemucs as RefHDemucs

from stemforge.models.base import SeparationModel
from stemforge.models.hdemucs import HDemucs
from stemforge.models.registry import build_model
from tests.models.parity import TOL, assert_same_signature, max_diff, same_seed_pair

SOURCES = ["drums", "bass", "other", "vocals"]

# nfft=256: frequency layers 128 -> 32 -> 8 -> merged with the time branch (kernel = 8 bins)
SMALL = dict(channels=8, nfft=256, depth=4)
CONFIGS = {
    "hybrid_cac": SMALL,
    "hybrid_magnitude_phase": dict(SMALL, cac=False),
    "hybrid_magnitude_residual": dict(SMALL, cac=False, wiener_residual=True),
    "spectro_only_mask": dict(SMALL, cac=False, hybrid=False, wiener_iters=-1, end_iters=-1),
    "spectro_only_cac": dict(SMALL, hybrid=False, freq_emb=0),
    "hybrid_old": dict(SMALL, hybrid_old=True),
    "multi_freqs": dict(SMALL, multi_freqs=[0.25, 0.5], multi_freqs_depth=2),
    # nfft=1024, depth 6: 512 -> 128 -> 32 -> 8 (merge) -> 2 layers over time with time_stride
    "deep_time_layers": dict(channels=4, channels_time=6, nfft=1024, depth=6, time_stride=2,
                             norm_starts=2, norm_groups=2),
    "dconv_both_attn_lstm": dict(SMALL, dconv_mode=3, dconv_attn=1, dconv_lstm=2,
                                 context_enc=1, context=0, emb_smooth=False, dconv_comp=2),
    "no_rewrite_mono": dict(SMALL, rewrite=False, audio_channels=1, dconv_depth=-1,
                            emb_scale=3, freq_emb=0.5),
}


def _pair(**kw):
    """Reference and our model from the same seed (checks identical init), in eval mode."""
    return same_seed_pair(RefHDemucs, HDemucs, {"sources": SOURCES, **kw}, eval_mode=True)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_forward_parity(name):
    kw = CONFIGS[name]
    ref, ours = _pair(**kw)
    mix = torch.randn(2, kw.get("audio_channels", 2), 4096)
    assert max_diff(ref, ours, mix) <= TOL


# (non-hybrid models, like the reference, need at least nfft / 2 samples for the STFT)
@pytest.mark.parametrize("name,length", [
    *[("hybrid_cac", n) for n in (77, 1000, 2345, 4097)],
    *[("hybrid_old", n) for n in (77, 1000, 2345, 4097)],
    *[("spectro_only_cac", n) for n in (200, 2345)],
    ("deep_time_layers", 3001),
])
def test_arbitrary_length(name, length):
    """No ``valid_length``: any input length must work exactly like the reference."""
    ref, ours = _pair(**CONFIGS[name])
    mix = torch.randn(1, 2, length)
    assert max_diff(ref, ours, mix) <= TOL


def test_training_mode_matches():
    """Train mode (GroupNorm has no running stats, no dropout): same outputs as the reference."""
    ref, ours = _pair(**dict(SMALL, norm_starts=1, norm_groups=2))
    ref.train()
    ours.train()
    mix = torch.randn(2, 2, 3000)
    assert max_diff(ref, ours, mix) <= TOL


def test_wiener_em_not_supported():
    torch.manual_seed(0)
    model = HDemucs(SOURCES, **dict(SMALL, cac=False, wiener_iters=1, end_iters=1)).eval()
    with pytest.raises(NotImplementedError, match="wiener"):
        with torch.no_grad():
            model(torch.randn(1, 2, 1000))


def test_signature_and_attributes():
    assert_same_signature(RefHDemucs, HDemucs)
    model = HDemucs(SOURCES, segment=7.8, samplerate=32000, **SMALL)
    assert model.sources == SOURCES
    assert model.samplerate == 32000
    assert model.segment == 7.8
    assert model.audio_channels == 2
    assert model.max_segment is None
    assert isinstance(model, SeparationModel)


def test_build_model_from_registry():
    model = build_model("HDemucs", dict(SMALL, sources=SOURCES))
    assert isinstance(model, HDemucs)


# training defaults of demucs' conf/config.yaml (``hdemucs:`` section), as in hdemucs_mmi
OFFICIAL = dict(channels=48, nfft=4096, depth=6, multi_freqs=[], multi_freqs_depth=3,
                dconv_init=1e-3, segment=44)


@pytest.mark.slow
@pytest.mark.parametrize("extra", [{}, {"hybrid_old": True}], ids=["mmi", "mdx_hybrid_old"])
def test_official_configs(extra):
    ref, ours = _pair(**OFFICIAL, **extra)
    mix = torch.randn(1, 2, 44100 + 17)
    assert max_diff(ref, ours, mix) <= TOL
