"""Parity of our cross-domain transformer with ``demucs.transformer`` (demucs==4.1.0)."""
from __future__ import annotations

import random

import pytest
import torch
from demucs import transformer as ref

from stemforge.models.layers import transformer as ours

TOL = 1e-5

CONFIGS = {
    # the HTDemucs defaults: pre-norm, GroupNorm out, layer scale, gelu, sin embedding
    "htdemucs_like": dict(num_layers=3, norm_first=True, norm_out=True, layer_scale=True),
    "post_norm_relu": dict(num_layers=2, gelu=False, hidden_scale=2.0),
    "cape_cross_first_groupnorm": dict(num_layers=3, emb="cape", cross_first=True, group_norm=1,
                                       norm_first=True, norm_out=1),
    "scaled_emb_norm_in_group": dict(num_layers=2, emb="scaled", norm_in=False, norm_in_group=1,
                                     max_positions=100, weight_pos_embed=0.5),
    "no_norm_in": dict(num_layers=1, norm_in=False, max_period=100.0),
}


def _pair(dim: int = 32, heads: int = 4, **kw):
    torch.manual_seed(0)
    reference = ref.CrossTransformerEncoder(dim, num_heads=heads, **kw)
    torch.manual_seed(0)
    model = ours.CrossTransformerEncoder(dim, num_heads=heads, **kw)
    return reference, model


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_state_dict_and_init_match(name):
    reference, model = _pair(**CONFIGS[name])
    ref_state, our_state = reference.state_dict(), model.state_dict()
    assert list(ref_state) == list(our_state)
    for key, value in ref_state.items():
        assert torch.equal(our_state[key], value), key


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_forward_parity(name):
    reference, model = _pair(**CONFIGS[name])
    with torch.no_grad():  # non-trivial layer scales so every branch matters
        for p in reference.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.load_state_dict(reference.state_dict(), strict=True)
    reference.eval()
    model.eval()
    x = torch.randn(2, 32, 6, 11)
    xt = torch.randn(2, 32, 37)
    with torch.no_grad():
        want, want_t = reference(x, xt)
        got, got_t = model(x, xt)
    assert got.shape == want.shape == x.shape
    assert got_t.shape == want_t.shape == xt.shape
    assert (got - want).abs().max().item() <= TOL
    assert (got_t - want_t).abs().max().item() <= TOL


def test_training_mode_without_dropout_matches():
    """With dropout 0 and the sin embedding, train mode is deterministic too."""
    reference, model = _pair(**CONFIGS["htdemucs_like"])
    model.load_state_dict(reference.state_dict())
    x = torch.randn(1, 32, 4, 5)
    xt = torch.randn(1, 32, 20)
    want = reference(x, xt)
    got = model(x, xt)
    for a, b in zip(want, got):
        assert (a - b).abs().max().item() <= TOL


def test_sin_random_shift_uses_python_random_like_reference():
    reference, model = _pair(num_layers=1, sin_random_shift=7)
    model.load_state_dict(reference.state_dict())
    reference.eval()
    model.eval()
    x, xt = torch.randn(1, 32, 2, 3), torch.randn(1, 32, 9)
    with torch.no_grad():
        random.seed(3)
        want = reference(x, xt)[1]
        random.seed(3)
        got = model(x, xt)[1]
    assert (got - want).abs().max().item() <= TOL


def test_positional_embeddings_match_reference():
    assert torch.equal(ours.sin_embedding(50, 16, shift=3, max_period=1000.0),
                       ref.create_sin_embedding(50, 16, shift=3, max_period=1000.0))
    assert torch.equal(ours.sin_embedding_2d(32, 7, 9), ref.create_2d_sin_embedding(32, 7, 9))
    want = ref.create_sin_embedding_cape(40, 16, 3, mean_normalize=True, augment=False)
    got = ours.cape_embedding(40, 16, 3, mean_normalize=True, augment=False)
    assert (got - want).abs().max().item() <= 1e-6


def test_cape_augmentation_is_random_in_training_only():
    model = ours.CrossTransformerEncoder(16, num_heads=2, num_layers=1, emb="cape")
    model.train()
    a = model._time_embedding(30, 2, 16, torch.device("cpu"))
    b = model._time_embedding(30, 2, 16, torch.device("cpu"))
    assert a.shape == (30, 2, 16) and not torch.allclose(a, b)
    model.eval()
    c = model._time_embedding(30, 2, 16, torch.device("cpu"))
    d = model._time_embedding(30, 2, 16, torch.device("cpu"))
    assert torch.equal(c, d)


@pytest.mark.parametrize("flag", ["sparse_self_attn", "sparse_cross_attn"])
def test_sparse_attention_is_rejected(flag):
    with pytest.raises(NotImplementedError, match="sparse"):
        ours.CrossTransformerEncoder(16, num_heads=2, num_layers=2, **{flag: True})
