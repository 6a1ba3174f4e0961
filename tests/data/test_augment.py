"""Batch augmentations on (B, S, C, T)."""
from __future__ import annotations

import torch

from stemforge.data.augment import FlipChannels, FlipSign, Remix, Repitch, Scale, Shift, build_augment


def batch(b=4, s=3, c=2, t=200):
    return torch.randn(b, s, c, t)


def test_shift_crops_a_window_of_the_input():
    wav = torch.arange(100.0).expand(2, 3, 2, 100).clone()
    out = Shift(10).train()(wav)
    assert out.shape == (2, 3, 2, 90)
    offsets = out[..., 0]
    assert torch.all(offsets[..., 0] == offsets[..., 1])  # channels move together
    torch.testing.assert_close(out - offsets[..., None], torch.arange(90.0).expand_as(out))
    assert torch.equal(Shift(10).eval()(wav), wav[..., :90])


def test_flips_keep_the_content():
    wav = batch()
    swapped = FlipChannels().train()(wav)
    for b in range(4):
        for s in range(3):
            assert torch.equal(swapped[b, s], wav[b, s]) or torch.equal(swapped[b, s], wav[b, s].flip(0))
    signed = FlipSign().train()(wav)
    assert torch.equal(signed.abs(), wav.abs())
    assert torch.equal(FlipSign().eval()(wav), wav)


def test_scale_range_and_probability():
    wav = torch.ones(64, 4, 2, 10)
    out = Scale(1.0, 0.25, 1.25).train()(wav)
    assert out.min() >= 0.25 and out.max() <= 1.25
    assert torch.equal(Scale(0.0).train()(wav), wav)


def test_remix_shuffles_sources_within_groups():
    wav = batch(b=8)
    out = Remix(1.0, group_size=4).train()(wav)
    for g in range(2):
        torch.testing.assert_close(out[4 * g:4 * g + 4].sum(0), wav[4 * g:4 * g + 4].sum(0))
        for s in range(3):
            rows = {tuple(x[0, :3].tolist()) for x in out[4 * g:4 * g + 4, s]}
            assert rows == {tuple(x[0, :3].tolist()) for x in wav[4 * g:4 * g + 4, s]}
    assert torch.equal(Remix(1.0, 4).eval()(wav), wav)


def test_repitch_output_length_and_identity_when_off():
    wav = batch(t=1000)
    module = Repitch(prob=1.0, semitones=2.0).train()
    out = module(wav)
    n = Repitch.output_length(1000, 2.0)
    assert out.shape == (4, 3, 2, n)
    assert Repitch.output_length(Repitch.input_length(n, 2.0), 2.0) >= n
    assert not torch.equal(out, wav[..., :n])
    assert torch.equal(Repitch(prob=0.0).train()(wav), wav[..., :Repitch.output_length(1000, 2.0)])


def test_chain_is_repeatable_from_the_rng_state():
    chain = build_augment(shift=20, repitch_prob=0.5).train()
    wav = batch(t=300)
    torch.manual_seed(5)
    a = chain(wav)
    torch.manual_seed(5)
    assert torch.equal(chain(wav), a)
