"""Parity of the shared Demucs-family layers with ``demucs==4.1.0`` (the test oracle)."""
from __future__ import annotations

import julius
import pytest
import torch
from torch.nn import functional as F
from demucs import demucs as ref_demucs
from demucs import hdemucs as ref_hdemucs
from demucs import spec as ref_spec
from demucs import transformer as ref_transformer
from demucs import utils as ref_utils

from stemforge.models.layers import conv_blocks, hybrid, spectral
from stemforge.models.layers.resample import downsample2, resample_frac, upsample2
from stemforge.models.layers.utils import center_trim, frame_signal

TOL = 1e-5


def _twins(ref_factory, our_factory):
    """Build reference and our module from the same seed; check identical init; eval mode."""
    torch.manual_seed(1)
    ref = ref_factory()
    torch.manual_seed(1)
    ours = our_factory()
    ref_state, our_state = ref.state_dict(), ours.state_dict()
    assert list(ref_state) == list(our_state)
    for key in ref_state:
        assert torch.equal(ref_state[key], our_state[key]), key
    return ref.eval(), ours.eval()


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


@pytest.mark.parametrize("channel_last", [False, True])
def test_layer_scale(channel_last):
    ref, ours = _twins(lambda: ref_transformer.LayerScale(6, 0.3, channel_last),
                       lambda: conv_blocks.LayerScale(6, 0.3, channel_last=channel_last))
    assert list(ours.state_dict()) == ["scale"]
    x = torch.randn(5, 2, 6) if channel_last else torch.randn(2, 6, 5)
    assert torch.equal(ref(x), ours(x))


@pytest.mark.parametrize("length,max_steps,skip", [(150, 200, False), (537, 200, True),
                                                   (64, 16, False)])
def test_blstm(length, max_steps, skip):
    ref, ours = _twins(lambda: ref_demucs.BLSTM(8, layers=2, max_steps=max_steps, skip=skip),
                       lambda: conv_blocks.BLSTM(8, layers=2, max_steps=max_steps, skip=skip))
    x = torch.randn(2, 8, length)
    with torch.no_grad():
        assert _diff(ref(x), ours(x)) <= TOL


@pytest.mark.parametrize("nfreqs,ndecay", [(0, 4), (3, 2), (0, 0)])
def test_local_state(nfreqs, ndecay):
    ref, ours = _twins(lambda: ref_demucs.LocalState(8, heads=2, nfreqs=nfreqs, ndecay=ndecay),
                       lambda: conv_blocks.LocalState(8, heads=2, nfreqs=nfreqs, ndecay=ndecay))
    x = torch.randn(2, 8, 37)
    with torch.no_grad():
        assert _diff(ref(x), ours(x)) <= TOL


@pytest.mark.parametrize("kw", [
    {},
    {"attn": True, "lstm": True, "depth": 3},
    {"depth": -2, "norm": False, "gelu": False, "kernel": 5, "compress": 2},
])
def test_dconv(kw):
    ref, ours = _twins(lambda: ref_demucs.DConv(16, init=0.5, **kw),
                       lambda: conv_blocks.DConv(16, init=0.5, **kw))
    x = torch.randn(2, 16, 230)
    with torch.no_grad():
        assert _diff(ref(x), ours(x)) <= TOL


def test_rescale_module_matches_reference():
    def build():
        return torch.nn.Sequential(torch.nn.Conv1d(3, 5, 3), torch.nn.ConvTranspose2d(5, 4, 2),
                                   torch.nn.Linear(3, 3))
    torch.manual_seed(0)
    ref = build()
    ref_demucs.rescale_module(ref, 0.1)
    torch.manual_seed(0)
    ours = build()
    conv_blocks.rescale_module(ours, 0.1)
    for (key, a), b in zip(ref.state_dict().items(), ours.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-7), key


@pytest.mark.parametrize("delta", [0, 1, 6, 7])
def test_center_trim(delta):
    x = torch.randn(2, 3, 20 + delta)
    assert torch.equal(center_trim(x, 20), ref_utils.center_trim(x, 20))
    assert torch.equal(center_trim(x, torch.zeros(20)), ref_utils.center_trim(x, 20))
    with pytest.raises(ValueError):
        center_trim(x, 21 + delta)


@pytest.mark.parametrize("length", [10, 16, 17])
def test_frame_signal(length):
    x = torch.randn(2, 3, length)
    assert torch.equal(frame_signal(x, 8, 4), ref_utils.unfold(x, 8, 4))


@pytest.mark.parametrize("old,new", [(1, 2), (2, 1), (4, 5), (441, 480)])
def test_resample_matches_julius(old, new):
    x = torch.randn(2, 3, 1001)
    assert _diff(resample_frac(x, old, new), julius.resample_frac(x, old, new)) <= 1e-6


def test_up_down_sample2():
    x = torch.randn(2, 777)
    assert _diff(upsample2(x), julius.resample_frac(x, 1, 2)) <= 1e-6
    assert _diff(downsample2(x), julius.resample_frac(x, 2, 1)) <= 1e-6
    assert resample_frac(x, 3, 3) is x


@pytest.mark.parametrize("pad", [0, 1])
def test_spectro_roundtrip_matches_reference(pad):
    x = torch.randn(2, 2, 3000)
    z = spectral.spectro(x, 256, 64, pad=pad)
    assert _diff(torch.view_as_real(z), torch.view_as_real(ref_spec.spectro(x, 256, 64, pad)))\
        <= 1e-6
    y = spectral.ispectro(z, 64, length=3000, pad=pad)
    assert _diff(y, ref_spec.ispectro(z, 64, length=3000, pad=pad)) <= 1e-6
    if pad == 0:
        assert _diff(y, x) <= 1e-5


@pytest.mark.parametrize("length,paddings,mode", [
    (10, (3, 4), "constant"), (10, (3, 4), "reflect"), (3, (5, 2), "reflect"),
    (2, (1, 6), "reflect"), (4, (4, 4), "reflect"),
])
def test_pad1d(length, paddings, mode):
    x = torch.randn(2, 3, length)
    assert torch.equal(hybrid.pad1d(x, paddings, mode), ref_hdemucs.pad1d(x, paddings, mode))


@pytest.mark.parametrize("smooth", [False, True])
def test_scaled_embedding(smooth):
    ref, ours = _twins(lambda: ref_hdemucs.ScaledEmbedding(12, 6, scale=5.0, smooth=smooth),
                       lambda: hybrid.ScaledEmbedding(12, 6, scale=5.0, smooth=smooth))
    idx = torch.arange(12)
    assert _diff(ref(idx), ours(idx)) <= 1e-6
    assert _diff(ref.weight, ours.weight) <= 1e-6


_DCONV_KW = {"depth": 2, "compress": 2, "attn": True, "lstm": True, "init": 0.3}


@pytest.mark.parametrize("kw,shape", [
    ({"freq": True}, (2, 4, 64, 9)),
    ({"freq": True, "norm": False, "rewrite": False, "context": 1}, (2, 4, 64, 9)),
    ({"freq": True, "pad": False, "kernel_size": 4, "dconv": False}, (2, 4, 4, 9)),
    ({"freq": False, "context": 1}, (2, 4, 61)),
    ({"freq": False}, (2, 2, 2, 61)),
    ({"freq": False, "empty": True}, (2, 4, 61)),
])
def test_henc_layer(kw, shape):
    kw = dict(kw, dconv_kw=_DCONV_KW, norm_groups=2)
    chin = 4
    ref, ours = _twins(lambda: ref_hdemucs.HEncLayer(chin, 8, **kw),
                       lambda: hybrid.HEncLayer(chin, 8, **kw))
    x = torch.randn(*shape)
    with torch.no_grad():
        assert _diff(ref(x), ours(x)) <= TOL


def test_henc_layer_inject():
    ref, ours = _twins(lambda: ref_hdemucs.HEncLayer(4, 8, freq=True, dconv_kw=_DCONV_KW),
                       lambda: hybrid.HEncLayer(4, 8, freq=True, dconv_kw=_DCONV_KW))
    x, inject = torch.randn(2, 4, 32, 9), torch.randn(2, 8, 9)
    with torch.no_grad():
        assert _diff(ref(x, inject), ours(x, inject)) <= TOL


@pytest.mark.parametrize("kw,shape,skip", [
    ({"freq": True}, (2, 8, 16, 9), True),
    ({"freq": True, "last": True, "context_freq": False}, (2, 8, 16, 9), True),
    ({"freq": True, "pad": False, "norm": False, "rewrite": False}, (2, 8, 1, 9), True),
    ({"freq": False}, (2, 8, 20), True),
    ({"freq": True, "empty": True}, (2, 8, 9), False),
    ({"freq": False, "empty": True, "last": True}, (2, 8, 20), False),
])
def test_hdec_layer(kw, shape, skip):
    kw = dict(kw, dconv_kw=_DCONV_KW, norm_groups=2)
    ref, ours = _twins(lambda: ref_hdemucs.HDecLayer(8, 4, **kw),
                       lambda: hybrid.HDecLayer(8, 4, **kw))
    x = torch.randn(*shape)
    s = torch.randn(*shape) if skip else None
    length = None if kw["freq"] else 4 * shape[-1] - 3
    with torch.no_grad():
        (a, pre_a), (b, pre_b) = ref(x, s, length), ours(x, s, length)
    assert _diff(a, b) <= TOL
    assert _diff(pre_a, pre_b) <= TOL


@pytest.mark.parametrize("last", [False, True])
def test_multiwrap(last):
    enc_kw = {"freq": True, "norm": False, "dconv_kw": _DCONV_KW}
    dec_kw = dict(enc_kw, context_freq=False, last=last)
    ratios = [0.25, 0.6]
    ref_enc, our_enc = _twins(
        lambda: ref_hdemucs.MultiWrap(ref_hdemucs.HEncLayer(4, 8, **enc_kw), ratios),
        lambda: hybrid.MultiWrap(hybrid.HEncLayer(4, 8, **enc_kw), ratios))
    ref_dec, our_dec = _twins(
        lambda: ref_hdemucs.MultiWrap(ref_hdemucs.HDecLayer(8, 4, **dec_kw), ratios),
        lambda: hybrid.MultiWrap(hybrid.HDecLayer(8, 4, **dec_kw), ratios))
    x = torch.randn(2, 4, 128, 7)
    with torch.no_grad():
        a, b = ref_enc(x), our_enc(x)
        assert _diff(a, b) <= TOL
        (da, _), (db, none) = ref_dec(a, a.clone()), our_dec(b, b.clone())
    assert none is None
    assert _diff(da, db) <= TOL
    assert our_dec.layers[0].last == last


@pytest.mark.parametrize("zero_frames,start,length", [((2, 2), 1536, 20 * 1024), ((0, 0), 0, 19 * 1024 + 100),
                                                      ((1, 3), 100, 5000), ((2, 2), 0, 24 * 1024)])
def test_time_major_istft_equals_torch_istft_with_zero_frames(zero_frames, start, length):
    from stemforge.models.layers.spectral import ispectro, istft_time_major

    torch.manual_seed(0)
    z = torch.randn(3, 2, 2048, 20, dtype=torch.complex64)
    padded = F.pad(F.pad(z, (0, 0, 0, 1)), zero_frames)  # Nyquist bin, then the zero frames
    expected = ispectro(padded, 1024, length=start + length)[..., start:]
    frames = F.pad(z.transpose(-1, -2), (0, 1))
    got = istft_time_major(frames, 1024, length, zero_frames, start)
    assert got.shape == expected.shape == (3, 2, length)
    assert torch.allclose(got, expected, atol=2e-6, rtol=0)


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("grad", [False, True])
def test_complex_time_major_layout_and_denormalisation(affine, grad):
    parts = torch.randn(2, 3, 4, 5, 7, requires_grad=grad)  # (B, S, 2C, F, T)
    scale = torch.rand(2, 1, 1, 1, 1) + 0.5 if affine else None
    shift = torch.randn(2, 1, 1, 1, 1) if affine else None
    frames = spectral.complex_time_major(parts, scale, shift)
    assert frames.shape == (2, 3, 2, 7, 6)  # (B, S, C, T, F + 1)
    values = parts * scale + shift if affine else parts
    expected = torch.complex(values[:, :, 0::2], values[:, :, 1::2]).transpose(-1, -2)
    assert torch.allclose(frames[..., :5], expected, atol=1e-6)
    assert torch.equal(frames[..., 5], torch.zeros_like(frames[..., 5]))
    if grad:
        frames.real.sum().backward()
        assert parts.grad is not None
