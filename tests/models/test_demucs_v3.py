"""Parity of our v3 waveform ``Demucs`` with ``demucs.demucs.Demucs`` (demucs==4.1.0)."""
from __future__ import annotations

import pytest
import torch
from demucs.demucs import Demucs as RefDemucs

from stemforge.models.base import SeparationModel
from stemforge.models.demucs import Demucs
from stemforge.models.registry import build_model
from tests.models.parity import TOL, assert_same_signature, max_diff, same_seed_pair

SOURCES = ["drums", "bass", "other", "vocals"]

CONFIGS = {
    "small": dict(channels=8, depth=4),
    "dconv_both_attn_lstm": dict(channels=8, depth=4, dconv_mode=3, dconv_attn=1, dconv_lstm=2,
                                 norm_starts=2, norm_groups=2, lstm_layers=2),
    "v2_like": dict(channels=8, depth=3, dconv_mode=0, gelu=False, glu=False, lstm_layers=1,
                    normalize=False, context=0, growth=1.5),
    "no_rewrite_no_resample": dict(channels=8, depth=3, rewrite=False, resample=False,
                                   dconv_depth=-2, dconv_comp=2, kernel_size=6, stride=3),
    "decoder_dconv_mono": dict(channels=16, depth=3, audio_channels=1, dconv_mode=2,
                               dconv_attn=2, dconv_lstm=1, norm_starts=0),
}


def _pair(**kw):
    """Reference and our model from the same seed (checks identical init), in eval mode."""
    return same_seed_pair(RefDemucs, Demucs, {"sources": SOURCES, **kw}, eval_mode=True)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_forward_parity(name):
    kw = CONFIGS[name]
    ref, ours = _pair(**kw)
    channels = kw.get("audio_channels", 2)
    length = ours.valid_length(2000)
    mix = torch.randn(2, channels, length)
    assert max_diff(ref, ours, mix) <= TOL


@pytest.mark.parametrize("length", [1000, 2345, 4097])
def test_arbitrary_length(length):
    ref, ours = _pair(**CONFIGS["dconv_both_attn_lstm"])
    assert ours.valid_length(length) == ref.valid_length(length)
    mix = torch.randn(1, 2, length)
    assert max_diff(ref, ours, mix) <= TOL


def test_chunked_lstm_in_dconv():
    """Long enough for the DConv BLSTM (max_steps=200) to run on overlapping chunks."""
    ref, ours = _pair(channels=8, depth=2, dconv_lstm=1, dconv_attn=1, stride=2, kernel_size=4)
    mix = torch.randn(1, 2, 2000)
    assert max_diff(ref, ours, mix) <= TOL


def test_signature_and_attributes():
    assert_same_signature(RefDemucs, Demucs)
    model = Demucs(SOURCES, channels=4, depth=2, segment=7.5, samplerate=32000)
    assert model.sources == SOURCES
    assert model.samplerate == 32000
    assert model.segment == 7.5
    assert model.audio_channels == 2
    assert model.max_segment is None
    assert isinstance(model, SeparationModel)


def test_build_model_from_registry():
    model = build_model("Demucs", {"sources": SOURCES, "channels": 4, "depth": 2})
    assert isinstance(model, Demucs)


def test_load_first_generation_keys():
    ref, ours = _pair(channels=8, depth=2, dconv_mode=0)
    state = ref.state_dict()
    # emulate older checkpoints whose 1x1 conv sat at index 2 of encoder layers
    old = {k.replace("encoder.0.3.", "encoder.0.2."): v for k, v in state.items()}
    assert "encoder.0.2.weight" in old
    ours.load_state_dict(old)


@pytest.mark.slow
def test_reference_default_config():
    """Default kwargs of demucs' training config (``conf/config.yaml``, mdx waveform models)."""
    ref, ours = _pair(normalize=False, segment=44)
    mix = torch.randn(1, 2, 44100)
    assert max_diff(ref, ours, mix) <= TOL
