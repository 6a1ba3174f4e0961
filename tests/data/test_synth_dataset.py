"""``stemforge synth`` datasets: layout, stems summing to the mixture, determinism, resume."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from .synth_helpers import fast_voice, require_synth

VOICE = fast_voice()
SECONDS = 2.0
STEMS = ("drums", "bass", "other", "vocals")


@pytest.fixture(scope="module", autouse=True)
def _needs_synth():
    require_synth(VOICE)


def _spec(out: Path, seed: int = 3, train: int = 2, valid: int = 1):
    from stemforge.data.synth import DatasetSpec

    return DatasetSpec(out, train, valid, SECONDS, seed, VOICE)


def _read(folder: Path) -> dict[str, np.ndarray]:
    import soundfile

    out = {}
    for name in ("mixture",) + STEMS:
        audio, rate = soundfile.read(str(folder / f"{name}.flac"), dtype="float64", always_2d=True)
        assert rate == 44100
        out[name] = audio
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from stemforge.data.synth import write_dataset

    out = tmp_path_factory.mktemp("synth") / "ds"
    assert write_dataset(_spec(out), progress=False) == 3
    return out


def test_layout(dataset: Path):
    assert sorted(p.name for p in (dataset / "train").iterdir()) == ["song_00000", "song_00001"]
    assert sorted(p.name for p in (dataset / "valid").iterdir()) == ["song_00000"]
    for folder in list((dataset / "train").iterdir()) + list((dataset / "valid").iterdir()):
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.flac" for n in ("mixture",) + STEMS)
        for audio in _read(folder).values():
            assert audio.shape == (int(SECONDS * 44100), 2)


def test_stems_sum_to_mixture(dataset: Path):
    for folder in (dataset / "train").iterdir():
        audio = _read(folder)
        total = sum(audio[name] for name in STEMS)
        assert np.abs(total - audio["mixture"]).max() <= 1.0 / 32768 + 1e-9
        assert np.abs(audio["mixture"]).max() < 1.0
        for name in ("drums", "other"):  # always present in a song
            assert np.sqrt(np.mean(audio[name] ** 2)) > 1e-4, name


def test_same_seed_same_songs_other_seed_differs(dataset: Path, tmp_path: Path):
    from stemforge.data.synth import write_dataset

    write_dataset(_spec(tmp_path / "again", train=1, valid=0), progress=False)
    first, again = _read(dataset / "train" / "song_00000"), _read(tmp_path / "again" / "train" / "song_00000")
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    write_dataset(_spec(tmp_path / "other", seed=4, train=1, valid=0), progress=False)
    other = _read(tmp_path / "other" / "train" / "song_00000")
    assert np.abs(other["mixture"] - first["mixture"]).max() > 0.01
    second = _read(dataset / "train" / "song_00001")
    assert np.abs(second["mixture"] - first["mixture"]).max() > 0.01


def test_resume_skips_finished_songs(tmp_path: Path):
    import shutil

    from stemforge.data.synth import write_dataset

    spec = _spec(tmp_path / "ds", train=2, valid=0)
    assert write_dataset(spec, progress=False) == 2
    kept = tmp_path / "ds" / "train" / "song_00000" / "mixture.flac"
    stamp = kept.stat().st_mtime_ns
    redone = tmp_path / "ds" / "train" / "song_00001"
    before = _read(redone)
    shutil.rmtree(redone)
    stale = tmp_path / "ds" / "train" / ".tmp-song_00001-999"
    stale.mkdir()
    (stale / "mixture.flac").write_bytes(b"partial")
    assert write_dataset(spec, progress=False) == 1
    assert kept.stat().st_mtime_ns == stamp
    assert not stale.exists()
    after = _read(redone)
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])
    assert write_dataset(spec, progress=False) == 0


def test_cli_subcommand(tmp_path: Path):
    from stemforge.cli import synth

    parser = argparse.ArgumentParser()
    synth.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["synth", str(tmp_path / "cli"), "--songs", "1", "--valid", "0",
                              "--seconds", "1", "--seed", "5", "--voice", VOICE, "-q"])
    assert args.handler(args) == 0
    assert (tmp_path / "cli" / "train" / "song_00000" / "vocals.flac").is_file()
