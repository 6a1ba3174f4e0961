"""Audio I/O: decoding, encoding at each bit depth, atomic writes, clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from stemforge.audio.encode import OutputFormat
from stemforge.audio.io import AudioError, atomic_path, read_audio, write_audio
from stemforge.audio.ops import Normalisation, channels_of, prevent_clip
from tests.conftest import make_music


@pytest.mark.parametrize("fmt,tolerance", [(OutputFormat("wav", 16), 1 / 32767),
                                           (OutputFormat("wav", 24), 1 / 8388607),
                                           (OutputFormat("wav", float32=True), 0.0),
                                           (OutputFormat("flac", 16), 1 / 32767),
                                           (OutputFormat("flac", 24), 1 / 8388607)])
def test_write_then_read_round_trip(tmp_path, fmt, tolerance):
    wav = make_music(0.5, samplerate=22050)
    path = write_audio(tmp_path / f"x.{fmt.extension}", wav, 22050, fmt)
    back, rate = read_audio(path)
    assert rate == 22050 and back.shape == wav.shape
    # integers are written with scale 2**(b-1)-1 (as Demucs) and read back with 2**(b-1)
    assert (np.abs(back - wav) <= tolerance * (0.5 + np.abs(wav)) + 1e-7).all()
    assert soundfile.info(str(path)).subtype == fmt.subtype


def test_write_clamps_and_rounds_to_nearest():
    from stemforge.audio.encode import quantise

    samples = quantise(np.array([[2.0, -2.0, 0.51 / 32767, 0.49 / 32767]]), OutputFormat("wav", 16))
    assert (samples[:, 0] >> 16).tolist() == [32767, -32767, 1, 0]


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out" / "stem.wav"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_atomic_write_replaces_existing_file_only_when_complete(tmp_path):
    target = tmp_path / "stem.wav"
    target.write_bytes(b"old")
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new"


@pytest.mark.parametrize("content,message", [(None, "no such file"), (b"", "empty"),
                                             (b"RIFF....WAVEjunk" * 10, "not a readable audio file")])
def test_read_errors_are_clear(tmp_path, content, message):
    path = tmp_path / "bad.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioError, match=message):
        read_audio(path)


def test_channel_conversion():
    mono = np.random.randn(1, 10)
    assert np.array_equal(channels_of(mono, 2), np.repeat(mono, 2, axis=0))
    surround = np.random.randn(6, 10)
    np.testing.assert_allclose(channels_of(surround, 2), np.stack([surround[0::2].mean(0), surround[1::2].mean(0)]))
    np.testing.assert_allclose(channels_of(surround, 1), surround.mean(0, keepdims=True))


def test_normalisation_and_clipping():
    wav = torch.randn(2, 1000) * 3 + 1
    stats = Normalisation.of(wav)
    torch.testing.assert_close(stats.invert(stats.apply(wav)), wav)
    normalised = stats.apply(wav)
    inverted = stats.invert(normalised)
    assert stats.invert_(normalised) is normalised  # in place
    assert torch.equal(normalised, inverted)         # bit for bit the same values
    assert stats.std == pytest.approx(float(wav.mean(0).std()) + 1e-8)
    loud = torch.tensor([[2.0, -0.5]])
    assert prevent_clip(loud, "rescale").abs().max().item() == pytest.approx(1 / 1.01)
    assert prevent_clip(loud, "clamp").tolist() == [[pytest.approx(0.99), -0.5]]
    assert torch.equal(prevent_clip(loud, "none"), loud)


def test_written_files_get_normal_permissions(tmp_path):
    from stemforge.atomic import new_file_mode

    path = write_audio(tmp_path / "stem.wav", make_music(0.1), 44100, OutputFormat("wav"))
    assert path.stat().st_mode & 0o777 == new_file_mode()
    with atomic_path(tmp_path / "x.json") as tmp:
        tmp.write_text("{}")
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == new_file_mode()
