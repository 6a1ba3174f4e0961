"""Bad input to ``stemforge separate``: one line on stderr, exit status 2, no traceback, no output."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import soundfile
import torch

from tests.conftest import make_music
from tests.reference import official_package, save_official


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    from demucs.demucs import Demucs

    folder = tmp_path_factory.mktemp("repo")
    torch.manual_seed(0)
    save_official(official_package(Demucs(sources=["drums", "bass", "other", "vocals"], channels=4, depth=2)),
                  folder, "tiny")
    return folder


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stemforge.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def assert_clean_failure(result: subprocess.CompletedProcess, needle: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert any(needle in line for line in lines), result.stderr
    assert all(line.startswith("stemforge") for line in lines), result.stderr


def test_missing_file(tmp_path, repo):
    result = run_cli("separate", "--repo", str(repo), "-n", "tiny", "-q", "nope.wav", cwd=tmp_path)
    assert_clean_failure(result, "no such file")
    assert not (tmp_path / "separated").exists()


def test_non_audio_file(tmp_path, repo):
    bogus = tmp_path / "notes.wav"
    bogus.write_text("this is not audio\n" * 100)
    result = run_cli("separate", "--repo", str(repo), "-n", "tiny", "-q", str(bogus), cwd=tmp_path)
    assert_clean_failure(result, "not a readable audio file")
    assert not (tmp_path / "separated").exists()


def test_unknown_model(tmp_path, repo):
    track = tmp_path / "a.wav"
    soundfile.write(str(track), make_music(1.0).T, 44100)
    result = run_cli("separate", "--repo", str(repo), "-n", "no_such_model", str(track), cwd=tmp_path)
    assert_clean_failure(result, "no_such_model")
    assert not (tmp_path / "separated").exists()
    result = run_cli("separate", "-n", "no_such_model", str(track), cwd=tmp_path)
    assert_clean_failure(result, "no_such_model")


@pytest.mark.parametrize("option", [["--shifts", "-1"], ["--overlap", "1"], ["--two-stems", "kazoo"],
                                    ["--filename", "../../{stem}.{ext}"]])
def test_bad_option_values(tmp_path, repo, option):
    track = tmp_path / "a.wav"
    soundfile.write(str(track), make_music(1.0).T, 44100)
    result = run_cli("separate", "--repo", str(repo), "-n", "tiny", *option, str(track), cwd=tmp_path)
    assert_clean_failure(result, option[0].lstrip("-").split("-")[0] if option[0] != "--filename" else "outside")
    assert not (tmp_path / "separated").exists()


def test_good_file_is_separated_even_if_another_fails(tmp_path, repo):
    track = tmp_path / "good.wav"
    soundfile.write(str(track), make_music(2.0).T, 44100)
    result = run_cli("separate", "--repo", str(repo), "-n", "tiny", "-q", "missing.wav", str(track), cwd=tmp_path)
    assert result.returncode != 0
    stems = sorted(p.name for p in (tmp_path / "separated" / "tiny" / "good").iterdir())
    assert stems == ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]
    audio, rate = soundfile.read(str(tmp_path / "separated" / "tiny" / "good" / "bass.wav"))
    assert rate == 44100 and audio.shape == (88200, 2)
