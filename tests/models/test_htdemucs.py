"""Parity of our ``HTDemucs`` with ``demucs.htdemucs.HTDemucs`` (demucs==4.1.0)."""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from demucs.htdemucs import HTDemucs as RefHTDemucs

from stemforge.models.base import SeparationModel
from stemforge.models.htdemucs import HTDemucs
from stemforge.models.registry import build_model
from tests.models.configs import OFFICIAL_HTDEMUCS_PARAMS, official_htdemucs_kwargs
from tests.models.parity import TOL, assert_same_signature, max_diff, same_seed_pair

SR = 44100

# Valid hybrid layouts: the branches merge when the frequency axis reaches one bin, which
# needs nfft = 4 ** (k + 2) for a merge at layer k (nfft=256 -> layer 2, 1024 -> layer 3).
CONFIGS = {
    "tiny": dict(sources=["a", "b"], channels=8, depth=2, nfft=512, t_layers=1, t_heads=2,
                 segment=Fraction(1, 2)),
    "merged_bottom": dict(sources=["drums", "bass", "other"], channels=8, depth=3, nfft=256,
                          t_layers=2, t_heads=4, bottom_channels=32, dconv_mode=3,
                          segment=Fraction(1, 2)),
    "deep_cape_cross_first": dict(sources=["a", "b"], channels=16, channels_time=8, depth=4,
                                  nfft=1024, t_layers=3, t_heads=2, t_emb="cape",
                                  t_cross_first=True, norm_starts=2, segment=Fraction(1, 2)),
    "multi_freqs_no_transformer": dict(sources=["a", "b"], channels=8, depth=3, nfft=1024,
                                       t_layers=0, multi_freqs=[0.25, 0.5],
                                       multi_freqs_depth=2, norm_starts=2, segment=0.5),
    "scaled_emb_post_norm": dict(sources=["a", "b"], channels=8, depth=2, nfft=512,
                                 t_layers=2, t_heads=2, t_emb="scaled", t_norm_first=False,
                                 t_layer_scale=False, t_gelu=False, freq_emb=0, segment=0.5),
    "no_cac_phase": dict(sources=["a", "b"], channels=8, depth=3, nfft=256, t_layers=1,
                         t_heads=2, cac=False, segment=0.5),
    "no_cac_mask": dict(sources=["a", "b"], channels=8, depth=3, nfft=256, t_layers=1,
                        t_heads=2, cac=False, wiener_iters=-1, end_iters=-1, segment=0.5),
}


def _pair(**kw):
    """Reference and our model built from the same seed, with identical state."""
    return same_seed_pair(RefHTDemucs, HTDemucs, kw, check_values=False)


def _training_length(kw) -> int:
    return int(kw["segment"] * kw.get("samplerate", SR))


def test_constructor_signature_matches_reference():
    assert_same_signature(RefHTDemucs, HTDemucs)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_same_seed_gives_same_init(name):
    kw = CONFIGS[name]
    torch.manual_seed(0)
    ref_state = RefHTDemucs(**kw).state_dict()
    torch.manual_seed(0)
    our_state = HTDemucs(**kw).state_dict()
    for key, value in ref_state.items():
        assert torch.equal(our_state[key], value), key


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_forward_parity_training_length(name):
    kw = CONFIGS[name]
    ref, ours = _pair(**kw)
    ref.eval()
    ours.eval()
    mix = torch.randn(1, 2, _training_length(kw))
    assert max_diff(ref, ours, mix) <= TOL


@pytest.mark.parametrize("name", ["tiny", "merged_bottom", "no_cac_phase"])
def test_forward_parity_short_input_is_padded(name):
    kw = CONFIGS[name]
    ref, ours = _pair(**kw)
    ref.eval()
    ours.eval()
    length = _training_length(kw) - 1234
    mix = torch.randn(2 if name == "tiny" else 1, 2, length)
    assert max_diff(ref, ours, mix) <= TOL
    with torch.no_grad():
        assert ours(mix).shape == (mix.shape[0], len(kw["sources"]), 2, length)


def test_forward_parity_without_train_segment():
    kw = dict(CONFIGS["tiny"], use_train_segment=False)
    ref, ours = _pair(**kw)
    ref.eval()
    ours.eval()
    for length in (SR // 3, SR // 2 + 777):  # shorter and longer than the segment
        mix = torch.randn(1, 2, length)
        assert max_diff(ref, ours, mix) <= TOL
    assert ours.valid_length(SR * 5) == SR * 5


def test_training_mode_parity_and_segment_update():
    kw = CONFIGS["merged_bottom"]
    ref, ours = _pair(**kw)
    mix = torch.randn(1, 2, 15000)
    want = ref(mix)
    got = ours(mix)
    assert (got - want).abs().max().item() <= TOL
    assert ours.segment == ref.segment == Fraction(15000, SR)
    assert isinstance(ours.segment, Fraction)


def test_attributes_and_lengths():
    kw = CONFIGS["merged_bottom"]
    model = HTDemucs(**kw)
    assert isinstance(model, SeparationModel)
    assert model.sources == ["drums", "bass", "other"]
    assert model.samplerate == SR and model.audio_channels == 2
    assert model.segment == Fraction(1, 2)
    assert model.max_segment == 0.5 and isinstance(model.max_segment, float)
    training_length = _training_length(kw)
    assert model.valid_length(100) == training_length
    assert model.valid_length(training_length) == training_length
    with pytest.raises(ValueError, match="longer"):
        model.valid_length(training_length + 1)
    model.eval()
    with pytest.raises(ValueError, match="longer"):
        model(torch.zeros(1, 2, training_length + 1))


def test_registry_builds_htdemucs():
    model = build_model("HTDemucs", dict(CONFIGS["tiny"], unknown_key=1))
    assert isinstance(model, HTDemucs)


def test_unsupported_options_raise_clear_errors():
    base = CONFIGS["no_cac_phase"]
    with pytest.raises(NotImplementedError, match="Wiener"):
        HTDemucs(**dict(base, wiener_iters=1, end_iters=1))
    with pytest.raises(NotImplementedError, match="sparse"):
        HTDemucs(**dict(CONFIGS["tiny"], t_sparse_self_attn=True))
    with pytest.raises(ValueError, match="end_iters"):
        HTDemucs(**dict(base, wiener_iters=0, end_iters=1))


def test_official_config_parameter_count_and_keys():
    kwargs = official_htdemucs_kwargs()
    ref = RefHTDemucs(**kwargs)
    ours = HTDemucs(**kwargs)
    assert sum(p.numel() for p in ref.parameters()) == OFFICIAL_HTDEMUCS_PARAMS
    assert sum(p.numel() for p in ours.parameters()) == OFFICIAL_HTDEMUCS_PARAMS
    ref_state, our_state = ref.state_dict(), ours.state_dict()
    assert list(ref_state) == list(our_state)
    assert all(ref_state[k].shape == our_state[k].shape for k in ref_state)
    assert ours.max_segment == 7.8
    assert ours.sources == ["drums", "bass", "other", "vocals"]


@pytest.mark.slow
def test_official_config_forward_parity():
    ref, ours = _pair(**official_htdemucs_kwargs())
    ref.eval()
    ours.eval()
    mix = torch.randn(1, 2, int(Fraction(39, 5) * SR))
    assert max_diff(ref, ours, mix) <= TOL
