"""Bad input to ``stemforge separate``: one line on stderr, exit status 2, no traceback, no output."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import soundfile
from tests.conftest import make_music


@pytest.fixture
def repo(tiny_repo) -> Path:
    return tiny_repo


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


def test_empty_and_zero_length_files(tmp_path, repo):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    result = run_cli("separate", "--repo", str(repo), "-n", "tiny", "-q", str(empty), cwd=tmp_path)
    assert_clean_failure(result, "empty")
    silent = tmp_path / "zero.wav"
    soundfile.write(str(silent), make_music(0.0).T.reshape(0, 2), 44100)
    result = run_cli("separate", "--repo", str(repo), "-n", "tiny", "-q", str(silent), cwd=tmp_path)
    assert_clean_failure(result, "no audio samples")
    assert not (tmp_path / "separated").exists()


def test_truncated_mp3(tmp_path, repo):
    from stemforge.audio.encode import OutputFormat
    from stemforge.audio.io import write_audio

    whole = write_audio(tmp_path / "whole.mp3", make_music(3.0), 44100, OutputFormat("mp3"))
    head = tmp_path / "head.mp3"
    head.write_bytes(whole.read_bytes()[:300])  # cut inside the first frames: nothing decodable
    result = run_cli("separate", "--repo", str(repo), "-n", "tiny", "-q", str(head), cwd=tmp_path)
    assert_clean_failure(result, "head.mp3")
    half = tmp_path / "half.mp3"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # decodable half: separated
    result = run_cli("separate", "--repo", str(repo), "-n", "tiny", "-q", str(half), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "separated" / "tiny" / "half").iterdir())) == 4


def test_unsupported_codec(tmp_path, repo):
    """A container whose only stream is video (no audio) is refused clearly."""
    import av
    import numpy as np

    path = tmp_path / "video_only.mkv"
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height = 32, 32
        for index in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), dtype=np.uint8), format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    result = run_cli("separate", "--repo", str(repo), "-n", "tiny", "-q", str(path), cwd=tmp_path)
    assert_clean_failure(result, "no audio stream")


def test_directory_without_audio(tmp_path, repo):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("hello")
    result = run_cli("separate", "--repo", str(repo), "-n", "tiny", "-q", str(tmp_path / "docs"), cwd=tmp_path)
    assert_clean_failure(result, "no audio files")


def test_unwritable_output_folder(tmp_path, repo):
    track = tmp_path / "a.wav"
    soundfile.write(str(track), make_music(1.0).T, 44100)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output folder should be")
    result = run_cli("separate", "--repo", str(repo), "-n", "tiny", "-q", "-o", str(blocker), str(track),
                     cwd=tmp_path)
    assert_clean_failure(result, "blocker")
    assert blocker.read_text().startswith("a file")
