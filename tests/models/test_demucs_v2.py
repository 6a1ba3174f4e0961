"""Parity of ``DemucsV2`` with demucs 2.0.3's ``Demucs`` (oracle loaded from the sdist source)."""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import julius
import pytest
import torch

from stemforge.models.demucs_v2 import V2_OFFICIAL, V2_SOURCES, DemucsV2, v2_config_for
from stemforge.models.layers.resample import downsample2, upsample2
from stemforge.models.registry import build_model
from stemforge.pretrained.repo import load_from_repo
from tests.models.demucs2_oracle import Demucs2

TOL = 1e-5


def _save_like_official(state: dict, directory: Path, model_name: str) -> Path:
    """Write a plain state dict as ``<model_name>-<sha8>.th``, like the official 2.x files."""
    buf = io.BytesIO()
    torch.save(state, buf)
    sig = hashlib.sha256(buf.getvalue()).hexdigest()[:8]
    path = directory / f"{model_name}-{sig}.th"
    path.write_bytes(buf.getvalue())
    return path


def _max_diff(ref: torch.nn.Module, ours: torch.nn.Module, mix: torch.Tensor) -> float:
    ref.eval()
    ours.eval()
    with torch.no_grad():
        expected = ref(mix)
        got = ours(mix)
    assert got.shape == expected.shape
    return (got - expected).abs().max().item()


@pytest.mark.parametrize("model_name", ["demucs", "demucs48_hq"])
def test_official_size_parity_through_file(tmp_path: Path, model_name: str) -> None:
    channels = V2_OFFICIAL[model_name][1]
    ref = Demucs2(sources=V2_SOURCES, channels=channels)
    _save_like_official(ref.state_dict(), tmp_path, model_name)

    # Loaded by model name from a local repo, through the safe reader (checksum in the name verified).
    ours = load_from_repo(model_name, tmp_path)
    assert isinstance(ours, DemucsV2) and ours.channels == channels
    assert list(ours.state_dict()) == list(ref.state_dict())

    mix = torch.randn(1, 2, ours.valid_length(44100))  # 1 s of audio, full-size model
    diff = _max_diff(ref, ours, mix)
    assert diff <= TOL, diff


SMALL_VARIANTS = [
    {},
    {"glu": False},
    {"rewrite": False, "lstm_layers": 0},
    {"resample": False, "context": 1},
    {"normalize": True, "growth": 1.5, "lstm_layers": 1},
    {"audio_channels": 1, "kernel_size": 6, "stride": 3, "depth": 3},
]


@pytest.mark.parametrize("overrides", SMALL_VARIANTS, ids=lambda o: ",".join(o) or "default")
def test_small_config_parity(overrides: dict) -> None:
    kwargs = {"sources": ["a", "b", "c"], "channels": 4, "depth": 4, **overrides}
    ref = Demucs2(**kwargs)
    ours = DemucsV2(**kwargs)
    ours.load_state_dict(ref.state_dict(), strict=True)
    for length in (3000, ref.valid_length(3000)):
        assert ours.valid_length(length) == ref.valid_length(length)
    mix = torch.randn(2, ours.audio_channels, ours.valid_length(3000))
    diff = _max_diff(ref, ours, mix)
    assert diff <= TOL, diff


def test_same_seed_same_init() -> None:
    """Module creation order and the rescale trick match: a fresh model is the reference's."""
    kwargs = {"sources": V2_SOURCES, "channels": 8, "depth": 4}
    torch.manual_seed(3)
    ref = Demucs2(**kwargs)
    torch.manual_seed(3)
    ours = DemucsV2(**kwargs)
    for (name, a), (_, b) in zip(ref.state_dict().items(), ours.state_dict().items()):
        assert torch.equal(a, b), name


def test_valid_length_padding_and_trim() -> None:
    """Padded to valid_length, the output centre-trims to the input length (what the engine does)."""
    model = DemucsV2(sources=V2_SOURCES, channels=4, depth=4).eval()
    for length in (1000, 2345, 4097):
        valid = model.valid_length(length)
        assert valid >= length
        with torch.no_grad():
            out = model(torch.randn(1, 2, valid))
        assert out.shape[:3] == (1, 4, 2)
        assert out.shape[-1] >= length


def test_model_attributes() -> None:
    model = build_model("DemucsV2", v2_config_for("demucs_extra"))
    assert isinstance(model, DemucsV2)
    assert model.sources == ["drums", "bass", "other", "vocals"]
    assert model.samplerate == 44100 and model.audio_channels == 2
    assert model.segment == 40.0  # segment_length 4 * 10 * 44100, as used by 2.0.3's separate
    assert model.max_segment is None


@pytest.mark.parametrize("name, channels", [
    ("demucs", 64), ("demucs_extra", 64), ("demucs48_hq", 48),
    ("demucs-e07c671f.th", 64), ("demucs_extra-3646af93.th", 64),
    ("/some/dir/demucs48_hq-28a1282c.th", 48), ("demucs48_hq-deadbeef.th", 48),
])
def test_v2_config_for(name: str, channels: int) -> None:
    assert v2_config_for(name) == {"sources": ["drums", "bass", "other", "vocals"],
                                   "channels": channels}


@pytest.mark.parametrize("name", ["htdemucs", "demucs_quantized-07afea75.th", "tasnet", ""])
def test_v2_config_for_rejects_others(name: str) -> None:
    with pytest.raises(KeyError):
        v2_config_for(name)


def test_2x_resampling_matches_julius() -> None:
    """The internal 2x up/down resampling is the one demucs 2.0.3 gets from julius."""
    x = torch.randn(2, 3, 1001)
    torch.testing.assert_close(upsample2(x), julius.resample_frac(x, 1, 2), rtol=0, atol=1e-6)
    torch.testing.assert_close(downsample2(x), julius.resample_frac(x, 2, 1), rtol=0, atol=1e-6)
