"""The overlap-add engine: identity model, bounded memory, and equality with Demucs' apply_model."""
from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from stemforge.inference.chunking import ArraySource, DelayedSource, SegmentPlan, center_trim
from stemforge.inference.device import DeviceRunner
from stemforge.inference.engine import PassSettings, run_pass
from stemforge.inference.overlap_add import OverlapAdd, transition_weights
from stemforge.inference.separator import Separator


class IdentityModel(nn.Module):
    """Each of ``sources`` is the input times a fixed gain: ``(B, C, T) -> (B, S, C, T)``."""

    def __init__(self, gains=(1.0, 0.5, -2.0), samplerate=100, segment=0.37, valid_pad=0):
        super().__init__()
        self.sources = [f"s{i}" for i in range(len(gains))]
        self.gains = torch.tensor(gains)
        self.samplerate = samplerate
        self.audio_channels = 2
        self.segment = segment
        self.valid_pad = valid_pad
        self.max_segment = None

    def valid_length(self, length: int) -> int:
        return length + self.valid_pad

    def forward(self, mix):
        return mix[:, None] * self.gains[None, :, None, None].to(mix)


class ContextModel(nn.Module):
    """A random convolutional 'separator' whose output depends on its context and on padding."""

    def __init__(self, samplerate=200, segment=1.3, sources=3, pad_to=32):
        super().__init__()
        self.sources = [f"s{i}" for i in range(sources)]
        self.samplerate = samplerate
        self.audio_channels = 2
        self.segment = segment
        self.pad_to = pad_to
        self.conv = nn.Sequential(nn.Conv1d(2, 8, 9, padding=4), nn.Tanh(), nn.Conv1d(8, 2 * sources, 9, padding=4))

    def valid_length(self, length: int) -> int:
        return -(-length // self.pad_to) * self.pad_to + 7

    def forward(self, mix):
        batch, channels, length = mix.shape
        return self.conv(mix).view(batch, len(self.sources), channels, length)


def test_transition_weights_shape_and_peak():
    weight = transition_weights(10)
    assert weight.tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 0.8, 0.6, 0.4, 0.2])
    assert transition_weights(7).argmax().item() == 3


def test_overlap_add_rejects_uncovered_samples():
    acc = OverlapAdd(10, torch.ones(4))
    acc.add(0, torch.ones(1, 1, 4))
    with pytest.raises(ValueError):
        acc.pop(6)


def _naive_overlap_add(length, weight, segments):
    total = torch.zeros(*segments[0][1].shape[:-1], length)
    norm = torch.zeros(length)
    for offset, chunk in segments:
        n = chunk.shape[-1]
        total[..., offset:offset + n] += weight[:n] * chunk
        norm[offset:offset + n] += weight[:n]
    return total / norm


@pytest.mark.parametrize("offsets, pops", [
    ([0, 3, 6, 9], [3, 6, 9, 12]),          # regular stride, popped as each segment arrives
    ([0, 2, 4, 6, 8], [None] * 4 + [12]),   # popped only at the end
    ([0, 4, 8], [4, 8, 12]),                # no overlap
    ([0, 6, 3, 8], [None, None, 3, 12]),    # not in order: a later segment fills in before
])
def test_overlap_add_equals_the_naive_sum(offsets, pops):
    generator = torch.Generator().manual_seed(0)
    weight = transition_weights(4) + 0.1
    length = 12
    segments = [(offset, torch.randn(2, 3, min(4, length - offset), generator=generator))
                for offset in offsets]
    acc = OverlapAdd(length, weight)
    blocks = []
    for (offset, chunk), upto in zip(segments, pops):
        acc.add(offset, chunk)
        if upto is not None:
            blocks.append(acc.pop(upto))
    torch.testing.assert_close(torch.cat(blocks, -1), _naive_overlap_add(length, weight, segments),
                               rtol=0, atol=1e-6)


def test_overlap_add_gap_left_by_a_skipped_offset_is_zero_not_garbage(monkeypatch):
    poisoned = torch.Tensor.new_empty
    monkeypatch.setattr(torch.Tensor, "new_empty", lambda self, *size, **kw: poisoned(self, *size, **kw).fill_(float("nan")))
    acc = OverlapAdd(12, torch.ones(4))
    acc.add(0, torch.ones(1, 1, 4))
    acc.add(6, torch.full((1, 1, 4), 2.0))   # [4, 6) uncovered for now
    acc.add(3, torch.full((1, 1, 4), 3.0))   # covers it: sums there must start from zero
    out = acc.pop(10)
    assert out[0, 0].tolist() == pytest.approx([1, 1, 1, 2, 3, 3, 2.5, 2, 2, 2])


@pytest.mark.parametrize("length", [1, 36, 37, 100, 555])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.6])
def test_identity_model_returns_input(length, overlap):
    mix = torch.randn(2, length)
    model = IdentityModel(valid_pad=5)
    separator = Separator(model, device="cpu", shifts=0, overlap=overlap)
    stems = separator.separate_tensor(mix)
    assert stems.shape == (3, 2, length)
    torch.testing.assert_close(stems[0], mix, atol=1e-5, rtol=1e-5)
    # Demucs de-normalisation adds the track mean back to every stem.
    mean = mix.mean()
    for gain, stem in zip(model.gains, stems):
        torch.testing.assert_close(stem, (mix - mean) * gain + mean, atol=1e-5, rtol=1e-5)


def test_identity_with_shifts_and_no_split():
    mix = torch.randn(2, 300)
    for kwargs in ({"shifts": 3}, {"shifts": 0, "split": False}):
        stems = Separator(IdentityModel(), device="cpu", seed=1, **kwargs).separate_tensor(mix)
        torch.testing.assert_close(stems[0], mix, atol=1e-5, rtol=1e-5)


def test_blocks_are_bounded_by_a_segment():
    """The engine hands out finished blocks as it goes: none longer than one stride."""
    model = IdentityModel(segment=0.5)
    source = ArraySource(torch.randn(2, 10_000))
    sizes = [block.shape[-1] for block in run_pass(model, source, PassSettings(), DeviceRunner(torch.device("cpu")))]
    assert sum(sizes) == 10_000
    assert max(sizes) <= int(0.75 * 50)
    assert len(sizes) > 100


def test_delayed_source_reads_zero_outside():
    base = ArraySource(torch.arange(6.0).view(1, 6))
    delayed = DelayedSource(base, 2)
    assert delayed.length == 8
    assert delayed.read(-1, 9).tolist() == [[0, 0, 0, 0, 1, 2, 3, 4, 5, 0]]


def test_segment_plan_and_trim():
    plan = SegmentPlan.split(100, 40, 0.25)
    assert list(plan.offsets()) == [0, 30, 60, 90]
    assert plan.chunk_length(90) == 10
    assert center_trim(torch.arange(7), 4).tolist() == [1, 2, 3, 4]


def _reference_apply(model, mix, **kwargs):
    from demucs.apply import apply_model

    return apply_model(model, mix[None], **kwargs)[0]


@pytest.mark.parametrize("overlap", [0.25, 0.5])
@pytest.mark.parametrize("segment", [None, 0.9])
def test_engine_matches_reference_apply_model(overlap, segment):
    """Same segments, context, weights and trimming as ``demucs.apply.apply_model``."""
    torch.manual_seed(3)
    model = ContextModel().eval()
    mix = torch.randn(2, 2001)
    expected = _reference_apply(model, mix, shifts=0, overlap=overlap, segment=segment)
    ours = Separator(model, device="cpu", shifts=0, overlap=overlap, segment=segment)
    from stemforge.audio.ops import Normalisation

    got = torch.cat(list(ours.iter_separate(ArraySource(mix), Normalisation(0.0, 1.0))), -1)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_shifts_match_reference_with_same_seed():
    torch.manual_seed(4)
    model = ContextModel().eval()
    mix = torch.randn(2, 1500)
    random.seed(1234)
    expected = _reference_apply(model, mix, shifts=3)
    ours = Separator(model, device="cpu", shifts=3, seed=1234)
    from stemforge.audio.ops import Normalisation

    got = torch.cat(list(ours.iter_separate(ArraySource(mix), Normalisation(0.0, 1.0))), -1)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_progress_reaches_total():
    seen = []
    sep = Separator(IdentityModel(), device="cpu", shifts=2, progress=lambda d, t: seen.append((d, t)))
    sep.separate_tensor(torch.randn(2, 400))
    assert seen[-1][0] == pytest.approx(seen[-1][1]) == pytest.approx(4.0)
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))


@pytest.mark.parametrize("batch_size", [2, 5])
def test_batched_segments_give_the_same_output(batch_size):
    torch.manual_seed(3)
    model = ContextModel().eval()
    mix = torch.randn(2, 2500)
    single = Separator(model, device="cpu", shifts=0).separate_tensor(mix)
    batched = Separator(model, device="cpu", shifts=0, batch_size=batch_size).separate_tensor(mix)
    torch.testing.assert_close(batched, single, atol=1e-6, rtol=1e-5)
