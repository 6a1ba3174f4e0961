"""``stemforge separate song.mp3`` with no model named: the built-in model, offline, no download."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile

from stemforge.audio.io import read_audio
from stemforge.cli.main import main as stemforge_main
from stemforge.inference.separator import Separator
from stemforge.pretrained.builtin import DEFAULT_MODEL, builtin_path
from tests.cli.test_formats import make_input

@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Offline mode and an empty cache: anything that tried to download would fail."""
    monkeypatch.setenv("STEMFORGE_OFFLINE", "1")
    monkeypatch.setenv("STEMFORGE_CACHE", str(tmp_path / "empty-cache"))


def test_default_model_is_the_shipped_one():
    assert DEFAULT_MODEL == "stemforge-small"
    path = builtin_path(DEFAULT_MODEL)
    assert path is not None, "the built-in weights are missing from the package"
    assert path.stat().st_size <= 25e6


def test_separate_mp3_without_a_model_name(tmp_path, no_network):
    song = make_input(tmp_path, "song.mp3", seconds=3.0)
    assert stemforge_main(["separate", "-q", "--shifts", "0", "-o", str(tmp_path / "out"), str(song)]) == 0
    folder = tmp_path / "out" / DEFAULT_MODEL / "song"
    mix, rate = read_audio(song)
    stems = {}
    for name in ["drums", "bass", "other", "vocals"]:
        wav, stem_rate = soundfile.read(str(folder / f"{name}.wav"), dtype="float32", always_2d=True)
        assert stem_rate == rate
        stems[name] = wav.T
    total = sum(stems.values())
    length = min(total.shape[-1], mix.shape[-1])
    # ratio masks add up to the mixture (up to 16-bit quantisation of four files)
    assert np.abs(total[:, :length] - mix[:, :length]).max() < 2e-3
    # and actually split it: no stem is the whole mixture or silence everywhere
    energies = [float((stem ** 2).sum()) for stem in stems.values()]
    assert max(energies) < 0.98 * float((mix ** 2).sum())


def test_python_api_default(no_network):
    separator = Separator(shifts=0)
    assert separator.sources == ["drums", "bass", "other", "vocals"]
    wav = np.random.default_rng(0).standard_normal((2, 44100)).astype(np.float32) * 0.1
    stems = separator.separate(wav, 44100)
    assert set(stems) == set(separator.sources)
    assert all(stem.shape == wav.shape for stem in stems.values())


def test_models_lists_the_builtin_card(capsys):
    assert stemforge_main(["models", "-l"]) == 0
    out = capsys.readouterr().out
    assert "stemforge-small (the default model)" in out
    assert "licence: MIT" in out
    # the shipped file carries its measured scores next to the constant-gain baseline
    assert "SDX SDR on" in out and "constant-gain baseline" in out
